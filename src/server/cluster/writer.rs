//! `cluster-out`: what the hub hands over, published; the claims and members kept fresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::info;

use super::*;

/// `cluster-out`: publishes what the hub hands it, keeps the claims and the members fresh,
/// and reads the other nodes' members.
pub(super) struct Writer {
    pub(super) client: redis::Client,
    pub(super) events: Sender<Event>,
    pub(super) from_hub: Receiver<ToCluster>,
    pub(super) node: String,
    pub(super) lease: Duration,
    /// This node's members, as last handed over, and whether Redis has them yet.
    pub(super) members: Option<Members>,
    pub(super) members_dirty: bool,
    /// The other nodes' members as last told to the hub: told again only when they change.
    pub(super) peers: HashMap<String, Members>,
    pub(super) users_file: std::path::PathBuf,
    pub(super) users_hash: Arc<AtomicU64>,
    /// `users.csv`'s modification time and length when last looked at.
    pub(super) users_seen: Option<(std::time::SystemTime, u64)>,
}

pub(super) fn users_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut conn: Option<redis::Connection> = None;
        let mut retry_at = Instant::now();
        let mut tick_at = Instant::now();
        loop {
            let next = self
                .from_hub
                .recv_deadline(tick_at.min(Instant::now() + TICK));
            if conn.is_none() && Instant::now() >= retry_at {
                conn = connect(&self.client).ok();
                retry_at = Instant::now() + TICK;
                self.members_dirty = true;
            }
            match next {
                Ok(work) => {
                    if !self.work(&mut conn, work) {
                        return;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= tick_at {
                tick_at = Instant::now() + Duration::from_millis(250);
                if let Some(c) = conn.as_mut()
                    && self.tick(c).is_err()
                {
                    conn = None;
                }
            }
        }
    }

    /// Does one thing the hub asked; false when the hub is gone.
    fn work(&mut self, conn: &mut Option<redis::Connection>, work: ToCluster) -> bool {
        match work {
            ToCluster::Publish(wire) => {
                let sent = conn.as_mut().map(|c| {
                    redis::Script::new(PUBLISH)
                        .key(COUNTER)
                        .key(STREAM)
                        .arg(serde_json::to_string(&wire).unwrap_or_default())
                        .arg(STREAM_KEEP)
                        .invoke::<u64>(c)
                });
                if !matches!(sent, Some(Ok(_))) {
                    *conn = None;
                    return self
                        .events
                        .send(Event::Cluster(FromCluster::Unpublished(wire)))
                        .is_ok();
                }
            }
            ToCluster::Control(control) => {
                if let Some(c) = conn.as_mut() {
                    let sent: redis::RedisResult<String> = redis::cmd("XADD")
                        .arg(STREAM)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(STREAM_KEEP)
                        .arg("*")
                        .arg("c")
                        .arg(serde_json::to_string(&control).unwrap_or_default())
                        .query(c);
                    if sent.is_err() {
                        *conn = None;
                    }
                }
            }
            ToCluster::Members(members) => {
                self.members = Some(members);
                self.members_dirty = true;
            }
            ToCluster::Claim(keys, id) => {
                if let Some(c) = conn.as_mut() {
                    let value = format!("{}/{id}", self.node);
                    for key in keys {
                        let _ = redis::cmd("SET")
                            .arg(Claims::key(&key))
                            .arg(&value)
                            .arg("NX")
                            .arg("PX")
                            .arg(self.lease.as_millis() as u64)
                            .query::<Option<String>>(c);
                    }
                }
            }
            ToCluster::Release(name) => {
                // Not renewed (nor made again) by the next tick either.
                if let Some(m) = &mut self.members {
                    m.names.retain(|n| *n != name);
                }
                if let Some(c) = conn.as_mut() {
                    for key in crate::proto::names::keys(&name) {
                        let value_prefix = format!("{}/", self.node);
                        let holder: Option<String> = redis::cmd("GET")
                            .arg(Claims::key(&key))
                            .query(c)
                            .ok()
                            .flatten();
                        if let Some(h) = holder.filter(|h| h.starts_with(&value_prefix)) {
                            let _ = redis::Script::new(RELEASE)
                                .key(Claims::key(&key))
                                .arg(h)
                                .invoke::<i64>(c);
                        }
                    }
                }
            }
        }
        true
    }

    /// Sends `users.csv` to the other nodes when it changed here (`chat-server users`, `/op`),
    /// but not when the change is one the cluster brought.
    fn share_users(&mut self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        let stamp = users_stamp(&self.users_file);
        if stamp == self.users_seen {
            return Ok(());
        }
        self.users_seen = stamp;
        let Ok(bytes) = std::fs::read(&self.users_file) else {
            return Ok(());
        };
        let hash = users_hash(&bytes);
        if self.users_hash.swap(hash, Ordering::SeqCst) == hash {
            return Ok(());
        }
        let control = Control::Users {
            node: self.node.clone(),
            csv: String::from_utf8_lossy(&bytes).into_owned(),
        };
        info!("cluster: users.csv changed here; sending it to the other nodes");
        redis::cmd("XADD")
            .arg(STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_KEEP)
            .arg("*")
            .arg("c")
            .arg(serde_json::to_string(&control).unwrap_or_default())
            .query::<String>(c)
            .map(drop)
    }

    /// Every 250 ms: this node's members (when changed, and every second as a lease), the
    /// claims' leases, and the other nodes' members.
    fn tick(&mut self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        self.share_users(c)?;
        let lease_ms = self.lease.as_millis() as u64;
        let key = format!("chatroom:node:{}", self.node);
        if let Some(members) = &self.members {
            // Written when changed, and its lease renewed with the claims.
            let json = serde_json::to_string(members).unwrap_or_default();
            if self.members_dirty {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&json)
                    .arg("PX")
                    .arg(lease_ms)
                    .query::<()>(c)?;
                redis::cmd("SADD")
                    .arg(NODES)
                    .arg(&self.node)
                    .query::<()>(c)?;
                self.members_dirty = false;
            }
            // Renewed, or made again if Redis lost them (a restart without persistence); a
            // claim another node made meanwhile is left to it.
            let mut pipe = redis::pipe();
            pipe.cmd("PEXPIRE").arg(&key).arg(lease_ms).ignore();
            let again = format!("{}/0", self.node);
            for name in &members.names {
                for k in crate::proto::names::keys(name) {
                    let k = Claims::key(&k);
                    pipe.cmd("SET")
                        .arg(&k)
                        .arg(&again)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease_ms)
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(&k).arg(lease_ms).ignore();
                }
            }
            pipe.query::<()>(c)?;
        }
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(NODES).query(c)?;
        let others: Vec<&String> = nodes.iter().filter(|n| **n != self.node).collect();
        let mut peers = HashMap::new();
        if !others.is_empty() {
            let keys: Vec<String> = others
                .iter()
                .map(|n| format!("chatroom:node:{n}"))
                .collect();
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(c)?;
            for (node, value) in others.into_iter().zip(values) {
                match value.and_then(|v| serde_json::from_str::<Members>(&v).ok()) {
                    Some(m) => {
                        peers.insert(node.clone(), m);
                    }
                    // Its lease ran out: a node that died, or left.
                    None => {
                        let _ = redis::cmd("SREM").arg(NODES).arg(node).query::<()>(c);
                    }
                }
            }
        }
        if peers != self.peers {
            self.peers = peers.clone();
            let _ = self.events.send(Event::Cluster(FromCluster::Peers(peers)));
        }
        Ok(())
    }
}
