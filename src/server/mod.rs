//! The accept loop: one blocking listener, two OS threads per connection, one broadcaster.
//!
//! [`Server::new`] takes an already-bound listener (so a caller can bind port 0 and know the
//! address before anything runs), opens the logs and starts the broadcaster. [`Server::run`]
//! accepts until [`ShutdownHandle::shutdown`] is called, then stops the broadcaster (which tells
//! every client and writes their `disconnect` rows) and waits, for a bounded time, for the
//! connection threads to finish writing.

pub mod config;
pub mod config_file;
pub mod connection;
pub mod hub;
pub mod limits;
pub mod lines;
pub mod login;
pub mod outbox;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use log::{debug, error, info, warn};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::error::{Error, Result};
use crate::server::hub::{Event, Hub};
use crate::server::limits::{Admission, Refusal, Rules, Ticket};
use crate::server::login::{Auth, Checker, Throttle};
use crate::server::outbox::{Sink, Spawner, WRITER_IDLE};
use crate::store::bans::Bans;
use crate::store::users::Directory;
use crate::tls::{TlsStream, Transport};
pub use config::Config;
use connection::Reader;

/// The kernel's send buffer of a connection (it doubles this for its own bookkeeping).
const SEND_BUFFER: usize = 256 * 1024;

/// The kernel's receive buffer of a connection: lines are read as they come.
const RECV_BUFFER: usize = 64 * 1024;

/// Binds a listener for `addr` with a deep accept queue (std's default of 128 overflows in a
/// login storm, and every dropped SYN costs its client a one-second retry) and `SO_REUSEADDR`
/// (so a restart does not wait for old connections in TIME_WAIT).
pub fn bind(addr: &str) -> Result<TcpListener> {
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("cannot resolve {addr}"), e))?
        .collect();
    // A host name may stand for several addresses (`localhost`: ::1 and 127.0.0.1); the
    // first that can be bound wins, so a host without IPv6 still listens.
    let mut last = None;
    for sockaddr in candidates {
        match bind_one(sockaddr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => Error::io(format!("cannot listen on {addr}"), e),
        None => Error::setting(format!("{addr} resolves to no address")),
    })
}

fn bind_one(sockaddr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(sockaddr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&sockaddr.into())?;
    // The kernel caps this at net.core.somaxconn.
    socket.listen(4096)?;
    Ok(socket.into())
}

/// How many connections this process can serve before the kernel refuses threads,
/// descriptors or memory mappings, with the limit that binds; read from `/proc` and rlimits.
///
/// Each connection costs two threads, one descriptor, and about four memory mappings per
/// thread (stack, its guard page, the signal stack, its guard page). Past
/// `vm.max_map_count` a new thread cannot set up its signal stack and the process aborts, so
/// the server must refuse connections before that point rather than after.
pub fn capacity() -> (usize, String) {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
    };
    let mut limits: Vec<(usize, String)> = Vec::new();
    if let Some(maps) = read("/proc/sys/vm/max_map_count") {
        limits.push((
            maps.saturating_sub(2048) / 8,
            format!("vm.max_map_count={maps}"),
        ));
    }
    if let Some(threads) = read("/proc/sys/kernel/threads-max") {
        limits.push((
            threads.saturating_sub(256) / 2,
            format!("kernel.threads-max={threads}"),
        ));
    }
    if let Some(pids) = read("/proc/sys/kernel/pid_max") {
        limits.push((
            pids.saturating_sub(1024) / 2,
            format!("kernel.pid_max={pids}"),
        ));
    }
    if let Ok((soft, _)) = rlimit::Resource::NOFILE.get() {
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        limits.push((soft.saturating_sub(64), format!("RLIMIT_NOFILE={soft}")));
    }
    if let Ok((soft, _)) = rlimit::Resource::NPROC.get() {
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        limits.push((soft.saturating_sub(256) / 2, format!("RLIMIT_NPROC={soft}")));
    }
    limits
        .into_iter()
        .min_by_key(|(n, _)| *n)
        .unwrap_or((usize::MAX, "no known limit".to_string()))
}

