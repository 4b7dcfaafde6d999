//! Rooms: who is in each, and the tail of its history kept in memory.
//!
//! History comes from `messages.csv` but a join must not read the log: each room keeps its last
//! `keep` messages in memory. At start-up the tails are rebuilt by reading the log backwards from
//! its end for at most `scan_bytes` bytes, so start-up time grows with that window, not with the
//! log. A room whose last messages are older than the window starts with an empty tail. The
//! broadcaster, the log's only appender, extends the tails as it appends. Direct messages are
//! never part of a room's history.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::path::Path;

use crate::proto::{self, ChatMessage, Kind};
use crate::store::RecordsBackwards;
use crate::store::message_column as M;

/// One room.
#[derive(Debug)]
pub struct Room {
    /// The name as first created (case kept, no `#`).
    pub name: String,
    /// Connection ids of the members.
    pub members: HashSet<u64>,
    /// The last messages, oldest first, as logged (never marked as history here).
    pub history: VecDeque<ChatMessage>,
    /// When the room was last used (a join, a leave, a message), on the broadcaster's own
    /// clock of events: the longest-idle empty room is the first forgotten.
    pub last_active: u64,
}

impl Room {
    pub fn new(name: &str) -> Room {
        Room {
            name: proto::room_display(name).to_string(),
            members: HashSet::new(),
            history: VecDeque::new(),
            last_active: 0,
        }
    }

    /// Appends a logged message to the tail, keeping at most `keep`; returns how many
    /// messages made room for it, and their [`message_bytes`].
    pub fn remember(&mut self, msg: ChatMessage, keep: usize) -> (usize, usize) {
        if keep == 0 {
            return (0, 0);
        }
        let mut dropped = (0, 0);
        while self.history.len() >= keep {
            let old = self.history.pop_front().expect("not empty");
            dropped.0 += 1;
            dropped.1 += message_bytes(&old);
        }
        self.history.push_back(msg);
        dropped
    }

    /// The last `n` messages, oldest first, marked as history.
    pub fn recent(&self, n: usize) -> impl Iterator<Item = ChatMessage> + '_ {
        let skip = self.history.len().saturating_sub(n);
        self.history.iter().skip(skip).map(|m| ChatMessage {
            history: true,
            ..m.clone()
        })
    }
}

/// The memory a message in a history tail is counted as: its fields, and what holding it
/// costs besides: its slot in the tail (which grows by doubling), five allocations, and its
/// entry in the budget's queue (with a copy of the room's key), which may be there twice
/// until the queue is rebuilt. Measured: about 600 bytes for a one-character message in a
/// room with a long name.
pub fn message_bytes(m: &ChatMessage) -> usize {
    let to = m.to.as_ref().map_or(0, String::len);
    m.text.len() + m.from.len() + 2 * m.room.len() + m.ts.len() + to + 600
}

/// The bound on all history tails together: past `limit` bytes, the oldest messages of the
/// whole server are forgotten first (they stay in `messages.csv`). Without it, each room's
/// tail is bounded but the rooms are not: ten thousand rooms of two hundred long messages are
/// gigabytes.
#[derive(Debug)]
pub struct HistoryBudget {
    limit: usize,
    /// Bytes of the messages in all tails.
    total: usize,
    /// Messages in all tails.
    live: usize,
    /// `(id, room key)` in the order remembered (ids increase). An entry whose message has
    /// already left its tail (pushed out by the per-room limit) is skipped when reached;
    /// when such entries outnumber the live ones, the queue is rebuilt.
    order: VecDeque<(u64, String)>,
}

impl HistoryBudget {
    pub fn new(limit: usize) -> HistoryBudget {
        HistoryBudget {
            limit,
            total: 0,
            live: 0,
            order: VecDeque::new(),
        }
    }

    /// Bytes counted now.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Counts the tails of rooms loaded at start-up.
    pub fn adopt(&mut self, rooms: &HashMap<String, Room>) {
        self.rebuild(rooms);
        self.total = rooms
            .values()
            .flat_map(|r| r.history.iter())
            .map(message_bytes)
            .sum();
        self.live = self.order.len();
    }

