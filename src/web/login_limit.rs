//! How many failed logins the console lets through, with state an anonymous client cannot grow.
//!
//! Only failures count. A client (an address; an IPv6 /64) may fail [`PER_CLIENT`] times in a
//! window and is then refused without its attempts being looked at — so it stops charging the
//! account too. An attempt is charged when it is admitted (so concurrent attempts cannot all
//! pass the check before any is counted) and refunded when it succeeds. The account's limit ([`PER_ACCOUNT`]) counts failures for the real account name
//! only (the console has one account; other names cannot log in anyway), and is larger than one
//! client's share, so one address cannot lock the operator out. The client table holds at most
//! [`MAX_CLIENTS`] entries: windows that ended are dropped first, and when every entry is live
//! a new client is refused until one ends, so a flood of addresses costs bounded memory.
//! Decisions take `now` as an argument: pure, and testable without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures a client may make in one window.
pub const PER_CLIENT: u32 = 5;
/// Failures for the account's name, from all clients, in one window.
pub const PER_ACCOUNT: u32 = 20;
/// The window both limits count in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most clients remembered at once (about 48 bytes each).
pub const MAX_CLIENTS: usize = 4096;
/// Most "over the limit" log lines a window writes; the rest are counted in one line.
const LOG_LINES_PER_WINDOW: u32 = 5;

/// Why a login is not looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This client failed too often.
    Client,
    /// The account's name failed too often from all clients together.
    Account,
    /// Too many clients are being remembered; a new one waits.
    Full,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Account => "account",
            Self::Full => "table-full",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Count {
    failures: u32,
    since: Instant,
}

impl Count {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.since) < WINDOW
    }
}

/// The client key: an IPv4 address, or the /64 an IPv6 client holds whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

/// The limiter's state.
#[derive(Debug)]
pub struct LoginLimits {
    clients: HashMap<IpAddr, Count>,
    account: Option<Count>,
    logged: Option<(Instant, u32, u64)>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginLimits {
    pub fn new() -> Self {
        Self {
            clients: HashMap::new(),
            account: None,
            logged: None,
        }
    }

    /// Whether `client`'s attempt (`for_account`: naming the account) may be checked now; an
    /// admitted attempt is charged as a failure until [`LoginLimits::succeeded`] refunds it.
    pub fn admit(
        &mut self,
        client: IpAddr,
        for_account: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check(client, now)?;
        self.charge(client, for_account, now);
        Ok(())
    }

    fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), Refusal> {
        let key = client_key(client);
        match self.clients.get(&key) {
            Some(c) if c.live(now) && c.failures >= PER_CLIENT => return Err(Refusal::Client),
            Some(_) => {}
            None if self.clients.len() >= MAX_CLIENTS => {
                self.prune(now);
                if self.clients.len() >= MAX_CLIENTS {
                    return Err(Refusal::Full);
                }
            }
            None => {}
        }
        match self.account {
            Some(a) if a.live(now) && a.failures >= PER_ACCOUNT => Err(Refusal::Account),
            _ => Ok(()),
        }
    }

    fn charge(&mut self, client: IpAddr, for_account: bool, now: Instant) {
        let key = client_key(client);
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&key) {
            self.prune(now);
        }
        if self.clients.len() < MAX_CLIENTS || self.clients.contains_key(&key) {
            bump(self.clients.entry(key).or_insert(fresh(now)), now);
        }
        if for_account {
            bump(self.account.get_or_insert(fresh(now)), now);
        }
    }

    /// A successful login clears its client's failures (its typos before) and refunds its
    /// charge to the account.
    pub fn succeeded(&mut self, client: IpAddr, for_account: bool) {
        self.clients.remove(&client_key(client));
        if let Some(a) = self.account.as_mut().filter(|_| for_account) {
            a.failures = a.failures.saturating_sub(1);
        }
    }

    /// Forgets windows that ended.
    pub fn prune(&mut self, now: Instant) {
        self.clients.retain(|_, c| c.live(now));
        if self.account.is_some_and(|a| !a.live(now)) {
            self.account = None;
        }
        self.clients
            .shrink_to(MAX_CLIENTS.min(self.clients.len() * 2));
    }

    #[cfg(test)]
    pub fn clients_remembered(&self) -> usize {
        self.clients.len()
    }

    /// Whether a refusal is logged: the first few of each window, then one line saying how many
    /// were not (returned as `Some(n)` with the first line of the next window).
    pub fn log_sample(&mut self, now: Instant) -> LogDecision {
        match &mut self.logged {
            Some((since, lines, suppressed)) if now.duration_since(*since) < WINDOW => {
                if *lines < LOG_LINES_PER_WINDOW {
                    *lines += 1;
                    LogDecision::Log { suppressed: 0 }
                } else {
                    *suppressed += 1;
                    LogDecision::Quiet
                }
            }
            previous => {
                let suppressed = previous.map_or(0, |(_, _, s)| s);
                *previous = Some((now, 1, 0));
                LogDecision::Log { suppressed }
            }
        }
    }
}

