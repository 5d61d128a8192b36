//! TLS on the two listeners (rustls with the ring provider): the ISO 8583 port, with
//! client certificates optionally required (mutual TLS, a participant's link proven by
//! its certificate as well as its MAC key), and the HTTP port (admin API, QR API,
//! console). Certificates and keys are PEM files named in `[switch.iso8583_tls]` and
//! `[switch.http_tls]`; a bad file is a clear error at start, never a half-started
//! switch. A handshake that fails or stalls ends that connection only.

use crate::config::TlsConfig;
use anyhow::{anyhow, Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to finish its handshake before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the HTTP server to take them.
const ACCEPTED_QUEUE_DEPTH: usize = 64;

/// A server configuration from the files `tls` names.
pub fn acceptor(tls: &TlsConfig, what: &str) -> Result<TlsAcceptor> {
    // ring, as async-nats already uses: no second C build. Its provider lacks rustls's
    // post-quantum hybrid key exchange (X25519MLKEM768, aws-lc-rs only), hence the
    // deprecation; classical X25519/P-256 with TLS 1.3 and 1.2 remain.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certificates| certificates.collect())
        .with_context(|| format!("{what}: reading certificates from {}", tls.cert_file.display()))?;
    if certificates.is_empty() {
        return Err(anyhow!("{what}: {} holds no PEM certificate", tls.cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("{what}: reading the private key from {}", tls.key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("{what}: reading client CA certificates from {}", path.display()))?
            {
                let certificate =
                    certificate.with_context(|| format!("{what}: a certificate in {}", path.display()))?;
                roots.add(certificate).with_context(|| format!("{what}: a client CA in {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{what}: the client CAs of {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates, key)
        .with_context(|| format!("{what}: {} does not go with {}", tls.key_file.display(), tls.cert_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs a connection's handshake, bounded by `HANDSHAKE_TIMEOUT`.
pub async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
    }
}

/// A TLS listener for axum: connections are accepted and handshaken by a task of their
/// own each, so a slow or broken client never holds up the next one.
pub struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE_DEPTH);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting an HTTPS connection failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match handshake(&acceptor, stream).await {
                        Ok(stream) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Err(error) => tracing::debug!(%peer, %error, "HTTPS handshake failed"),
                    }
                });
            }
        });
        Ok(TlsListener { local, accepted, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` on `listener`, with TLS when `tls` is set, until `shutdown` fires.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(acceptor) => {
            axum::serve(TlsListener::new(listener, acceptor)?, router).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await,
    }
}