    /// Adds a logged message to the tail of the room `key`, then forgets the oldest messages
    /// of any room until the total is within the limit. Returns the keys of rooms whose tails
    /// were emptied (the caller may drop them if nobody is in them).
    pub fn remember(
        &mut self,
        rooms: &mut HashMap<String, Room>,
        key: &str,
        msg: ChatMessage,
        keep: usize,
    ) -> Vec<String> {
        let Some(room) = rooms.get_mut(key) else {
            return Vec::new();
        };
        let (id, bytes) = (msg.id, message_bytes(&msg));
        if keep == 0 {
            return Vec::new();
        }
        let (count, dropped) = room.remember(msg, keep);
        self.total -= dropped;
        self.live -= count;
        self.total += bytes;
        self.live += 1;
        self.order.push_back((id, key.to_string()));
        let mut emptied = Vec::new();
        while self.total > self.limit {
            let Some((id, key)) = self.order.pop_front() else {
                break;
            };
            let Some(room) = rooms.get_mut(&key) else {
                continue;
            };
            if room.history.front().is_some_and(|m| m.id == id) {
                let old = room.history.pop_front().expect("checked");
                self.total -= message_bytes(&old);
                self.live -= 1;
                if room.history.is_empty() {
                    emptied.push(key);
                }
            }
        }
        if self.order.len() > 2 * self.live + 1024 {
            self.rebuild(rooms);
        }
        emptied
    }

    /// A room is dropped with its tail: its messages no longer count.
    pub fn forget_room(&mut self, room: &Room) {
        self.total -= room.history.iter().map(message_bytes).sum::<usize>();
        self.live -= room.history.len();
    }

    /// The queue again from the tails themselves, oldest first.
    fn rebuild(&mut self, rooms: &HashMap<String, Room>) {
        let mut all: Vec<(u64, String)> = rooms
            .iter()
            .flat_map(|(k, r)| r.history.iter().map(move |m| (m.id, k.clone())))
            .collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        self.order = all.into();
    }
}

/// What start-up found in the log.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rooms with their history tails, by [`proto::room_key`].
    pub rooms: HashMap<String, Room>,
    /// Rows read.
    pub rows: usize,
    /// Bytes of the log read, from its end.
    pub bytes: u64,
    /// Rows left out of history, and why (one line each): not valid UTF-8, or longer than the
    /// server accepts. They stay in the file; the server still starts.
    pub skipped: Vec<String>,
}

