//! The broadcaster: one thread that owns membership, rooms, names and both CSV logs.
//!
//! Connection threads send it [`Event`]s over one crossbeam channel. It handles a batch of
//! queued events, appends their rows to `messages.csv` and `data.csv` in one write each, and
//! only then delivers. Because it is the only appender and delivers in the order it appended,
//! log order is delivery order, and nothing is delivered that did not reach the log first. It
//! never blocks on a client: see [`Outbox::send`]; a full outbox marks a slow consumer, which
//! is disconnected; nobody else waits for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info, warn};

mod chat;
mod cluster;
mod delivery;
mod logs;
mod membership;
mod moderation;
pub mod rooms;
#[cfg(test)]
mod tests;

use self::logs::conn_row;

use self::rooms::{HistoryBudget, Room};
use crate::proto::names::NameMap;
use crate::proto::{
    self, ChatMessage, ErrorCode, Identity, Kind, Mode, ProtocolError, Request, RoomInfo,
    ServerMsg, Standing,
};
use crate::server::Config;
use crate::server::login::Auth;
use crate::server::outbox::{Bytes, Outbox, PushError};
use crate::store::bans::Bans;
use crate::store::{
    self, ConnEvent, ConnRecord, CsvLog, Disconnect, Fsync, LogFile, MessageRecord,
};

/// The most events handled in one batch before the logs are written and the batch delivered,
/// and the most deliveries a batch gathers before it takes no more events: it bounds the
/// latency a busy channel adds to the first event of a batch, and the bytes one batch can put
/// in an outbox (256 lines of at most a few KiB, plus what the last event added: about 1 MiB
/// at worst, 2 MiB after a `/history` of the most that is kept).
const MAX_BATCH: usize = 256;

/// The fewest recipients per thread worth a helper thread for one segment. A loopback
/// `send(2)` costs about 7 µs on the 2-core machine of docs/PERFORMANCE.md, so 256 of them
/// (1.8 ms) are well worth the helper's start (about 0.1 ms); at 1,024 a 2,000-member room was
/// sent by one thread.
const PARALLEL_SEND_MIN: usize = 256;

/// Everything a connection thread (or the accept loop) can tell the broadcaster.
pub enum Event {
    /// A connection was accepted; sent by the accept loop before the connection's threads start.
    Connect {
        conn: u64,
        peer: SocketAddr,
        /// The name of the thread that reads this connection, as written to `data.csv`.
        thread: String,
        /// Where this client's bytes go; how they leave (directly, or through the writer
        /// thread) was decided when the connection was spawned.
        outbox: Outbox,
        /// The `connect` row's detail: how the client came (empty for the chat port,
        /// `websocket` for the web port, with the proxy that forwarded it).
        via: String,
    },
    /// A client asks for a name. The answer on `reply` is true when it was granted. An
    /// `Identity` with an account has given that account's password: it may take the name
    /// over from another session of the same account.
    Hello {
        conn: u64,
        who: Identity,
        reply: Sender<bool>,
    },
    /// A named client's request.
    Request { conn: u64, req: Request },
    /// The connection ended; `reason` goes to `data.csv`.
    Gone { conn: u64, reason: Disconnect },
    /// A login failed (wrong password, or no such account on a private server); logged in
    /// `data.csv` with the name that was tried.
    LoginFailed {
        conn: u64,
        name: String,
        why: String,
    },
    /// Redis, for a node of a cluster (`--redis`): a message in the cluster's order, the
    /// other nodes' members, Redis lost or back.
    Cluster(crate::server::cluster::FromCluster),
    /// The web port's start page asks which rooms are in use (a `rooms` answer).
    RoomList { reply: Sender<ServerMsg> },
    /// The server is stopping: tell everyone, write the last rows, return.
    Shutdown,
}

