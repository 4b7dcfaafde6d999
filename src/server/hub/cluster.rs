//! The hub's side of the cluster (`--redis`): messages go out to the stream and come back in
//! its order, to be logged and delivered like any other; the other nodes' members join this
//! node's in `/who`, `/rooms`, names and direct messages. See [`crate::server::cluster`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::server::cluster::{Cluster, Control, FromCluster, Link, Members, ToCluster, Wire};

/// The hub's cluster state.
pub struct ClusterState {
    link: Link,
    /// Redis is reachable: messages go through the stream.
    online: bool,
    /// The other nodes' members, by node.
    peers: HashMap<String, Members>,
    /// This node's members changed since they were last handed to the cluster.
    changed: bool,
    /// The highest id this node has logged, shared with the stream's reader.
    last_id: Arc<AtomicU64>,
    /// The hash of `users.csv` as last sent or received, shared with `cluster-out`.
    users_hash: Arc<AtomicU64>,
    users_file: std::path::PathBuf,
}

impl<W: LogFile> Hub<W> {
    /// Joins the cluster: from now on messages go through `link` while Redis is reachable.
    pub fn join_cluster(&mut self, link: Link, cluster: &Cluster, online: bool) {
        self.cluster = Some(ClusterState {
            link,
            online,
            users_hash: cluster.users_hash.clone(),
            users_file: cluster.users_file.clone(),
            peers: HashMap::new(),
            changed: true,
            last_id: cluster.last_id.clone(),
        });
    }

    /// Logs the messages a node missed while it was down (before it serves anyone).
    pub fn catch_up(&mut self, backlog: Vec<(u64, Wire)>) {
        for (id, wire) in backlog {
            self.accept(Some(id), wire);
            if self.pending.len() >= MAX_BATCH {
                self.flush();
            }
        }
        self.flush();
    }

    /// The highest message id logged so far.
    pub fn last_id(&self) -> u64 {
        self.next_id.saturating_sub(1)
    }

    /// Records that an id was logged (the stream's reader skips what is logged).
    pub(super) fn logged_id(&self, id: u64) {
        if let Some(c) = &self.cluster {
            c.last_id.fetch_max(id, Ordering::SeqCst);
        }
    }

