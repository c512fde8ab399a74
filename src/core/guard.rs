//! SSRF guard: source URLs, summariser endpoints and SMTP hosts are user input, so the
//! pipeline refuses to reach loopback, private, link-local (cloud metadata) and other internal
//! addresses — checked on the resolved address of every hop, redirects included — unless
//! private networks are allowed.
//!
//! A trusted host (an in-cluster feed mirror or mail relay) is trusted by name on the ports
//! its entry names (`mirror.feeds.svc:1200`; without a port, 80 and 443), and only as the
//! address a resource names: a redirect from elsewhere to a trusted host is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Why an address or URL was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("blocked: {0}")]
pub struct Blocked(pub String);

/// Why a host could not be used: the name did not resolve (perhaps for a while), or the
/// guard refused every address (a setting to change).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ResolveError {
    #[error("{0}")]
    Lookup(String),
    #[error(transparent)]
    Blocked(Blocked),
}

/// Which destinations are allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Allow loopback and private addresses everywhere (tests, local demos).
    pub allow_private: bool,
    /// Hosts (names or literal addresses) trusted whatever they resolve to, e.g. an in-cluster
    /// feed mirror such as `rsshub.feeds.svc:1200`. Redirects away from them are checked as
    /// usual.
    pub trusted_hosts: Arc<Vec<TrustedHost>>,
    /// Hosts trusted for chat webhooks alone (an in-cluster relay, a test stand-in): the
    /// feeds' trusted hosts are not, so a tenant cannot post a signed webhook to a host the
    /// operator trusted for feeds. Over https unless the entry asks for `http://`.
    pub webhook_hosts: Arc<Vec<WebhookHost>>,
}

/// A host trusted for chat webhooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookHost {
    pub host: TrustedHost,
    /// The operator wrote `http://host:port`: plaintext allowed to it (an in-cluster relay).
    pub plaintext: bool,
}

impl WebhookHost {
    /// Parses `host[:port]`, `https://host[:port]` or `http://host[:port]`.
    pub fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        let lower = entry.to_ascii_lowercase();
        let (plaintext, rest) = if let Some(rest) = lower.strip_prefix("http://") {
            (true, rest)
        } else {
            (false, lower.strip_prefix("https://").unwrap_or(&lower))
        };
        let host = TrustedHost::parse(rest.trim_end_matches('/'))?;
        Some(Self { host, plaintext })
    }
}

/// A trusted host and the ports it is trusted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedHost {
    /// Lower-cased name or address, without brackets.
    pub host: String,
    /// `None`: the web's default ports, 80 and 443.
    pub port: Option<u16>,
}

impl TrustedHost {
    /// Parses `host`, `host:port`, `[v6]:port`, or a bare IPv6 address.
    pub fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (host.to_string(), Some(p.parse().ok()?)),
                None if after.is_empty() => (host.to_string(), None),
                None => return None,
            }
        } else if entry.matches(':').count() == 1 {
            let (host, p) = entry.split_once(':')?;
            (host.to_string(), Some(p.parse().ok()?))
        } else {
            (entry, None)
        };
        (!host.is_empty()).then_some(Self { host, port })
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => matches!(port, 80 | 443),
        }
    }
}

impl NetworkPolicy {
    /// Loopback and private addresses allowed everywhere.
    pub fn permissive() -> Self {
        Self {
            allow_private: true,
            ..Self::default()
        }
    }

    /// `trusted_hosts` for feeds, SMTP and the summariser, `webhook_hosts` for chat webhooks
    /// alone, and loopback and private addresses when `allow_private` (which keeps both lists:
    /// a trusted host stays trusted). Entries that do not parse are ignored.
    pub fn with_hosts(
        allow_private: bool,
        trusted_hosts: &[String],
        webhook_hosts: &[String],
    ) -> Self {
        Self {
            allow_private,
            trusted_hosts: Arc::new(
                trusted_hosts
                    .iter()
                    .filter_map(|h| TrustedHost::parse(h))
                    .collect(),
            ),
            webhook_hosts: Arc::new(
                webhook_hosts
                    .iter()
                    .filter_map(|h| WebhookHost::parse(h))
                    .collect(),
            ),
        }
    }

    /// The policy chat webhooks are posted under: the hosts trusted for webhooks are its only
    /// trusted hosts.
    pub fn for_webhooks(&self) -> Self {
        Self {
            allow_private: self.allow_private,
            trusted_hosts: Arc::new(self.webhook_hosts.iter().map(|w| w.host.clone()).collect()),
            webhook_hosts: self.webhook_hosts.clone(),
        }
    }