/// The broadcaster's state. Built by the server, then moved into its thread by [`Hub::run`].
pub struct Hub<W: LogFile = File> {
    /// Every connection that has not ended, named or not.
    clients: HashMap<u64, Client>,
    /// Names in use, look-alikes included (see [`crate::proto::names`]), and who holds each.
    names: NameMap<u64>,
    /// Rooms by [`proto::room_key`]; a room stays (with its history) when it empties.
    rooms: HashMap<String, Room>,
    /// `messages.csv`.
    messages: CsvLog<W>,
    /// `data.csv`.
    connections: logs::ConnectionLog<W>,
    /// The id the next message gets; ids continue from the log across restarts.
    next_id: u64,
    config: Config,
    /// How many threads may send one segment to a very large room (the cores).
    send_threads: usize,
    /// Events already logged (staged) but not yet delivered, in log order.
    pending: Vec<Delivery>,
    /// Room messages staged in this batch, added to their room's history once the log write
    /// succeeds (history must never hold what the log does not).
    pending_history: Vec<(String, ChatMessage)>,
    /// Answers to `Hello`s, sent once the batch holding their welcome has been delivered, so
    /// nothing the connection thread sends itself can overtake the welcome.
    replies: Vec<(Sender<bool>, bool)>,
    /// The bans; the accept loop reads them too, to refuse banned addresses.
    bans: Arc<std::sync::RwLock<Bans>>,
    /// The accounts, for `/op` and `/deop`.
    auth: Arc<Auth>,
    /// Who is muted, until when (`None`: until unmuted), and the name they had. A member is
    /// muted by account, a guest by address: reconnecting under another name does not lift a
    /// mute, and whoever takes the name next is not muted for it.
    mutes: HashMap<MuteKey, (Option<std::time::Instant>, String)>,
    /// The bound on all rooms' history tails together.
    budget: HistoryBudget,
    /// The broadcaster's clock: one tick per event, for rooms' `last_active`.
    tick: u64,
    /// Clients whose outbox overflowed outside a delivery; removed at the next flush.
    overflowed: Vec<u64>,
    /// When `data.csv`'s unsynced rows are to be synced (`--fsync batch`).
    connections_sync_due: Option<std::time::Instant>,
    /// The [`Bans::generation`] whose bans were last applied to those connected: a newer one
    /// (`chat-server bans add`, SIGHUP) disconnects whoever it covers.
    bans_seen: u64,
    /// When to look at `bans.csv` next (`moderation::BANS_CHECK_EVERY`), even while idle.
    bans_check_due: std::time::Instant,
    /// The cluster, when this node is one of several (`--redis`).
    cluster: Option<cluster::ClusterState>,
}

/// Whom a mute holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MuteKey {
    /// An account, by [`crate::proto::names::key`].
    Account(String),
    /// A guest's address, as [`crate::server::limits::address_key`] counts it.
    Address(std::net::IpAddr),
}

/// What the broadcaster knows of one connection.
struct Client {
    /// Set when the handshake succeeds; unnamed clients are in no room.
    name: Option<String>,
    /// How this client's events are encoded.
    mode: Mode,
    /// Where this client's bytes go: the only handle on the connection the hub has.
    outbox: Outbox,
    /// For the `data.csv` rows.
    peer: SocketAddr,
    /// For the `data.csv` rows.
    thread: String,
    /// Room keys, in the order joined.
    rooms: Vec<String>,
    /// Where plain lines go.
    current: Option<String>,
    /// The away reason (possibly empty) while away.
    away: Option<String>,
    /// Who last sent this client a direct message, for `/reply`.
    reply_to: Option<u64>,
    /// When the connection was made, for `/whois`.
    connected: String,
    /// Messages the client may send now (a token bucket, refilled at `msg_rate`).
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: std::time::Instant,
    /// Requests refused in a row for the rate.
    refused: u32,
    /// The account this connection logged in to (its registered name); `None` for a guest.
    /// What the client may do follows the account's role in `users.csv`, never its name.
    account: Option<String>,
}

/// One event waiting for the logs to be written.
struct Delivery {
    target: Target,
    msg: ServerMsg,
    /// Set when this delivery carries a message staged in this batch by that connection: if
    /// the log write fails it is dropped and that sender told.
    logged_by: Option<u64>,
}