/// A server ready to accept on its listener.
pub struct Server {
    listener: TcpListener,
    /// The id of the next connection; ids continue from `data.csv` across restarts.
    next_conn: u64,
    config: Arc<Config>,
    /// Feeds the broadcaster.
    events: Sender<Event>,
    broadcaster: JoinHandle<()>,
    /// Set by [`ShutdownHandle::shutdown`]; checked after every accept.
    stopping: Arc<AtomicBool>,
    /// The address `shutdown` connects to, to wake the blocking accept.
    wake_addr: SocketAddr,
    /// The admission rules, handed to the accept loop.
    rules: Rules,
    /// Accounts and the login throttle, shared by the connection threads.
    auth: Arc<Auth>,
    /// The bans, written by the broadcaster, read here to refuse banned addresses.
    bans: Arc<std::sync::RwLock<Bans>>,
    /// The TLS configuration new connections get (`None`: plain TCP); replaced by a reload
    /// when the certificate is renewed. A connection keeps the one it started with.
    tls: Arc<std::sync::RwLock<Option<Arc<rustls::ServerConfig>>>>,
    /// An exclusive lock on the data directory, held while the server lives: two servers
    /// appending to one log would interleave rows and reuse ids.
    _lock: std::fs::File,
}

/// Re-reads, while the server runs, what an operator may change under it: `users.csv`,
/// `bans.csv` and the TLS certificate and key (the server does so on SIGHUP).
#[derive(Clone)]
pub struct ReloadHandle {
    tls: Arc<std::sync::RwLock<Option<Arc<rustls::ServerConfig>>>>,
    cert_and_key: Option<(std::path::PathBuf, std::path::PathBuf)>,
    auth: Arc<Auth>,
    bans: Arc<std::sync::RwLock<Bans>>,
}

impl ReloadHandle {
    /// Reloads all three; what cannot be read is logged and the old one kept. Returns the
    /// errors (empty when everything reloaded).
    pub fn reload(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        self.auth.directory.refresh();
        // The hub notices the new generation and disconnects whom a new ban covers.
        if let Err(e) = self
            .bans
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .reload()
        {
            errors.push(e);
        }
        if let Some((cert, key)) = &self.cert_and_key {
            match crate::tls::server_config(cert, key) {
                Ok(config) => {
                    *self.tls.write().unwrap_or_else(|p| p.into_inner()) = Some(config);
                }
                Err(e) => errors.push(e),
            }
        }
        for e in &errors {
            error!("reload: {e}; keeping what was loaded before");
        }
        if errors.is_empty() {
            info!(
                "reloaded users.csv, bans.csv{}",
                if self.cert_and_key.is_some() {
                    " and the TLS certificate"
                } else {
                    ""
                }
            );
        }
        errors
    }
}

/// Stops a running [`Server`] from another thread (a signal handler's thread, a test).
#[derive(Clone)]
pub struct ShutdownHandle {
    stopping: Arc<AtomicBool>,
    wake_addr: SocketAddr,
}

impl ShutdownHandle {
    /// Asks the server to stop: it stops accepting, tells every client, writes the last CSV
    /// rows and returns from [`Server::run`].
    pub fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // A blocking accept has no timeout: wake it with a connection of our own.
        if let Err(e) = TcpStream::connect_timeout(&self.wake_addr, Duration::from_secs(2)) {
            warn!("cannot wake the accept loop at {}: {e}", self.wake_addr);
        }
    }
}

