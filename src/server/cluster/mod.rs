//! Several nodes through Redis (`--redis URL`): the cluster's order, names and who is where.
//!
//! - **Order:** one Redis Stream (`chatroom:log`). A message is published by a Lua script that
//!   takes the next id (`INCR chatroom:id`) and appends the entry in one step, so the stream's
//!   order is the id order. Every node reads the whole stream, in order, and logs each entry
//!   in its own `messages.csv` before delivering it to its own clients: every node's file holds
//!   every message the cluster carried while it was connected, under the same ids.
//! - **Names:** a name is claimed with `SET NX` on its keys (both of its look-alike keys), as a
//!   lease refreshed while the client is connected, deleted when it leaves, expiring when its
//!   node dies.
//! - **Who is where:** each node publishes its members (names, rooms, away) under a key with a
//!   short expiry; each reads the others' every second, for `/who`, `/rooms` and direct
//!   messages to someone on another node.
//! - **Faults:** when Redis cannot be reached the node says so to its clients and serves them
//!   alone, logging their messages under ids after the last it had seen; it retries every
//!   second, and when Redis is back it first raises the id counter past its own ids.
//!
//! Two threads, each with its own connection: `cluster-in` reads the stream into the hub's
//! events; `cluster-out` publishes what the hub hands it. The broadcaster never waits on Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proto::Kind;
use crate::server::hub::Event;

mod reader;
mod writer;

use reader::{Reader, entries};
use writer::{Writer, users_stamp};

/// The stream every node reads.
const STREAM: &str = "chatroom:log";
/// The id counter.
const COUNTER: &str = "chatroom:id";
/// The set of node ids that have published members.
const NODES: &str = "chatroom:nodes";
/// Entries kept in the stream (about): a node that was away longer than this many messages
/// catches up only on these.
const STREAM_KEEP: u64 = 100_000;
/// How long one Redis call may take before the node counts Redis as gone.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a lost Redis is tried again, and the members are read.
const TICK: Duration = Duration::from_secs(1);

/// Takes the next id and appends the message, atomically: stream order is id order.
const PUBLISH: &str = r"
local id = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'id', id, 'm', ARGV[1])
return id";

/// Raises the counter to at least ARGV[1] (a node's own last id, after it served alone).
const RAISE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0";

/// Deletes a claim only if this node still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// A message as it crosses the cluster (its id is the stream entry's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wire {
    /// The node its sender is on, and the sender's connection there (for the echo).
    pub node: String,
    pub conn: u64,
    pub ts: String,
    /// The room's name; empty for a direct message.
    pub room: String,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub kind: Kind,
    pub text: String,
}

/// A moderation change every node applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Control {
    Ban {
        node: String,
        target: String,
        secs: Option<u64>,
        by: String,
        reason: String,
    },
    Unban {
        node: String,
        target: String,
    },
    /// `/mute`: the node where `name` is connected mutes it.
    Mute {
        node: String,
        name: String,
        secs: Option<u64>,
        by: String,
        reason: String,
    },
    Unmute {
        node: String,
        name: String,
        by: String,
    },
    /// `users.csv` changed on `node` (an account added, a password or a role changed): the
    /// whole file, which every node writes as its own.
    Users {
        node: String,
        csv: String,
    },
}

impl Control {
    pub fn node(&self) -> &str {
        match self {
            Control::Ban { node, .. }
            | Control::Unban { node, .. }
            | Control::Mute { node, .. }
            | Control::Unmute { node, .. }
            | Control::Users { node, .. } => node,
        }
    }
}

/// A hash of `users.csv`'s contents: what a node wrote from the cluster is not sent back.
pub fn users_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// What one node has: its members by name, the rooms they are in, who is away.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// Room name → the names in it.
    pub rooms: HashMap<String, Vec<String>>,
    /// Every named client's name.
    pub names: Vec<String>,
    /// Away reasons by name.
    #[serde(default)]
    pub away: HashMap<String, String>,
}

