//! SSRF guard: source URLs are user input, so the pipeline refuses to reach loopback,
//! private, link-local (cloud metadata) and other internal addresses — checked on the
//! resolved address of every hop, redirects included — unless private networks are allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Why an address or URL was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("blocked: {0}")]
pub struct Blocked(pub String);

/// Which destinations are allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Allow loopback and private addresses everywhere (tests, local demos).
    pub allow_private: bool,
    /// Host names (or literal addresses) trusted whatever they resolve to, e.g. an in-cluster
    /// feed mirror such as `rsshub.feeds.svc`. Redirects away from them are checked as usual.
    pub trusted_hosts: Arc<Vec<String>>,
}

impl NetworkPolicy {
    /// Loopback and private addresses allowed everywhere.
    pub fn permissive() -> Self {
        Self {
            allow_private: true,
            trusted_hosts: Arc::default(),
        }
    }

    /// Public addresses only, apart from `trusted_hosts`.
    pub fn strict(trusted_hosts: Vec<String>) -> Self {
        Self {
            allow_private: false,
            trusted_hosts: Arc::new(
                trusted_hosts
                    .into_iter()
                    .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
        }
    }

    fn trusts(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']);
        self.trusted_hosts
            .iter()
            .any(|t| t.eq_ignore_ascii_case(host))
    }

    /// Checks scheme and, for a literal IP host, the address. Host names are checked when
    /// resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Blocked(format!(
                "scheme {} is not allowed (http and https only)",
                url.scheme()
            )));
        }
        if url.host_str().is_some_and(|h| self.trusts(h)) {
            return Ok(());
        }
        match url.host() {
            None => Err(Blocked(format!("{url} has no host"))),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
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
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x64 && ip.segments()[1] == 0xff9b)) // NAT64 can reach IPv4 internals
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
            if policy.trusts(&host) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.check_ip(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(Blocked(format!(
                    "{host} resolves to {} only, which is not a public address; set FINREP_ALLOW_PRIVATE_NETWORKS=true to allow it",
                    if shown.is_empty() {
                        "nothing".to_string()
                    } else {
                        shown.join(", ")
                    }
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
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
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.check_ip(ip).is_err(), "{ip} must be refused");
        }
        for ip in ["1.1.1.1", "203.119.0.1", "2400:3200::1"] {
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
    fn urls_need_http_and_a_public_literal() {
        let strict = NetworkPolicy::strict(vec!["mirror.feeds.svc".into(), "10.0.0.5".into()]);
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
