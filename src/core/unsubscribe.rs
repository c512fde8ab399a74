//! One-click unsubscribe tokens (RFC 8058) and the identity an unsubscribe covers.
//!
//! A v2 token is `v2.<key id>.<delivery id>.<base64url(mac)>`: it names no address and no
//! namespace (both are read from the delivery row it points at), the key id lets `finrep web`
//! pick the key before it reads anything, and the MAC is made with a key derived for the
//! delivery's namespace, so one namespace's signing key (all a pipeline pod of that namespace
//! holds) cannot forge another namespace's links. The MAC covers the namespace, the report,
//! the delivery id and the address exactly as stored: a token cannot be moved to another row,
//! report or spelling of the address.
//!
//! v1 tokens (`v1.<base64url(namespace)>.<base64url(email)>.<base64url(mac)>`, signed with the
//! master key itself) are still honoured so links already in mailboxes keep working while keys
//! rotate; they are no longer issued.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Smallest accepted signing key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// How a namespace key is given to a process that holds only one namespace's key (a pipeline
/// pod): `v2:<key id>:<64 hex digits>`, as the chart writes it into the namespace's Secret.
const NAMESPACE_KEY_PREFIX: &str = "v2:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the unsubscribe signing key must be at least {MIN_KEY_BYTES} bytes")]
    WeakKey,
    #[error("malformed unsubscribe token")]
    Malformed,
    #[error("unsubscribe token signature does not match")]
    BadSignature,
    #[error("the unsubscribe token was signed with a key this server does not hold")]
    UnknownKey,
    #[error("this namespace key signs only namespace {0}'s links")]
    WrongNamespace(String),
}

/// Who a valid token unsubscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub namespace: String,
    pub email: String,
    /// The report whose mail carried the link (v1 links do not say).
    pub report: Option<String>,
    /// That report's title, as its mail showed it, for the page (filled in by the web).
    pub report_title: Option<String>,
    /// Who sent it, as its `From` said (filled in by the web).
    pub sender: Option<String>,
}

/// The opaque id of a master key: the first 8 hex digits of a hash of it (the chart computes
/// the same with `sha256sum`).
pub fn key_id(master: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"finrep-unsubscribe-kid:");
    h.update(master);
    hex(&h.finalize())[..8].to_string()
}

/// The key a namespace's links are signed with: 64 hex digits of
/// `sha256("finrep-unsubscribe-v2:" + namespace + ":" + master)` (the chart derives it so;
/// the master key last, so no length extension reaches it).
pub fn namespace_key(master: &[u8], namespace: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"finrep-unsubscribe-v2:");
    h.update(namespace.as_bytes());
    h.update(b":");
    h.update(master);
    hex(&h.finalize()).into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What signs a run's links: the master key (standalone, `finrep run`), or one namespace's
/// derived key (a pipeline pod in a tenant namespace).
#[derive(Clone, PartialEq, Eq)]
pub enum Signer {
    Master(Vec<u8>),
    Namespace {
        key_id: String,
        namespace: Option<String>,
        key: Vec<u8>,
    },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        match self {
            Self::Master(_) => f.write_str("Signer::Master(..)"),
            Self::Namespace { key_id, .. } => write!(f, "Signer::Namespace({key_id}, ..)"),
        }
    }
}

impl Signer {
    /// Reads `FINREP_UNSUBSCRIBE_KEY`'s value: a namespace key (`v2:<kid>:<hex>`) or a master key.
    pub fn parse(value: &str) -> Result<Self, TokenError> {
        if let Some(rest) = value.strip_prefix(NAMESPACE_KEY_PREFIX) {
            let (kid, key) = rest.split_once(':').ok_or(TokenError::Malformed)?;
            let valid_kid = kid.len() == 8 && kid.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid_kid || key.len() < MIN_KEY_BYTES {
                return Err(TokenError::WeakKey);
            }
            return Ok(Self::Namespace {
                key_id: kid.to_ascii_lowercase(),
                namespace: None,
                key: key.as_bytes().to_vec(),
            });
        }
        if value.len() < MIN_KEY_BYTES {
            return Err(TokenError::WeakKey);
        }
        Ok(Self::Master(value.as_bytes().to_vec()))
    }

