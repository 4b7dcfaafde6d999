//! The accept loops: blocking listeners (the chat port; web and IRC when asked), two OS
//! threads per connection, one broadcaster.
//!
//! [`Server::new`] takes an already-bound listener (so a caller can bind port 0 and know the
//! address before anything runs), opens the logs and starts the broadcaster. [`Server::run`]
//! accepts until [`ShutdownHandle::shutdown`] is called, then stops the broadcaster (which tells
//! every client and writes their `disconnect` rows) and waits, for a bounded time, for the
//! connection threads to finish writing.

pub mod accept;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod hub;
pub mod limits;
pub mod lines;
pub mod login;
pub mod outbox;
pub mod web;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use log::{error, info, warn};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::server::accept::{Door, Front, accept_loop};
use crate::server::hub::{Event, Hub};
use crate::server::limits::{Admission, Rules};
use crate::server::login::{Auth, Checker, Throttle};
use crate::store::bans::Bans;
use crate::store::users::Directory;
pub use config::Config;

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

/// The listeners besides the chat port's, each off unless given.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The web port (`--web`): the page, and JSON over a WebSocket.
    pub web: Option<TcpListener>,
    /// The IRC port (`--irc`): IRC over plain TCP, even when the chat port speaks TLS.
    pub irc: Option<TcpListener>,
    /// The IRC TLS port (`--irc-tls`): IRC over TLS, with the chat port's certificate.
    pub irc_tls: Option<TcpListener>,
}

/// A server ready to accept on its listener (and on the others given).
pub struct Server {
    listener: TcpListener,
    /// The other ports: web, IRC.
    others: Listeners,
    /// What the accept loops and the connection threads share.
    front: Arc<Front>,
    broadcaster: JoinHandle<()>,
    /// The address `shutdown` connects to, to wake the blocking accept.
    wake_addr: SocketAddr,
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
    pub fn new(listener: TcpListener, config: Config) -> Result<Server> {
        Server::with_web(listener, None, config)
    }

    /// Like [`Server::new`], with a web listener too (`--web`): the page, and JSON over
    /// WebSocket, into the same rooms and logs.
    pub fn with_web(
        listener: TcpListener,
        web: Option<TcpListener>,
        config: Config,
    ) -> Result<Server> {
        let others = Listeners {
            web,
            ..Listeners::default()
        };
        Server::with_listeners(listener, others, config)
    }

    /// Like [`Server::new`], with the other ports given: web (`--web`), IRC (`--irc`,
    /// `--irc-tls`), into the same rooms and logs.
    pub fn with_listeners(
        listener: TcpListener,
        others: Listeners,
        mut config: Config,
    ) -> Result<Server> {
        config.validate()?;
        config.tls.load()?;
        if others.irc_tls.is_some() && config.tls.server.is_none() {
            return Err(Error::setting(
                "--irc-tls needs a certificate: give --tls-cert and --tls-key",
            ));
        }
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
        if let Some(irc) = others.irc.as_ref().and_then(|l| l.local_addr().ok())
            && (config.login.private || directory.any())
            && !irc.ip().is_loopback()
        {
            warn!(
                "accounts are in use on the IRC port {irc}, which is plain TCP: passwords cross the network in clear; prefer --irc-tls"
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
        let claims = match &config.cluster.redis {
            Some(url) => {
                let node = config.cluster.node_id.clone().unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .map(|h| h.trim().to_string())
                        .unwrap_or_else(|_| "node".into());
                    format!("{host}:{}", local.port())
                });
                let lease = config.cluster.redis_lease.get();
                let users_file = config.data_dir.join(crate::store::users::USERS_FILE);
                let cluster =
                    cluster::Cluster::new(url, node.clone(), lease, hub.last_id(), users_file)?;
                let online = cluster.reachable();
                if !online {
                    warn!("cluster: Redis at {url} does not answer; serving alone until it does");
                }
                // What the cluster said while this node was down, logged before anyone joins.
                let (backlog, after) = if online {
                    cluster.backlog()
                } else {
                    (Vec::new(), None)
                };
                if !backlog.is_empty() {
                    info!("cluster: catching up on {} messages", backlog.len());
                }
                hub.catch_up(backlog);
                cluster
                    .last_id
                    .fetch_max(hub.last_id(), std::sync::atomic::Ordering::SeqCst);
                let link = cluster.start(events.clone(), after)?;
                hub.join_cluster(link, &cluster, online);
                info!("node {node} of the cluster at {url}");
                Some(Arc::new(cluster.claims(bans.clone())))
            }
            None => None,
        };
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
        let front = Front {
            tls: Arc::new(std::sync::RwLock::new(config.tls.server.clone())),
            admission: std::sync::Mutex::new(Admission::new(rules)),
            auth,
            bans,
            next_conn: AtomicU64::new(next_conn),
            web: others.web.is_some().then(web::Web::default),
            claims,
            config: Arc::new(config),
            events,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        Ok(Server {
            _lock: lock,
            listener,
            others,
            front: Arc::new(front),
            broadcaster,
            wake_addr: wake_addr(local),
        })
    }

    /// A handle that reloads users, bans and the certificate (see [`ReloadHandle`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        let front = &self.front;
        ReloadHandle {
            tls: front.tls.clone(),
            cert_and_key: front
                .config
                .tls
                .tls_cert
                .clone()
                .zip(front.config.tls.tls_key.clone()),
            auth: front.auth.clone(),
            bans: front.bans.clone(),
        }
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stopping: self.front.stopping.clone(),
            wake_addr: self.wake_addr,
        }
    }

    /// Accepts connections until shut down, then stops cleanly.
    pub fn run(self) -> Result<()> {
        let (alive_tx, alive_rx) = crossbeam_channel::bounded::<()>(0);
        let front = self.front;
        let Listeners { web, irc, irc_tls } = self.others;
        let mut loops = Vec::new();
        for (listener, door, name) in [
            (web, Door::Web, "web"),
            (irc, Door::Irc, "irc"),
            (irc_tls, Door::IrcTls, "irc-tls"),
        ] {
            let Some(listener) = listener else { continue };
            let wake = listener
                .local_addr()
                .map_err(|e| Error::io(format!("cannot read the {name} listener's address"), e))?;
            let (front, alive) = (front.clone(), alive_tx.clone());
            let handle = thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || accept_loop(&listener, &front, door, &alive))
                .map_err(|e| Error::io(format!("cannot start the {name} accept thread"), e))?;
            loops.push((handle, wake_addr(wake)));
        }
        accept_loop(&self.listener, &front, Door::Chat, &alive_tx);
        for (handle, wake) in loops {
            // Their accepts block too: wake each with a connection of our own.
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(2));
            let _ = handle.join();
        }
        info!("shutting down");
        let _ = front.events.send(Event::Shutdown);
        if self.broadcaster.join().is_err() {
            error!("the broadcaster thread panicked");
        }
        // Each connection thread holds a clone of `alive_tx`; when all have ended, the channel
        // disconnects. Wait for that, but not forever.
        drop(alive_tx);
        let deadline = Instant::now() + front.config.drain_timeout;
        match alive_rx.recv_deadline(deadline) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                warn!("some connection threads had not finished after the drain timeout")
            }
        }
        Ok(())
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
