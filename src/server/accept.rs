//! The accept loops and what a new connection gets: admission, socket settings, its transport,
//! its outbox, and its reader. The chat port, the web port (`--web`) and the IRC ports
//! (`--irc`, `--irc-tls`) share one [`Front`]: one admission (the per-address limits count
//! them all), one sequence of connection ids.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{debug, error, warn};
use socket2::{SockRef, TcpKeepalive};

use super::connection::Reader;
use super::hub::Event;
use super::limits::{Admission, Refusal, Ticket};
use super::login::Auth;
use super::outbox::{Outbox, Sink, Spawner, WRITER_IDLE};
use super::{Config, canonical};
use crate::store::bans::Bans;
use crate::tls::{TlsStream, Transport};

/// The kernel's send buffer of a connection (it doubles this for its own bookkeeping).
const SEND_BUFFER: usize = 256 * 1024;

/// The kernel's receive buffer of a connection: lines are read as they come.
const RECV_BUFFER: usize = 64 * 1024;

/// Which listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The chat port: human lines or JSON Lines, over TCP or TLS.
    Chat,
    /// The web port: the page over HTTP(S), and JSON over a WebSocket.
    Web,
    /// The IRC port: IRC over plain TCP, whatever the chat port speaks.
    Irc,
    /// The IRC TLS port: IRC over TLS, with the chat port's certificate.
    IrcTls,
}

/// What the accept loops and every connection thread share.
pub struct Front {
    pub config: Arc<Config>,
    /// Feeds the broadcaster.
    pub events: Sender<Event>,
    /// Accounts and the login throttle.
    pub auth: Arc<Auth>,
    /// The bans, written by the broadcaster, read here to refuse banned addresses.
    pub bans: Arc<RwLock<Bans>>,
    /// The TLS configuration new connections get (`None`: plain TCP); replaced by a reload
    /// when the certificate is renewed. A connection keeps the one it started with.
    pub tls: Arc<RwLock<Option<Arc<rustls::ServerConfig>>>>,
    pub admission: Mutex<Admission>,
    /// The id of the next connection; ids continue from `data.csv` across restarts.
    pub next_conn: AtomicU64,
    /// Set by a shutdown; checked after every accept.
    pub stopping: Arc<AtomicBool>,
    /// Name claims in the cluster (`--redis`), made by the connection threads at login.
    pub claims: Option<Arc<super::cluster::Claims>>,
    /// The web port's shared state (its room list cache); `None` without `--web`.
    pub web: Option<super::web::Web>,
}

/// A connection as its reader is started: who, since when, and what keeps its place.
#[derive(Clone, Copy)]
pub struct Arrival<'a> {
    pub conn: u64,
    /// The client's address (a trusted proxy's client, on the web port).
    pub peer: SocketAddr,
    /// When the handshake began (the accept, or the request that upgraded to a WebSocket):
    /// its deadline counts from here.
    pub started: std::time::Instant,
    pub live: &'a Arc<Ticket>,
    pub alive: &'a Alive,
}

/// A connection's threads: each holds a clone, and the server waits for all to be dropped.
pub type Alive = Sender<()>;

