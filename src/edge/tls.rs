//! TLS on the WebSocket listener (contract §14): rustls with the ring provider (no OpenSSL),
//! TLS 1.2 and 1.3, the certificate chain and key read from PEM files (the key as PKCS#8, PKCS#1 or
//! SEC1). A file that cannot be read, holds no certificate or key, or a key that does not match the
//! certificate is refused with the config key it came from (`tls.cert`, `tls.key`).
//!
//! The acceptor is swappable: a reload reads the files again (also when renewed in place at the
//! same paths) and new handshakes use the new certificate; open sockets keep theirs.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key was refused: the config key (`tls.cert` or `tls.key`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub key: &'static str,
    pub msg: String,
}

/// Builds a server config from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let bad_cert = |msg: String| TlsError {
        key: "tls.cert",
        msg: format!("{}: {msg}", cert.display()),
    };
    let bad_key = |msg: String| TlsError {
        key: "tls.key",
        msg: format!("{}: {msg}", key.display()),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(format!("cannot read: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad_cert("no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad_key(format!("no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad_key(format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server config of a `[tls]` table, with errors named like any config error (file and key).
pub fn for_config(
    config: &crate::config::Config,
    t: &crate::config::TlsConfig,
) -> Result<Arc<rustls::ServerConfig>, crate::config::ConfigError> {
    server_config(&t.cert, &t.key).map_err(|e| crate::config::ConfigError {
        file: config.file_name(),
        line: None,
        key: e.key.into(),
        msg: e.msg,
    })
}

/// The listener's TLS acceptor, swapped by a reload.
#[derive(Clone)]
pub struct Tls {
    acceptor: Arc<ArcSwap<TlsAcceptor>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls {
            acceptor: Arc::new(ArcSwap::from_pointee(TlsAcceptor::from(config))),
        }
    }

    /// The acceptor for a new handshake.
    pub fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.acceptor.load_full()
    }

    /// New handshakes use this config from now on.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        self.acceptor.store(Arc::new(TlsAcceptor::from(config)));
    }
}
