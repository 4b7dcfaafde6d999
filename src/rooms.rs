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

use crate::protocol::{self, ChatMessage, Kind};
use crate::storage::RecordsBackwards;

/// One room.
#[derive(Debug)]
pub struct Room {
    /// The name as first created (case kept, no `#`).
    pub name: String,
    /// Connection ids of the members.
    pub members: HashSet<u64>,
    /// The last messages, oldest first, as logged (never marked as history here).
    pub history: VecDeque<ChatMessage>,
}

impl Room {
    pub fn new(name: &str) -> Room {
        Room {
            name: protocol::room_display(name).to_string(),
            members: HashSet::new(),
            history: VecDeque::new(),
        }
    }

    /// Appends a logged message to the tail, keeping at most `keep`.
    pub fn remember(&mut self, msg: ChatMessage, keep: usize) {
        if keep == 0 {
            return;
        }
        while self.history.len() >= keep {
            self.history.pop_front();
        }
        self.history.push_back(msg);
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

/// What start-up found in the log.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rooms with their history tails, by [`protocol::room_key`].
    pub rooms: HashMap<String, Room>,
    /// Rows read.
    pub rows: usize,
    /// Bytes of the log read, from its end.
    pub bytes: u64,
}

/// Rebuilds room history tails of at most `keep` messages from the end of the log at `path`,
/// reading at most about `scan_bytes` of it.
pub fn load_history(path: &Path, keep: usize, scan_bytes: u64) -> io::Result<Loaded> {
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
        if rec.len() < 7 || &rec[0] == "id" {
            continue;
        }
        let (Ok(id), Some(kind)) = (rec[0].parse::<u64>(), Kind::parse(&rec[5])) else {
            continue;
        };
        if kind == Kind::Direct || rec[2].is_empty() {
            continue;
        }
        let room = loaded
            .rooms
            .entry(protocol::room_key(&rec[2]))
            .or_insert_with(|| Room::new(&rec[2]));
        if room.history.len() < keep {
            room.history.push_front(ChatMessage {
                id,
                ts: rec[1].to_string(),
                room: room.name.clone(),
                from: rec[3].to_string(),
                to: None,
                kind,
                text: rec[6].to_string(),
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
    use crate::storage::MESSAGES_HEADER;

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
        let loaded = load_history(&path, 3, u64::MAX).unwrap();
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
        let small = load_history(&path, 3, 1).unwrap();
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
}