    /// Whether a webhook may be posted to `host`:`port` with `scheme` as a host trusted for
    /// webhooks (https, or http when its entry says so).
    pub fn trusts_webhook(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_matches(['[', ']']);
        self.webhook_hosts.iter().any(|w| {
            w.host.host.eq_ignore_ascii_case(host)
                && w.host.allows_port(port)
                && (scheme == "https" || (scheme == "http" && w.plaintext))
        })
    }

    /// Public addresses only, apart from `trusted_hosts` (entries that do not parse are
    /// ignored).
    pub fn strict(trusted_hosts: Vec<String>) -> Self {
        Self::with_hosts(false, &trusted_hosts, &[])
    }

    /// The entries naming `host`, whatever their port.
    fn entries_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a TrustedHost> + 'a {
        let host = host.trim_matches(['[', ']']);
        self.trusted_hosts
            .iter()
            .filter(move |t| t.host.eq_ignore_ascii_case(host))
    }

    /// Whether some entry names `host`.
    fn names(&self, host: &str) -> bool {
        self.entries_for(host).next().is_some()
    }

    /// Whether `host` is trusted on `port`.
    pub fn trusts(&self, host: &str, port: u16) -> bool {
        self.entries_for(host).any(|t| t.allows_port(port))
    }

    /// Checks scheme and, for a literal IP host, the address. Host names are checked when
    /// resolved; a trusted host only on the ports it is trusted on.
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Blocked(format!(
                "scheme {} is not allowed (http and https only)",
                url.scheme()
            )));
        }
        if let Some(host) = url.host_str()
            && self.names(host)
        {
            let port = url.port_or_known_default().unwrap_or(0);
            if self.trusts(host, port) {
                return Ok(());
            }
            let ports: Vec<String> = self
                .entries_for(host)
                .map(|t| t.port.map_or("80 and 443".to_string(), |p| p.to_string()))
                .collect();
            return Err(Blocked(format!(
                "{host} is trusted on port {} only, not on port {port}",
                ports.join(", ")
            )));
        }
        self.check_host(url.host())
    }

    /// Checks one redirect hop: as `check_url`, and a trusted host is reachable only from
    /// itself, never as the target of a redirect from another host.
    pub fn check_redirect(&self, from: &Url, to: &Url) -> Result<(), Blocked> {
        if let Some(host) = to.host_str()
            && self.names(host)
            && from.host_str() != Some(host)
        {
            return Err(Blocked(format!(
                "redirect to trusted host {host} refused: a trusted host is trusted only as the address a resource names"
            )));
        }
        self.check_url(to)
    }

    /// Checks a host that is not trusted: a literal address must be allowed.
    fn check_host(&self, host: Option<url::Host<&str>>) -> Result<(), Blocked> {
        match host {
            None => Err(Blocked("the URL has no host".to_string())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// The addresses of `host:port` this policy allows connecting to (all of them for a
    /// trusted host), for connections made outside reqwest (SMTP).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Lookup(format!("cannot resolve {host}: {e}")))?
            .collect();
        if self.trusts(host, port) {
            return Ok(addrs);
        }
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.check_ip(a.ip()).is_ok())
            .collect();
        if allowed.is_empty() {
            return Err(ResolveError::Blocked(not_public(host, &addrs)));
        }
        Ok(allowed)
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(Blocked(format!(
                "{ip} is a loopback, private, link-local or reserved address; set FINREP_ALLOW_PRIVATE_NETWORKS=true to allow it"
            )))
        }
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata lives here
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let [first, second] = [s[0], s[1]];
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits: as public as that one.
    if first == 0x2002 {
        let [a, b] = second.to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || s[..6] == [0; 6] // IPv4-compatible ::a.b.c.d (deprecated) and the rest of ::/96
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some sites)
        || (first == 0x2001 && second == 0x0000) // Teredo: tunnels to an IPv4 address
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first == 0x2001 && (second & 0xfff0) == 0x0010) // ORCHID
        || (first == 0x2001 && second == 0x0002 && s[2] == 0) // benchmarking
        || (first == 0x3fff && (second & 0xf000) == 0) // documentation (3fff::/20)
        || (first == 0x0100 && s[1..4] == [0; 3]) // discard-only
        || (first == 0x64 && second == 0xff9b)) // NAT64 can reach IPv4 internals
}

