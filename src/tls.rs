//! TLS (rustls) with blocking I/O, for a connection read by one thread and written by another.
//!
//! A [`Transport`] is a plain TCP socket or a [`TlsStream`]. A `TlsStream` keeps one rustls
//! connection behind a mutex (the session lock) that is held only while rustls works, never
//! while blocked on the socket: the reading thread reads raw bytes from the socket unlocked,
//! then locks to feed them to rustls and take out plaintext; the writing thread locks to
//! encrypt into a buffer, and sends it unlocked. A second lock (the send lock) is held from
//! taking records out of rustls until they are on the socket, so records leave in the order
//! rustls made them whichever thread sends. So TLS keeps the threading model: one reader and
//! one writer thread per connection, blocking I/O; a writer blocked on a full socket stops the
//! reader only when the reader itself has something to send (a handshake message, an alert).

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use crate::error::{Error, Result};
use crate::irc::IrcStream;
use crate::ws::WsStream;

/// A connection's byte stream: plain, TLS over the same socket, or a WebSocket or IRC over
/// either (each translated to and from JSON lines).
pub enum Transport {
    Plain(Arc<TcpStream>),
    /// Boxed: a rustls session is over a kilobyte, which plain connections should not pay.
    Tls(Box<TlsStream>),
    WebSocket(Box<WsStream>),
    Irc(Box<IrcStream>),
}

impl Transport {
    /// The socket underneath, for timeouts and shutdown.
    pub fn socket(&self) -> &Arc<TcpStream> {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
            Transport::WebSocket(w) => w.inner().socket(),
            Transport::Irc(i) => i.inner().socket(),
        }
    }

    /// Whether the bytes read are still a TLS handshake to check (a WebSocket's TLS, if any,
    /// was done before its upgrade).
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Whether encoded bytes may ever be written to the socket as they are (see
    /// [`Transport::direct`]): plain TCP, and IRC over plain TCP.
    pub fn may_write_direct(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Irc(i) => matches!(i.inner(), Transport::Plain(_)),
            Transport::Tls(_) | Transport::WebSocket(_) => false,
        }
    }

    /// Leave to write `bytes` to the socket as they are, now, without waiting: always over
    /// plain TCP; over IRC only for lines the hub encoded as IRC, holding its send lock.
    pub fn direct(&self, bytes: &[u8]) -> Option<Direct<'_>> {
        match self {
            Transport::Plain(_) => Some(Direct::Plain),
            Transport::Irc(i) => i.direct(bytes).map(Direct::Irc),
            Transport::Tls(_) | Transport::WebSocket(_) => None,
        }
    }

    /// The last bytes before the connection closes: a WebSocket's close frame (code 1000),
    /// IRC's `ERROR` (unless the server's `bye` was one).
    pub fn goodbye(&self) {
        match self {
            Transport::WebSocket(w) => {
                w.close(tungstenite::protocol::frame::coding::CloseCode::Normal, "")
            }
            Transport::Irc(i) => i.goodbye(),
            Transport::Plain(_) | Transport::Tls(_) => {}
        }
    }
}

/// Leave to write to a transport's socket directly ([`Transport::direct`]), held while writing.
pub enum Direct<'a> {
    Plain,
    Irc(crate::irc::DirectSend<'a>),
}

impl Direct<'_> {
    /// The socket took all but the last `n` bytes, which are queued for the writer thread.
    pub fn owe(&mut self, n: usize) {
        if let Direct::Irc(d) = self {
            d.owe(n);
        }
    }
}

impl Read for &Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        DeadlineReader::new(self, None).read(buf)
    }
}

/// Reads a transport with an optional deadline: once it has passed, a read fails with
/// `TimedOut` however the peer trickles its bytes. A socket read timeout alone is per read,
/// so one byte every few seconds would keep a handshake open for ever.
pub struct DeadlineReader<'a> {
    transport: &'a Transport,
    /// `None`: reads wait as the socket's own timeout says.
    pub deadline: Option<Instant>,
}

