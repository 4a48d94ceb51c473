//! The roots a worker (and the CLI's HTTP client) trusts when it reaches a
//! coordinator over TLS: the public web's, plus the certificates of
//! `--ca-cert` for a coordinator with a private or self-signed certificate.
//! rustls with the ring provider, as the coordinator uses.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::crypto::ring::default_provider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A client TLS configuration: the public web's roots, plus the certificates
/// in `ca_cert` if given.
pub fn client_config(ca_cert: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    // HTTP clients built without an explicit configuration need a process
    // default; an error only means one is installed already.
    let _ = default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            roots
                .add(cert.with_context(|| format!("{} is not a PEM certificate", path.display()))?)
                .with_context(|| format!("{} is not a usable CA certificate", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("{} holds no certificate", path.display());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
