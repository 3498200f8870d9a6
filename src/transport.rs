//! How bytes reach a client: as they are, or through TLS (rustls with the
//! ring provider, the `https` cargo feature). The only module that knows TLS
//! exists: the reader, the writer and a streamed answer read and write
//! plaintext through `Transport`, and the gate makes sessions with an
//! `Acceptor`.
//!
//! Owns: `Conn`, a client connection with its transport; one connection's
//! TLS session (handshake, records, close_notify), and the server's
//! certificate and key. Must never: block (sockets are
//! non-blocking; records the socket does not take wait in rustls, at most
//! `BUFFER_LIMIT`), or be built into a binary without the feature (then no
//! `Acceptor` can be made, and every connection is `Plain`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

/// Most bytes of plaintext and records one session holds unsent.
#[cfg(feature = "https")]
const BUFFER_LIMIT: usize = 64 * 1024;

/// A client connection, where it came from, and how bytes pass on it.
pub struct Conn {
    pub stream: TcpStream,
    pub transport: Transport,
    pub peer: SocketAddr,
    /// When it was accepted, or (kept) when its request began.
    pub accepted: Instant,
    /// Its request may be followed by another (`keep_alive` is on and the
    /// client did not ask for the close).
    pub reusable: bool,
    /// What came on the wire after its request: the start of the next one,
    /// read first if the connection is kept (at most one read's bytes).
    pub early: Vec<u8>,
    /// In the gate's epoll set (until it closes): armed again, not added,
    /// when it comes back kept.
    pub watched: bool,
}

/// A connection's transport.
pub enum Transport {
    Plain,
    #[cfg(feature = "https")]
    Tls(Box<rustls::ServerConnection>),
}

/// Makes TLS sessions with the server's certificate (ALPN `http/1.1`,
/// TLS 1.2 and 1.3).
pub struct Acceptor {
    #[cfg(feature = "https")]
    config: std::sync::Arc<rustls::ServerConfig>,
    #[cfg(not(feature = "https"))]
    never: std::convert::Infallible,
}

/// Which of the two files a TLS set-up error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    /// (Only a build with TLS reads a key.)
    #[cfg_attr(not(feature = "https"), allow(dead_code))]
    Key,
}

impl Acceptor {
    /// Loads a PEM certificate chain and its private key; an error names
    /// the file at fault (the key, when the two do not match).
    #[cfg(feature = "https")]
    pub fn load(cert: &Path, key: &Path) -> Result<Acceptor, (TlsFile, String)> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let in_cert = |why: String| (TlsFile::Cert, format!("{}: {why}", cert.display()));
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| in_cert(format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(in_cert("holds no certificate".into()));
        }
        let in_key = |why: String| (TlsFile::Key, format!("{}: {why}", key.display()));
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| in_key(format!("not a PEM private key: {e}")))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| {
                in_key(format!(
                    "does not make a TLS server with the certificate: {e}"
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Acceptor {
            config: std::sync::Arc::new(config),
        })
    }

    /// Without the `https` feature there is no TLS.
    #[cfg(not(feature = "https"))]
    pub fn load(_cert: &Path, _key: &Path) -> Result<Acceptor, (TlsFile, String)> {
        Err((
            TlsFile::Cert,
            "this build has no TLS: build it with `cargo build --release --features https`".into(),
        ))
    }

    /// A new session, for a connection just accepted.
    pub fn session(&self) -> io::Result<Transport> {
        #[cfg(feature = "https")]
        {
            let mut session = rustls::ServerConnection::new(std::sync::Arc::clone(&self.config))
                .map_err(io::Error::other)?;
            session.set_buffer_limit(Some(BUFFER_LIMIT));
            Ok(Transport::Tls(Box::new(session)))
        }
        #[cfg(not(feature = "https"))]
        match self.never {}
    }
}

/// A TLS failure (a bad handshake, plain HTTP on a TLS port): the peer is
/// marked and the connection closed.
#[cfg(feature = "https")]
fn failed(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain)
    }

    /// True while plaintext that has come waits in the session to be read.
    /// The socket says nothing of it (its bytes were taken already), so a
    /// reader must read on instead of waiting for the socket.
    pub fn buffered(&mut self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "https")]
            Transport::Tls(s) => s
                .process_new_packets()
                .is_ok_and(|state| state.plaintext_bytes_to_read() > 0),
        }
    }

    /// True while a TLS handshake is still going on: no plaintext can pass.
    pub fn handshaking(&self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "https")]
            Transport::Tls(s) => s.is_handshaking(),
        }
    }

    /// True while records wait for the socket to take them.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "https")]
            Transport::Tls(s) => s.wants_write(),
        }
    }

    /// Reads plaintext: `Ok(0)` once the client closed, `WouldBlock` while
    /// nothing is there yet, `InvalidData` when TLS failed.
    pub fn read(&mut self, socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => (&*socket).read(buf),
            #[cfg(feature = "https")]
            Transport::Tls(s) => loop {
                match s.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return other,
                }
                if s.read_tls(&mut &*socket)? == 0 {
                    return Ok(0);
                }
                let processed = s.process_new_packets();
                // Handshake replies, or the alert that says why it failed.
                let _ = flush(s, socket);
                processed.map_err(failed)?;
            },
        }
    }

    /// Writes plaintext from `slices`, as much as can go now: the number of
    /// bytes taken, or `WouldBlock` if none could be.
    pub fn write(&mut self, socket: &TcpStream, slices: &[IoSlice]) -> io::Result<usize> {
        match self {
            Transport::Plain => (&*socket).write_vectored(slices),
            #[cfg(feature = "https")]
            Transport::Tls(s) => {
                let mut taken = 0;
                for slice in slices.iter().filter(|s| !s.is_empty()) {
                    let n = s.writer().write(slice)?;
                    taken += n;
                    if n < slice.len() {
                        break;
                    }
                }
                flush(s, socket)?;
                if taken == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(taken)
            }
        }
    }

    /// Sends the records held back: `Ok(true)` once none are left.
    #[cfg_attr(not(feature = "https"), allow(unused_variables))]
    pub fn flush(&mut self, socket: &TcpStream) -> io::Result<bool> {
        match self {
            Transport::Plain => Ok(true),
            #[cfg(feature = "https")]
            Transport::Tls(s) => {
                flush(s, socket)?;
                Ok(!s.wants_write())
            }
        }
    }

    /// After the last byte of the answer: close_notify (once), then the
    /// records still held. `Ok(true)` once everything is out.
    pub fn finish(&mut self, socket: &TcpStream) -> io::Result<bool> {
        #[cfg(feature = "https")]
        if let Transport::Tls(s) = self {
            s.send_close_notify();
        }
        self.flush(socket)
    }
}

/// Writes records until the socket would block or none are left.
#[cfg(feature = "https")]
fn flush(s: &mut rustls::ServerConnection, socket: &TcpStream) -> io::Result<()> {
    while s.wants_write() {
        match s.write_tls(&mut &*socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