/// Who receives a delivery.
enum Target {
    /// Every member of the room (by key). A sender gets its own message back as its mode's
    /// `own_messages` says: not in human mode (its terminal already shows it), as JSON
    /// otherwise (the acknowledgement with the id).
    Room { room: String, sender: Option<u64> },
    /// Every member of the room except one (the one who just joined).
    RoomExcept { room: String, except: u64 },
    /// One client.
    One(u64),
    /// Several clients, each once (presence and name changes, to everyone sharing a room).
    Set(Vec<u64>),
}

impl Target {
    fn room(&self) -> Option<&str> {
        match self {
            Target::Room { room, .. } | Target::RoomExcept { room, .. } => Some(room),
            _ => None,
        }
    }
}

impl Hub<File> {
    /// Opens both logs under `data_dir`, creating them with their headers if missing, and
    /// rebuilds room history from the end of `messages.csv`.
    pub fn open(
        data_dir: &std::path::Path,
        config: Config,
        bans: Arc<std::sync::RwLock<Bans>>,
        auth: Arc<Auth>,
    ) -> crate::Result<Hub<File>> {
        let mpath = data_dir.join(store::MESSAGES_FILE);
        let cpath = data_dir.join(store::CONNECTIONS_FILE);
        let (mfile, mlen) = store::open_log(&mpath, store::MESSAGES_HEADER)?;
        let (cfile, clen) = store::open_log(&cpath, store::CONNECTIONS_HEADER)?;
        let last_id = store::last_message_id(&mpath)?;
        let started = std::time::Instant::now();
        let loaded = rooms::load_history(
            &mpath,
            config.chat.history_keep,
            config.chat.history_scan_mib << 20,
            config.connection.max_line,
        )
        .map_err(|e| {
            crate::Error::io(format!("cannot read history from {}", mpath.display()), e)
        })?;
        for why in loaded.skipped.iter().take(5) {
            warn!("{}: {why}; left out of room history", mpath.display());
        }
        if loaded.skipped.len() > 5 {
            warn!(
                "{}: {} more rows left out of room history",
                mpath.display(),
                loaded.skipped.len() - 5
            );
        }
        info!(
            "{}: last message id {last_id}; history of {} rebuilt from the last {} ({} KiB) in {:?}",
            mpath.display(),
            crate::proto::count(loaded.rooms.len(), "room", "rooms"),
            crate::proto::count(loaded.rows, "row", "rows"),
            loaded.bytes / 1024,
            started.elapsed()
        );
        let mut hub = Hub::new(
            CsvLog::new(mfile, mlen, mpath),
            CsvLog::new(cfile, clen, cpath),
            last_id + 1,
            config,
            bans,
            auth,
        );
        hub.rooms.extend(loaded.rooms);
        hub.budget.adopt(&hub.rooms);
        Ok(hub)
    }
}

impl<W: LogFile> Hub<W> {
    /// A hub over two logs; the next message gets id `next_id`. How each log syncs follows
    /// `--fsync`: `messages.csv` at every commit unless `never`; `data.csv`, an audit trail
    /// rather than messages, at every commit only with `always`; with `batch` its rows are
    /// written at once and synced within a second (`sync_connections_when_due`), so a burst of
    /// connections does not cost an fsync each.
    pub fn new(
        messages: CsvLog<W>,
        connections: CsvLog<W>,
        next_id: u64,
        config: Config,
        bans: Arc<std::sync::RwLock<Bans>>,
        auth: Arc<Auth>,
    ) -> Hub<W> {
        let messages = messages.syncing(config.chat.fsync != Fsync::Never);
        let connections =
            logs::ConnectionLog(connections.syncing(config.chat.fsync == Fsync::Always));
        let mut rooms = HashMap::new();
        rooms.insert(proto::LOBBY.to_string(), Room::new(proto::LOBBY));
        let bans_seen = bans.read().unwrap_or_else(|p| p.into_inner()).generation();
        Hub {
            clients: HashMap::new(),
            names: NameMap::default(),
            rooms,
            messages,
            connections,
            next_id,
            config: config.clone(),
            send_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pending: Vec::new(),
            pending_history: Vec::new(),
            replies: Vec::new(),
            auth,
            mutes: HashMap::new(),
            budget: HistoryBudget::new(config.chat.history_mib.saturating_mul(1 << 20)),
            tick: 0,
            overflowed: Vec::new(),
            connections_sync_due: None,
            bans_seen,
            bans_check_due: std::time::Instant::now() + moderation::BANS_CHECK_EVERY,
            cluster: None,
            bans,
        }
    }

