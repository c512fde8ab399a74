//! One SMTP session with a pipeline pod, as pure decisions: each command line and the
//! session's state give the reply and the next state. The message itself is relayed by
//! `smtp`, which answers the end of DATA with the upstream server's own reply, so a bounce,
//! a deferral or an acceptance reaches the pipeline exactly as if it had talked to the
//! upstream itself (its delivery states and blacklist stay right).

/// Most recipients of one message (finrep sends one per message).
pub const MAX_RECIPIENTS: usize = 100;
/// The largest message accepted, in bytes (also announced as SIZE).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// The longest command line read.
pub const MAX_LINE_BYTES: usize = 4096;

/// Where a session is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// Before HELO/EHLO.
    #[default]
    Connected,
    /// Greeted, no transaction.
    Ready,
    /// MAIL FROM given; recipients so far.
    Mail {
        from: String,
        to: Vec<String>,
    },
    /// DATA accepted: the next lines are the message, up to a lone `.`.
    Data {
        from: String,
        to: Vec<String>,
    },
    Closed,
}

/// What the server does after a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub reply: String,
    pub next: State,
}

fn step(reply: &str, next: State) -> Step {
    Step {
        reply: reply.to_string(),
        next,
    }
}

/// The address of `FROM:<a@b> SIZE=…` / `TO:<a@b>`; `None` when malformed. The empty
/// reverse path `<>` is an empty address.
fn path(arg: &str, prefix: &str) -> Option<String> {
    let rest = arg
        .get(..prefix.len())?
        .eq_ignore_ascii_case(prefix)
        .then(|| &arg[prefix.len()..])?;
    let rest = rest.trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    let addr = &inner[..end];
    let valid = addr.len() <= 254
        && !addr.chars().any(|c| c.is_control() || c.is_whitespace())
        && (addr.is_empty() || addr.contains('@'));
    valid.then(|| addr.to_string())
}

/// Whether `from` may send through the relay: its domain is one the operator allows (empty
/// list: any).
pub fn sender_allowed(from: &str, allowed_domains: &[String]) -> bool {
    if allowed_domains.is_empty() {
        return true;
    }
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    allowed_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain))
}

/// The reply to one command line (not a DATA line) in `state`.
pub fn command(state: State, line: &str, allowed_domains: &[String]) -> Step {
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let verb = verb.to_ascii_uppercase();
    match (verb.as_str(), state) {
        ("QUIT", _) => step("221 2.0.0 Bye", State::Closed),
        ("NOOP", s) => step("250 2.0.0 OK", s),
        ("RSET", State::Connected) => step("250 2.0.0 OK", State::Connected),
        ("RSET", _) => step("250 2.0.0 OK", State::Ready),
        ("EHLO", _) => step(
            &format!(
                "250-finrep-relay\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE {MAX_MESSAGE_BYTES}"
            ),
            State::Ready,
        ),
        ("HELO", _) => step("250 finrep-relay", State::Ready),
        ("MAIL", State::Ready) => match path(arg, "FROM:") {
            None => step("501 5.5.4 Syntax: MAIL FROM:<address>", State::Ready),
            Some(from) if !sender_allowed(&from, allowed_domains) => step(
                "550 5.7.1 This relay sends only from the operator's sender domains",
                State::Ready,
            ),
            Some(from) => step(
                "250 2.1.0 OK",
                State::Mail {
                    from,
                    to: Vec::new(),
                },
            ),
        },
        ("RCPT", State::Mail { from, mut to }) => match path(arg, "TO:") {
            None => step(
                "501 5.5.4 Syntax: RCPT TO:<address>",
                State::Mail { from, to },
            ),
            Some(addr) if addr.is_empty() => {
                step("501 5.1.3 An empty recipient", State::Mail { from, to })
            }
            Some(_) if to.len() >= MAX_RECIPIENTS => {
                step("452 4.5.3 Too many recipients", State::Mail { from, to })
            }
            Some(addr) => {
                to.push(addr);
                step("250 2.1.5 OK", State::Mail { from, to })
            }
        },
        ("DATA", State::Mail { from, to }) if !to.is_empty() => step(
            "354 End data with <CR><LF>.<CR><LF>",
            State::Data { from, to },
        ),
        ("STARTTLS" | "AUTH", s) => step(
            "502 5.5.1 Not offered: the relay holds the login, nobody needs one",
            s,
        ),
        ("MAIL" | "RCPT" | "DATA", s) => step("503 5.5.1 Bad sequence of commands", s),
        (_, s) => step("502 5.5.2 Command not recognised", s),
    }
}

/// One line of DATA with its dot-stuffing undone; `None` for the lone `.` that ends it.
pub fn data_line(line: &[u8]) -> Option<&[u8]> {
    let content = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    if content == b"." {
        return None;
    }
    Some(line.strip_prefix(b".").unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> (Vec<String>, State) {
        let mut state = State::default();
        let mut replies = Vec::new();
        for l in lines {
            let s = command(state, l, &["desk.example".to_string()]);
            replies.push(s.reply[..3].to_string());
            state = s.next;
        }
        (replies, state)
    }

    #[test]
    fn a_transaction_reaches_data() {
        let (replies, state) = run(&[
            "EHLO pod",
            "MAIL FROM:<brief@desk.example> SMTPUTF8",
            "RCPT TO:<a@example.com>",
            "DATA",
        ]);
        assert_eq!(replies, ["250", "250", "250", "354"]);
        assert_eq!(
            state,
            State::Data {
                from: "brief@desk.example".into(),
                to: vec!["a@example.com".into()]
            }
        );
    }

    #[test]
    fn out_of_order_foreign_senders_and_auth_are_refused() {
        let (replies, _) = run(&[
            "MAIL FROM:<a@desk.example>",
            "EHLO pod",
            "DATA",
            "MAIL FROM:<ceo@bank.example>",
            "AUTH PLAIN AGZvbwBiYXI=",
            "MAIL FROM:<a@desk.example>",
            "DATA",
            "RCPT TO:<>",
            "QUIT",
        ]);
        assert_eq!(
            replies,
            [
                "503", "250", "503", "550", "502", "250", "503", "501", "221"
            ]
        );
    }

    #[test]
    fn data_lines_unstuff_and_end() {
        assert_eq!(
            data_line(b"..leading dot\r\n"),
            Some(&b".leading dot\r\n"[..])
        );
        assert_eq!(data_line(b"text\r\n"), Some(&b"text\r\n"[..]));
        assert_eq!(data_line(b".\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn no_line_panics(line in ".{0,300}") {
            let _ = command(State::Ready, &line, &[]);
            let _ = command(State::Mail { from: String::new(), to: vec![] }, &line, &[]);
            let _ = data_line(line.as_bytes());
        }
    }
}