/// What the cluster tells the hub.
#[derive(Debug)]
pub enum FromCluster {
    /// An entry of the stream, in order: a message with its id.
    Message {
        id: u64,
        wire: Wire,
    },
    Control(Control),
    /// A message that could not be published: the node serves it alone.
    Unpublished(Wire),
    /// Redis is reachable again: messages go through the cluster.
    Up,
    /// Redis cannot be reached: the node serves its clients alone.
    Down(String),
    /// The other nodes' members, by node.
    Peers(HashMap<String, Members>),
}

/// What the hub hands the cluster.
#[derive(Debug)]
pub enum ToCluster {
    Publish(Wire),
    Control(Control),
    /// This node's members now (sent when they change; written at most every 250 ms).
    Members(Members),
    /// A name whose claims to release, when its holder leaves or renames.
    Release(String),
    /// A new name's claims (after a rename), for connection `.1`.
    Claim(Vec<String>, u64),
}

/// The hub's end of the cluster.
pub struct Link {
    pub node: String,
    pub out: Sender<ToCluster>,
}

/// Where claims are made from the connection threads (a login's name), and how long they live.
pub struct Claims {
    client: redis::Client,
    /// A banned name is not claimed: the broadcaster refuses it, saying why.
    bans: Arc<std::sync::RwLock<crate::store::bans::Bans>>,
    conn: std::sync::Mutex<Option<redis::Connection>>,
    pub node: String,
    pub lease: Duration,
}

/// The outcome of claiming a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours now (or Redis is away: the node decides alone).
    Granted,
    /// Held by a client on another node.
    Elsewhere,
}

impl Claims {
    /// The key of a claim.
    pub fn key(name_key: &str) -> String {
        format!("chatroom:name:{name_key}")
    }

    /// Claims `keys` (a name's look-alike keys) for connection `conn` of this node. A key
    /// held by this node already is left to the hub (a takeover, a look-alike).
    pub fn claim(&self, name: &str, keys: &[String], conn: u64) -> Claim {
        if self
            .bans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .for_name(name)
            .is_some()
        {
            return Claim::Granted;
        }
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = connect(&self.client).ok();
        }
        let Some(c) = guard.as_mut() else {
            return Claim::Granted;
        };
        let value = format!("{}/{conn}", self.node);
        let ms = self.lease.as_millis() as u64;
        let mut taken = Vec::new();
        for key in keys {
            let key = Claims::key(key);
            let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query(c);
            match set {
                Ok(Some(_)) => taken.push(key),
                Ok(None) => {
                    let holder: Option<String> =
                        redis::cmd("GET").arg(&key).query(c).ok().flatten();
                    let ours = holder
                        .as_deref()
                        .is_some_and(|h| h.split_once('/').map(|(n, _)| n) == Some(&self.node));
                    if !ours {
                        for k in &taken {
                            let _ = redis::Script::new(RELEASE)
                                .key(k)
                                .arg(&value)
                                .invoke::<i64>(c);
                        }
                        return Claim::Elsewhere;
                    }
                }
                Err(_) => {
                    *guard = None;
                    return Claim::Granted;
                }
            }
        }
        Claim::Granted
    }
}

impl Claims {
    /// Releases `keys` if connection `conn` of this node holds them.
    pub fn release(&self, keys: &[String], conn: u64) {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = guard.as_mut() else { return };
        let value = format!("{}/{conn}", self.node);
        for key in keys {
            let _ = redis::Script::new(RELEASE)
                .key(Claims::key(key))
                .arg(&value)
                .invoke::<i64>(c);
        }
    }
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(IO_TIMEOUT)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(c)
}

/// The cluster's settings and the running threads' shared state.
pub struct Cluster {
    client: redis::Client,
    pub node: String,
    pub lease: Duration,
    /// The highest message id this node has logged: where a catch-up starts, and how far the
    /// counter is raised after serving alone.
    pub last_id: Arc<AtomicU64>,
    /// The hash of `users.csv` as last sent or received.
    pub users_hash: Arc<AtomicU64>,
    /// `users.csv`, watched for changes to send to the other nodes.
    pub users_file: std::path::PathBuf,
}