    /// Handles events until [`Event::Shutdown`] or until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        loop {
            let due = self
                .connections_sync_due
                .map_or(self.bans_check_due, |d| d.min(self.bans_check_due));
            let first = match events.recv_deadline(due) {
                Ok(event) => Some(event),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.sync_connections_when_due();
                    self.check_bans_when_due();
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
            };
            let Some(first) = first else { break };
            let mut stop = self.handle(first);
            let mut handled = 1;
            // A batch also ends once its deliveries add up: one `/history 200` is hundreds of
            // lines, and a batch of them must not grow without bound before anything is sent.
            while !stop && handled < MAX_BATCH && self.pending.len() < MAX_BATCH {
                match events.try_recv() {
                    Ok(ev) => stop = self.handle(ev),
                    Err(_) => break,
                }
                handled += 1;
            }
            self.flush();
            if stop {
                return;
            }
            self.share_members();
            self.check_bans_when_due();
        }
        self.stop_all();
    }

    /// Handles one event; true means stop.
    fn handle(&mut self, event: Event) -> bool {
        self.tick += 1;
        match event {
            Event::Connect {
                conn,
                peer,
                thread,
                outbox,
                via,
            } => {
                let client = Client {
                    name: None,
                    mode: Mode::Human,
                    outbox,
                    peer,
                    thread,
                    rooms: Vec::new(),
                    current: None,
                    away: None,
                    reply_to: None,
                    connected: store::now_timestamp(),
                    tokens: self.config.chat.msg_burst,
                    refilled: std::time::Instant::now(),
                    refused: 0,
                    account: None,
                };
                self.connections
                    .stage(&conn_row(conn, &client, ConnEvent::Connect, &via));
                self.clients.insert(conn, client);
            }
            Event::Hello { conn, who, reply } => {
                let granted = self.hello(conn, who);
                self.replies.push((reply, granted));
            }
            Event::Request { conn, req } => self.request(conn, req),
            Event::Gone { conn, reason } => self.remove(conn, &reason, None),
            Event::LoginFailed { conn, name, why } => {
                if let Some(client) = self.clients.get(&conn) {
                    let mut row = conn_row(conn, client, ConnEvent::LoginFailed, &why);
                    row.name = name;
                    self.connections.stage(&row);
                }
            }
            Event::Cluster(event) => self.on_cluster(event),
            Event::RoomList { reply } => {
                let _ = reply.try_send(self.room_list());
            }
            Event::Shutdown => {
                self.stop_all();
                return true;
            }
        }
        false
    }

    fn hello(&mut self, conn: u64, hello: Identity) -> bool {
        if let Some(refusal) = self.ban_refusal(&hello.name) {
            self.send_now(conn, hello.mode, &refusal);
            return false;
        }
        // An account's owner takes its name back from a guest who holds it (possible only if
        // the account was created while the guest was connected), and from a session of its
        // own (taken over: one left behind by a dropped network would hold the name until it
        // timed out). `hello.account` is set only once the account's password was checked.
        if let Some(account) = hello.account.as_deref()
            && let Some(&holder) = self.names.get(&hello.name)
            && holder != conn
            && let Some(held) = self.clients.get(&holder).map(|c| c.account.clone())
        {
            match held {
                None => self.expel(
                    holder,
                    "signed out: the name belongs to a registered account".into(),
                ),
                Some(held) if proto::names::same(&held, account) => self.take_over(holder, conn),
                // Another account's look-alike (unreachable while `Directory` lets nobody log
                // in to an account that looks like an earlier one): its password proves
                // nothing about this one, so the name stays taken.
                Some(_) => {}
            }
        }
        if let Some(refusal) = self.name_refusal(conn, &hello.name, hello.account.as_deref()) {
            self.send_now(conn, hello.mode, &refusal);
            return false;
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return false;
        };
        client.name = Some(hello.name.clone());
        client.mode = hello.mode;
        client.account = hello.account.clone();
        self.names.insert(&hello.name, conn);
        self.members_changed();
        let members = self.rooms.get(proto::LOBBY).map_or(0, |r| r.members.len()) + 1;
        let welcome = ServerMsg::Welcome {
            conn,
            name: hello.name,
            room: proto::LOBBY.to_string(),
            members,
            role: hello.standing,
            server: format!("chatroom {}", env!("CARGO_PKG_VERSION")),
        };
        self.push(Target::One(conn), welcome);
        if let Some(client) = self.clients.get(&conn) {
            let row = conn_row(conn, client, ConnEvent::Named, hello.standing.as_str());
            self.connections.stage(&row);
        }
        self.join(conn, proto::LOBBY);
        true
    }

    /// Ends a connection: delivers what is pending, then forgets the client, and queues
    /// `last` to it before its outbox closes.
    fn remove(&mut self, conn: u64, reason: &Disconnect, last: Option<ServerMsg>) {
        // Leaving changes who receives what: deliver what is queued to the old membership.
        self.flush();
        let Some(client) = self.forget(conn, reason) else {
            return;
        };
        if let Some(msg) = last {
            let _ = client
                .outbox
                .send(&Arc::from(proto::encode(&msg, client.mode)));
        }
        // End the connection's reader too (when the broadcaster is the one ending it, as for a
        // flood, the reader would otherwise wait on a client that has no reason to leave). The
        // writer still sends what is queued, then closes.
        client.outbox.shut_reading();
        debug!("conn {conn} removed: {reason}");
        // Dropping `client` drops the broadcaster's outbox sender: whoever drains the outbox
        // closes the connection once the reader has ended too.
    }

    /// Removes a client without flushing: frees its name, stages its `disconnect` row and
    /// queues the `left` notices to its rooms.
    fn forget(&mut self, conn: u64, reason: &Disconnect) -> Option<Client> {
        let rooms = self.clients.get(&conn)?.rooms.clone();
        for key in &rooms {
            self.part(conn, key, &reason.public());
        }
        let mut client = self.clients.remove(&conn)?;
        self.connections.stage(&conn_row(
            conn,
            &client,
            ConnEvent::Disconnect,
            &reason.detail(),
        ));
        if let Some(name) = client.name.take() {
            self.names.remove(&name);
            self.release_name(&name);
        }
        self.members_changed();
        Some(client)
    }

    /// Tells every client the server is stopping, writes their `disconnect` rows, and shuts
    /// their sockets for reading so their threads end.
    fn stop_all(&mut self) {
        self.flush();
        let ts = store::now_timestamp();
        let notice = ServerMsg::Bye {
            ts,
            reason: "the server is shutting down".to_string(),
        };
        let mut encoded: [Option<Bytes>; Mode::COUNT] = Default::default();
        let mut conns: Vec<u64> = self.clients.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            let client = self.clients.remove(&conn).expect("listed above");
            self.connections.stage(&conn_row(
                conn,
                &client,
                ConnEvent::Disconnect,
                &Disconnect::ServerShutdown.detail(),
            ));
            let bytes = encoded[client.mode.index()]
                .get_or_insert_with(|| Arc::from(proto::encode(&notice, client.mode)));
            // Sent, not pushed: an idle client takes it at once, with no writer thread.
            let _ = client.outbox.send(bytes);
            client.outbox.shut_reading();
        }
        self.names.clear();
        for room in self.rooms.values_mut() {
            room.members.clear();
        }
        self.log_server_event(ConnEvent::Stop, "shutdown");
        self.flush();
    }
}