    /// The namespace key a master key derives for `namespace`, as a pipeline pod there is given it.
    pub fn for_namespace(master: &[u8], namespace: &str) -> Self {
        Self::Namespace {
            key_id: key_id(master),
            namespace: Some(namespace.to_string()),
            key: namespace_key(master, namespace),
        }
    }

    /// The v2 token of one delivery row.
    pub fn sign(
        &self,
        namespace: &str,
        report: &str,
        delivery_id: i64,
        email: &str,
    ) -> Result<String, TokenError> {
        let (kid, key) = match self {
            Self::Master(master) => (key_id(master), namespace_key(master, namespace)),
            Self::Namespace {
                key_id,
                namespace: bound,
                key,
            } => {
                if let Some(bound) = bound.as_deref().filter(|b| *b != namespace) {
                    return Err(TokenError::WrongNamespace(bound.to_string()));
                }
                (key_id.clone(), key.clone())
            }
        };
        let tag = mac_v2(&key, namespace, report, delivery_id, email)?
            .finalize()
            .into_bytes();
        Ok(format!("v2.{kid}.{delivery_id}.{}", B64.encode(tag)))
    }
}

fn mac_v2(
    key: &[u8],
    namespace: &str,
    report: &str,
    delivery_id: i64,
    email: &str,
) -> Result<Hmac<Sha256>, TokenError> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| TokenError::WeakKey)?;
    for part in [
        "finrep-unsubscribe-v2",
        namespace,
        report,
        &delivery_id.to_string(),
        email,
    ] {
        m.update(part.as_bytes());
        m.update(b"\0");
    }
    Ok(m)
}

/// A token as read from a link, before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedToken {
    /// A v2 token: the delivery row to read, and the master key (by id) to check it with.
    V2 {
        key_id: String,
        delivery_id: i64,
        mac: Vec<u8>,
    },
    /// A v1 token: namespace and address in the clear.
    V1 {
        namespace: String,
        email: String,
        mac: Vec<u8>,
    },
}

impl ParsedToken {
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let parts: Vec<&str> = token.trim().split('.').collect();
        let decode = |s: &str| B64.decode(s).map_err(|_| TokenError::Malformed);
        match parts.as_slice() {
            ["v2", kid, id, tag] => {
                if kid.len() != 8 || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(TokenError::Malformed);
                }
                let delivery_id = id
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0 && id.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(TokenError::Malformed)?;
                Ok(Self::V2 {
                    key_id: kid.to_string(),
                    delivery_id,
                    mac: decode(tag)?,
                })
            }
            ["v1", ns, email, tag] => Ok(Self::V1 {
                namespace: String::from_utf8(decode(ns)?).map_err(|_| TokenError::Malformed)?,
                email: String::from_utf8(decode(email)?).map_err(|_| TokenError::Malformed)?,
                mac: decode(tag)?,
            }),
            _ => Err(TokenError::Malformed),
        }
    }
}

/// The master keys `finrep web` verifies with: the current one first, then earlier ones kept
/// so that links already sent keep working (at least 30 days after a rotation).
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "KeyRing({ids:?})")
    }
}

impl KeyRing {
    /// The ring of `current` and `previous` master keys (each at least [`MIN_KEY_BYTES`]).
    pub fn new<I, K>(keys: I) -> Result<Self, TokenError>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let mut ring = Self::default();
        for key in keys {
            let key = key.as_ref();
            if key.len() < MIN_KEY_BYTES {
                return Err(TokenError::WeakKey);
            }
            ring.keys.push((key_id(key), key.to_vec()));
        }
        Ok(ring)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether this ring holds the key a v2 token names (checked before anything is read).
    pub fn holds(&self, kid: &str) -> bool {
        self.master(kid).is_some()
    }

