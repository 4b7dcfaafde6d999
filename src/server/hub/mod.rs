//! The broadcaster: one thread that owns membership, rooms, names and both CSV logs.
//!
//! Connection threads send it [`Event`]s over one crossbeam channel. It handles a batch of
//! queued events, appends their rows to `messages.csv` and `data.csv` in one write each, and
//! only then delivers. Because it is the only appender and delivers in the order it appended,
//! log order is delivery order, and nothing is delivered that did not reach the log first. It
//! never blocks on a client: see [`Outbox::deliver`]; a full outbox marks a slow consumer, which
//! is disconnected; nobody else waits for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info, warn};

mod moderation;
pub mod rooms;

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
use crate::store::{self, ConnRecord, CsvLog, Fsync, LogFile, MessageRecord};

/// The most events handled in one batch before the logs are written and the batch delivered,
/// and the most deliveries a batch gathers before it takes no more events: it bounds the
/// latency a busy channel adds to the first event of a batch, and the bytes one batch can put
/// in an outbox (256 lines of at most a few KiB, plus what the last event added: about 1 MiB
/// at worst, 2 MiB after a `/history` of the most that is kept).
const MAX_BATCH: usize = 256;

/// The fewest recipients per thread worth a helper thread for one segment.
const PARALLEL_SEND_MIN: usize = 1024;

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
    },
    /// A client asks for a name. The answer on `reply` is true when it was granted.
    Hello {
        conn: u64,
        who: Identity,
        reply: Sender<bool>,
    },
    /// A named client's request.
    Request { conn: u64, req: Request },
    /// The connection ended; `reason` goes to `data.csv`.
    Gone { conn: u64, reason: String },
    /// A login failed (wrong password, or no such account on a private server); logged in
    /// `data.csv` with the name that was tried.
    LoginFailed {
        conn: u64,
        name: String,
        why: String,
    },
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
    connections: CsvLog<W>,
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
    /// Every member of the room (by key). A human-mode sender does not get its own line
    /// echoed (its terminal already shows it); a JSON-mode sender does (it is the
    /// acknowledgement with the id).
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
        let sync = config.chat.fsync != Fsync::Never;
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
            "{}: last message id {last_id}; history of {} rooms rebuilt from the last {} rows ({} KiB) in {:?}",
            mpath.display(),
            loaded.rooms.len(),
            loaded.rows,
            loaded.bytes / 1024,
            started.elapsed()
        );
        let mut hub = Hub::new(
            CsvLog::new(mfile, mlen, mpath).syncing(sync),
            CsvLog::new(cfile, clen, cpath).syncing(sync),
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
    /// A hub over two logs; the next message gets id `next_id`.
    pub fn new(
        messages: CsvLog<W>,
        connections: CsvLog<W>,
        next_id: u64,
        config: Config,
        bans: Arc<std::sync::RwLock<Bans>>,
        auth: Arc<Auth>,
    ) -> Hub<W> {
        let mut rooms = HashMap::new();
        rooms.insert(proto::LOBBY.to_string(), Room::new(proto::LOBBY));
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
            bans,
            auth,
            mutes: HashMap::new(),
            budget: HistoryBudget::new(config.chat.history_mib.saturating_mul(1 << 20)),
            tick: 0,
            overflowed: Vec::new(),
        }
    }

    /// Writes a server-wide row (`start`, `stop`) to `data.csv` now.
    pub fn log_server_event(&mut self, event: &str, detail: &str) {
        self.connections.stage(&ConnRecord {
            timestamp: store::now_timestamp(),
            event: event.to_string(),
            conn: None,
            ip: String::new(),
            port: None,
            thread: String::new(),
            name: String::new(),
            detail: detail.to_string(),
        });
        if let Err(e) = self.connections.commit() {
            error!("{e}");
        }
    }

    /// Handles events until [`Event::Shutdown`] or until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        while let Ok(first) = events.recv() {
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
                    .stage(&conn_row(conn, &client, "connect", ""));
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
                    let mut row = conn_row(conn, client, "login_failed", &why);
                    row.name = name;
                    self.connections.stage(&row);
                }
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
        // the account was created while the guest was connected).
        if hello.account.is_some()
            && let Some(&holder) = self.names.get(&hello.name)
            && holder != conn
            && self
                .clients
                .get(&holder)
                .is_some_and(|c| c.account.is_none())
        {
            self.expel(
                holder,
                "signed out: the name belongs to a registered account",
            );
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
            let row = conn_row(conn, client, "named", hello.standing.as_str());
            self.connections.stage(&row);
        }
        self.join(conn, proto::LOBBY);
        true
    }

    fn request(&mut self, conn: u64, req: Request) {
        let is_message = matches!(
            req,
            Request::Say(_)
                | Request::SayIn { .. }
                | Request::Me(_)
                | Request::Msg { .. }
                | Request::Reply(_)
        );
        let cost = self.cost(conn, &req);
        if !self.within_rate(conn, cost, is_message) || (is_message && self.is_muted(conn)) {
            return;
        }
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        if client.name.is_none() {
            return;
        }
        match req {
            Request::Say(text) => match client.current.clone() {
                Some(room) => self.say(conn, &room, text, Kind::Message),
                None => self.no_room(conn),
            },
            Request::SayIn { room, text } => {
                let key = proto::room_key(&room);
                if self.is_member(conn, &key) {
                    self.say(conn, &key, text, Kind::Message);
                } else {
                    self.not_in(conn, &room);
                }
            }
            Request::Me(text) => match client.current.clone() {
                Some(room) => self.say(conn, &room, text, Kind::Action),
                None => self.no_room(conn),
            },
            Request::Msg { to, text } => self.direct(conn, &to, text),
            Request::Reply(text) => {
                let target = client
                    .reply_to
                    .and_then(|c| self.clients.get(&c))
                    .and_then(|c| c.name.clone());
                match target {
                    Some(to) => self.direct(conn, &to, text),
                    None => self.fail(
                        conn,
                        ErrorCode::NoReplyTarget,
                        "nobody connected now has sent you a direct message; use /msg NAME TEXT"
                            .into(),
                    ),
                }
            }
            Request::Join(room) => self.join(conn, &room),
            Request::Leave(room) => self.leave(conn, room),
            Request::Rooms => {
                let mut rooms: Vec<RoomInfo> = self
                    .rooms
                    .values()
                    .filter(|r| !r.members.is_empty())
                    .map(|r| RoomInfo {
                        name: r.name.clone(),
                        members: r.members.len(),
                    })
                    .collect();
                // The biggest first for the cut, then by name.
                rooms.sort_by_key(|r| std::cmp::Reverse(r.members));
                let more = rooms.len().saturating_sub(proto::MAX_ROOMS_LISTED);
                rooms.truncate(proto::MAX_ROOMS_LISTED);
                rooms.sort_by_key(|r| proto::room_key(&r.name));
                self.push(Target::One(conn), ServerMsg::Rooms { rooms, more });
            }
            Request::Who(room) => {
                let key = match room.as_deref().map(proto::room_key) {
                    Some(key) => key,
                    None => match client.current.clone() {
                        Some(key) => key,
                        None => return self.no_room(conn),
                    },
                };
                match self.users(&key) {
                    Some(users) => self.push(Target::One(conn), users),
                    None => self.fail(
                        conn,
                        ErrorCode::NoSuchRoom,
                        format!("there is no room {}", room.unwrap_or_default()),
                    ),
                }
            }
            Request::Switch(room) => {
                let key = proto::room_key(&room);
                if !self.is_member(conn, &key) {
                    return self.not_in(conn, &room);
                }
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.current = Some(key.clone());
                }
                let room = self.rooms[&key].name.clone();
                self.push(Target::One(conn), ServerMsg::Switched { room });
            }
            Request::Nick(new) => self.nick(conn, new),
            Request::Away(reason) => self.set_away(conn, Some(reason.unwrap_or_default())),
            Request::Back => self.set_away(conn, None),
            Request::Whois(name) => {
                let found = self.names.get(&name).and_then(|c| self.clients.get(c));
                match found {
                    Some(c) => {
                        let msg = ServerMsg::Whois {
                            name: c.name.clone().unwrap_or_default(),
                            rooms: c.rooms.iter().map(|k| self.rooms[k].name.clone()).collect(),
                            away: c.away.clone(),
                            connected: c.connected.clone(),
                        };
                        self.push(Target::One(conn), msg);
                    }
                    None => self.no_user(conn, &name),
                }
            }
            Request::History(n) => match client.current.clone() {
                Some(room) => {
                    let n = n.unwrap_or(self.config.chat.history.max(1));
                    self.send_history(conn, &room, n.min(self.config.chat.history_keep));
                }
                None => self.no_room(conn),
            },
            Request::Help => self.push(Target::One(conn), ServerMsg::help()),
            Request::Kick { .. }
            | Request::Ban { .. }
            | Request::Unban(_)
            | Request::Bans
            | Request::Mute { .. }
            | Request::Unmute(_)
            | Request::Op(_)
            | Request::Deop(_) => self.moderate(conn, req),
            // Handled by the connection thread; nothing reaches here.
            Request::Pong | Request::Paste => {}
            Request::Ping(id) => self.push(Target::One(conn), ServerMsg::Pong { id }),
            Request::Quit(reason) => {
                let reason = match reason {
                    Some(r) => format!("quit: {r}"),
                    None => "quit".to_string(),
                };
                let bye = ServerMsg::Bye {
                    ts: store::now_timestamp(),
                    reason: "you left; goodbye".to_string(),
                };
                self.remove(conn, &reason, Some(bye));
            }
        }
    }

    /// What a request costs from the client's token bucket: a message one token, a request
    /// that makes the server send a lot (history, a big room's member list) or that is
    /// announced to every room the client is in (a name change, away) more. Never more than
    /// a burst, so everything stays possible at the steady rate.
    fn cost(&self, conn: u64, req: &Request) -> f64 {
        let size = |n: usize| n as f64 / 25.0;
        let cost = match req {
            Request::Quit(_) | Request::Pong => 0.0,
            Request::Ping(_) => 0.2,
            Request::History(n) => 1.0 + size(n.unwrap_or(self.config.chat.history)),
            Request::Join(_) => 1.0 + size(self.config.chat.history),
            Request::Who(room) => {
                let key = room
                    .as_deref()
                    .map(proto::room_key)
                    .or_else(|| self.clients.get(&conn).and_then(|c| c.current.clone()));
                let members = key
                    .and_then(|k| self.rooms.get(&k))
                    .map_or(0, |r| r.members.len());
                1.0 + size(members / 4)
            }
            Request::Rooms => 1.0 + size(self.rooms.len().min(proto::MAX_ROOMS_LISTED) / 4),
            Request::Nick(_) | Request::Away(_) | Request::Back => 5.0,
            _ => 1.0,
        };
        cost.min(self.config.chat.msg_burst.max(1.0))
    }

    /// Takes `cost` tokens from `conn`'s bucket. When there are not enough, the request is
    /// refused with an error that says when to retry; too many refusals in a row disconnect
    /// the client (it may reconnect: this is not a ban).
    fn within_rate(&mut self, conn: u64, cost: f64, is_message: bool) -> bool {
        let rate = self.config.chat.msg_rate;
        let burst = self.config.chat.msg_burst.max(1.0);
        let flood_limit = self.config.chat.flood_limit;
        let Some(c) = self.clients.get_mut(&conn) else {
            return false;
        };
        if rate <= 0.0 || cost <= 0.0 {
            return true;
        }
        let now = std::time::Instant::now();
        c.tokens = (c.tokens + now.duration_since(c.refilled).as_secs_f64() * rate).min(burst);
        c.refilled = now;
        if c.tokens >= cost {
            c.tokens -= cost;
            c.refused = 0;
            return true;
        }
        c.refused += 1;
        if c.refused >= flood_limit {
            let bye = ServerMsg::Bye {
                ts: store::now_timestamp(),
                reason: format!(
                    "disconnected for flooding ({flood_limit} requests refused in a row); you may reconnect"
                ),
            };
            self.remove(conn, "flooding", Some(bye));
            return false;
        }
        let wait = ((cost - c.tokens) / rate * 1000.0).ceil() as u64;
        let message = if is_message {
            format!(
                "slow down: at most {rate} messages a second ({burst} at once); this one was not sent; retry in {:.1} s",
                wait as f64 / 1000.0
            )
        } else {
            format!(
                "slow down: too many requests (at most {rate} a second, heavier ones count more); this one was not done; retry in {:.1} s",
                wait as f64 / 1000.0
            )
        };
        let msg = ServerMsg::Error {
            code: ErrorCode::RateLimited,
            message,
            retry_after_ms: Some(wait),
        };
        self.push(Target::One(conn), msg);
        false
    }

    /// Assigns the next id and stages the `messages.csv` row; returns the message as sent.
    /// `room` is empty for a direct message, `to` set only for one. With `--fsync always` the
    /// row is written and synced at once; if that fails the sender (`conn`) is told and `None`
    /// comes back: the message must not be delivered.
    fn log_message(
        &mut self,
        conn: u64,
        room: &str,
        from: String,
        to: Option<String>,
        kind: Kind,
        text: String,
    ) -> Option<ChatMessage> {
        let id = self.next_id;
        self.next_id += 1;
        let ts = store::now_timestamp();
        self.messages.stage(&MessageRecord {
            id,
            timestamp: ts.clone(),
            room: room.to_string(),
            sender: from.clone(),
            recipient: to.clone().unwrap_or_default(),
            kind: kind.as_str().to_string(),
            text: text.clone(),
        });
        if self.config.chat.fsync == Fsync::Always
            && let Err(e) = self.messages.commit()
        {
            error!("{e}; the message was not delivered");
            self.storage_failed(conn);
            return None;
        }
        Some(ChatMessage {
            id,
            ts,
            room: room.to_string(),
            from,
            to,
            kind,
            text,
            history: false,
        })
    }

    /// Tells `conn` its message could not be logged, so it was not delivered.
    fn storage_failed(&mut self, conn: u64) {
        let err = ServerMsg::failure(
            ErrorCode::Storage,
            "the server could not save your message; it was not sent".to_string(),
        );
        if let Some(mode) = self.clients.get(&conn).map(|c| c.mode) {
            self.send_now(conn, mode, &err);
        }
    }

    /// Logs and delivers a message (or emote) from `conn` to the room `key`.
    fn say(&mut self, conn: u64, key: &str, text: String, kind: Kind) {
        let (Some(client), Some(room)) = (self.clients.get(&conn), self.rooms.get(key)) else {
            return;
        };
        let from = client.name.clone().unwrap_or_default();
        let room = room.name.clone();
        if let Some(r) = self.rooms.get_mut(key) {
            r.last_active = self.tick;
        }
        let Some(msg) = self.log_message(conn, &room, from, None, kind, text) else {
            return;
        };
        self.pending_history.push((key.to_string(), msg.clone()));
        self.pending.push(Delivery {
            target: Target::Room {
                room: key.to_string(),
                sender: Some(conn),
            },
            msg: ServerMsg::Message(msg),
            logged_by: Some(conn),
        });
    }

    /// Logs and delivers a direct message; only the two people concerned see it.
    fn direct(&mut self, conn: u64, to: &str, text: String) {
        let Some(&to_conn) = self.names.get(to) else {
            return self.no_user(conn, to);
        };
        let (Some(from), Some(recipient)) = (
            self.clients.get(&conn).and_then(|c| c.name.clone()),
            self.clients.get(&to_conn),
        ) else {
            return;
        };
        let to_name = recipient.name.clone().unwrap_or_default();
        let away = recipient.away.clone();
        let Some(msg) = self.log_message(conn, "", from, Some(to_name.clone()), Kind::Direct, text)
        else {
            return;
        };
        let targets = if to_conn == conn {
            vec![conn]
        } else {
            vec![to_conn, conn]
        };
        self.pending.push(Delivery {
            target: Target::Set(targets),
            msg: ServerMsg::Message(msg),
            logged_by: Some(conn),
        });
        if let Some(r) = self.clients.get_mut(&to_conn) {
            r.reply_to = Some(conn);
        }
        if let Some(reason) = away {
            let text = if reason.is_empty() {
                format!("{to_name} is away")
            } else {
                format!("{to_name} is away: {reason}")
            };
            let ts = store::now_timestamp();
            self.push(Target::One(conn), ServerMsg::System { ts, text });
        }
    }

    /// Adds `conn` to a room (created if new) and makes it current; tells the room and sends
    /// the joiner the member list and the room's recent history.
    fn join(&mut self, conn: u64, room: &str) {
        let key = proto::room_key(room);
        if self.is_member(conn, &key) {
            if let Some(c) = self.clients.get_mut(&conn) {
                c.current = Some(key.clone());
            }
            let room = self.rooms[&key].name.clone();
            return self.push(Target::One(conn), ServerMsg::Switched { room });
        }
        let max = self.config.chat.max_rooms_per_client;
        if self
            .clients
            .get(&conn)
            .is_some_and(|c| c.rooms.len() >= max)
        {
            let msg =
                format!("you are in {max} rooms, the most one connection may be; /leave one first");
            return self.fail(conn, ErrorCode::TooManyRooms, msg);
        }
        if !self.rooms.contains_key(&key) && !self.make_room() {
            let msg = format!(
                "the server has {} rooms, all in use, the most it keeps; join one of them (/rooms)",
                self.rooms.len()
            );
            return self.fail(conn, ErrorCode::TooManyRooms, msg);
        }
        // Joining changes who receives what: deliver what is queued to the old membership.
        self.flush();
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let name = client.name.clone().unwrap_or_default();
        client.rooms.push(key.clone());
        client.current = Some(key.clone());
        let room = self
            .rooms
            .entry(key.clone())
            .or_insert_with(|| Room::new(room));
        room.members.insert(conn);
        room.last_active = self.tick;
        let members = room.members.len();
        let display = room.name.clone();
        let joined = ServerMsg::Joined {
            ts: store::now_timestamp(),
            room: display,
            name,
        };
        self.push(Target::One(conn), joined.clone());
        if members <= self.config.chat.notice_limit {
            if let Some(users) = self.users(&key) {
                self.push(Target::One(conn), users);
            }
            self.push(
                Target::RoomExcept {
                    room: key.clone(),
                    except: conn,
                },
                joined,
            );
        }
        if self.config.chat.history > 0 {
            self.send_history(conn, &key, self.config.chat.history);
        }
    }

    /// Sends the last `n` messages of a room to `conn`, then the end-of-history marker.
    fn send_history(&mut self, conn: u64, key: &str, n: usize) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let recent: Vec<ChatMessage> = room.recent(n).collect();
        let end = ServerMsg::HistoryEnd {
            room: room.name.clone(),
            count: recent.len(),
        };
        for m in recent {
            self.push(Target::One(conn), ServerMsg::Message(m));
        }
        self.push(Target::One(conn), end);
    }

    /// `/leave [ROOM]`.
    fn leave(&mut self, conn: u64, room: Option<String>) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let key = match room.as_deref().map(proto::room_key) {
            Some(key) => key,
            None => match client.current.clone() {
                Some(key) => key,
                None => return self.no_room(conn),
            },
        };
        if !self.is_member(conn, &key) {
            return self.not_in(conn, room.as_deref().unwrap_or(&key));
        }
        // Leaving changes who receives what: deliver what is queued to the old membership.
        self.flush();
        // The flush may have dropped this client (a slow consumer), and its rooms with it.
        if !self.is_member(conn, &key) {
            return;
        }
        if let Some(left) = self.part(conn, &key, "left") {
            self.push(Target::One(conn), left);
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.current.as_deref() == Some(key.as_str()) {
            client.current = client.rooms.last().cloned();
            if let Some(next) = client.current.clone() {
                let room = self.rooms[&next].name.clone();
                self.push(Target::One(conn), ServerMsg::Switched { room });
            }
        }
    }

    /// Takes `conn` out of a room without flushing, tells the room (below the notice limit),
    /// and returns the `left` event for the one who left.
    fn part(&mut self, conn: u64, key: &str, reason: &str) -> Option<ServerMsg> {
        let name = self
            .clients
            .get_mut(&conn)
            .map(|c| {
                c.rooms.retain(|r| r != key);
                c.name.clone().unwrap_or_default()
            })
            .unwrap_or_default();
        let room = self.rooms.get_mut(key)?;
        let before = room.members.len();
        room.members.remove(&conn);
        room.last_active = self.tick;
        let left = ServerMsg::Left {
            ts: store::now_timestamp(),
            room: room.name.clone(),
            name,
            reason: reason.to_string(),
        };
        if before <= self.config.chat.notice_limit {
            self.push(
                Target::Room {
                    room: key.to_string(),
                    sender: None,
                },
                left.clone(),
            );
        }
        self.drop_if_unused(key);
        Some(left)
    }

    /// `/nick NEW`: for guests only (an account's name is the account's), to a name nobody
    /// connected holds or resembles, that no account owns and that is not banned; logged in
    /// `data.csv`, told to everyone who shares a room (below the notice limit) and to the
    /// client itself. A muted guest keeps its name until the mute ends.
    fn nick(&mut self, conn: u64, new: String) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        if let Some(account) = &client.account {
            let msg = format!("you are logged in as {account}: an account's name cannot change");
            return self.fail(conn, ErrorCode::NotAllowed, msg);
        }
        if let Some(muted) = self.muted(conn) {
            let msg = format!("{muted}; you cannot change your name while muted");
            return self.fail(conn, ErrorCode::Muted, msg);
        }
        if let Some(refusal) = self.name_refusal(conn, &new, None) {
            return self.push(Target::One(conn), refusal);
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let old = client.name.replace(new.clone()).unwrap_or_default();
        self.names.remove(&old);
        self.names.insert(&new, conn);
        if let Some(client) = self.clients.get(&conn) {
            let row = conn_row(conn, client, "nick", &format!("{old} -> {new}"));
            self.connections.stage(&row);
        }
        let msg = ServerMsg::Nick {
            ts: store::now_timestamp(),
            old,
            new,
        };
        let audience = self.audience(conn);
        self.push(Target::Set(audience), msg);
    }

    /// Why `conn` may not take `name` now, as the account `account` (or as a guest), if it
    /// may not: the name is banned, belongs to an account that is not this one, or is held by
    /// (or looks like the name of) someone else connected.
    fn name_refusal(&self, conn: u64, name: &str, account: Option<&str>) -> Option<ServerMsg> {
        if let Some(refusal) = self.ban_refusal(name) {
            return Some(refusal);
        }
        if account.is_none()
            && let Some(owner) = self.auth.directory.lookup(name)
        {
            let msg = if crate::proto::names::fold(&owner.name) == crate::proto::names::fold(name) {
                format!("{name} is a registered name: to use it, log in as {name}")
            } else {
                format!(
                    "{name} looks like the registered name {}: choose another",
                    owner.name
                )
            };
            return Some(ServerMsg::failure(ErrorCode::NameTaken, msg));
        }
        let holder = self.names.get(name)?;
        if *holder == conn {
            return None;
        }
        let holder = self.clients.get(holder)?.name.clone().unwrap_or_default();
        let err = ProtocolError::NameTaken {
            name: name.to_string(),
            holder,
        };
        Some(ServerMsg::error(&err))
    }

    /// The refusal of a banned name (or a look-alike of one), if it is banned.
    fn ban_refusal(&self, name: &str) -> Option<ServerMsg> {
        let ban = self
            .bans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .for_name(name)
            .map(|b| b.describe())?;
        let msg = format!("the name {name} is banned {ban}");
        Some(ServerMsg::failure(ErrorCode::Banned, msg))
    }

    /// What `conn` may do: its account's role in `users.csv` now (so `/deop`, or an edit of
    /// the file, takes effect at once), or guest.
    fn standing(&self, conn: u64) -> Standing {
        self.clients
            .get(&conn)
            .and_then(|c| c.account.as_deref())
            .and_then(|a| self.auth.directory.lookup(a))
            .map_or(Standing::Guest, |a| a.role.into())
    }

    /// Makes room for one more room: true when there is room already or the longest-idle
    /// empty room (never the lobby) was forgotten to make it.
    fn make_room(&mut self) -> bool {
        if self.rooms.len() < self.config.chat.max_rooms {
            return true;
        }
        let idle = self
            .rooms
            .iter()
            .filter(|(k, r)| r.members.is_empty() && k.as_str() != proto::LOBBY)
            .filter(|(k, _)| !self.pending_history.iter().any(|(p, _)| p == *k))
            .min_by_key(|(_, r)| r.last_active)
            .map(|(k, _)| k.clone());
        match idle.and_then(|k| self.rooms.remove(&k)) {
            Some(room) => {
                self.budget.forget_room(&room);
                true
            }
            None => false,
        }
    }

    /// Forgets the room `key` if nobody is in it and it has no history to offer (the lobby
    /// stays): rooms cost memory, and one guest could otherwise create a million.
    fn drop_if_unused(&mut self, key: &str) {
        let unused = key != proto::LOBBY
            && self
                .rooms
                .get(key)
                .is_some_and(|r| r.members.is_empty() && r.history.is_empty())
            && !self.pending_history.iter().any(|(p, _)| p == key);
        if unused {
            self.rooms.remove(key);
        }
    }

    /// `/away [REASON]` and `/back`.
    fn set_away(&mut self, conn: u64, away: Option<String>) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.away = away.clone();
        let msg = ServerMsg::Presence {
            ts: store::now_timestamp(),
            name: client.name.clone().unwrap_or_default(),
            away,
        };
        let audience = self.audience(conn);
        self.push(Target::Set(audience), msg);
    }

    /// `conn` and everyone who shares a room with it, each once; rooms above the notice limit
    /// are left out.
    fn audience(&self, conn: u64) -> Vec<u64> {
        let mut seen: HashSet<u64> = HashSet::new();
        seen.insert(conn);
        let mut out = vec![conn];
        if let Some(client) = self.clients.get(&conn) {
            for key in &client.rooms {
                let room = &self.rooms[key];
                if room.members.len() > self.config.chat.notice_limit {
                    continue;
                }
                for &m in &room.members {
                    if seen.insert(m) {
                        out.push(m);
                    }
                }
            }
        }
        out
    }

    fn is_member(&self, conn: u64, key: &str) -> bool {
        self.clients
            .get(&conn)
            .is_some_and(|c| c.rooms.iter().any(|r| r == key))
    }

    /// The `users` event for a room, names sorted case-insensitively; `None` if no such room.
    fn users(&self, key: &str) -> Option<ServerMsg> {
        let room = self.rooms.get(key)?;
        let mut users = Vec::with_capacity(room.members.len());
        let mut away = BTreeMap::new();
        for c in room.members.iter().filter_map(|m| self.clients.get(m)) {
            let Some(name) = c.name.clone() else { continue };
            if let Some(reason) = &c.away {
                away.insert(name.clone(), reason.clone());
            }
            users.push(name);
        }
        users.sort_by_key(|n| crate::proto::names::fold(n));
        Some(ServerMsg::Users {
            room: room.name.clone(),
            users,
            away,
        })
    }

    fn fail(&mut self, conn: u64, code: ErrorCode, message: String) {
        self.push(Target::One(conn), ServerMsg::failure(code, message));
    }

    fn no_room(&mut self, conn: u64) {
        self.fail(
            conn,
            ErrorCode::NoRoom,
            "you are in no room; /join ROOM first".into(),
        );
    }

    fn not_in(&mut self, conn: u64, room: &str) {
        self.fail(
            conn,
            ErrorCode::NotInRoom,
            format!("you are not in {room}; /join {room} first"),
        );
    }

    fn no_user(&mut self, conn: u64, name: &str) {
        let name = proto::printable(name);
        self.fail(
            conn,
            ErrorCode::NoSuchUser,
            format!("nobody named {name} is connected"),
        );
    }

    /// Ends a connection: delivers what is pending, then forgets the client, and queues
    /// `last` to it before its outbox closes.
    fn remove(&mut self, conn: u64, reason: &str, last: Option<ServerMsg>) {
        // Leaving changes who receives what: deliver what is queued to the old membership.
        self.flush();
        let Some(client) = self.forget(conn, reason) else {
            return;
        };
        if let Some(msg) = last {
            let _ = client
                .outbox
                .push(Arc::from(proto::encode(&msg, client.mode)));
        }
        // End the connection's reader too (when the broadcaster is the one ending it, as for a
        // flood, the reader would otherwise wait on a client that has no reason to leave). The
        // writer still sends what is queued, then closes.
        client.outbox.shut_reading();
        debug!("conn {conn} removed: {reason}");
        // Dropping `client` drops the broadcaster's outbox sender: the writer thread ends
        // once the connection thread has ended too.
    }

    /// Removes a client without flushing: frees its name, stages its `disconnect` row and
    /// queues the `left` notices to its rooms.
    fn forget(&mut self, conn: u64, reason: &str) -> Option<Client> {
        let rooms = self.clients.get(&conn)?.rooms.clone();
        for key in &rooms {
            self.part(conn, key, public_reason(reason));
        }
        let mut client = self.clients.remove(&conn)?;
        self.connections
            .stage(&conn_row(conn, &client, "disconnect", reason));
        if let Some(name) = client.name.take() {
            self.names.remove(&name);
        }
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
            self.connections
                .stage(&conn_row(conn, &client, "disconnect", "server shutdown"));
            let bytes = encoded[client.mode.index()]
                .get_or_insert_with(|| Arc::from(proto::encode(&notice, client.mode)));
            let _ = client.outbox.push(bytes.clone());
            client.outbox.shut_reading();
        }
        self.names.clear();
        for room in self.rooms.values_mut() {
            room.members.clear();
        }
        self.log_server_event("stop", "shutdown");
        self.flush();
    }

    /// Queues a delivery that has no log row of its own.
    fn push(&mut self, target: Target, msg: ServerMsg) {
        self.pending.push(Delivery {
            target,
            msg,
            logged_by: None,
        });
    }

    /// Sends to one client at once, outside the batch: only for answers that change nothing
    /// and are not logged (a refused name, a failed write). A client whose outbox is full is a
    /// slow consumer like any other: its socket is shut now and it is removed at the flush.
    fn send_now(&mut self, conn: u64, mode: Mode, msg: &ServerMsg) {
        if let Some(client) = self.clients.get(&conn)
            && client.outbox.push(Arc::from(proto::encode(msg, mode))) == Err(PushError::Full)
        {
            client.outbox.abandon();
            if !self.overflowed.contains(&conn) {
                self.overflowed.push(conn);
            }
        }
    }

    /// Writes what is staged to both logs, then delivers what is pending. Clients found slow
    /// while delivering are disconnected, which may queue more (their `left` notices).
    fn flush(&mut self) {
        loop {
            if let Err(e) = self.connections.commit() {
                error!("{e}");
            }
            match self.messages.commit() {
                Ok(()) => {
                    let keep = self.config.chat.history_keep;
                    for (key, msg) in std::mem::take(&mut self.pending_history) {
                        for emptied in self.budget.remember(&mut self.rooms, &key, msg, keep) {
                            self.drop_if_unused(&emptied);
                        }
                    }
                }
                Err(e) => {
                    error!("{e}; the messages of this batch were not delivered");
                    self.pending_history.clear();
                    self.refuse_unlogged_messages();
                }
            }
            if self.pending.is_empty() && self.overflowed.is_empty() {
                for (reply, granted) in self.replies.drain(..) {
                    // The connection thread may have gone; then nobody waits for the answer.
                    let _ = reply.send(granted);
                }
                return;
            }
            let started = std::time::Instant::now();
            let mut slow = self.deliver();
            for conn in std::mem::take(&mut self.overflowed) {
                if !slow.contains(&conn) {
                    slow.push(conn);
                }
            }
            let took = started.elapsed();
            if took > std::time::Duration::from_millis(5) {
                debug!("delivering a batch took {took:?}");
            }
            for conn in slow {
                if let Some(client) = self.clients.get(&conn) {
                    warn!(
                        "conn {conn} ({}) is a slow consumer: its outbox is full; disconnecting",
                        client.name.as_deref().unwrap_or("unnamed")
                    );
                    client.outbox.abandon();
                }
                // Removed without flushing: this loop is the flush.
                self.forget(conn, SLOW_CONSUMER);
            }
        }
    }

    /// The log write failed: no message of this batch may be delivered. Each sender is told
    /// once; other deliveries (notices) go ahead.
    fn refuse_unlogged_messages(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut told: Vec<u64> = Vec::new();
        for d in pending {
            match d.logged_by {
                Some(conn) => {
                    if !told.contains(&conn) {
                        told.push(conn);
                        self.storage_failed(conn);
                    }
                }
                None => self.pending.push(d),
            }
        }
    }

    /// Hands every pending delivery to its recipients; returns the slow consumers.
    ///
    /// Consecutive deliveries to the same room form a segment. Each is encoded once per mode,
    /// and the segment is concatenated once per mode, so a member gets the whole segment in one
    /// send (or one outbox push). Only the few members for whom the segment differs (a
    /// human-mode sender, who is not echoed; the one a `RoomExcept` leaves out) get bytes of
    /// their own.
    fn deliver(&mut self) -> Vec<u64> {
        let mut slow: Vec<u64> = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < pending.len() {
            let Some(room) = pending[i].target.room() else {
                let conns: &[u64] = match &pending[i].target {
                    Target::One(conn) => std::slice::from_ref(conn),
                    Target::Set(conns) => conns,
                    _ => unreachable!("room targets are handled below"),
                };
                let mut encoded: [Option<Bytes>; Mode::COUNT] = Default::default();
                for &conn in conns {
                    if let Some(c) = self.clients.get(&conn) {
                        let bytes = encoded[c.mode.index()].get_or_insert_with(|| {
                            Arc::from(proto::encode(&pending[i].msg, c.mode))
                        });
                        send(conn, c, bytes, &mut slow);
                    }
                }
                i += 1;
                continue;
            };
            let end = pending[i..]
                .iter()
                .position(|d| d.target.room() != Some(room))
                .map_or(pending.len(), |n| i + n);
            self.deliver_segment(room, &pending[i..end], &mut slow);
            i = end;
        }
        slow
    }

    /// Delivers a run of deliveries to one room; see [`Hub::deliver`].
    fn deliver_segment(&self, key: &str, seg: &[Delivery], slow: &mut Vec<u64>) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        // Who gets something other than the whole segment.
        let mut special: Vec<u64> = Vec::new();
        for d in seg {
            let conn = match d.target {
                Target::Room {
                    sender: Some(s), ..
                } => match self.clients.get(&s) {
                    Some(c) if !c.mode.echoes_own_messages() => s,
                    _ => continue,
                },
                Target::RoomExcept { except, .. } => except,
                _ => continue,
            };
            if !special.contains(&conn) {
                special.push(conn);
            }
        }
        let mut parts = Encoded::new(seg);
        let mut whole: [Option<Bytes>; Mode::COUNT] = Default::default();
        let mut everyone: Vec<(u64, &Client)> = Vec::with_capacity(room.members.len());
        for &conn in &room.members {
            let Some(client) = self.clients.get(&conn) else {
                continue;
            };
            if slow.contains(&conn) {
                continue;
            }
            if special.contains(&conn) {
                let mut own = Vec::new();
                for (k, d) in seg.iter().enumerate() {
                    let skip = match d.target {
                        Target::Room { sender, .. } => sender == Some(conn),
                        Target::RoomExcept { except, .. } => except == conn,
                        _ => true,
                    };
                    if !skip {
                        own.extend_from_slice(parts.get(k, client.mode));
                    }
                }
                if !own.is_empty() {
                    send(conn, client, &Arc::from(own), slow);
                }
                continue;
            }
            whole[client.mode.index()].get_or_insert_with(|| {
                let mut all = Vec::new();
                for k in 0..seg.len() {
                    all.extend_from_slice(parts.get(k, client.mode));
                }
                Arc::from(all)
            });
            everyone.push((conn, client));
        }
        let send_all = |part: &[(u64, &Client)]| {
            let mut slow = Vec::new();
            for &(conn, client) in part {
                let bytes = whole[client.mode.index()].as_ref().expect("encoded above");
                send(conn, client, bytes, &mut slow);
            }
            slow
        };
        // A send costs microseconds (over loopback it includes the receiver's TCP work), so a
        // room of thousands is split across the cores; small rooms stay on this thread.
        let workers = (everyone.len() / PARALLEL_SEND_MIN).clamp(1, self.send_threads);
        if workers == 1 {
            slow.extend(send_all(&everyone));
            return;
        }
        let chunk = everyone.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let helpers: Vec<_> = everyone[chunk..]
                .chunks(chunk)
                .map(|part| scope.spawn(|| send_all(part)))
                .collect();
            slow.extend(send_all(&everyone[..chunk]));
            for h in helpers {
                slow.extend(h.join().expect("a send helper panicked"));
            }
        });
    }
}

