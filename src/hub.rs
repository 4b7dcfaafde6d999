//! The broadcaster: one thread that owns membership and both CSV logs.
//!
//! Connection threads send it [`Event`]s over one crossbeam channel. It handles a batch of
//! queued events, appends their rows to `messages.csv` and `data.csv` in one write each, and
//! only then hands the encoded bytes to each recipient's bounded outbox. Because it is the only
//! appender and delivers in the order it appended, log order is delivery order, and nothing is
//! delivered that did not reach the log first. It never touches a socket's data path: a full
//! outbox marks a slow consumer, which is disconnected; nobody else waits for it.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info, warn};

use crate::outbox::{Outbox, PushError};
use crate::protocol::{
    self, ChatMessage, ErrorCode, Hello, Mode, ProtocolError, Request, ServerMsg,
};
use crate::storage::{self, ConnRecord, CsvLog, MessageRecord};

/// Encoded bytes shared by every recipient of one message.
pub type Bytes = Arc<[u8]>;

/// The most events handled in one batch before the logs are written and the batch delivered;
/// it bounds the latency a busy channel adds to the first event of a batch.
const MAX_BATCH: usize = 1024;

/// The batch size for outboxes of `outbox` messages: at most half an outbox, so one batch
/// alone never fills the outbox of a client that is keeping up; only a client already more
/// than half an outbox behind can be found slow.
pub fn batch_size(outbox: usize) -> usize {
    (outbox / 2).clamp(1, MAX_BATCH)
}

/// Everything a connection thread (or the accept loop) can tell the broadcaster.
pub enum Event {
    /// A connection was accepted; sent by the accept loop before the connection's threads start.
    Connect {
        conn: u64,
        peer: SocketAddr,
        /// The name of the thread that reads this connection, as written to `data.csv`.
        thread: String,
        outbox: Outbox,
        /// A handle used only to shut the socket down (slow consumer, server stop).
        stream: Arc<TcpStream>,
    },
    /// A client asks for a name. The answer on `reply` is true when it was granted.
    Hello {
        conn: u64,
        hello: Hello,
        reply: Sender<bool>,
    },
    /// A named client's request.
    Request { conn: u64, req: Request },
    /// The connection ended; `reason` goes to `data.csv`.
    Gone { conn: u64, reason: String },
    /// The server is stopping: tell everyone, write the last rows, return.
    Shutdown,
}

/// The broadcaster's state. Built by the server, then moved into its thread by [`Hub::run`].
pub struct Hub<W: std::io::Write = File> {
    /// Every connection that has not ended, named or not.
    clients: HashMap<u64, Client>,
    /// Names in use, by [`protocol::name_key`], for case-insensitive uniqueness.
    names: HashMap<String, u64>,
    /// `messages.csv`.
    messages: CsvLog<W>,
    /// `data.csv`.
    connections: CsvLog<W>,
    /// The id the next message gets; ids continue from the log across restarts.
    next_id: u64,
    /// The most events per batch; see [`batch_size`].
    max_batch: usize,
    /// Rooms with more members than this get no join/leave notices and no member list on
    /// joining: in a reconnect storm those would cost O(n^2) writes.
    notice_limit: usize,
    /// How many threads may send one segment to a very large room (the cores).
    send_threads: usize,
    /// Events already logged (staged) but not yet delivered, in log order.
    pending: Vec<Delivery>,
    /// Answers to `Hello`s, sent once the batch holding their welcome has been delivered, so
    /// nothing the connection thread sends itself can overtake the welcome.
    replies: Vec<(Sender<bool>, bool)>,
}

/// What the broadcaster knows of one connection.
struct Client {
    /// Set when the handshake succeeds; unnamed clients are in no room.
    name: Option<String>,
    /// How this client's events are encoded.
    mode: Mode,
    /// The client's bounded queue, drained by its writer thread.
    outbox: Outbox,
    /// Kept to shut the socket down; never read or written here.
    stream: Arc<TcpStream>,
    /// For the `data.csv` rows.
    peer: SocketAddr,
    /// For the `data.csv` rows.
    thread: String,
}

/// One event waiting for the logs to be written.
struct Delivery {
    target: Target,
    msg: ServerMsg,
    /// For chat messages: the sender, told if the log write fails.
    sender: Option<u64>,
}

/// Who receives a delivery.
enum Target {
    /// Every named client; a human-mode sender does not get its own line echoed (its terminal
    /// already shows it), a JSON-mode sender does (it is the acknowledgement with the id).
    Room { sender: Option<u64> },
    /// Every named client except one (the one who just joined).
    RoomExcept(u64),
    /// One client.
    One(u64),
}

