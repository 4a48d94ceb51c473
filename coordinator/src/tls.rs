//! The coordinator's TLS: its certificate and key (`--tls-cert`,
//! `--tls-key`), with rustls and the ring provider. (What clients and
//! workers trust is `grid_worker_native::tls`.)

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::crypto::ring::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Makes ring the process's default rustls provider, once. HTTP clients built
/// without an explicit TLS configuration (reqwest's `Client::new()`) need
/// one; the coordinator, its clients and its workers install it at start.
pub fn install_default_provider() {
    // An error only means a provider is already installed.
    let _ = default_provider().install_default();
}

/// The coordinator's TLS, ready to accept connections.
#[derive(Clone)]
pub struct ServerTls(pub TlsAcceptor);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// The server side: a certificate chain and its private key, both PEM.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
    install_default_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls(TlsAcceptor::from(Arc::new(config))))
}