impl Server {
    /// Opens the logs under `config.data_dir` and starts the broadcaster.
    pub fn new(listener: TcpListener, mut config: Config) -> Result<Server> {
        config.validate()?;
        config.tls.load()?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the listener's address", e))?;
        crate::store::create_private_dir(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        for file in [
            crate::store::users::USERS_FILE,
            crate::store::bans::BANS_FILE,
        ] {
            crate::store::make_private(&config.data_dir.join(file))?;
        }
        let directory = Directory::open(config.data_dir.join(crate::store::users::USERS_FILE))?;
        if (config.login.private || directory.any())
            && config.tls.server.is_none()
            && !local.ip().is_loopback()
        {
            warn!(
                "accounts are in use on {local} without TLS: passwords cross the network in clear; use --tls-cert/--tls-key or an SSH tunnel"
            );
        }
        let auth = Arc::new(Auth {
            directory,
            throttle: Throttle::new(
                config.login.login_delay.get(),
                Duration::from_secs(15 * 60),
                config.login.login_lockout,
            ),
            checker: Checker::new(config.login.password_checkers, 64)?,
            private: config.login.private,
        });
        let bans = Arc::new(std::sync::RwLock::new(Bans::open(&config.data_dir)?));
        let mut hub = Hub::open(&config.data_dir, config.clone(), bans.clone(), auth.clone())?;
        hub.log_server_event(
            crate::store::ConnEvent::Start,
            &format!("chatroom {} on {local}", env!("CARGO_PKG_VERSION")),
        );
        let next_conn =
            crate::store::last_conn_id(&config.data_dir.join(crate::store::CONNECTIONS_FILE))? + 1;
        // Bounded: a flood of events slows the readers that cause it, not the broadcaster. And
        // not deep: it is one queue for everyone, so an honest client's request waits behind
        // whatever is queued; 4,096 events (16 full batches) is a few milliseconds of work.
        let (events, rx) = crossbeam_channel::bounded(4096);
        let broadcaster = thread::Builder::new()
            .name("broadcaster".into())
            .spawn(move || hub.run(rx))
            .map_err(|e| Error::io("cannot start the broadcaster thread", e))?;
        let (kernel_cap, binding) = capacity();
        let max_clients = match config.connection.max_clients {
            Some(n) if n > kernel_cap => {
                warn!(
                    "--max-clients {n} is more than this machine allows ({kernel_cap}, {binding}); using {kernel_cap}"
                );
                kernel_cap
            }
            Some(n) => n,
            None => kernel_cap,
        };
        info!(
            "serving at most {max_clients} clients at once (the kernel allows {kernel_cap}; bound by {binding})"
        );
        let rules = Rules {
            max_clients,
            max_per_ip: config.limits.max_per_ip,
            per_ip_per_minute: config.limits.conn_per_minute,
            limit_loopback: config.limits.limit_loopback,
        };
        Ok(Server {
            tls: Arc::new(std::sync::RwLock::new(config.tls.server.clone())),
            _lock: lock,
            rules,
            auth,
            bans,
            next_conn,
            listener,
            config: Arc::new(config),
            events,
            broadcaster,
            stopping: Arc::new(AtomicBool::new(false)),
            wake_addr: wake_addr(local),
        })
    }

    /// A handle that reloads users, bans and the certificate (see [`ReloadHandle`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            tls: self.tls.clone(),
            cert_and_key: self
                .config
                .tls
                .tls_cert
                .clone()
                .zip(self.config.tls.tls_key.clone()),
            auth: self.auth.clone(),
            bans: self.bans.clone(),
        }
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stopping: self.stopping.clone(),
            wake_addr: self.wake_addr,
        }
    }

    /// Accepts connections until shut down, then stops cleanly.
    pub fn run(self) -> Result<()> {
        let (alive_tx, alive_rx) = crossbeam_channel::bounded::<()>(0);
        let mut next_conn = self.next_conn;
        let mut admission = Admission::new(self.rules.clone());
        for stream in self.listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => {
                    if let Some(ticket) = admit(&mut admission, &self.bans, &stream) {
                        self.spawn_connection(next_conn, stream, ticket, &alive_tx);
                        next_conn += 1;
                    }
                }
                Err(e) => {
                    // Out of descriptors or memory: say so, back off a little, keep serving.
                    error!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        info!("shutting down");
        let _ = self.events.send(Event::Shutdown);
        drop(self.events);
        if self.broadcaster.join().is_err() {
            error!("the broadcaster thread panicked");
        }
        // Each connection thread holds a clone of `alive_tx`; when all have ended, the channel
        // disconnects. Wait for that, but not forever.
        drop(alive_tx);
        let deadline = Instant::now() + self.config.drain_timeout;
        match alive_rx.recv_deadline(deadline) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                warn!("some connection threads had not finished after the drain timeout")
            }
        }
        Ok(())
    }

    fn spawn_connection(&self, conn: u64, stream: TcpStream, ticket: Ticket, alive: &Sender<()>) {
        let address = ticket
            .address_queue()
            .map(|queued| crate::server::outbox::AddressBudget {
                queued,
                limit: self.config.limits.outbox_per_ip_mib.saturating_mul(1 << 20),
            });
        let live = Arc::new(ticket);
        let peer = match stream.peer_addr() {
            Ok(peer) => canonical(peer),
            Err(e) => {
                debug!("conn {conn}: peer gone before it was served: {e}");
                return;
            }
        };
        // Chat lines are small and latency matters; the writer coalesces bursts itself.
        let _ = stream.set_nodelay(true);
        // What the kernel holds for one connection, bounded too (left to itself it grows each
        // buffer to megabytes for a peer that does not read): chat lines are small.
        let sock = SockRef::from(&stream);
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        let _ = sock.set_recv_buffer_size(RECV_BUFFER);
        // A peer that takes no byte for this long is gone, whatever the writer was sending; the
        // failed write ends the connection and frees its threads and its place.
        let _ = stream.set_write_timeout(Some(self.config.connection.send_timeout()));
        // A peer that vanished without a word (a laptop lid, a dead NAT entry) is found by the
        // kernel's keepalive probes as well as by the idle timeouts.
        let keepalive = TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(15));
        let _ = SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        // One socket, shared: the reader reads, the writer writes, the broadcaster may shut it
        // down. One descriptor per connection, not three.
        let stream = Arc::new(stream);
        let limit = self.config.limits.outbox_bytes();
        // A front door is a transport plus a codec: here the transport decides how bytes
        // leave, once; the hub only ever sees "send these bytes".
        let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        let transport = match &tls {
            Some(tls) => match TlsStream::server(tls.clone(), stream.clone()) {
                Ok(t) => Transport::Tls(Box::new(t)),
                Err(e) => {
                    error!("conn {conn}: cannot start TLS for {peer}: {e}");
                    return;
                }
            },
            None => Transport::Plain(stream.clone()),
        };
        let transport = Arc::new(transport);
        // A writer thread is started only when the client falls behind; it keeps the
        // connection's place and the shutdown's wait, as the reader does.
        let stack = (self.config.stack_size / 4).max(64 * 1024);
        let (writer_live, writer_alive) = (live.clone(), alive.clone());
        let spawn: Spawner = Box::new(move |work| {
            let keep = (writer_live.clone(), writer_alive.clone());
            thread::Builder::new()
                .name(format!("conn-{conn}-w"))
                .stack_size(stack)
                .spawn(move || {
                    work();
                    drop(keep);
                })
                .map(drop)
        });
        let sink = Sink {
            conn,
            transport: transport.clone(),
            spawn,
            idle: WRITER_IDLE,
        };
        let outbox = crate::server::outbox::outbox(sink, limit, address);
        let thread_name = format!("conn-{conn}");
        let connect = Event::Connect {
            conn,
            peer,
            thread: thread_name.clone(),
            outbox: outbox.clone(),
        };
        if self.events.send(connect).is_err() {
            return;
        }
        // Boxed: the thread's closure is moved through several of std's frames on the new
        // thread's stack, and every byte of it there is stack each connection keeps resident.
        let reader = Box::new(Reader {
            conn,
            peer,
            auth: self.auth.clone(),
            transport,
            events: self.events.clone(),
            outbox,
            config: self.config.clone(),
            overflowed: std::cell::Cell::new(false),
        });
        let reader_alive = alive.clone();
        let spawned = thread::Builder::new()
            .name(thread_name)
            .stack_size(self.config.stack_size)
            .spawn(move || {
                reader.run();
                // This thread drains what is left and closes, unless a writer thread does.
                let Reader { outbox, .. } = *reader;
                outbox.finish();
                drop(live);
                drop(reader_alive);
            });
        if let Err(e) = spawned {
            self.refuse(conn, &peer, e);
        }
    }

    /// The OS would not give us a thread: log it and end the connection; everyone else goes on.
    fn refuse(&self, conn: u64, peer: &SocketAddr, e: std::io::Error) {
        error!("conn {conn}: cannot start a thread for {peer}: {e}; refusing the connection");
        let _ = self.events.send(Event::Gone {
            conn,
            reason: crate::store::Disconnect::NoThread(e.to_string()),
        });
    }
}