/// Hands `bytes` to one client, noting it as slow if its outbox is full.
fn send(conn: u64, client: &Client, bytes: &Bytes, slow: &mut Vec<u64>) {
    match client.outbox.send(bytes) {
        Ok(()) => {}
        Err(PushError::Full) => {
            if !slow.contains(&conn) {
                slow.push(conn);
            }
        }
        // The writer is gone; the connection thread reports the end.
        Err(PushError::Closed) => {}
    }
}

/// The encodings of a segment's deliveries, made on first need, once per mode.
struct Encoded<'a> {
    seg: &'a [Delivery],
    /// Indexed by [`Mode::index`], then by position in the segment.
    bytes: [Vec<Option<Vec<u8>>>; Mode::COUNT],
}

impl<'a> Encoded<'a> {
    fn new(seg: &'a [Delivery]) -> Encoded<'a> {
        Encoded {
            seg,
            bytes: std::array::from_fn(|_| vec![None; seg.len()]),
        }
    }

    fn get(&mut self, k: usize, mode: Mode) -> &[u8] {
        self.bytes[mode.index()][k].get_or_insert_with(|| proto::encode(&self.seg[k].msg, mode))
    }
}

/// The `data.csv` row of one connection event.
fn conn_row(conn: u64, client: &Client, event: &str, detail: &str) -> ConnRecord {
    ConnRecord {
        timestamp: store::now_timestamp(),
        event: event.to_string(),
        conn: Some(conn),
        ip: client.peer.ip().to_string(),
        port: Some(client.peer.port()),
        thread: client.thread.clone(),
        name: client.name.clone().unwrap_or_default(),
        detail: detail.to_string(),
    }
}

/// The `data.csv` reason for a client disconnected because its outbox was full.
pub(crate) const SLOW_CONSUMER: &str = "slow consumer: outbox full";

/// The part of a disconnect reason the other members see.
fn public_reason(reason: &str) -> &str {
    if reason.starts_with("quit") {
        reason
    } else if reason == SLOW_CONSUMER {
        "too slow to keep up"
    } else if reason.contains("timeout") {
        "timed out"
    } else if reason == "flooding" {
        "disconnected for flooding"
    } else if reason.starts_with("kicked") || reason.starts_with("banned") {
        reason
    } else {
        "connection closed"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::login::{Checker, Throttle};
    use crate::server::outbox::{OutboxReceiver, queued};
    use crate::store::users::Directory;

    /// A hub over in-memory logs; its clients are outboxes, with no socket at all.
    struct Rig {
        hub: Hub<Vec<u8>>,
        _dir: tempfile::TempDir,
    }

    fn rig(config: Config) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let auth = Arc::new(Auth {
            directory: Directory::open(dir.path().join("users.csv")).unwrap(),
            throttle: Throttle::new(Duration::ZERO, Duration::from_secs(60), 10),
            checker: Checker::new(1, 4).unwrap(),
            private: false,
        });
        let bans = Arc::new(std::sync::RwLock::new(Bans::open(dir.path()).unwrap()));
        let messages = CsvLog::new(Vec::new(), 0, "messages".into());
        let connections = CsvLog::new(Vec::new(), 0, "connections".into());
        Rig {
            hub: Hub::new(messages, connections, 1, config, bans, auth),
            _dir: dir,
        }
    }

    impl Rig {
        /// A guest named `name` whose outbox holds at most `limit` bytes. Queued, so
        /// everything for it goes through the outbox, where the test reads it.
        fn client(&mut self, conn: u64, name: &str, limit: usize) -> OutboxReceiver {
            let (tx, rx) = queued(None, limit, None);
            self.hub.handle(Event::Connect {
                conn,
                peer: "127.0.0.1:1".parse().unwrap(),
                thread: "t".into(),
                outbox: tx,
            });
            let (reply, granted) = crossbeam_channel::bounded(1);
            let who = Identity::guest(Mode::Human, name.into());
            self.hub.handle(Event::Hello { conn, who, reply });
            self.hub.flush();
            assert_eq!(granted.try_recv(), Ok(true));
            drain(&rx);
            rx
        }

        fn request(&mut self, conn: u64, req: Request) {
            self.hub.handle(Event::Request { conn, req });
        }
    }

    fn drain(rx: &OutboxReceiver) -> Vec<u8> {
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            rx.written(crate::server::outbox::charge(&b));
            out.extend_from_slice(&b);
        }
        out
    }

    /// A client dropped as a slow consumer by the flush that `/leave` starts takes its empty
    /// room with it; the leave must then find nothing to do, not a missing room.
    #[test]
    fn leaving_after_being_dropped_in_the_same_batch_is_harmless() {
        let help = proto::encode(&ServerMsg::help(), Mode::Human).len();
        let mut r = rig(Config::default());
        let rx = r.client(1, "alice", help);
        r.request(1, Request::Join("zzz".into()));
        r.hub.flush();
        drain(&rx);
        // Something left in the outbox, so the big answer next does not fit.
        r.request(1, Request::Ping(None));
        r.hub.flush();
        r.request(1, Request::Help);
        r.request(1, Request::Leave(None));
        r.hub.flush();
        assert!(
            !r.hub.clients.contains_key(&1),
            "dropped as a slow consumer"
        );
        assert!(!r.hub.rooms.contains_key("zzz"), "its empty room freed");
        // The broadcaster goes on serving.
        let rx2 = r.client(2, "bob", 1 << 20);
        r.request(2, Request::Ping(None));
        r.hub.flush();
        assert!(String::from_utf8(drain(&rx2)).unwrap().contains("* pong"));
    }
}