/// What [`LoginLimits::log_sample`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogDecision {
    /// Log this one; `suppressed` refusals of the previous window went unlogged.
    Log {
        suppressed: u64,
    },
    Quiet,
}

fn fresh(now: Instant) -> Count {
    Count {
        failures: 0,
        since: now,
    }
}

fn bump(c: &mut Count, now: Instant) {
    if !c.live(now) {
        *c = fresh(now);
    }
    c.failures = c.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8) -> IpAddr {
        IpAddr::from([10, 0, a, b])
    }

    #[test]
    fn one_client_over_its_limit_does_not_lock_the_account() {
        let mut l = LoginLimits::new();
        let t = Instant::now();
        let attacker = ip(0, 1);
        // Admitted attempts are charged at once: 12 at the same time still check only 5.
        let checked = (0..12)
            .filter(|_| l.admit(attacker, true, t).is_ok())
            .count();
        assert_eq!(checked, PER_CLIENT as usize);
        assert_eq!(l.admit(attacker, true, t), Err(Refusal::Client));
        // The operator, from another address, is let in.
        assert_eq!(l.admit(ip(0, 2), true, t), Ok(()));
        l.succeeded(ip(0, 2), true);
        // And successes never count: many logins from fresh addresses all pass.
        for i in 0..(2 * PER_ACCOUNT) {
            let c = ip(1, u8::try_from(i).unwrap());
            let at = t + Duration::from_secs(u64::from(i));
            assert_eq!(l.admit(c, true, at), Ok(()));
            l.succeeded(c, true);
        }
    }

    #[test]
    fn many_clients_together_reach_the_account_limit_until_the_window_ends() {
        let mut l = LoginLimits::new();
        let t = Instant::now();
        for i in 0..PER_ACCOUNT {
            assert!(l.admit(ip(2, u8::try_from(i).unwrap()), true, t).is_ok());
        }
        assert_eq!(l.admit(ip(3, 1), true, t), Err(Refusal::Account));
        assert_eq!(l.admit(ip(3, 1), true, t + WINDOW), Ok(()));
        // Wrong names never charge the account.
        let mut l = LoginLimits::new();
        for i in 0..100u8 {
            assert!(l.admit(ip(4, i), false, t).is_ok());
        }
        assert_eq!(l.admit(ip(5, 1), true, t), Ok(()));
    }

    #[test]
    fn the_client_table_is_bounded() {
        let mut l = LoginLimits::new();
        let t = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 1000) {
            let _ = l.admit(IpAddr::from(i.to_be_bytes()), false, t);
        }
        assert_eq!(l.clients_remembered(), MAX_CLIENTS);
        let late = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(l.admit(late, false, t), Err(Refusal::Full));
        // Once their windows end, new clients are admitted and the old ones forgotten.
        assert_eq!(l.admit(late, false, t + WINDOW), Ok(()));
        assert_eq!(l.clients_remembered(), 1);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let mut l = LoginLimits::new();
        let t = Instant::now();
        for i in 0..PER_CLIENT {
            let c: IpAddr = format!("2001:db8::{:x}", i + 1).parse().unwrap();
            assert!(l.admit(c, false, t).is_ok());
        }
        let other: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(l.admit(other, false, t), Err(Refusal::Client));
    }

    #[test]
    fn refusals_are_logged_by_sample() {
        let mut l = LoginLimits::new();
        let t = Instant::now();
        let logged = (0..1000)
            .filter(|_| matches!(l.log_sample(t), LogDecision::Log { .. }))
            .count();
        assert_eq!(logged, LOG_LINES_PER_WINDOW as usize);
        assert_eq!(
            l.log_sample(t + WINDOW),
            LogDecision::Log {
                suppressed: 1000 - u64::from(LOG_LINES_PER_WINDOW)
            }
        );
    }
}