/// Admits a freshly accepted connection, or tells it why not (best effort, without blocking)
/// and closes it.
fn admit(
    admission: &mut Admission,
    bans: &std::sync::RwLock<Bans>,
    stream: &TcpStream,
) -> Option<Ticket> {
    let peer = canonical(stream.peer_addr().ok()?);
    // `chat-server bans` (or an editor) may have changed the file: a stat, and a read only
    // when it did, so a ban added from the command line refuses the very next connection.
    crate::store::bans::refresh(bans);
    let banned = bans
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .for_ip(peer.ip())
        .map(|b| b.describe());
    let verdict = match banned {
        Some(ban) => Err(Refusal::Banned { ban }),
        None => admission.admit(peer.ip()),
    };
    match verdict {
        Ok(ticket) => Some(ticket),
        Err(refusal) => {
            warn!("refusing {peer}: {}", refusal.reason());
            let _ = stream.set_nonblocking(true);
            let _ = (&*stream).write_all(&refusal.lines());
            None
        }
    }
}

/// Takes the data directory's lock (`.lock` in it), or says which process holds it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::busy(format!(
                "{} is in use by another chat-server ({}); two servers must not share a data directory",
                dir.display(),
                holder.trim()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("cannot lock {}", path.display()), e));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    let _ = file
        .set_len(0)
        .and_then(|()| write!(file, "pid {}", std::process::id()));
    Ok(file)
}

/// The peer's address as everything else sees it: on a dual-stack listener an IPv4 client
/// arrives as `::ffff:a.b.c.d`; bans, per-address limits, loopback's exemption and `data.csv`
/// all take it as the IPv4 address it is.
pub fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Where to connect to reach a listener bound to `local` (a wildcard bind is reached on
/// loopback).
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}
