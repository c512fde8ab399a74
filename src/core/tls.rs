//! One TLS crypto provider for every client in the process (HTTP, SMTP, PostgreSQL).

/// Installs rustls' ring provider as the process default; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
