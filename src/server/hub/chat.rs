//! Requests from named clients: what each command does, what it costs, and the rate limit.

use super::*;

impl<W: LogFile> Hub<W> {
    /// The rooms in use with their member counts: the [`proto::MAX_ROOMS_LISTED`] with the
    /// most members, by name, and how many more there are.
    pub(super) fn room_list(&self) -> ServerMsg {
        let mut rooms: Vec<RoomInfo> = self
            .rooms
            .values()
            .filter(|r| !r.members.is_empty())
            .map(|r| RoomInfo {
                name: r.name.clone(),
                members: r.members.len(),
            })
            .collect();
        // The other nodes' members of the same rooms, and their other rooms.
        for (key, (name, n)) in self.remote_rooms() {
            match rooms.iter_mut().find(|r| proto::room_key(&r.name) == key) {
                Some(r) => r.members += n,
                None => rooms.push(RoomInfo { name, members: n }),
            }
        }
        // The biggest first for the cut, then by name.
        rooms.sort_by_key(|r| std::cmp::Reverse(r.members));
        let more = rooms.len().saturating_sub(proto::MAX_ROOMS_LISTED);
        rooms.truncate(proto::MAX_ROOMS_LISTED);
        rooms.sort_by_key(|r| proto::room_key(&r.name));
        ServerMsg::Rooms { rooms, more }
    }

    pub(super) fn request(&mut self, conn: u64, req: Request) {
        let is_message = matches!(
            req,
            Request::Say(_)
                | Request::SayIn { .. }
                | Request::Me(_)
                | Request::MeIn { .. }
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
        let in_room_kind = match req {
            Request::MeIn { .. } => Kind::Action,
            _ => Kind::Message,
        };
        match req {
            Request::Say(text) => match client.current.clone() {
                Some(room) => self.say(conn, &room, text, Kind::Message),
                None => self.no_room(conn),
            },
            Request::SayIn { room, text } | Request::MeIn { room, text } => {
                let key = proto::room_key(&room);
                if self.is_member(conn, &key) {
                    self.say(conn, &key, text, in_room_kind);
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
                let rooms = self.room_list();
                self.push(Target::One(conn), rooms);
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
                let reason = Disconnect::Quit(reason);
                let bye = ServerMsg::Bye {
                    ts: store::now_timestamp(),
                    reason: reason.told(),
                };
                self.remove(conn, &reason, Some(bye));
            }
        }
    }

    /// What a request costs from the client's token bucket: a message one token, a request
    /// that makes the server send a lot (history, a big room's member list) or that is
    /// announced to every room the client is in (a name change, away) more. Never more than
    /// a burst, so everything stays possible at the steady rate.
    pub(super) fn cost(&self, conn: u64, req: &Request) -> f64 {
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
    pub(super) fn within_rate(&mut self, conn: u64, cost: f64, is_message: bool) -> bool {
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
            self.remove(conn, &Disconnect::Flooding, Some(bye));
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

    /// Logs and delivers a message (or emote) from `conn` to the room `key`.
    pub(super) fn say(&mut self, conn: u64, key: &str, text: String, kind: Kind) {
        let (Some(client), Some(room)) = (self.clients.get(&conn), self.rooms.get(key)) else {
            return;
        };
        let from = client.name.clone().unwrap_or_default();
        let room = room.name.clone();
        if let Some(r) = self.rooms.get_mut(key) {
            r.last_active = self.tick;
        }
        // A node of a cluster logs and delivers it when it comes back in the cluster's order.
        if self.publish(conn, &room, &from, None, kind, &text) {
            return;
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
    pub(super) fn direct(&mut self, conn: u64, to: &str, text: String) {
        if self.cluster_direct(conn, to, &text) {
            return;
        }
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
}