impl<'a> DeadlineReader<'a> {
    pub fn new(transport: &'a Transport, deadline: Option<Instant>) -> DeadlineReader<'a> {
        DeadlineReader {
            transport,
            deadline,
        }
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.transport {
            Transport::Plain(s) => read_by(s, buf, self.deadline),
            Transport::Tls(t) => t.read(buf, self.deadline),
            Transport::WebSocket(w) => w.read(buf, self.deadline),
            Transport::Irc(i) => i.read(buf, self.deadline),
        }
    }
}

/// One read from `sock`, waiting at most until `deadline` when there is one.
fn read_by(sock: &TcpStream, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        sock.set_read_timeout(Some(left))?;
    }
    (&*sock).read(buf)
}

impl Write for &Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => (&**s).write(buf),
            Transport::Tls(t) => t.write(buf),
            Transport::WebSocket(w) => w.write_lines(buf),
            Transport::Irc(i) => i.write_lines(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => (&**s).flush(),
            Transport::Tls(t) => t.flush(),
            Transport::WebSocket(w) => {
                let mut inner = w.inner();
                inner.flush()
            }
            Transport::Irc(i) => {
                let mut inner = i.inner();
                inner.flush()
            }
        }
    }
}

/// TLS over a shared socket, usable from a reading and a writing thread at once.
pub struct TlsStream {
    conn: Mutex<Connection>,
    sock: Arc<TcpStream>,
    /// The send lock: held while records taken out of `conn` are written to the socket, and
    /// holding the buffer they are taken into. Taken before the session lock, never after.
    send: Mutex<Vec<u8>>,
    /// Raw bytes read from the socket and not yet given to rustls; only the reading thread
    /// uses it. rustls refuses more input while its plaintext buffer is full, so bytes are
    /// fed only once the plaintext before them has been read out, and the rest waits here.
    raw: Mutex<RawBuf>,
}

/// Bytes read from the socket: `buf[start..end]` are still to be fed to rustls.
struct RawBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl TlsStream {
    /// The server side of a new connection.
    pub fn server(config: Arc<ServerConfig>, sock: Arc<TcpStream>) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream::new(conn.into(), sock))
    }

    /// The client side, checking the server's certificate for `name`.
    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        sock: Arc<TcpStream>,
    ) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream::new(conn.into(), sock))
    }

    fn new(conn: Connection, sock: Arc<TcpStream>) -> TlsStream {
        TlsStream {
            conn: Mutex::new(conn),
            sock,
            send: Mutex::new(Vec::new()),
            raw: Mutex::new(RawBuf {
                buf: vec![0u8; 16 * 1024],
                start: 0,
                end: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends whatever rustls has to send (handshake messages, encrypted data, alerts), after
    /// `work` has run on the session: the records are taken out under the session lock and
    /// written to the socket without it, all under the send lock.
    fn send_after<T>(&self, work: impl FnOnce(&mut Connection) -> io::Result<T>) -> io::Result<T> {
        let mut out = self.send.lock().unwrap_or_else(|p| p.into_inner());
        out.clear();
        let done = {
            let mut conn = self.lock();
            let done = work(&mut conn);
            while conn.wants_write() {
                conn.write_tls(&mut *out)?;
            }
            done
        };
        (&*self.sock).write_all(&out)?;
        if out.capacity() > 64 * 1024 {
            *out = Vec::new();
        }
        done
    }

    /// Reads plaintext; with a `deadline`, every read from the socket waits only for what is
    /// left of it, so the TLS handshake cannot be stretched by trickling bytes.
    fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let must_send = {
                let mut conn = self.lock();
                // Plaintext first: only an empty plaintext buffer may take more input.
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if raw.start < raw.end {
                    let RawBuf {
                        buf: bytes,
                        start,
                        end,
                    } = &mut *raw;
                    let mut fed = &bytes[*start..*end];
                    let taken = conn.read_tls(&mut fed);
                    *start = *end - fed.len();
                    taken?;
                    if let Err(e) = conn.process_new_packets() {
                        drop(conn);
                        // Tell the peer why (an alert), then give up on the connection.
                        let _ = self.send_after(|_| Ok(()));
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if !conn.wants_write() {
                        // There may be plaintext now, or more bytes to feed.
                        continue;
                    }
                }
                conn.wants_write()
            };
            // The session lock is released before sending: the writer may work meanwhile.
            if must_send {
                self.send_after(|_| Ok(()))?;
                continue;
            }
            // Unlocked: the writer may encrypt and send meanwhile.
            let n = read_by(&self.sock, &mut raw.buf, deadline)?;
            if n == 0 {
                return Ok(0);
            }
            raw.start = 0;
            raw.end = n;
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_after(|conn| conn.writer().write(buf))
    }

    fn flush(&self) -> io::Result<()> {
        self.send_after(|_| Ok(()))
    }
}

/// The server's TLS settings from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| {
            Error::tls(format!(
                "cannot read the certificates in {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::tls(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::tls(format!(
            "cannot read the private key in {}: {e}",
            key.display()
        ))
    })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::tls(format!("TLS: {e}")))?;
    Ok(Arc::new(config))
}