/// Rebuilds room history tails of at most `keep` messages from the end of the log at `path`,
/// reading at most about `scan_bytes` of it. A row the server could not have written (invalid
/// UTF-8, or text longer than `max_text` bytes: a hand edit) is left out of history and
/// reported in [`Loaded::skipped`]; it never stops the start.
pub fn load_history(
    path: &Path,
    keep: usize,
    scan_bytes: u64,
    max_text: usize,
) -> io::Result<Loaded> {
    let mut loaded = Loaded::default();
    if keep == 0 || scan_bytes == 0 {
        return Ok(loaded);
    }
    let mut records = RecordsBackwards::new(File::open(path)?)?;
    while loaded.bytes < scan_bytes {
        let Some(rec) = records.next() else { break };
        let rec = rec?;
        loaded.bytes = records.scanned();
        loaded.rows += 1;
        if rec.fields.len() < M::COUNT || rec.get(M::ID) == Some("id") {
            continue;
        }
        let text_len = rec.fields.get(M::TEXT).map_or(0, <[u8]>::len);
        if text_len > max_text {
            loaded.skipped.push(format!(
                "the row at byte {} holds {text_len} bytes of text, more than --max-line",
                rec.offset
            ));
            continue;
        }
        let row = match rec.strings() {
            Ok(row) => row,
            Err(e) => {
                loaded.skipped.push(e.to_string());
                continue;
            }
        };
        // A row this version cannot read (a kind it does not know, a hand edit) stays out
        // of history; it is still in the file. Fields by column, not through serde: start-up
        // reads a hundred thousand rows, and this is a fifth of its time.
        let (Ok(id), Some(kind)) = (row[M::ID].parse::<u64>(), Kind::parse(&row[M::KIND])) else {
            continue;
        };
        let room_name = &row[M::ROOM];
        if kind == Kind::Direct || room_name.is_empty() {
            continue;
        }
        let room = loaded
            .rooms
            .entry(proto::room_key(room_name))
            .or_insert_with(|| Room::new(room_name));
        if room.history.len() < keep {
            room.history.push_front(ChatMessage {
                id,
                ts: row[M::TIMESTAMP].to_string(),
                room: room.name.clone(),
                from: row[M::SENDER].to_string(),
                to: None,
                kind,
                text: row[M::TEXT].to_string(),
                history: false,
            });
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::store::MESSAGES_HEADER;

    #[test]
    fn tails_are_rebuilt_from_the_end_without_direct_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        let mut f = File::create(&path).unwrap();
        writeln!(f, "{MESSAGES_HEADER}").unwrap();
        for i in 1..=10 {
            let room = if i % 2 == 0 { "Ops" } else { "lobby" };
            writeln!(
                f,
                "{i},2026-11-23T16:04:0{}.000Z,{room},u{i},,message,\"text {i}, quoted\"",
                i % 10
            )
            .unwrap();
        }
        writeln!(f, "11,2026-11-23T16:05:00.000Z,,alice,bob,direct,secret").unwrap();
        writeln!(f, "12,2026-11-23T16:05:01.000Z,ops,carol,,action,waves").unwrap();
        drop(f);
        let loaded = load_history(&path, 3, u64::MAX, 4096).unwrap();
        let ops = &loaded.rooms["ops"];
        assert_eq!(ops.name, "ops");
        let ids: Vec<u64> = ops.history.iter().map(|m| m.id).collect();
        assert_eq!(ids, [8, 10, 12]);
        assert_eq!(ops.history[2].kind, Kind::Action);
        let lobby: Vec<u64> = loaded.rooms["lobby"].history.iter().map(|m| m.id).collect();
        assert_eq!(lobby, [5, 7, 9]);
        assert_eq!(loaded.rooms["lobby"].history[0].text, "text 5, quoted");
        assert!(
            loaded
                .rooms
                .values()
                .all(|r| r.history.iter().all(|m| m.text != "secret"))
        );
        // The window bounds the scan.
        let small = load_history(&path, 3, 1, 4096).unwrap();
        assert_eq!(small.rows, 1);
    }

    #[test]
    fn recent_marks_history_and_remember_keeps_the_tail() {
        let mut room = Room::new("#Dev");
        assert_eq!(room.name, "Dev");
        for id in 1..=5 {
            room.remember(
                ChatMessage {
                    id,
                    ts: String::new(),
                    room: "Dev".into(),
                    from: "a".into(),
                    to: None,
                    kind: Kind::Message,
                    text: String::new(),
                    history: false,
                },
                3,
            );
        }
        let recent: Vec<(u64, bool)> = room.recent(2).map(|m| (m.id, m.history)).collect();
        assert_eq!(recent, [(4, true), (5, true)]);
        assert_eq!(room.recent(10).count(), 3);
    }

    fn message(id: u64, room: &str, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            ts: "2026-11-23T16:04:05.123Z".into(),
            room: room.into(),
            from: "a".into(),
            to: None,
            kind: Kind::Message,
            text: text.into(),
            history: false,
        }
    }

    #[test]
    fn the_budget_forgets_the_oldest_messages_of_any_room() {
        let mut rooms: HashMap<String, Room> = HashMap::new();
        for r in ["a", "b"] {
            rooms.insert(r.into(), Room::new(r));
        }
        let size = message_bytes(&message(1, "a", "x"));
        let mut budget = HistoryBudget::new(3 * size);
        assert!(
            budget
                .remember(&mut rooms, "a", message(1, "a", "x"), 10)
                .is_empty()
        );
        budget.remember(&mut rooms, "b", message(2, "b", "x"), 10);
        budget.remember(&mut rooms, "b", message(3, "b", "x"), 10);
        assert_eq!(budget.total(), 3 * size);
        // A fourth pushes out the oldest of the server, which is a's only message.
        let emptied = budget.remember(&mut rooms, "b", message(4, "b", "x"), 10);
        assert_eq!(emptied, ["a"]);
        assert!(rooms["a"].history.is_empty());
        let ids: Vec<u64> = rooms["b"].history.iter().map(|m| m.id).collect();
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(budget.total(), 3 * size);
        // The per-room limit still applies, and what it drops stops counting.
        budget.remember(&mut rooms, "b", message(5, "b", "x"), 2);
        assert_eq!(rooms["b"].history.len(), 2);
        assert_eq!(budget.total(), 2 * size);
        // A dropped room's messages stop counting too.
        let b = rooms.remove("b").unwrap();
        budget.forget_room(&b);
        assert_eq!(budget.total(), 0);
    }

    #[test]
    fn entries_of_messages_gone_are_not_kept_for_ever() {
        let mut rooms: HashMap<String, Room> = HashMap::new();
        rooms.insert("a".into(), Room::new("a"));
        rooms.insert("quiet".into(), Room::new("quiet"));
        let mut budget = HistoryBudget::new(usize::MAX);
        // The quiet room's one message stays at the front of the queue...
        budget.remember(&mut rooms, "quiet", message(1, "quiet", "x"), 3);
        // ... while a busy room's old messages leave by the per-room limit.
        for id in 2..100_000 {
            budget.remember(&mut rooms, "a", message(id, "a", "x"), 3);
        }
        assert!(budget.order.len() <= 2 * 4 + 1024, "{}", budget.order.len());
        assert_eq!(budget.live, 4);
    }
}