/// Accepts on `listener` until the server stops.
pub fn accept_loop(listener: &TcpListener, front: &Arc<Front>, door: Door, alive: &Alive) {
    for stream in listener.incoming() {
        if front.stopping.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                if let Some(ticket) = front.admit(&stream, door) {
                    let conn = front.next_conn.fetch_add(1, Ordering::SeqCst);
                    front.spawn(conn, stream, ticket, door, alive);
                }
            }
            Err(e) => {
                // Out of descriptors or memory: say so, back off a little, keep serving.
                error!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Front {
    /// Admits a freshly accepted connection, or tells it why not (best effort, without
    /// blocking: a line in both modes on the chat port, an HTTP 503 on the web port) and
    /// closes it.
    fn admit(&self, stream: &TcpStream, door: Door) -> Option<Ticket> {
        let peer = canonical(stream.peer_addr().ok()?);
        let verdict = match self.banned(peer.ip()) {
            Some(ban) => Err(Refusal::Banned { ban }),
            None => self
                .admission
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(peer.ip()),
        };
        match verdict {
            Ok(ticket) => Some(ticket),
            Err(refusal) => {
                warn!("refusing {peer}: {}", refusal.reason());
                let _ = stream.set_nonblocking(true);
                let bytes = match door {
                    Door::Chat => refusal.lines(),
                    Door::Web => super::web::refusal(&refusal),
                    Door::Irc | Door::IrcTls => {
                        let reason = crate::irc::message::one_line(&refusal.reason());
                        format!("ERROR :Closing Link: {reason}\r\n").into_bytes()
                    }
                };
                let _ = (&*stream).write_all(&bytes);
                None
            }
        }
    }

    /// The ban that covers `ip`, described, if any. `chat-server bans` (or an editor) may
    /// have changed the file: a stat, and a read only when it did, so a ban added from the
    /// command line refuses the very next connection.
    pub fn banned(&self, ip: std::net::IpAddr) -> Option<String> {
        crate::store::bans::refresh(&self.bans);
        self.bans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .for_ip(ip)
            .map(|b| b.describe())
    }

    /// Sets the socket up, starts its transport, and starts the connection's thread: the
    /// chat reader, or the web port's request loop.
    fn spawn(
        self: &Arc<Self>,
        conn: u64,
        stream: TcpStream,
        ticket: Ticket,
        door: Door,
        alive: &Alive,
    ) {
        let peer = match stream.peer_addr() {
            Ok(peer) => canonical(peer),
            Err(e) => {
                debug!("conn {conn}: peer gone before it was served: {e}");
                return;
            }
        };
        let stream = Arc::new(self.tune(stream));
        let Some(transport) = self.transport(conn, &stream, &peer, door) else {
            return;
        };
        let live = Arc::new(ticket);
        let keep = (live.clone(), alive.clone());
        let started = match door {
            Door::Chat | Door::Irc | Door::IrcTls => {
                let now = std::time::Instant::now();
                let (transport, via) = match door {
                    Door::Chat => (transport, None),
                    _ => (self.irc(transport, door, now), Some("irc".to_string())),
                };
                let Some(reader) = self.reader(
                    &Arrival {
                        conn,
                        peer,
                        started: now,
                        live: &live,
                        alive,
                    },
                    Arc::new(transport),
                    via,
                ) else {
                    return;
                };
                thread::Builder::new()
                    .name(format!("conn-{conn}"))
                    .stack_size(self.config.stack_size)
                    .spawn(move || {
                        run_reader(reader);
                        drop(keep);
                    })
            }
            Door::Web => {
                let front = self.clone();
                thread::Builder::new()
                    .name(format!("conn-{conn}"))
                    .stack_size(self.config.stack_size)
                    .spawn(move || {
                        super::web::serve(&front, conn, peer, transport, &keep.0, &keep.1);
                        drop(keep);
                    })
            }
        };
        if let Err(e) = started {
            self.refuse(conn, &peer, e);
        }
    }

    /// Socket settings every connection gets.
    fn tune(&self, stream: TcpStream) -> TcpStream {
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
        let _ = sock.set_tcp_keepalive(&keepalive);
        stream
    }

    /// Plain TCP, or TLS with the configuration of the moment (the IRC port is always plain,
    /// the IRC TLS port always TLS).
    fn transport(
        &self,
        conn: u64,
        stream: &Arc<TcpStream>,
        peer: &SocketAddr,
        door: Door,
    ) -> Option<Transport> {
        if door == Door::Irc {
            return Some(Transport::Plain(stream.clone()));
        }
        let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        if door == Door::IrcTls && tls.is_none() {
            error!("conn {conn}: no TLS configuration for the IRC TLS port; closing {peer}");
            return None;
        }
        match &tls {
            Some(tls) => match TlsStream::server(tls.clone(), stream.clone()) {
                Ok(t) => Some(Transport::Tls(Box::new(t))),
                Err(e) => {
                    error!("conn {conn}: cannot start TLS for {peer}: {e}");
                    None
                }
            },
            None => Some(Transport::Plain(stream.clone())),
        }
    }

    /// IRC over `transport`: the hub sees a JSON client. Registration has the handshake's
    /// deadline, counted from `started`.
    fn irc(&self, transport: Transport, door: Door, started: std::time::Instant) -> Transport {
        let settings = crate::irc::Settings {
            tls: door == Door::IrcTls,
            version: format!("chatroom {}", env!("CARGO_PKG_VERSION")),
            max_rooms: self.config.chat.max_rooms_per_client,
        };
        let register_by = started + self.config.connection.handshake_timeout.get();
        let irc = crate::irc::IrcStream::new(transport, settings, register_by);
        Transport::Irc(Box::new(irc))
    }

    /// Makes the connection's outbox, tells the hub of the connection, and returns its
    /// reader, to be run on the connection's thread. `via` is how a WebSocket or an IRC
    /// client came (its `connect` row's detail); either speaks JSON only to the reader. A front door is a transport plus a
    /// codec: the transport decides here, once, how bytes leave; the hub only ever sees "send
    /// these bytes". `None`: the server is stopping.
    pub fn reader(
        &self,
        arrival: &Arrival<'_>,
        transport: Arc<Transport>,
        via: Option<String>,
    ) -> Option<Box<Reader>> {
        let Arrival {
            conn,
            peer,
            started,
            live,
            alive,
        } = *arrival;
        let json_only = via.is_some();
        let address = live
            .address_queue()
            .map(|queued| super::outbox::AddressBudget {
                queued,
                limit: self.config.limits.outbox_per_ip_mib.saturating_mul(1 << 20),
            });
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
        let outbox: Outbox =
            super::outbox::outbox(sink, self.config.limits.outbox_bytes(), address);
        let connect = Event::Connect {
            conn,
            peer,
            thread: format!("conn-{conn}"),
            outbox: outbox.clone(),
            via: via.unwrap_or_default(),
        };
        self.events.send(connect).ok()?;
        // Boxed: the thread's closure is moved through several of std's frames on the new
        // thread's stack, and every byte of it there is stack each connection keeps resident.
        Some(Box::new(Reader {
            conn,
            peer,
            auth: self.auth.clone(),
            transport,
            events: self.events.clone(),
            outbox,
            config: self.config.clone(),
            json_only,
            started,
            claims: self.claims.clone(),
            overflowed: std::cell::Cell::new(false),
        }))
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

/// Runs a reader to its end; then this thread drains what is left and closes, unless a writer
/// thread does. Boxed on purpose: a reader moved in by value would be copied into the frames
/// under it, and every byte there is stack each connection keeps resident.
#[allow(clippy::boxed_local)]
pub fn run_reader(reader: Box<Reader>) {
    reader.run();
    let Reader { outbox, .. } = *reader;
    outbox.finish();
}