/// The client's TLS settings: the usual public roots, plus the certificates in `ca` (for a
/// self-signed or private CA).
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect())
            .map_err(|e| Error::tls(format!("cannot read {}: {e}", ca.display())))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| Error::tls(format!("{}: {e}", ca.display())))?;
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to `addr` (`host:port`) over TLS, checking the certificate for `host`.
pub fn connect(addr: &str, config: Arc<ClientConfig>) -> Result<Transport> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| Error::tls(format!("{host} is not a valid server name: {e}")))?;
    let sock =
        TcpStream::connect(addr).map_err(|e| Error::io(format!("cannot connect to {addr}"), e))?;
    let tls = TlsStream::client(config, name, Arc::new(sock))
        .map_err(|e| Error::io("cannot start TLS", e))?;
    Ok(Transport::Tls(Box::new(tls)))
}

/// Writes a self-signed certificate and its key for `names` (host names or addresses) as
/// `cert.pem` and `key.pem` in `dir`: for development and tests, not for production.
pub fn make_dev_cert(dir: &Path, names: &[String]) -> Result<()> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| Error::tls(format!("cannot make a certificate: {e}")))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    // Owner-only, whatever the umask: the key is a secret.
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        crate::store::create_private_file(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    };
    write("cert.pem", certified.cert.pem())?;
    write("key.pem", certified.signing_key.serialize_pem())?;
    Ok(())
}

/// The first byte of every TLS connection (a handshake record).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// A buffered reader over a transport, as the connection threads use it.
pub type TransportReader<'a> = BufReader<DeadlineReader<'a>>;

