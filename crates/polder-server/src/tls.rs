//! TLS for all three listeners (rustls with the ring provider): the certificate and key from
//! PEM files, or a self-signed pair generated once into the data directory.
//!
//! Handshakes run in their own tasks, so a client that opens a connection and sends nothing
//! (or sends plain text to a TLS port) cannot hold up anyone else.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::ServerError;
use crate::refusals::RefusalLog;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and its private key, as the listeners serve them.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The chain as PEM (PostgreSQL's SCRAM channel binding hashes the certificate).
    chain_pem: Vec<u8>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            chain_pem: self.chain_pem.clone(),
        }
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn tls_error(message: String) -> ServerError {
    ServerError::Tls { message }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsIdentity, ServerError> {
        let chain_pem = std::fs::read(cert)
            .map_err(|e| tls_error(format!("cannot read certificate {}: {e}", cert.display())))?;
        let key_pem = std::fs::read(key)
            .map_err(|e| tls_error(format!("cannot read private key {}: {e}", key.display())))?;
        Self::from_pem(chain_pem, &key_pem).map_err(|message| {
            tls_error(format!(
                "{message} (certificate {}, key {})",
                cert.display(),
                key.display()
            ))
        })
    }

    fn from_pem(chain_pem: Vec<u8>, key_pem: &[u8]) -> Result<TlsIdentity, String> {
        let chain = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
        if chain.is_empty() {
            return Err("the certificate file holds no CERTIFICATE block".to_string());
        }
        // The parser's error could quote the key file; say only what is wrong.
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| "the key file holds no PEM private key (PKCS#8, RSA or EC)".to_string())?;
        let identity = TlsIdentity {
            chain,
            key,
            chain_pem,
        };
        // Fails here, at start-up, when the key does not belong to the certificate.
        identity.server_config(&[])?;
        Ok(identity)
    }

    /// The self-signed certificate of `dir` (`self-signed.crt` / `self-signed.key`), generated
    /// on first use for `localhost`, the loopback addresses and `extra_names`.
    pub fn self_signed(
        dir: &Path,
        extra_names: &[String],
    ) -> Result<(TlsIdentity, PathBuf), ServerError> {
        let cert_path = dir.join("self-signed.crt");
        let key_path = dir.join("self-signed.key");
        if cert_path.exists() && key_path.exists() {
            return Ok((Self::from_pem_files(&cert_path, &key_path)?, cert_path));
        }
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(extra_names.iter().cloned());
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| tls_error(format!("cannot generate a certificate: {e}")))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| tls_error(format!("cannot create {}: {e}", dir.display())))?;
        let key_pem = generated.signing_key.serialize_pem();
        polder_core::secret::write_owner_only(&key_path, key_pem.as_bytes())
            .map_err(|e| tls_error(format!("cannot write {}: {e}", key_path.display())))?;
        std::fs::write(&cert_path, generated.cert.pem())
            .map_err(|e| tls_error(format!("cannot write {}: {e}", cert_path.display())))?;
        Ok((Self::from_pem_files(&cert_path, &key_path)?, cert_path))
    }

    /// The chain as PEM, for clients and channel binding.
    pub fn certificate_pem(&self) -> &[u8] {
        &self.chain_pem
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("the certificate and key do not make a usable pair: {e}"))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// An acceptor offering `alpn` (`h2`, `http/1.1`, `postgresql`, ...).
    pub(crate) fn acceptor(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, ServerError> {
        Ok(TlsAcceptor::from(
            self.server_config(alpn).map_err(tls_error)?,
        ))
    }
}

/// Accepts TCP connections and completes TLS handshakes concurrently; the established ones
/// come out of the returned channel.
fn spawn_handshakes(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    name: &'static str,
    refusals: Option<RefusalLog>,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(listener = name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            if sender.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            let refusals = refusals.clone();
            tokio::spawn(async move {
                let refused =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                            return;
                        }
                        Ok(Err(err)) => format!("TLS handshake failed: {err}"),
                        Err(_) => "TLS handshake timed out".to_string(),
                    };
                tracing::info!(listener = name, %peer, "{refused}");
                if let Some(refusals) = refusals {
                    refusals.record(name, Some(peer), &refused);
                }
            });
        }
    });
    receiver
}

/// The HTTP listener's connections over TLS, for `axum::serve`.
pub(crate) struct TlsListener {
    established: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        refusals: Option<RefusalLog>,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        Ok(TlsListener {
            established: spawn_handshakes(listener, acceptor, "http", refusals),
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.established.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A TLS connection of the Flight SQL listener (tonic needs to know the peer address).
pub(crate) struct FlightTlsStream(TlsStream<TcpStream>);

impl Connected for FlightTlsStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for FlightTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlightTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The Flight SQL listener's connections over TLS, for tonic's `serve_with_incoming`.
pub(crate) fn flight_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    refusals: Option<RefusalLog>,
) -> impl futures::Stream<Item = io::Result<FlightTlsStream>> {
    let established = spawn_handshakes(listener, acceptor, "flight sql", refusals);
    futures::stream::unfold(established, |mut established| async move {
        let (stream, _) = established.recv().await?;
        Some((Ok(FlightTlsStream(stream)), established))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, path) = TlsIdentity::self_signed(dir.path(), &[]).unwrap();
        assert!(path.ends_with("self-signed.crt"));
        let (second, _) = TlsIdentity::self_signed(dir.path(), &[]).unwrap();
        assert_eq!(first.certificate_pem(), second.certificate_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("self-signed.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the private key is readable by others");
        }
    }

    #[test]
    fn mismatched_or_garbage_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert) = TlsIdentity::self_signed(&dir.path().join("a"), &[]).unwrap();
        TlsIdentity::self_signed(&dir.path().join("b"), &[]).unwrap();
        let other_key = dir.path().join("b/self-signed.key");
        let err = TlsIdentity::from_pem_files(&cert, &other_key).unwrap_err();
        assert!(err.to_string().contains("usable pair"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key at all").unwrap();
        let err = TlsIdentity::from_pem_files(&cert, &garbage).unwrap_err();
        assert!(err.to_string().contains("no PEM private key"), "{err}");
        assert!(!err.to_string().contains("not a key at all"));

        let err = TlsIdentity::from_pem_files(&garbage, &other_key).unwrap_err();
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");

        let err =
            TlsIdentity::from_pem_files(&dir.path().join("missing.crt"), &other_key).unwrap_err();
        assert!(err.to_string().contains("cannot read certificate"), "{err}");
    }
}