impl Hub<File> {
    /// Opens both logs under `data_dir`, creating them with their headers if missing.
    pub fn open(data_dir: &std::path::Path) -> crate::Result<Hub<File>> {
        let mpath = data_dir.join(storage::MESSAGES_FILE);
        let cpath = data_dir.join(storage::CONNECTIONS_FILE);
        let mfile = storage::open_log(&mpath, storage::MESSAGES_HEADER)?;
        let cfile = storage::open_log(&cpath, storage::CONNECTIONS_HEADER)?;
        let last_id = storage::last_message_id(&mpath)?;
        info!("{}: last message id {last_id}", mpath.display());
        Ok(Hub::new(
            CsvLog::new(mfile, mpath),
            CsvLog::new(cfile, cpath),
            last_id + 1,
        ))
    }
}

impl<W: std::io::Write> Hub<W> {
    /// A hub over two logs; the next message gets id `next_id`.
    pub fn new(messages: CsvLog<W>, connections: CsvLog<W>, next_id: u64) -> Hub<W> {
        Hub {
            clients: HashMap::new(),
            names: HashMap::new(),
            messages,
            connections,
            next_id,
            max_batch: MAX_BATCH,
            notice_limit: usize::MAX,
            send_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pending: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Suppresses join/leave notices in rooms of more than `limit` members.
    pub fn with_notice_limit(mut self, limit: usize) -> Hub<W> {
        self.notice_limit = limit;
        self
    }

    /// Sizes batches for client outboxes of `outbox` messages.
    pub fn with_outbox(mut self, outbox: usize) -> Hub<W> {
        self.max_batch = batch_size(outbox);
        self
    }

    /// Writes a server-wide row (`start`, `stop`) to `data.csv` now.
    pub fn log_server_event(&mut self, event: &str, detail: &str) {
        self.connections.stage(&ConnRecord {
            timestamp: storage::now_timestamp(),
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
            while !stop && handled < self.max_batch {
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
        match event {
            Event::Connect {
                conn,
                peer,
                thread,
                outbox,
                stream,
            } => {
                let client = Client {
                    name: None,
                    mode: Mode::Human,
                    outbox,
                    stream,
                    peer,
                    thread,
                };
                self.connections
                    .stage(&conn_row(conn, &client, "connect", ""));
                self.clients.insert(conn, client);
            }
            Event::Hello { conn, hello, reply } => {
                let granted = self.hello(conn, hello);
                self.replies.push((reply, granted));
            }
            Event::Request { conn, req } => self.request(conn, req),
            Event::Gone { conn, reason } => self.remove(conn, &reason, None),
            Event::Shutdown => {
                self.stop_all();
                return true;
            }
        }
        false
    }

    fn hello(&mut self, conn: u64, hello: Hello) -> bool {
        let key = protocol::name_key(&hello.name);
        if self.names.contains_key(&key) {
            let err = ProtocolError::NameTaken { name: hello.name };
            self.send_now(conn, hello.mode, &ServerMsg::error(&err));
            return false;
        }
        // Joining changes who receives what: deliver what is queued to the old membership.
        self.flush();
        let Some(client) = self.clients.get_mut(&conn) else {
            return false;
        };
        client.name = Some(hello.name.clone());
        client.mode = hello.mode;
        self.names.insert(key, conn);
        let members = self.names.len();
        let welcome = ServerMsg::Welcome {
            conn,
            name: hello.name.clone(),
            room: protocol::LOBBY.to_string(),
            members,
            server: format!("chatroom {}", env!("CARGO_PKG_VERSION")),
        };
        self.push(Target::One(conn), welcome);
        if members <= self.notice_limit {
            let users = self.users();
            self.push(Target::One(conn), users);
            self.push(
                Target::RoomExcept(conn),
                ServerMsg::Joined {
                    ts: storage::now_timestamp(),
                    room: protocol::LOBBY.to_string(),
                    name: hello.name,
                },
            );
        }
        if let Some(client) = self.clients.get(&conn) {
            self.connections.stage(&conn_row(conn, client, "named", ""));
        }
        true
    }

    fn request(&mut self, conn: u64, req: Request) {
        let Some(name) = self.clients.get(&conn).and_then(|c| c.name.clone()) else {
            return;
        };
        match req {
            Request::Say(text) => {
                let id = self.next_id;
                self.next_id += 1;
                let ts = storage::now_timestamp();
                self.messages.stage(&MessageRecord {
                    id,
                    timestamp: ts.clone(),
                    room: protocol::LOBBY.to_string(),
                    sender: name.clone(),
                    recipient: String::new(),
                    kind: "message".to_string(),
                    text: text.clone(),
                });
                self.pending.push(Delivery {
                    target: Target::Room { sender: Some(conn) },
                    msg: ServerMsg::Message(ChatMessage {
                        id,
                        ts,
                        room: protocol::LOBBY.to_string(),
                        from: name,
                        text,
                    }),
                    sender: Some(conn),
                });
            }
            Request::Who => {
                let users = self.users();
                self.push(Target::One(conn), users);
            }
            Request::Help => self.push(Target::One(conn), ServerMsg::help()),
            Request::Ping(id) => self.push(Target::One(conn), ServerMsg::Pong { id }),
            Request::Quit(reason) => {
                let reason = match reason {
                    Some(r) => format!("quit: {r}"),
                    None => "quit".to_string(),
                };
                let bye = ServerMsg::Bye {
                    ts: storage::now_timestamp(),
                    reason: "you left; goodbye".to_string(),
                };
                self.remove(conn, &reason, Some(bye));
            }
        }
    }

    /// The `users` event for the lobby, names sorted case-insensitively.
    fn users(&self) -> ServerMsg {
        let mut users: Vec<String> = self
            .clients
            .values()
            .filter_map(|c| c.name.clone())
            .collect();
        users.sort_by_key(|n| protocol::name_key(n));
        ServerMsg::Users {
            room: protocol::LOBBY.to_string(),
            users,
        }
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
                .push(Arc::from(protocol::encode(&msg, client.mode)));
        }
        debug!("conn {conn} removed: {reason}");
        // Dropping `client` drops the broadcaster's outbox sender: the writer thread ends
        // once the connection thread has ended too.
    }

    /// Removes a client without flushing: frees its name, stages its `disconnect` row and
    /// queues the `left` notice to the room.
    fn forget(&mut self, conn: u64, reason: &str) -> Option<Client> {
        let mut client = self.clients.remove(&conn)?;
        self.connections
            .stage(&conn_row(conn, &client, "disconnect", reason));
        if let Some(name) = client.name.take() {
            let members = self.names.len();
            self.names.remove(&protocol::name_key(&name));
            if members > self.notice_limit {
                return Some(client);
            }
            self.push(
                Target::Room { sender: None },
                ServerMsg::Left {
                    ts: storage::now_timestamp(),
                    room: protocol::LOBBY.to_string(),
                    name,
                    reason: public_reason(reason).to_string(),
                },
            );
        }
        Some(client)
    }

    /// Tells every client the server is stopping, writes their `disconnect` rows, and shuts
    /// their sockets for reading so their threads end.
    fn stop_all(&mut self) {
        self.flush();
        let ts = storage::now_timestamp();
        let notice = ServerMsg::Bye {
            ts,
            reason: "the server is shutting down".to_string(),
        };
        let notice_human: Bytes = Arc::from(protocol::encode(&notice, Mode::Human));
        let notice_json: Bytes = Arc::from(protocol::encode(&notice, Mode::Json));
        let mut conns: Vec<u64> = self.clients.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            let client = self.clients.remove(&conn).expect("listed above");
            self.connections
                .stage(&conn_row(conn, &client, "disconnect", "server shutdown"));
            let bytes = match client.mode {
                Mode::Human => &notice_human,
                Mode::Json => &notice_json,
            };
            let _ = client.outbox.push(bytes.clone());
            let _ = client.stream.shutdown(Shutdown::Read);
        }
        self.names.clear();
        self.log_server_event("stop", "shutdown");
        self.flush();
    }

    /// Queues a delivery that has no log row of its own.
    fn push(&mut self, target: Target, msg: ServerMsg) {
        self.pending.push(Delivery {
            target,
            msg,
            sender: None,
        });
    }

    /// Sends to one client at once, outside the batch: only for answers that change nothing
    /// and are not logged (a refused name).
    fn send_now(&mut self, conn: u64, mode: Mode, msg: &ServerMsg) {
        if let Some(client) = self.clients.get(&conn) {
            let _ = client.outbox.push(Arc::from(protocol::encode(msg, mode)));
        }
    }

    /// Writes what is staged to both logs, then delivers what is pending. Clients found slow
    /// while delivering are disconnected, which may queue more (their `left` notices).
    fn flush(&mut self) {
        loop {
            if let Err(e) = self.connections.commit() {
                error!("{e}");
            }
            if let Err(e) = self.messages.commit() {
                error!("{e}; the messages of this batch were not delivered");
                self.refuse_unlogged_messages();
            }
            if self.pending.is_empty() {
                for (reply, granted) in self.replies.drain(..) {
                    // The connection thread may have gone; then nobody waits for the answer.
                    let _ = reply.send(granted);
                }
                return;
            }
            let started = std::time::Instant::now();
            let slow = self.deliver();
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
                    let _ = client.stream.shutdown(Shutdown::Both);
                }
                // Removed without flushing: this loop is the flush.
                self.forget(conn, SLOW_CONSUMER);
            }
        }
    }

    /// The log write failed: no chat message of this batch may be delivered. Each sender is
    /// told; other deliveries (notices) go ahead.
    fn refuse_unlogged_messages(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for d in pending {
            match d.sender {
                Some(conn) if matches!(d.msg, ServerMsg::Message(_)) => {
                    if let Some(client) = self.clients.get(&conn) {
                        let err = ServerMsg::Error {
                            code: ErrorCode::Storage,
                            message: "the server could not save your message; it was not sent"
                                .to_string(),
                        };
                        let _ = client
                            .outbox
                            .push(Arc::from(protocol::encode(&err, client.mode)));
                    }
                }
                _ => self.pending.push(d),
            }
        }
    }

    /// Hands every pending delivery to its recipients; returns the slow consumers.
    ///
    /// Consecutive room-wide deliveries form a segment. Each is encoded once per mode, and the
    /// segment is concatenated once per mode, so a recipient gets the whole segment in one
    /// send (or one outbox push). Only the few recipients for whom the segment differs (a
    /// human-mode sender, who is not echoed; the one a `RoomExcept` leaves out) get bytes of
    /// their own.
    fn deliver(&mut self) -> Vec<u64> {
        let mut slow: Vec<u64> = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < pending.len() {
            if let Target::One(conn) = pending[i].target {
                if let Some(c) = self.clients.get(&conn) {
                    let bytes: Bytes = Arc::from(protocol::encode(&pending[i].msg, c.mode));
                    send(conn, c, &bytes, &mut slow);
                }
                i += 1;
                continue;
            }
            let end = pending[i..]
                .iter()
                .position(|d| matches!(d.target, Target::One(_)))
                .map_or(pending.len(), |n| i + n);
            self.deliver_segment(&pending[i..end], &mut slow);
            i = end;
        }
        slow
    }

    /// Delivers a run of room-wide deliveries; see [`Hub::deliver`].
    fn deliver_segment(&self, seg: &[Delivery], slow: &mut Vec<u64>) {
        // Who gets something other than the whole segment.
        let mut special: Vec<u64> = Vec::new();
        for d in seg {
            let conn = match d.target {
                Target::Room { sender: Some(s) } => match self.clients.get(&s) {
                    Some(c) if c.mode == Mode::Human => s,
                    _ => continue,
                },
                Target::RoomExcept(c) => c,
                _ => continue,
            };
            if !special.contains(&conn) {
                special.push(conn);
            }
        }
        let mut parts = Encoded::new(seg);
        let mut whole: [Option<Bytes>; 2] = [None, None];
        let mut everyone: Vec<(u64, &Client)> = Vec::with_capacity(self.clients.len());
        for (&conn, client) in &self.clients {
            if client.name.is_none() || slow.contains(&conn) {
                continue;
            }
            if special.contains(&conn) {
                let mut own = Vec::new();
                for (k, d) in seg.iter().enumerate() {
                    let skip = match d.target {
                        Target::Room { sender } => sender == Some(conn),
                        Target::RoomExcept(c) => c == conn,
                        Target::One(_) => true,
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
            whole[client.mode as usize].get_or_insert_with(|| {
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
                let bytes = whole[client.mode as usize].as_ref().expect("encoded above");
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

/// The fewest recipients per thread worth a helper thread for one segment.
const PARALLEL_SEND_MIN: usize = 1024;

/// Hands `bytes` to one client, noting it as slow if its outbox is full.
fn send(conn: u64, client: &Client, bytes: &Bytes, slow: &mut Vec<u64>) {
    match client.outbox.deliver(bytes, &client.stream) {
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
    /// Indexed by `Mode as usize`, then by position in the segment.
    bytes: [Vec<Option<Vec<u8>>>; 2],
}

impl<'a> Encoded<'a> {
    fn new(seg: &'a [Delivery]) -> Encoded<'a> {
        Encoded {
            seg,
            bytes: [vec![None; seg.len()], vec![None; seg.len()]],
        }
    }

    fn get(&mut self, k: usize, mode: Mode) -> &[u8] {
        self.bytes[mode as usize][k].get_or_insert_with(|| protocol::encode(&self.seg[k].msg, mode))
    }
}

/// The `data.csv` row of one connection event.
fn conn_row(conn: u64, client: &Client, event: &str, detail: &str) -> ConnRecord {
    ConnRecord {
        timestamp: storage::now_timestamp(),
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
const SLOW_CONSUMER: &str = "slow consumer: outbox full";

/// The part of a disconnect reason the other members see.
fn public_reason(reason: &str) -> &str {
    if reason.starts_with("quit") {
        reason
    } else if reason == SLOW_CONSUMER {
        "too slow to keep up"
    } else if reason.contains("timeout") {
        "timed out"
    } else {
        "connection closed"
    }
}
