//! The full-screen client's state: panes (rooms and direct conversations), what the user
//! types, and what the server said, with no terminal and no socket.
//!
//! [`App::handle_key`], [`App::handle_paste`] and [`App::handle_net`] change it;
//! requests to send pile up for [`App::take_outgoing`]; `render.rs` draws it. Tests drive it
//! with key events and server events and look at the screen through ratatui's `TestBackend`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

use super::conn::NetEvent;
use super::input::{Edit, Editor};
use crate::proto::{COMMANDS, Kind, ServerMsg};

mod server;

/// The most entries a pane keeps; older ones scroll away for good.
const PANE_KEPT: usize = 2000;

/// Commands the client handles itself, besides the server's (for Tab).
const LOCAL_COMMANDS: &[&str] = &[
    "/switch", "/bell", "/close", "/clear", "/quit", "/me", "/msg",
];

/// Whether we are connected, as the status line shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnState {
    Connected,
    /// Lost; the next attempt is in `retry_in`.
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
    },
    /// Lost for good.
    Gone(String),
}

/// When the terminal bell rings (`/bell on|off|mentions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bell {
    /// On every message from someone else.
    On,
    Off,
    /// On mentions of our name and on direct messages.
    Mentions,
}

/// What a pane shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaneKind {
    Room(String),
    /// A direct conversation with this person.
    Direct(String),
    /// Notices, when we are in no room.
    Status,
}

/// How a notice looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// From the server or about the room (joins, leaves, answers).
    System,
    Error,
}

/// One thing in a pane's scrollback.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Message {
        ts: String,
        from: String,
        kind: Kind,
        text: String,
        /// Sent again from the log: shown dimmed, above the divider.
        history: bool,
        /// Names us (or is a direct message to us): highlighted.
        mention: bool,
    },
    Notice {
        text: String,
        tone: Tone,
    },
    /// Where the history sent on joining ends and live messages begin.
    Divider,
}

/// A room or conversation: its scrollback, counters and members.
#[derive(Debug, Clone)]
pub struct Pane {
    pub kind: PaneKind,
    pub entries: Vec<Entry>,
    /// Live messages that arrived while another pane was shown.
    pub unread: usize,
    /// Of those, the ones that name us (and every direct message).
    pub mentions: usize,
    /// Sorted case-insensitively, as the server sends them.
    pub members: Vec<String>,
    /// Away reasons by name.
    pub away: BTreeMap<String, String>,
    /// The first visual line shown when scrolled back; `None` follows the newest line.
    pub top: Option<usize>,
    /// Live messages that arrived while scrolled back (for the marker).
    pub new_below: usize,
    /// History messages added since the last divider, so a rejoin whose history was all
    /// seen already adds no second divider.
    history_added: usize,
}

impl Pane {
    fn new(kind: PaneKind) -> Pane {
        Pane {
            kind,
            entries: Vec::new(),
            unread: 0,
            mentions: 0,
            members: Vec::new(),
            away: BTreeMap::new(),
            top: None,
            new_below: 0,
            history_added: 0,
        }
    }

    /// The pane's name as the side panel and status line show it.
    pub fn title(&self) -> String {
        match &self.kind {
            PaneKind::Room(r) => format!("#{r}"),
            PaneKind::Direct(p) => format!("@{p}"),
            PaneKind::Status => "status".into(),
        }
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
        if self.entries.len() > PANE_KEPT {
            self.entries.remove(0);
            // What was shown moved up by a line or more; a rough anchor is good enough.
            self.top = self.top.map(|t| t.saturating_sub(1));
        }
    }
}

/// An ongoing Tab completion: pressing Tab again takes the next candidate.
#[derive(Debug, Clone)]
struct Completion {
    start: usize,
    candidates: Vec<String>,
    index: usize,
}

/// Everything the full-screen client knows.
#[derive(Debug)]
pub struct App {
    /// The address we connect to, for the status line.
    pub server: String,
    /// The server's name and version, from its `welcome`.
    pub server_name: String,
    /// Our name as the server granted it (it may differ in case from what we asked).
    pub me: String,
    pub conn: ConnState,
    pub panes: Vec<Pane>,
    pub current: usize,
    pub editor: Editor,
    pub bell: Bell,
    /// Requests waiting for the event loop to send them.
    outgoing: Vec<Value>,
    /// Message ids shown already: a reconnect's history does not show them twice.
    seen: HashSet<u64>,
    /// The bell should ring at the next draw.
    ring: bool,
    quit: bool,
    /// Ctrl-L: the next draw repaints everything.
    pub repaint: bool,
    completion: Option<Completion>,
    /// Rooms the server listed (`/rooms`), for Tab.
    known_rooms: BTreeSet<String>,
    /// The scrollback area's height and the current pane's line count at the last draw:
    /// what PageUp and PageDown move by.
    pub(super) view_height: usize,
    pub(super) view_total: usize,
}