    fn master(&self, kid: &str) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, k)| k.as_slice())
    }

    /// Checks a v2 token against the row it names (`namespace`, `report`, `email` as stored).
    pub fn verify_v2(
        &self,
        token: &ParsedToken,
        namespace: &str,
        report: &str,
        email: &str,
    ) -> Result<Subscriber, TokenError> {
        let ParsedToken::V2 {
            key_id,
            delivery_id,
            mac,
        } = token
        else {
            return Err(TokenError::Malformed);
        };
        let master = self.master(key_id).ok_or(TokenError::UnknownKey)?;
        mac_v2(
            &namespace_key(master, namespace),
            namespace,
            report,
            *delivery_id,
            email,
        )?
        .verify_slice(mac)
        .map_err(|_| TokenError::BadSignature)?;
        Ok(Subscriber {
            namespace: namespace.to_string(),
            email: email.to_string(),
            report: Some(report.to_string()),
            report_title: None,
            sender: None,
        })
    }

    /// Checks a v1 token (no key id: every key of the ring is tried). The address must be
    /// spelled as it was signed (lower case): another spelling under the same MAC is refused.
    pub fn verify_v1(&self, token: &ParsedToken) -> Result<Subscriber, TokenError> {
        let ParsedToken::V1 {
            namespace,
            email,
            mac,
        } = token
        else {
            return Err(TokenError::Malformed);
        };
        if *email != email.to_lowercase() {
            return Err(TokenError::BadSignature);
        }
        for (_, key) in &self.keys {
            if mac_v1(key, namespace, email)?.verify_slice(mac).is_ok() {
                return Ok(Subscriber {
                    namespace: namespace.clone(),
                    email: email.clone(),
                    report: None,
                    report_title: None,
                    sender: None,
                });
            }
        }
        Err(TokenError::BadSignature)
    }
}

fn mac_v1(key: &[u8], namespace: &str, email: &str) -> Result<Hmac<Sha256>, TokenError> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| TokenError::WeakKey)?;
    m.update(b"finrep-unsubscribe-v1\0");
    m.update(namespace.as_bytes());
    m.update(b"\0");
    m.update(email.as_bytes());
    Ok(m)
}

/// A v1 token, as finrep issued them before v2 (kept to test that such links still work).
pub fn sign_v1(key: &[u8], namespace: &str, email: &str) -> Result<String, TokenError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(TokenError::WeakKey);
    }
    let email = email.to_lowercase();
    let tag = mac_v1(key, namespace, &email)?.finalize().into_bytes();
    Ok(format!(
        "v1.{}.{}.{}",
        B64.encode(namespace),
        B64.encode(&email),
        B64.encode(tag)
    ))
}

