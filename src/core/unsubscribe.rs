//! One-click unsubscribe tokens (RFC 8058): an HMAC-SHA256 over the namespace and address,
//! so a token unsubscribes exactly one recipient and cannot be forged or retargeted.
//!
//! Format: `v1.<base64url(namespace)>.<base64url(email)>.<base64url(mac)>`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Smallest accepted signing key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the unsubscribe signing key must be at least {MIN_KEY_BYTES} bytes")]
    WeakKey,
    #[error("malformed unsubscribe token")]
    Malformed,
    #[error("unsubscribe token signature does not match")]
    BadSignature,
}

/// Who a valid token unsubscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub namespace: String,
    pub email: String,
}

fn mac(key: &[u8], namespace: &str, email: &str) -> Result<Hmac<Sha256>, TokenError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(TokenError::WeakKey);
    }
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| TokenError::WeakKey)?;
    m.update(b"finrep-unsubscribe-v1\0");
    m.update(namespace.as_bytes());
    m.update(b"\0");
    m.update(email.to_lowercase().as_bytes());
    Ok(m)
}

/// The token of one recipient.
pub fn sign(key: &[u8], namespace: &str, email: &str) -> Result<String, TokenError> {
    let tag = mac(key, namespace, email)?.finalize().into_bytes();
    Ok(format!(
        "v1.{}.{}.{}",
        B64.encode(namespace),
        B64.encode(email.to_lowercase()),
        B64.encode(tag)
    ))
}

/// Checks a token (in constant time) and returns whom it unsubscribes.
pub fn verify(key: &[u8], token: &str) -> Result<Subscriber, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some("v1"), Some(ns), Some(email), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let decode = |s: &str| B64.decode(s).map_err(|_| TokenError::Malformed);
    let namespace = String::from_utf8(decode(ns)?).map_err(|_| TokenError::Malformed)?;
    let email = String::from_utf8(decode(email)?).map_err(|_| TokenError::Malformed)?;
    mac(key, &namespace, &email)?
        .verify_slice(&decode(tag)?)
        .map_err(|_| TokenError::BadSignature)?;
    Ok(Subscriber { namespace, email })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_tamper() {
        let t = sign(KEY, "desk", "Zhang.Wei@example.com").unwrap();
        assert_eq!(
            verify(KEY, &t).unwrap(),
            Subscriber {
                namespace: "desk".into(),
                email: "zhang.wei@example.com".into()
            }
        );
        // Another recipient's address with this signature is refused.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "v1.{}.{}.{}",
            parts[1],
            B64.encode("li.na@example.com"),
            parts[3]
        );
        assert_eq!(verify(KEY, &forged), Err(TokenError::BadSignature));
        assert_eq!(
            verify(b"another-key-0123456789", &t),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify(KEY, "v1.x"), Err(TokenError::Malformed));
        assert_eq!(sign(b"short", "desk", "a@b.c"), Err(TokenError::WeakKey));
    }
}