impl App {
    /// A client just welcomed as `me` in `room` on `server` (the address typed).
    pub fn new(server: &str, server_name: &str, me: &str, room: &str) -> App {
        App {
            server: server.to_string(),
            server_name: server_name.to_string(),
            me: me.to_string(),
            conn: ConnState::Connected,
            panes: vec![Pane::new(PaneKind::Room(room.to_string()))],
            current: 0,
            editor: Editor::default(),
            bell: Bell::Mentions,
            outgoing: Vec::new(),
            seen: HashSet::new(),
            ring: false,
            quit: false,
            repaint: false,
            completion: None,
            known_rooms: BTreeSet::new(),
            view_height: 0,
            view_total: 0,
        }
    }

    pub fn current_pane(&self) -> &Pane {
        &self.panes[self.current]
    }

    /// The requests to send now.
    pub fn take_outgoing(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outgoing)
    }

    /// Whether to ring the terminal bell (once).
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.ring)
    }

    pub fn wants_quit(&self) -> bool {
        self.quit
    }

    /// A key the user pressed.
    pub fn handle_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if key.code != KeyCode::Tab {
            self.completion = None;
        }
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit(None),
            KeyCode::Char('d') if ctrl && self.editor.is_empty() => self.quit(None),
            KeyCode::Char('l') if ctrl => self.repaint = true,
            KeyCode::Char('n') if ctrl => self.select((self.current + 1) % self.panes.len()),
            KeyCode::Char('p') if ctrl => {
                self.select((self.current + self.panes.len() - 1) % self.panes.len())
            }
            KeyCode::Char(c @ '1'..='9') if alt => {
                let n = c as usize - '1' as usize;
                if n < self.panes.len() {
                    self.select(n);
                }
            }
            KeyCode::PageUp => self.scroll_up(),
            KeyCode::PageDown => self.scroll_down(),
            KeyCode::Esc => {
                let pane = &mut self.panes[self.current];
                pane.top = None;
                pane.new_below = 0;
            }
            KeyCode::Tab => self.complete(),
            _ => {
                if let Edit::Submit(text) = self.editor.handle_key(key) {
                    self.submit(text);
                }
            }
        }
    }

    /// Joins `room` (which becomes the pane shown once the server says so).
    pub fn join(&mut self, room: &str) {
        let room = room.trim_start_matches('#');
        self.outgoing.push(json!({"type": "join", "room": room}));
    }

    /// A bracketed paste: inserted whole, newlines and all, to be sent as one message.
    pub fn handle_paste(&mut self, text: &str) {
        self.completion = None;
        self.editor.insert_str(text);
    }

    /// Makes pane `i` the one shown; a room becomes the server's current room too, so `/me`
    /// and `/who` go where the user looks.
    fn select(&mut self, i: usize) {
        if i != self.current
            && let PaneKind::Room(r) = &self.panes[i].kind
        {
            self.outgoing.push(json!({"type": "switch", "room": r}));
        }
        self.show(i);
    }

    /// Makes pane `i` the one shown, without telling the server (which told us).
    fn show(&mut self, i: usize) {
        self.current = i;
        let pane = &mut self.panes[i];
        pane.unread = 0;
        pane.mentions = 0;
    }

    fn scroll_up(&mut self) {
        let page = self.view_height.saturating_sub(1).max(1);
        let last_top = self.view_total.saturating_sub(self.view_height);
        let pane = &mut self.panes[self.current];
        let top = pane.top.unwrap_or(last_top);
        pane.top = Some(top.saturating_sub(page));
    }

    fn scroll_down(&mut self) {
        let page = self.view_height.saturating_sub(1).max(1);
        let last_top = self.view_total.saturating_sub(self.view_height);
        let pane = &mut self.panes[self.current];
        if let Some(top) = pane.top {
            if top + page >= last_top {
                pane.top = None;
                pane.new_below = 0;
            } else {
                pane.top = Some(top + page);
            }
        }
    }

    fn quit(&mut self, reason: Option<&str>) {
        self.outgoing.push(match reason {
            Some(r) => json!({"type": "quit", "reason": r}),
            None => json!({"type": "quit"}),
        });
        self.quit = true;
    }

    /// What Enter does with the typed text.
    fn submit(&mut self, text: String) {
        if text.trim().is_empty() {
            return;
        }
        let pane = &mut self.panes[self.current];
        pane.top = None;
        pane.new_below = 0;
        if let Some(rest) = text.strip_prefix("//") {
            return self.say(format!("/{rest}"), text);
        }
        if !text.starts_with('/') {
            return self.say(text.clone(), text);
        }
        let (cmd, rest) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
        let rest = rest.trim();
        match cmd.to_lowercase().as_str() {
            "/quit" | "/exit" | "/bye" => self.quit(Some(rest).filter(|r| !r.is_empty())),
            "/switch" | "/sw" if !rest.is_empty() => self.switch_to(rest),
            "/join" | "/j" if !rest.is_empty() => self.join(rest),
            "/me" if !rest.is_empty() => match &self.panes[self.current].kind {
                PaneKind::Room(_) => self.send(json!({"type": "me", "text": rest}), &text),
                _ => self.notice_current("/me works in a room".into(), Tone::Error),
            },
            "/msg" | "/query" => {
                let (to, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                if to.is_empty() {
                    return self.notice_current("usage: /msg NAME TEXT".into(), Tone::Error);
                }
                let i = self.pane_for(PaneKind::Direct(to.to_string()));
                self.select(i);
                if !body.trim().is_empty() {
                    self.send(json!({"type": "msg", "to": to, "text": body.trim()}), &text);
                }
            }
            "/close" => self.close_current(),
            "/leave" | "/part" if matches!(self.panes[self.current].kind, PaneKind::Direct(_)) => {
                self.close_current()
            }
            "/clear" => self.panes[self.current].entries.clear(),
            "/bell" => {
                match rest {
                    "on" => self.bell = Bell::On,
                    "off" => self.bell = Bell::Off,
                    "mentions" => self.bell = Bell::Mentions,
                    "" => {}
                    _ => {
                        return self
                            .notice_current("usage: /bell on|off|mentions".into(), Tone::Error);
                    }
                }
                let now = match self.bell {
                    Bell::On => "on every message",
                    Bell::Off => "off",
                    Bell::Mentions => "on mentions and direct messages",
                };
                self.notice_current(format!("the bell rings {now}"), Tone::System);
            }
            _ => self.send(json!({"type": "command", "line": text}), &text),
        }
    }

    /// A plain line: to the room shown, or to the person of a direct pane.
    fn say(&mut self, message: String, typed: String) {
        let request = match &self.panes[self.current].kind {
            PaneKind::Room(r) => json!({"type": "say", "room": r, "text": message}),
            PaneKind::Direct(p) => json!({"type": "msg", "to": p, "text": message}),
            PaneKind::Status => {
                return self
                    .notice_current("you are in no room: /join ROOM first".into(), Tone::Error);
            }
        };
        self.send(request, &typed);
    }

    /// Queues a request; while disconnected, puts the typed text back instead of losing it.
    fn send(&mut self, request: Value, typed: &str) {
        if self.conn == ConnState::Connected {
            self.outgoing.push(request);
        } else {
            self.editor.insert_str(typed);
            self.notice_current(
                "not connected: your text is kept, press Enter once reconnected".into(),
                Tone::Error,
            );
        }
    }

    fn switch_to(&mut self, target: &str) {
        if let Ok(n) = target.parse::<usize>()
            && (1..=self.panes.len()).contains(&n)
        {
            return self.select(n - 1);
        }
        let want = target.trim_start_matches(['#', '@']);
        let found = self.panes.iter().position(|p| match &p.kind {
            PaneKind::Room(r) | PaneKind::Direct(r) => same_name(r, want),
            PaneKind::Status => false,
        });
        match found {
            Some(i) => self.select(i),
            None => {
                self.notice_current(format!("you are not in #{want}: /join {want}"), Tone::Error)
            }
        }
    }

    fn close_current(&mut self) {
        match self.panes[self.current].kind.clone() {
            PaneKind::Room(r) => self.outgoing.push(json!({"type": "leave", "room": r})),
            _ => self.close_pane(self.current),
        }
    }

    fn close_pane(&mut self, i: usize) {
        self.panes.remove(i);
        if self.panes.is_empty() {
            self.panes.push(Pane::new(PaneKind::Status));
        }
        if self.current > i || self.current >= self.panes.len() {
            self.current = self.current.saturating_sub(1);
        }
        let now = self.current.min(self.panes.len() - 1);
        self.current = usize::MAX;
        self.select(now);
    }

    /// Tab: completes the word before the cursor (a command, a `#room` or a name); Tab
    /// again takes the next candidate.
    fn complete(&mut self) {
        if let Some(c) = &mut self.completion {
            c.index = (c.index + 1) % c.candidates.len();
            let (start, next) = (c.start, c.candidates[c.index].clone());
            self.editor.replace_before_cursor(start, &next);
            return;
        }
        let (start, word) = self.editor.word_before_cursor();
        let lower = word.to_lowercase();
        let mut candidates: Vec<String> = if word.starts_with('/') && start == 0 {
            let mut all: BTreeSet<String> = COMMANDS
                .iter()
                .filter_map(|(usage, _)| usage.split_whitespace().next())
                .map(str::to_string)
                .collect();
            all.extend(LOCAL_COMMANDS.iter().map(|c| c.to_string()));
            all.into_iter().map(|c| c + " ").collect()
        } else if word.starts_with('#') {
            let mut all = self.known_rooms.clone();
            all.extend(self.panes.iter().filter_map(|p| match &p.kind {
                PaneKind::Room(r) => Some(r.clone()),
                _ => None,
            }));
            all.into_iter().map(|r| format!("#{r} ")).collect()
        } else {
            let mut names: Vec<String> = self.panes[self.current].members.clone();
            for p in &self.panes {
                for m in &p.members {
                    if !names.contains(m) {
                        names.push(m.clone());
                    }
                }
                if let PaneKind::Direct(peer) = &p.kind
                    && !names.contains(peer)
                {
                    names.push(peer.clone());
                }
            }
            names.retain(|n| !same_name(n, &self.me));
            let suffix = if start == 0 { ": " } else { " " };
            names.into_iter().map(|n| n + suffix).collect()
        };
        candidates.retain(|c| c.to_lowercase().starts_with(&lower));
        if candidates.is_empty() {
            return;
        }
        if candidates.len() > 1 {
            // Show what Tab cycles through.
            let list: Vec<&str> = candidates.iter().map(|c| c.trim_end()).collect();
            self.notice_current(list.join("  "), Tone::System);
        }
        let first = candidates[0].clone();
        self.editor.replace_before_cursor(start, &first);
        self.completion = Some(Completion {
            start,
            candidates,
            index: 0,
        });
    }

    fn room_index(&self, room: &str) -> Option<usize> {
        self.panes
            .iter()
            .position(|p| matches!(&p.kind, PaneKind::Room(r) if r == room))
    }

    /// The index of the pane of `kind`, created (at the end) when there is none.
    fn pane_for(&mut self, kind: PaneKind) -> usize {
        let found = self.panes.iter().position(|p| match (&p.kind, &kind) {
            (PaneKind::Room(a), PaneKind::Room(b)) => a == b,
            (PaneKind::Direct(a), PaneKind::Direct(b)) => same_name(a, b),
            _ => false,
        });
        if let Some(i) = found {
            return i;
        }
        // A room replaces the status pane of a client that was in none.
        if self.panes.len() == 1 && self.panes[0].kind == PaneKind::Status {
            self.panes[0].kind = kind;
            return 0;
        }
        self.panes.push(Pane::new(kind));
        self.panes.len() - 1
    }

    fn notice(&mut self, i: usize, text: String) {
        self.panes[i].push(Entry::Notice {
            text,
            tone: Tone::System,
        });
    }

    fn notice_current(&mut self, text: String, tone: Tone) {
        self.panes[self.current].push(Entry::Notice { text, tone });
    }
}