    /// Hands a message to the cluster instead of logging it here; false when the node serves
    /// alone (Redis away, or the cluster's queue full), and the caller logs it itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish(
        &mut self,
        conn: u64,
        room: &str,
        from: &str,
        to: Option<&str>,
        kind: Kind,
        text: &str,
    ) -> bool {
        let Some(c) = self.cluster.as_ref().filter(|c| c.online) else {
            return false;
        };
        let wire = Wire {
            node: c.link.node.clone(),
            conn,
            ts: store::now_timestamp(),
            room: room.to_string(),
            from: from.to_string(),
            to: to.map(str::to_string),
            kind,
            text: text.to_string(),
        };
        c.link.out.try_send(ToCluster::Publish(wire)).is_ok()
    }

    /// Hands a moderation change to the other nodes.
    pub(super) fn publish_control(&mut self, control: impl FnOnce(String) -> Control) {
        if let Some(c) = self.cluster.as_ref().filter(|c| c.online) {
            let _ = c
                .link
                .out
                .try_send(ToCluster::Control(control(c.link.node.clone())));
        }
    }

    /// Notes that this node's members changed (a name, a room, away).
    pub(super) fn members_changed(&mut self) {
        if let Some(c) = &mut self.cluster {
            c.changed = true;
        }
    }

    /// A direct message on a node of a cluster: handed to the cluster when its recipient is
    /// connected anywhere (true); false when the node serves alone, and the caller goes on.
    pub(super) fn cluster_direct(&mut self, conn: u64, to: &str, text: &str) -> bool {
        if !self.cluster.as_ref().is_some_and(|c| c.online) {
            return false;
        }
        let local = self.names.get(to).copied();
        let to_name = match local {
            Some(c) => self.clients.get(&c).and_then(|c| c.name.clone()),
            None => self.remote_name(to),
        };
        let Some(to_name) = to_name else {
            self.no_user(conn, to);
            return true;
        };
        let Some(from) = self.clients.get(&conn).and_then(|c| c.name.clone()) else {
            return true;
        };
        if !self.publish(conn, "", &from, Some(&to_name), Kind::Direct, text) {
            return false;
        }
        let away = match local {
            Some(c) => self.clients.get(&c).and_then(|c| c.away.clone()),
            None => self
                .cluster
                .as_ref()
                .and_then(|c| c.peers.values().find_map(|m| m.away.get(&to_name).cloned())),
        };
        if let Some(reason) = away {
            let text = if reason.is_empty() {
                format!("{to_name} is away")
            } else {
                format!("{to_name} is away: {reason}")
            };
            let ts = store::now_timestamp();
            self.push(Target::One(conn), ServerMsg::System { ts, text });
        }
        true
    }

    /// Claims a new name (after `/nick`) in the cluster.
    pub(super) fn claim_name(&mut self, name: &str, conn: u64) {
        if let Some(c) = &self.cluster {
            let _ = c
                .link
                .out
                .try_send(ToCluster::Claim(proto::names::keys(name), conn));
        }
    }

    /// Frees a name's claims in the cluster.
    pub(super) fn release_name(&mut self, name: &str) {
        if let Some(c) = &self.cluster {
            let _ = c.link.out.try_send(ToCluster::Release(name.to_string()));
        }
    }

    /// After a batch: hands this node's members over if they changed.
    pub(super) fn share_members(&mut self) {
        let Some(c) = self.cluster.as_ref().filter(|c| c.changed) else {
            return;
        };
        let mut members = Members::default();
        for client in self.clients.values() {
            let Some(name) = &client.name else { continue };
            members.names.push(name.clone());
            if let Some(away) = &client.away {
                members.away.insert(name.clone(), away.clone());
            }
            for key in &client.rooms {
                if let Some(room) = self.rooms.get(key) {
                    members
                        .rooms
                        .entry(room.name.clone())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
        if c.link.out.try_send(ToCluster::Members(members)).is_ok()
            && let Some(c) = &mut self.cluster
        {
            c.changed = false;
        }
    }

    /// The name, as spelt there, of a client on another node that `name` is (or looks like).
    pub(super) fn remote_name(&self, name: &str) -> Option<String> {
        let c = self.cluster.as_ref()?;
        c.peers
            .values()
            .flat_map(|m| m.names.iter())
            .find(|n| proto::names::same(n, name))
            .cloned()
    }

    /// The members of room `key` on the other nodes, with their away reasons.
    pub(super) fn remote_members(&self, key: &str) -> Vec<(String, Option<String>)> {
        let Some(c) = &self.cluster else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in c.peers.values() {
            for (room, names) in &m.rooms {
                if proto::room_key(room) == key {
                    out.extend(names.iter().map(|n| (n.clone(), m.away.get(n).cloned())));
                }
            }
        }
        out
    }

    /// The rooms in use on the other nodes, by name, with their member counts.
    pub(super) fn remote_rooms(&self) -> HashMap<String, (String, usize)> {
        let mut out: HashMap<String, (String, usize)> = HashMap::new();
        if let Some(c) = &self.cluster {
            for m in c.peers.values() {
                for (room, names) in &m.rooms {
                    let e = out
                        .entry(proto::room_key(room))
                        .or_insert_with(|| (room.to_string(), 0));
                    e.1 += names.len();
                }
            }
        }
        out
    }

    /// Handles what the cluster says.
    pub(super) fn on_cluster(&mut self, event: FromCluster) {
        match event {
            FromCluster::Message { id, wire } => self.accept(Some(id), wire),
            FromCluster::Unpublished(wire) => self.accept(None, wire),
            FromCluster::Control(control) => self.apply_control(control),
            FromCluster::Peers(peers) => {
                if let Some(c) = &mut self.cluster {
                    c.peers = peers;
                }
            }
            FromCluster::Up => {
                let was = self.cluster.as_ref().is_some_and(|c| c.online);
                if let Some(c) = &mut self.cluster {
                    c.online = true;
                    c.changed = true;
                }
                if !was {
                    self.tell_everyone("this server is connected to the cluster again".into());
                }
            }
            FromCluster::Down(why) => {
                let was = self.cluster.as_ref().is_some_and(|c| c.online);
                if let Some(c) = &mut self.cluster {
                    c.online = false;
                    c.peers.clear();
                }
                if was {
                    self.tell_everyone(format!(
                        "warning: the cluster cannot be reached ({why}); until it is back, messages reach only the people on this server"
                    ));
                }
            }
        }
    }

    /// Logs a message of the cluster (with its id) or one that could not be published (with
    /// this node's next id), and delivers it to this node's clients.
    fn accept(&mut self, id: Option<u64>, wire: Wire) {
        let id = match id {
            // Ids in a file only grow: one this node gave itself meanwhile is passed over.
            Some(id) if id < self.next_id => {
                debug!("cluster: message {id} is older than this node's log; skipped");
                return;
            }
            Some(id) => id,
            None => self.next_id,
        };
        self.next_id = id + 1;
        let origin = (self.cluster.as_ref().map(|c| c.link.node.as_str()) == Some(&wire.node))
            .then_some(wire.conn)
            .filter(|c| self.clients.contains_key(c));
        self.messages.stage(&MessageRecord {
            id,
            timestamp: wire.ts.clone(),
            room: wire.room.clone(),
            sender: wire.from.clone(),
            recipient: wire.to.clone().unwrap_or_default(),
            kind: wire.kind,
            text: wire.text.clone(),
        });
        self.logged_id(id);
        if self.config.chat.fsync == Fsync::Always
            && let Err(e) = self.messages.commit()
        {
            error!("{e}; the message was not delivered");
            if let Some(origin) = origin {
                self.storage_failed(origin);
            }
            return;
        }
        let msg = ChatMessage {
            id,
            ts: wire.ts,
            room: wire.room.clone(),
            from: wire.from,
            to: wire.to.clone(),
            kind: wire.kind,
            text: wire.text,
            history: false,
        };
        if wire.room.is_empty() {
            let to = wire
                .to
                .as_deref()
                .and_then(|to| self.names.get(to).copied());
            let mut targets: Vec<u64> = to.into_iter().chain(origin).collect();
            targets.dedup();
            if let (Some(to), Some(origin)) = (to, origin)
                && let Some(r) = self.clients.get_mut(&to)
            {
                r.reply_to = Some(origin);
            }
            self.pending.push(Delivery {
                target: Target::Set(targets),
                msg: ServerMsg::Message(msg),
                logged_by: origin,
            });
            return;
        }
        let key = proto::room_key(&wire.room);
        if !self.rooms.contains_key(&key) {
            // A room of other nodes: kept for its history, so a join here shows it.
            if !self.make_room() {
                return;
            }
            self.rooms.insert(key.clone(), Room::new(&wire.room));
        }
        if let Some(r) = self.rooms.get_mut(&key) {
            r.last_active = self.tick;
        }
        self.pending_history.push((key.clone(), msg.clone()));
        self.pending.push(Delivery {
            target: Target::Room {
                room: key,
                sender: origin,
            },
            msg: ServerMsg::Message(msg),
            logged_by: origin,
        });
    }

    /// Applies another node's ban or unban here: written to this node's `bans.csv`, and
    /// whoever it covers here is disconnected.
    fn apply_control(&mut self, control: Control) {
        if self.cluster.as_ref().map(|c| c.link.node.as_str()) == Some(control.node()) {
            return; // Ours, done already.
        }
        let done = match &control {
            Control::Mute {
                name,
                secs,
                by,
                reason,
                ..
            } => {
                self.mute_here(name, secs.map(std::time::Duration::from_secs), by, reason);
                return;
            }
            Control::Unmute { name, by, .. } => {
                self.unmute_here(name, by);
                return;
            }
            Control::Users { csv, .. } => {
                self.write_users(csv);
                return;
            }
            Control::Ban {
                target,
                secs,
                by,
                reason,
                ..
            } => match crate::store::bans::Target::parse(target) {
                Ok(parsed) => self
                    .bans
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(
                        &parsed,
                        secs.map(std::time::Duration::from_secs),
                        by,
                        reason,
                    )
                    .map(drop),
                Err(e) => {
                    warn!("cluster: a ban on {target:?} that cannot be read: {e}");
                    return;
                }
            },
            Control::Unban { target, .. } => self
                .bans
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(target)
                .map(drop),
        };
        match done {
            Ok(()) => info!("cluster: applied {control:?}"),
            Err(e) => error!("cluster: cannot apply {control:?}: {e}"),
        }
        // Look at everyone connected again, as after a change on disk.
        self.bans_seen = self.bans_seen.wrapping_add(1);
        self.apply_changed_bans();
    }

    /// Writes `users.csv` as another node sent it (whole, replacing this node's), and reads it.
    fn write_users(&mut self, csv: &str) {
        let Some(c) = &self.cluster else { return };
        let path = c.users_file.clone();
        c.users_hash.store(
            crate::server::cluster::users_hash(csv.as_bytes()),
            Ordering::SeqCst,
        );
        let tmp = path.with_extension("csv.cluster.tmp");
        let written = crate::store::create_private_file(&tmp)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(csv.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                info!("cluster: users.csv replaced by another node's");
                self.auth.directory.refresh();
            }
            Err(e) => error!("cluster: cannot write {}: {e}", path.display()),
        }
    }

    /// A notice to every named client of this node.
    fn tell_everyone(&mut self, text: String) {
        let ts = store::now_timestamp();
        let all: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.name.is_some())
            .map(|(&id, _)| id)
            .collect();
        if !all.is_empty() {
            self.push(Target::Set(all), ServerMsg::System { ts, text });
        }
    }
}
