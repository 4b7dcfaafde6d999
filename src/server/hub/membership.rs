//! Rooms and names: joining, leaving, renaming, away, and the lists of who is where.

use super::*;

impl<W: LogFile> Hub<W> {
    /// Adds `conn` to a room (created if new) and makes it current; tells the room and sends
    /// the joiner the member list and the room's recent history.
    pub(super) fn join(&mut self, conn: u64, room: &str) {
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
        // Joining changes who receives what: deliver what is queued for this room to the old
        // membership (and into its history) first. Nothing else depends on the room's
        // members, so a join with nothing queued for the room costs no flush: 10,000 joins
        // in a row are not 10,000 writes to data.csv.
        if self.pending.iter().any(|d| d.target.room() == Some(&key)) {
            self.flush();
        }
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
        self.members_changed();
        if self.config.chat.history > 0 {
            self.send_history(conn, &key, self.config.chat.history);
        }
    }

    /// Sends the last `n` messages of a room to `conn`, then the end-of-history marker.
    pub(super) fn send_history(&mut self, conn: u64, key: &str, n: usize) {
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
    pub(super) fn leave(&mut self, conn: u64, room: Option<String>) {
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
    pub(super) fn part(&mut self, conn: u64, key: &str, reason: &str) -> Option<ServerMsg> {
        self.members_changed();
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
    pub(super) fn nick(&mut self, conn: u64, new: String) {
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
        self.release_name(&old);
        self.claim_name(&new, conn);
        self.members_changed();
        if let Some(client) = self.clients.get(&conn) {
            let row = conn_row(conn, client, ConnEvent::Nick, &format!("{old} -> {new}"));
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

    /// Ends `holder`, a session of the account that `conn` has just logged in to with its
    /// password, so that `conn` gets the name in the same event and nobody can take it in
    /// between. Removed like a kicked client: told why (with the new session's address, so a
    /// stolen password shows), a `disconnect` row `taken over by conn N`, and `left` notices
    /// to its rooms; the new session then joins the lobby as any login does.
    pub(super) fn take_over(&mut self, holder: u64, conn: u64) {
        let Some(peer) = self.clients.get(&conn).map(|c| c.peer) else {
            return;
        };
        let reason = Disconnect::TakenOver { by: conn, peer };
        let bye = ServerMsg::Bye {
            ts: store::now_timestamp(),
            reason: reason.told(),
        };
        self.remove(holder, &reason, Some(bye));
    }

    /// Why `conn` may not take `name` now, as the account `account` (or as a guest), if it
    /// may not: the name is banned, belongs to an account that is not this one, or is held by
    /// (or looks like the name of) someone else connected.
    pub(super) fn name_refusal(
        &self,
        conn: u64,
        name: &str,
        account: Option<&str>,
    ) -> Option<ServerMsg> {
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
        if self.names.get(name).is_none()
            && let Some(holder) = self.remote_name(name)
        {
            let err = ProtocolError::NameTaken {
                name: name.to_string(),
                holder,
            };
            return Some(ServerMsg::error(&err));
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
    pub(super) fn ban_refusal(&self, name: &str) -> Option<ServerMsg> {
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
    pub(super) fn standing(&self, conn: u64) -> Standing {
        self.clients
            .get(&conn)
            .and_then(|c| c.account.as_deref())
            .and_then(|a| self.auth.directory.lookup(a))
            .map_or(Standing::Guest, |a| a.role.into())
    }

    /// Makes room for one more room: true when there is room already or the longest-idle
    /// empty room (never the lobby) was forgotten to make it.
    pub(super) fn make_room(&mut self) -> bool {
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
    pub(super) fn drop_if_unused(&mut self, key: &str) {
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

    /// `/away [REASON]` and `/back`. A reason is told to everyone who shares a room: a muted
    /// client may go away without one (and come back), not with one.
    pub(super) fn set_away(&mut self, conn: u64, away: Option<String>) {
        if away.as_deref().is_some_and(|r| !r.is_empty())
            && let Some(muted) = self.muted(conn)
        {
            let msg = format!("{muted}; your away message was not sent (/away alone still works)");
            return self.fail(conn, ErrorCode::Muted, msg);
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.away = away.clone();
        let msg = ServerMsg::Presence {
            ts: store::now_timestamp(),
            name: client.name.clone().unwrap_or_default(),
            away,
        };
        self.members_changed();
        let audience = self.audience(conn);
        self.push(Target::Set(audience), msg);
    }

    /// `conn` and everyone who shares a room with it, each once; rooms above the notice limit
    /// are left out.
    pub(super) fn audience(&self, conn: u64) -> Vec<u64> {
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

    pub(super) fn is_member(&self, conn: u64, key: &str) -> bool {
        self.clients
            .get(&conn)
            .is_some_and(|c| c.rooms.iter().any(|r| r == key))
    }

    /// The `users` event for a room, names sorted case-insensitively; `None` if no such room.
    pub(super) fn users(&self, key: &str) -> Option<ServerMsg> {
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
        for (name, reason) in self.remote_members(key) {
            if let Some(reason) = reason {
                away.insert(name.clone(), reason);
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

    pub(super) fn fail(&mut self, conn: u64, code: ErrorCode, message: String) {
        self.push(Target::One(conn), ServerMsg::failure(code, message));
    }

    pub(super) fn no_room(&mut self, conn: u64) {
        self.fail(
            conn,
            ErrorCode::NoRoom,
            "you are in no room; /join ROOM first".into(),
        );
    }

    pub(super) fn not_in(&mut self, conn: u64, room: &str) {
        self.fail(
            conn,
            ErrorCode::NotInRoom,
            format!("you are not in {room}; /join {room} first"),
        );
    }

    pub(super) fn no_user(&mut self, conn: u64, name: &str) {
        let name = proto::printable(name);
        self.fail(
            conn,
            ErrorCode::NoSuchUser,
            format!("nobody named {name} is connected"),
        );
    }
}