/// The key bindings, for `/help` and the README.
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "send; Alt+Enter inserts a newline"),
    ("Alt+1..9, Ctrl+N/P", "switch pane"),
    ("PageUp/PageDown, Esc", "scroll back; back to the newest"),
    ("Up/Down", "input history"),
    ("Tab", "complete a name, #room or /command"),
    ("Ctrl+U, Ctrl+W", "delete to line start, a word"),
    ("Ctrl+L", "redraw"),
    ("Ctrl+C, /quit", "leave"),
];

/// Whether two names are the same for the client's purposes (case aside).
pub(super) fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// Whether `text` names `me` as a word (`alice`, `@alice`, `Alice:`), not inside another word.
pub fn mentions(text: &str, me: &str) -> bool {
    mention_spans(text, me).next().is_some()
}

/// The byte ranges of `text` where `me` is mentioned as a word, case aside.
pub fn mention_spans<'a>(text: &'a str, me: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    let lower = text.to_lowercase();
    let needle = me.to_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut found = Vec::new();
    // Lower-casing may change byte lengths; only use it when it does not.
    if !needle.is_empty() && lower.len() == text.len() {
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            let end = start + needle.len();
            if !word(lower[..start].chars().next_back()) && !word(lower[end..].chars().next()) {
                found.push((start, end));
            }
            from = end;
        }
    }
    found.into_iter()
}