/// The identity an unsubscribe covers: the address in lower case without a `+tag` in its
/// local part, so `Alice+news@example.com` is the same person as `alice@example.com`. A chat
/// group's identity (no `@`) is only lower-cased. The SQL function `finrep_address_key` is
/// the same rule (migrations/20261205000001_consent.sql).
pub fn address_key(address: &str) -> String {
    let lower = address.trim().to_lowercase();
    match lower.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split_once('+').map_or(local, |(base, _)| base);
            if base.is_empty() {
                lower
            } else {
                format!("{base}@{domain}")
            }
        }
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn v2_round_trip_reveals_nothing_and_binds_everything() {
        let signer = Signer::Master(KEY.to_vec());
        let t = signer
            .sign("desk", "morning-brief", 42, "zhang.wei@example.com")
            .unwrap();
        assert!(!t.contains("desk") && !t.contains("zhang"), "{t}");
        let ring = KeyRing::new([KEY]).unwrap();
        let parsed = ParsedToken::parse(&t).unwrap();
        let who = ring
            .verify_v2(&parsed, "desk", "morning-brief", "zhang.wei@example.com")
            .unwrap();
        assert_eq!(who.report.as_deref(), Some("morning-brief"));
        // Another row, report, namespace or spelling under this MAC is refused.
        for (ns, report, email) in [
            ("other", "morning-brief", "zhang.wei@example.com"),
            ("desk", "evening", "zhang.wei@example.com"),
            ("desk", "morning-brief", "Zhang.Wei@example.com"),
            ("desk", "morning-brief", "li.na@example.com"),
        ] {
            assert_eq!(
                ring.verify_v2(&parsed, ns, report, email),
                Err(TokenError::BadSignature)
            );
        }
        // A key this web does not hold is named as such, before anything is read.
        let other = KeyRing::new([b"another-key-0123456789".as_slice()]).unwrap();
        assert_eq!(
            other.verify_v2(&parsed, "desk", "morning-brief", "zhang.wei@example.com"),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_namespace_key_signs_only_its_namespace() {
        let derived = Signer::for_namespace(KEY, "desk");
        let ring = KeyRing::new([KEY]).unwrap();
        let t = derived.sign("desk", "r", 7, "a@b.c").unwrap();
        assert!(
            ring.verify_v2(&ParsedToken::parse(&t).unwrap(), "desk", "r", "a@b.c")
                .is_ok()
        );
        assert!(matches!(
            derived.sign("other", "r", 7, "a@b.c"),
            Err(TokenError::WrongNamespace(_))
        ));
        // A namespace key as the chart writes it: `v2:<kid>:<hex>`. Used for another
        // namespace's row, its MAC does not verify there.
        let value = format!(
            "v2:{}:{}",
            key_id(KEY),
            String::from_utf8(namespace_key(KEY, "desk")).unwrap()
        );
        let from_secret = Signer::parse(&value).unwrap();
        let forged = from_secret.sign("other", "r", 7, "a@b.c").unwrap();
        assert_eq!(
            ring.verify_v2(&ParsedToken::parse(&forged).unwrap(), "other", "r", "a@b.c"),
            Err(TokenError::BadSignature)
        );
        let good = from_secret.sign("desk", "r", 7, "a@b.c").unwrap();
        assert!(
            ring.verify_v2(&ParsedToken::parse(&good).unwrap(), "desk", "r", "a@b.c")
                .is_ok()
        );
    }

    #[test]
    fn rotated_keys_keep_old_links_working() {
        let old = b"the-old-key-0123456789abcdef".as_slice();
        let t = Signer::Master(old.to_vec())
            .sign("desk", "r", 1, "a@b.c")
            .unwrap();
        let ring = KeyRing::new([KEY, old]).unwrap();
        assert!(
            ring.verify_v2(&ParsedToken::parse(&t).unwrap(), "desk", "r", "a@b.c")
                .is_ok()
        );
        let v1 = sign_v1(old, "desk", "A@b.c").unwrap();
        let who = ring.verify_v1(&ParsedToken::parse(&v1).unwrap()).unwrap();
        assert_eq!(
            (who.namespace.as_str(), who.email.as_str()),
            ("desk", "a@b.c")
        );
    }

    #[test]
    fn v1_refuses_another_spelling_and_tampering() {
        let ring = KeyRing::new([KEY]).unwrap();
        let t = sign_v1(KEY, "desk", "zhang.wei@example.com").unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        for email in ["ZHANG.WEI@example.com", "li.na@example.com"] {
            let forged = format!("v1.{}.{}.{}", parts[1], B64.encode(email), parts[3]);
            assert_eq!(
                ring.verify_v1(&ParsedToken::parse(&forged).unwrap()),
                Err(TokenError::BadSignature)
            );
        }
        assert_eq!(ParsedToken::parse("v1.x"), Err(TokenError::Malformed));
        assert_eq!(
            ParsedToken::parse("v2.zzzzzzzz.1.AAAA"),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            ParsedToken::parse("v2.0123abcd.+1.AAAA"),
            Err(TokenError::Malformed)
        );
        assert_eq!(sign_v1(b"short", "desk", "a@b.c"), Err(TokenError::WeakKey));
        assert!(Signer::parse("short").is_err());
    }

    #[test]
    fn address_keys_fold_case_and_plus_tags() {
        assert_eq!(address_key("Alice+Again@Example.com"), "alice@example.com");
        assert_eq!(address_key("alice@example.com"), "alice@example.com");
        assert_eq!(address_key("+x@example.com"), "+x@example.com");
        assert_eq!(address_key("a+b+c@x.y"), "a@x.y");
        assert_eq!(address_key("wecom:Desk-Group"), "wecom:desk-group");
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_token_never_panics(s in ".{0,200}") {
            let _ = ParsedToken::parse(&s);
            let _ = Signer::parse(&s);
            let _ = address_key(&s);
        }

        #[test]
        fn address_key_is_idempotent(s in "[A-Za-z0-9+._-]{0,20}@[A-Za-z0-9.-]{1,20}") {
            let once = address_key(&s);
            proptest::prop_assert_eq!(address_key(&once), once.clone());
        }
    }
}