impl Cluster {
    /// Checks the URL (no connection yet: a node starts even when Redis is away).
    pub fn new(
        url: &str,
        node: String,
        lease: Duration,
        last_id: u64,
        users_file: std::path::PathBuf,
    ) -> Result<Cluster> {
        let client =
            redis::Client::open(url).map_err(|e| Error::setting(format!("--redis {url}: {e}")))?;
        let users = std::fs::read(&users_file).unwrap_or_default();
        Ok(Cluster {
            client,
            node,
            lease,
            last_id: Arc::new(AtomicU64::new(last_id)),
            users_hash: Arc::new(AtomicU64::new(users_hash(&users))),
            users_file,
        })
    }

    /// Whether Redis answers now: a node that finds it at start-up is online from its first
    /// client on (one that does not starts alone, and joins when it can).
    pub fn reachable(&self) -> bool {
        connect(&self.client)
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// The stream's messages this node has not logged (ids above `last_id`), to log before it
    /// serves anyone: a node started or restarted catches up on what the cluster said
    /// meanwhile (as far as the stream keeps). Returns them and the entry to read on from.
    /// Moderation entries are not replayed: they were applied when they were new.
    pub fn backlog(&self) -> (Vec<(u64, Wire)>, Option<String>) {
        let Ok(mut c) = connect(&self.client) else {
            return (Vec::new(), None);
        };
        let last = self.last_id.load(Ordering::SeqCst);
        let (mut out, mut from, mut end) = (Vec::new(), "-".to_string(), None);
        loop {
            let page: redis::RedisResult<redis::Value> = redis::cmd("XRANGE")
                .arg(STREAM)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query(&mut c);
            let Ok(page) = page else { break };
            // XRANGE answers a list of entries, as one stream of an XREAD answer holds.
            let page = entries(redis::Value::Array(vec![redis::Value::Array(vec![
                redis::Value::Nil,
                page,
            ])]));
            let Some((last_entry, _)) = page.last() else {
                break;
            };
            from = format!("({last_entry}");
            end = Some(last_entry.clone());
            for (_, fields) in page {
                let id: u64 = fields.get("id").and_then(|i| i.parse().ok()).unwrap_or(0);
                if let Some(m) = fields.get("m")
                    && id > last
                    && let Ok(wire) = serde_json::from_str::<Wire>(m)
                {
                    out.push((id, wire));
                }
            }
        }
        // An empty stream: read it from its start (what is added from now on).
        (out, Some(end.unwrap_or_else(|| "0-0".to_string())))
    }

    /// A handle for claiming names from connection threads.
    pub fn claims(&self, bans: Arc<std::sync::RwLock<crate::store::bans::Bans>>) -> Claims {
        Claims {
            client: self.client.clone(),
            bans,
            conn: std::sync::Mutex::new(None),
            node: self.node.clone(),
            lease: self.lease,
        }
    }

    /// Starts both threads, the reader after stream entry `after` (from the stream's end when
    /// `None`); returns the hub's end.
    pub fn start(&self, events: Sender<Event>, after: Option<String>) -> Result<Link> {
        let (out, from_hub) = crossbeam_channel::bounded(4096);
        let reader = Reader {
            client: self.client.clone(),
            events: events.clone(),
            last_id: self.last_id.clone(),
            node: self.node.clone(),
            after,
        };
        std::thread::Builder::new()
            .name("cluster-in".into())
            .spawn(move || reader.run())
            .map_err(|e| Error::io("cannot start the cluster-in thread", e))?;
        let writer = Writer {
            client: self.client.clone(),
            events,
            from_hub,
            node: self.node.clone(),
            lease: self.lease,
            members: None,
            members_dirty: false,
            peers: HashMap::new(),
            users_file: self.users_file.clone(),
            users_hash: self.users_hash.clone(),
            users_seen: users_stamp(&self.users_file),
        };
        std::thread::Builder::new()
            .name("cluster-out".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("cannot start the cluster-out thread", e))?;
        Ok(Link {
            node: self.node.clone(),
            out,
        })
    }
}
