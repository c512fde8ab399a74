//! The pace of messages toward one mail server: `maxPerMinute` spread evenly over the minute,
//! with no burst, so a server's per-minute limit is never met by a burst at the minute's start.
//! The delivery loop's SMTP transport and the relay pace by it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// One message every `60 s / per_minute` (at least one a minute), never two at once.
pub fn even_per_minute(per_minute: u32) -> Quota {
    let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(Duration::from_secs(60) / per_minute.get())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_is_spread_evenly() {
        assert_eq!(
            even_per_minute(600).replenish_interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            even_per_minute(0).replenish_interval(),
            Duration::from_secs(60)
        );
        assert_eq!(even_per_minute(600).burst_size(), NonZeroU32::MIN);
    }
}