/// A server configuration with a fresh self-signed certificate, for tests.
#[cfg(test)]
pub fn test_server_config() -> Arc<ServerConfig> {
    let dir = tempfile::tempdir().unwrap();
    make_dev_cert(dir.path(), &["localhost".into()]).unwrap();
    server_config(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// A server and a client `Transport` over one loopback connection.
    fn pair() -> (Transport, Transport) {
        let dir = tempfile::tempdir().unwrap();
        make_dev_cert(dir.path(), &["localhost".into()]).unwrap();
        let server_config =
            server_config(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
        let client_config = client_config(Some(&dir.path().join("cert.pem"))).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = std::thread::spawn(move || listener.accept().unwrap().0);
        let client = TcpStream::connect(addr).unwrap();
        let server = Arc::new(accepting.join().unwrap());
        for s in [&client, &*server] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let name = ServerName::try_from("localhost").unwrap();
        let client = TlsStream::client(client_config, name, Arc::new(client)).unwrap();
        let server = TlsStream::server(server_config, server).unwrap();
        (
            Transport::Tls(Box::new(server)),
            Transport::Tls(Box::new(client)),
        )
    }

    /// Full-size records followed by small ones, read through a small buffer: the reader
    /// must never give rustls more input while a record's worth of plaintext waits in it
    /// (rustls then fails with "received plaintext buffer full").
    #[test]
    fn large_and_small_records_arrive_whole_through_a_small_buffer() {
        let (server, client) = pair();
        let mut sent = Vec::new();
        for i in 0..40u8 {
            sent.extend(std::iter::repeat_n(b'a' + i % 26, 16 * 1024));
            for j in 0..8u8 {
                sent.extend_from_slice(&[b'0' + j; 10]);
            }
        }
        let expected = sent.len();
        // The client reads in its own thread, which also drives its side of the handshake.
        (&client).write_all(b"hi").unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 100];
            while got.len() < expected {
                let n = (&client).read(&mut buf).unwrap();
                assert!(n > 0, "the stream ended after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        // Before the handshake ends rustls takes only so much plaintext: wait for it.
        let mut hi = [0u8; 2];
        (&server).read_exact(&mut hi).unwrap();
        let mut w = &server;
        for chunk in sent.chunks(16 * 1024 + 80) {
            w.write_all(&chunk[..16 * 1024]).unwrap();
            for small in chunk[16 * 1024..].chunks(10) {
                w.write_all(small).unwrap();
            }
        }
        assert!(reader.join().unwrap() == sent, "the bytes differ");
    }

    /// The session lock is not held while a writer is blocked on a full socket: the reader
    /// still gets what the peer sends. (Before, it waited for the writer to unblock, which for
    /// a peer that never reads is the send timeout.)
    #[test]
    fn a_writer_blocked_on_a_full_socket_does_not_stop_the_reader() {
        let (server, client) = pair();
        let (server, client) = (Arc::new(server), Arc::new(client));
        // The handshake: the client's side moves as the client reads.
        let greeter = {
            let client = client.clone();
            std::thread::spawn(move || {
                (&*client).write_all(b"hi").unwrap();
                let mut ok = [0u8; 2];
                (&*client).read_exact(&mut ok).unwrap();
            })
        };
        let mut hi = [0u8; 2];
        (&*server).read_exact(&mut hi).unwrap();
        (&*server).write_all(b"ok").unwrap();
        greeter.join().unwrap();
        // The server writes far more than the socket buffers hold; the client reads none.
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = {
            let (server, written) = (server.clone(), written.clone());
            std::thread::spawn(move || {
                let chunk = vec![b'x'; 16 * 1024];
                for _ in 0..2048 {
                    if (&*server).write_all(&chunk).is_err() {
                        return;
                    }
                    written.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        // There is no signal for "blocked": wait until the writer has stopped making progress
        // (bounded), so the read below happens while it is stuck.
        let until = Instant::now() + Duration::from_secs(10);
        let mut seen = usize::MAX;
        while Instant::now() < until {
            let now = written.load(std::sync::atomic::Ordering::Relaxed);
            if now == seen && now > 0 {
                break;
            }
            seen = now;
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(seen < 2048 * 16 * 1024, "the writer never blocked");
        (&*client).write_all(b"ping").unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reader = {
            let server = server.clone();
            std::thread::spawn(move || {
                let mut ping = [0u8; 4];
                let _ = tx.send((&*server).read_exact(&mut ping).map(|()| ping));
            })
        };
        let got = rx.recv_timeout(Duration::from_secs(3));
        // Let the writer finish: read (and drop) everything it sends, then close.
        let drain = {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0;
                while total < 2048 * 16 * 1024 {
                    match (&*client).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
        };
        writer.join().unwrap();
        drain.join().unwrap();
        let _ = reader.join();
        assert_eq!(
            got.expect("the reader waited for the blocked writer")
                .unwrap(),
            *b"ping"
        );
    }
}
