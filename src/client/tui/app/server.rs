//! What the network side says: the connection's ups and downs, and the server's events,
//! each put in its pane.

use super::*;

impl App {
    /// Something from the network side.
    pub fn handle_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Msg(msg) => self.handle_server(msg),
            NetEvent::Up { name, server, room } => {
                self.me = name;
                self.server_name = server;
                self.conn = ConnState::Connected;
                self.notice_current("reconnected".into(), Tone::System);
                // The server put us in the lobby again: rejoin the rest, then make the room
                // we were looking at current again.
                for pane in &self.panes {
                    if let PaneKind::Room(r) = &pane.kind
                        && *r != room
                    {
                        self.outgoing.push(json!({"type": "join", "room": r}));
                    }
                }
                if let PaneKind::Room(r) = &self.panes[self.current].kind {
                    self.outgoing.push(json!({"type": "switch", "room": r}));
                }
            }
            NetEvent::Down {
                reason,
                attempt,
                retry_in,
            } => {
                if self.conn == ConnState::Connected {
                    self.notice_current(format!("disconnected: {reason}"), Tone::Error);
                }
                self.conn = ConnState::Reconnecting { attempt, retry_in };
            }
            NetEvent::Gone(reason) => {
                self.notice_current(format!("disconnected: {reason}"), Tone::Error);
                self.conn = ConnState::Gone(reason);
            }
        }
    }

    /// One event from the server.
    pub fn handle_server(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { name, server, .. } => {
                self.me = name;
                self.server_name = server;
                self.conn = ConnState::Connected;
            }
            ServerMsg::Message(m) => {
                if !self.seen.insert(m.id) {
                    return;
                }
                let mine = same_name(&m.from, &self.me);
                let direct = m.kind == Kind::Direct;
                let index = if direct {
                    let peer = if mine {
                        m.to.clone().unwrap_or_default()
                    } else {
                        m.from.clone()
                    };
                    self.pane_for(PaneKind::Direct(peer))
                } else {
                    self.pane_for(PaneKind::Room(m.room.clone()))
                };
                let mention = !mine && (direct || mentions(&m.text, &self.me));
                let live = !m.history;
                let shown = index == self.current;
                let pane = &mut self.panes[index];
                if m.history {
                    pane.history_added += 1;
                }
                pane.push(Entry::Message {
                    ts: m.ts,
                    from: m.from,
                    kind: m.kind,
                    text: m.text,
                    history: m.history,
                    mention,
                });
                if live && !mine {
                    if !shown {
                        pane.unread += 1;
                        if mention {
                            pane.mentions += 1;
                        }
                    }
                    if pane.top.is_some() {
                        pane.new_below += 1;
                    }
                    self.ring |= match self.bell {
                        Bell::On => true,
                        Bell::Off => false,
                        Bell::Mentions => mention,
                    };
                }
            }
            ServerMsg::HistoryEnd { room, .. } => {
                if let Some(i) = self.room_index(&room) {
                    let pane = &mut self.panes[i];
                    if pane.history_added > 0 {
                        pane.push(Entry::Divider);
                    }
                    pane.history_added = 0;
                }
            }
            ServerMsg::Joined { room, name, .. } => {
                if same_name(&name, &self.me) {
                    let existed = self.room_index(&room).is_some();
                    let i = self.pane_for(PaneKind::Room(room.clone()));
                    if !existed {
                        self.show(i);
                    }
                    self.notice(i, format!("you joined #{room}"));
                } else if let Some(i) = self.room_index(&room) {
                    let pane = &mut self.panes[i];
                    if !pane.members.iter().any(|m| same_name(m, &name)) {
                        pane.members.push(name.clone());
                        pane.members.sort_by_key(|m| m.to_lowercase());
                    }
                    self.notice(i, format!("{name} joined"));
                }
            }
            ServerMsg::Left {
                room, name, reason, ..
            } => {
                let Some(i) = self.room_index(&room) else {
                    return;
                };
                if same_name(&name, &self.me) {
                    self.close_pane(i);
                    self.notice_current(format!("you left #{room}"), Tone::System);
                } else {
                    self.panes[i].members.retain(|m| !same_name(m, &name));
                    self.notice(i, format!("{name} left ({reason})"));
                }
            }
            ServerMsg::Users { room, users, away } => {
                if let Some(i) = self.room_index(&room) {
                    self.panes[i].members = users;
                    self.panes[i].away = away;
                }
            }
            ServerMsg::Rooms { rooms, more } => {
                let list: Vec<String> = rooms
                    .iter()
                    .map(|r| format!("#{} ({})", r.name, r.members))
                    .collect();
                self.known_rooms.extend(rooms.into_iter().map(|r| r.name));
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                self.notice_current(format!("rooms: {}{more}", list.join(", ")), Tone::System);
            }
            ServerMsg::Switched { room } => {
                if let Some(i) = self.room_index(&room) {
                    self.show(i);
                }
            }
            ServerMsg::Nick { old, new, .. } => {
                if same_name(&old, &self.me) {
                    self.me = new.clone();
                }
                for i in 0..self.panes.len() {
                    let pane = &mut self.panes[i];
                    if pane.kind == PaneKind::Direct(old.clone()) {
                        pane.kind = PaneKind::Direct(new.clone());
                    }
                    if let Some(m) = pane.members.iter_mut().find(|m| same_name(m, &old)) {
                        *m = new.clone();
                        pane.members.sort_by_key(|m| m.to_lowercase());
                        self.notice(i, format!("{old} is now known as {new}"));
                    }
                }
            }
            ServerMsg::Presence { name, away, .. } => {
                for i in 0..self.panes.len() {
                    if !self.panes[i].members.iter().any(|m| same_name(m, &name)) {
                        continue;
                    }
                    let text = match &away {
                        Some(r) if r.is_empty() => format!("{name} is away"),
                        Some(r) => format!("{name} is away: {r}"),
                        None => format!("{name} is back"),
                    };
                    match &away {
                        Some(r) => self.panes[i].away.insert(name.clone(), r.clone()),
                        None => self.panes[i].away.remove(&name),
                    };
                    self.notice(i, text);
                }
            }
            ServerMsg::Whois {
                name,
                rooms,
                away,
                connected,
            } => {
                let away = away.map(|a| format!("; away {a}")).unwrap_or_default();
                let rooms: Vec<String> = rooms.iter().map(|r| format!("#{r}")).collect();
                self.notice_current(
                    format!(
                        "{name}: in {}; connected since {connected}{away}",
                        rooms.join(", ")
                    ),
                    Tone::System,
                );
            }
            ServerMsg::Help { commands } => {
                self.notice_current("commands:".into(), Tone::System);
                for c in commands {
                    self.notice_current(
                        format!("  {:<24} {}", c.usage, c.description),
                        Tone::System,
                    );
                }
                for (keys, what) in KEYS {
                    self.notice_current(format!("  {keys:<24} {what}"), Tone::System);
                }
            }
            ServerMsg::System { text, .. } => self.notice_current(text, Tone::System),
            ServerMsg::Error { message, .. } => self.notice_current(message, Tone::Error),
            ServerMsg::Pong { .. } => self.notice_current("pong".into(), Tone::System),
            ServerMsg::Bye { reason, .. } => {
                self.notice_current(format!("the server says goodbye: {reason}"), Tone::Error)
            }
            ServerMsg::Ping { .. } => {}
        }
    }
}