fn not_public(host: &str, addrs: &[SocketAddr]) -> Blocked {
    let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    Blocked(format!(
        "{host} resolves to {} only, which is not a public address; set FINREP_ALLOW_PRIVATE_NETWORKS=true or trust the host",
        if shown.is_empty() {
            "nothing".to_string()
        } else {
            shown.join(", ")
        }
    ))
}

/// A resolver that drops refused addresses, so no connection is ever made to them.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: NetworkPolicy,
}

impl GuardedResolver {
    pub fn new(policy: NetworkPolicy) -> Arc<Self> {
        Arc::new(Self { policy })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // The port was checked with the URL (check_url, check_redirect) before any
            // connection: a name reaches here only when it may be used.
            if policy.names(&host) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.check_ip(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(
                    Box::new(not_public(&host, &addrs)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Finds a `Blocked` anywhere in an error's source chain.
pub fn find_blocked(err: &(dyn std::error::Error + 'static)) -> Option<Blocked> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused() {
        let strict = NetworkPolicy::strict(vec![]);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1", // IPv4-compatible
            "::10.0.0.1",
            "2002:7f00:1::",                        // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",                    // 6to4 of 169.254.169.254
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "fec0::1",                              // site-local
            "64:ff9b::a00:1",                       // NAT64 of 10.0.0.1
            "100::1",
            "3fff::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.check_ip(ip).is_err(), "{ip} must be refused");
        }
        for ip in [
            "1.1.1.1",
            "203.119.0.1",
            "2400:3200::1",
            "2002:0101:0101::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.check_ip(ip).is_ok(), "{ip} is public");
        }
        assert!(
            NetworkPolicy::permissive()
                .check_ip("127.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn trusted_hosts_only_on_their_ports_and_never_as_redirect_targets() {
        let strict = NetworkPolicy::strict(vec![
            "mirror.feeds.svc:1200".into(),
            "relay.mail.svc".into(),
            "[fd00::5]:8080".into(),
        ]);
        let url = |u: &str| Url::parse(u).unwrap();
        let check = |u: &str| strict.check_url(&url(u));
        assert!(check("http://mirror.feeds.svc:1200/x").is_ok());
        assert!(check("http://mirror.feeds.svc:6443/api").is_err());
        assert!(check("http://mirror.feeds.svc/x").is_err());
        assert!(check("https://relay.mail.svc/x").is_ok());
        assert!(check("http://relay.mail.svc:2379/").is_err());
        assert!(check("http://[fd00::5]:8080/").is_ok());
        assert!(check("http://[fd00::5]:22/").is_err());
        assert!(strict.trusts("relay.mail.svc", 443));
        let two = NetworkPolicy::strict(vec!["127.0.0.1:8080".into(), "127.0.0.1:2525".into()]);
        assert!(two.trusts("127.0.0.1", 2525) && two.trusts("127.0.0.1", 8080));
        assert!(!two.trusts("127.0.0.1", 5432));
        assert!(!strict.trusts("relay.mail.svc", 25));
        let from = url("https://news.example.com/a");
        let to = url("http://mirror.feeds.svc:1200/internal");
        assert!(strict.check_redirect(&from, &to).is_err());
        let inside = url("http://mirror.feeds.svc:1200/a");
        assert!(strict.check_redirect(&inside, &to).is_ok());
        assert_eq!(
            TrustedHost::parse("::1"),
            Some(TrustedHost {
                host: "::1".into(),
                port: None
            })
        );
        assert_eq!(TrustedHost::parse("h:notaport"), None);
    }

    #[test]
    fn urls_need_http_and_a_public_literal() {
        let strict = NetworkPolicy::strict(vec!["mirror.feeds.svc:1200".into(), "10.0.0.5".into()]);
        let check = |u: &str| strict.check_url(&Url::parse(u).unwrap());
        assert!(check("http://mirror.feeds.svc:1200/cls/telegraph").is_ok());
        assert!(check("http://10.0.0.5/feed").is_ok());
        assert!(check("http://10.0.0.6/feed").is_err());
        assert!(check("ftp://example.com/").is_err());
        assert!(check("file:///etc/passwd").is_err());
        assert!(check("http://169.254.169.254/latest/meta-data/").is_err());
        assert!(check("http://[::1]:8080/").is_err());
        assert!(check("https://example.com/feed").is_ok());
    }
}
