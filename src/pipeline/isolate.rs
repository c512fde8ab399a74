//! Containing bugs: a panic while handling one item or one source becomes that item's or
//! source's recorded failure, never the end of the run. (The process keeps `panic = unwind`,
//! the default, so a panic can be caught; the panic hook of `telemetry` logs it, cleaned.)

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::untrusted::panic_message;

/// Runs `f`, turning a panic into its message (cleaned and bounded: a panic message may quote
/// the text that caused it).
pub fn isolate<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // The closures passed here own or only read their inputs; nothing half-updated outlives
    // a caught panic.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_message() {
        assert_eq!(isolate(|| 2 + 2), Ok(4));
        let err = isolate(|| {
            let s = "６００５１９";
            s[..std::hint::black_box(2)].len()
        })
        .unwrap_err();
        assert!(err.contains("char boundary"), "{err}");
        let err = isolate(|| -> () { panic!("bad\0input\r\nline") }).unwrap_err();
        assert_eq!(err, "bad input line");
    }
}
