//! The hub alone: in-memory logs, outboxes without sockets.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::server::login::{Checker, Throttle};
use crate::server::outbox::{OutboxReceiver, detached};
use crate::store::users::Directory;

/// An in-memory log file that a test can read, and can fill ("no space left").
#[derive(Clone, Default)]
struct Disk {
    bytes: Arc<Mutex<Vec<u8>>>,
    full: Arc<AtomicBool>,
    /// Calls of `write` and of `sync`.
    writes: Arc<AtomicUsize>,
    syncs: Arc<AtomicUsize>,
}

impl Disk {
    fn check(&self) -> io::Result<()> {
        if self.full.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
        }
        Ok(())
    }

    /// The rows written so far.
    fn rows(&self) -> Vec<csv::StringRecord> {
        let bytes = self.bytes.lock().unwrap().clone();
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&bytes[..])
            .records()
            .map(Result::unwrap)
            .collect()
    }
}

impl Write for Disk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()
    }
}

impl LogFile for Disk {
    fn sync(&mut self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.check()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.bytes.lock().unwrap().truncate(len as usize);
        Ok(())
    }
}

/// A hub over in-memory logs; its clients are outboxes, with no socket at all.
struct Rig {
    hub: Hub<Disk>,
    /// `messages.csv`.
    messages: Disk,
    /// `data.csv`.
    connections: Disk,
    _dir: tempfile::TempDir,
}

fn rig(config: Config) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let auth = Arc::new(Auth {
        directory: Directory::open(dir.path().join("users.csv")).unwrap(),
        throttle: Throttle::new(Duration::ZERO, Duration::from_secs(60), 10),
        checker: Checker::new(1, 4).unwrap(),
        private: false,
    });
    let bans = Arc::new(std::sync::RwLock::new(Bans::open(dir.path()).unwrap()));
    let messages = Disk::default();
    let log = CsvLog::new(messages.clone(), 0, "messages".into());
    let connections = Disk::default();
    let connections_log = CsvLog::new(connections.clone(), 0, "connections".into());
    Rig {
        hub: Hub::new(log, connections_log, 1, config, bans, auth),
        messages,
        connections,
        _dir: dir,
    }
}

impl Rig {
    /// A guest named `name` whose outbox holds at most `limit` bytes. Queued, so
    /// everything for it goes through the outbox, where the test reads it.
    fn client(&mut self, conn: u64, name: &str, limit: usize) -> OutboxReceiver {
        self.client_in(conn, name, Mode::Human, limit)
    }

    fn client_in(&mut self, conn: u64, name: &str, mode: Mode, limit: usize) -> OutboxReceiver {
        let (tx, rx) = detached(limit, None);
        self.hub.handle(Event::Connect {
            conn,
            peer: "127.0.0.1:1".parse().unwrap(),
            thread: "t".into(),
            outbox: tx,
            via: String::new(),
        });
        let (reply, granted) = crossbeam_channel::bounded(1);
        let who = Identity::guest(mode, name.into());
        self.hub.handle(Event::Hello { conn, who, reply });
        self.hub.flush();
        assert_eq!(granted.try_recv(), Ok(true));
        drain(&rx);
        rx
    }

    /// A connection from `peer` that asks to be `who`; returns its outbox (not drained) and
    /// whether it was granted.
    fn arrive(&mut self, conn: u64, peer: &str, who: Identity) -> (OutboxReceiver, bool) {
        let (tx, rx) = detached(1 << 20, None);
        self.hub.handle(Event::Connect {
            conn,
            peer: peer.parse().unwrap(),
            thread: "t".into(),
            outbox: tx,
            via: String::new(),
        });
        let (reply, granted) = crossbeam_channel::bounded(1);
        self.hub.handle(Event::Hello { conn, who, reply });
        self.hub.flush();
        let granted = granted.try_recv().expect("an answer");
        (rx, granted)
    }

    fn request(&mut self, conn: u64, req: Request) {
        self.hub.handle(Event::Request { conn, req });
    }
}

/// The JSON events in `rx` of type `kind`.
fn events(rx: &OutboxReceiver, kind: &str) -> Vec<serde_json::Value> {
    String::from_utf8(drain(rx))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == kind)
        .collect()
}

fn drain(rx: &OutboxReceiver) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(b) = rx.try_recv() {
        rx.written(crate::server::outbox::charge(&b));
        out.extend_from_slice(&b);
    }
    out
}

/// A client dropped as a slow consumer by the flush that `/leave` starts takes its empty
/// room with it; the leave must then find nothing to do, not a missing room.
#[test]
fn leaving_after_being_dropped_in_the_same_batch_is_harmless() {
    let help = proto::encode(&ServerMsg::help(), Mode::Human).len();
    let mut r = rig(Config::default());
    let rx = r.client(1, "alice", help);
    r.request(1, Request::Join("zzz".into()));
    r.hub.flush();
    drain(&rx);
    // Something left in the outbox, so the big answer next does not fit.
    r.request(1, Request::Ping(None));
    r.hub.flush();
    r.request(1, Request::Help);
    r.request(1, Request::Leave(None));
    r.hub.flush();
    assert!(
        !r.hub.clients.contains_key(&1),
        "dropped as a slow consumer"
    );
    assert!(!r.hub.rooms.contains_key("zzz"), "its empty room freed");
    // The broadcaster goes on serving.
    let rx2 = r.client(2, "bob", 1 << 20);
    r.request(2, Request::Ping(None));
    r.hub.flush();
    assert!(String::from_utf8(drain(&rx2)).unwrap().contains("* pong"));
}

/// Messages reach a client in the order of the log, however the senders interleave in a
/// batch: the log is written first, then the batch is delivered in its order.
#[test]
fn delivery_order_is_log_order() {
    let mut r = rig(Config::default());
    let _a = r.client(1, "alice", 1 << 20);
    let _b = r.client(2, "bob", 1 << 20);
    let watcher = r.client_in(3, "watcher", Mode::Json, 1 << 20);
    for i in 0..20 {
        let who = if i % 3 == 0 { 2 } else { 1 };
        r.request(who, Request::Say(format!("m{i}")));
    }
    r.hub.flush();
    let delivered: Vec<(u64, String)> = events(&watcher, "message")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let logged: Vec<(u64, String)> = r
        .messages
        .rows()
        .iter()
        .filter(|row| row[5] == *"message")
        .map(|row| (row[0].parse().unwrap(), row[6].to_string()))
        .collect();
    assert_eq!(logged.len(), 20);
    assert_eq!(delivered, logged);
}

/// A message that cannot be logged reaches nobody: the sender is told, the others see
/// nothing, and once the disk has room again messages flow as before.
#[test]
fn nothing_is_delivered_when_the_log_cannot_be_written() {
    let mut r = rig(Config::default());
    let alice = r.client_in(1, "alice", Mode::Json, 1 << 20);
    let watcher = r.client_in(2, "watcher", Mode::Json, 1 << 20);
    r.messages.full.store(true, Ordering::Relaxed);
    r.request(1, Request::Say("lost".into()));
    r.hub.flush();
    assert!(
        events(&watcher, "message").is_empty(),
        "delivered but not logged"
    );
    let errors = events(&alice, "error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "storage");
    assert!(r.messages.rows().iter().all(|row| &row[6] != "lost"));
    r.messages.full.store(false, Ordering::Relaxed);
    r.request(1, Request::Say("kept".into()));
    r.hub.flush();
    let got = events(&watcher, "message");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["text"], "kept");
    assert!(r.messages.rows().iter().any(|row| &row[6] == "kept"));
}

/// A change of membership first delivers what is pending: a member who leaves in the same
/// batch still gets what was said before it left, and one who joins does not get, as new,
/// what was said before it joined (it comes as history).
#[test]
fn membership_changes_deliver_what_was_pending_first() {
    let mut r = rig(Config::default());
    let _alice = r.client(1, "alice", 1 << 20);
    let leaver = r.client_in(2, "leaver", Mode::Json, 1 << 20);
    let joiner = r.client_in(3, "joiner", Mode::Json, 1 << 20);
    r.request(3, Request::Leave(Some("lobby".into())));
    r.hub.flush();
    drain(&joiner);
    // Each change in a batch of its own, so one change's flush does not do the other's work.
    r.request(1, Request::Say("before".into()));
    r.request(3, Request::Join("lobby".into()));
    r.request(1, Request::Say("after".into()));
    r.hub.flush();
    r.request(1, Request::Say("last words".into()));
    r.request(2, Request::Leave(Some("lobby".into())));
    r.request(1, Request::Say("gone".into()));
    r.hub.flush();
    let texts = |v: Vec<serde_json::Value>| -> Vec<String> {
        v.iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        texts(events(&leaver, "message")),
        ["before", "after", "last words"]
    );
    // The joiner's first event is its join; "before" comes inside its history.
    let lines = String::from_utf8(drain(&joiner)).unwrap();
    let types: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(types[0]["type"], "joined", "{lines}");
    let end = lines.find("history_end").expect("history sent");
    let (history, live) = lines.split_at(end);
    assert!(history.contains("\"before\""), "{lines}");
    assert!(
        !live.contains("\"before\"") && live.contains("\"after\""),
        "{lines}"
    );
}

/// Joins with nothing queued for their room cost no flush: many clients arriving in one
/// batch are written to data.csv together, once, at the batch's end; and with `--fsync
/// batch` data.csv is synced once the rows are a second old, not at each write.
#[test]
fn a_batch_of_arrivals_is_one_write_and_a_later_sync() {
    let mut config = Config::default();
    config.chat.notice_limit = 0;
    let mut r = rig(config);
    let mut replies = Vec::new();
    for conn in 1..=50u64 {
        let (tx, rx) = detached(1 << 20, None);
        replies.push(rx);
        r.hub.handle(Event::Connect {
            conn,
            peer: "127.0.0.1:1".parse().unwrap(),
            thread: "t".into(),
            outbox: tx,
            via: String::new(),
        });
        let (reply, _granted) = crossbeam_channel::bounded(1);
        let who = Identity::guest(Mode::Json, format!("user{conn}"));
        r.hub.handle(Event::Hello { conn, who, reply });
    }
    assert_eq!(
        r.connections.writes.load(Ordering::SeqCst),
        0,
        "nothing written mid-batch"
    );
    r.hub.flush();
    assert_eq!(
        r.connections.writes.load(Ordering::SeqCst),
        1,
        "one write for the batch"
    );
    assert_eq!(
        r.connections.rows().len(),
        100,
        "a connect and a named row each"
    );
    for rx in &replies {
        assert_eq!(events(rx, "welcome").len(), 1);
    }
    assert_eq!(
        r.connections.syncs.load(Ordering::SeqCst),
        0,
        "not synced at once"
    );
    let due = r.hub.connections_sync_due.expect("a sync is due");
    assert!(due > std::time::Instant::now());
    // Once due, the next flush (or the broadcaster's wait) syncs.
    r.hub.connections_sync_due = Some(std::time::Instant::now());
    r.hub.flush();
    assert_eq!(r.connections.syncs.load(Ordering::SeqCst), 1);
    assert_eq!(r.hub.connections_sync_due, None);
}

/// A login to an account that is connected ends the old session and gets the name in the
/// same event; a guest asking for a connected name is refused as before.
#[test]
fn a_login_takes_over_its_own_accounts_session_and_a_guest_cannot() {
    let mut r = rig(Config::default());
    let alice = || Identity::account(Mode::Json, "alice".into(), Standing::Member);
    let (old, granted) = r.arrive(1, "10.0.0.1:1000", alice());
    assert!(granted);
    drain(&old);
    let bob = r.client_in(2, "bob", Mode::Json, 1 << 20);

    let (new, granted) = r.arrive(3, "10.0.0.2:2000", alice());
    assert!(granted, "the account's password takes the name over");
    let byes = events(&old, "bye");
    assert_eq!(byes.len(), 1, "the old session is told once");
    assert_eq!(
        byes[0]["reason"],
        "you logged in from another connection (10.0.0.2:2000); this session is closed"
    );
    assert!(!r.hub.clients.contains_key(&1), "the old session is gone");
    assert_eq!(r.hub.names.get("alice"), Some(&3));
    assert_eq!(events(&new, "welcome").len(), 1);
    let seen = String::from_utf8(drain(&bob)).unwrap();
    let left = seen.find(r#""type":"left""#).expect("bob sees alice leave");
    let joined = seen
        .find(r#""type":"joined""#)
        .expect("bob sees alice join");
    assert!(left < joined, "{seen}");
    assert!(seen.contains(r#""reason":"logged in again""#), "{seen}");
    let rows = r.connections.rows();
    let gone = rows
        .iter()
        .find(|row| &row[1] == "disconnect" && &row[2] == "1")
        .expect("a disconnect row for the old session");
    assert_eq!(&gone[6], "alice");
    assert_eq!(&gone[7], "taken over by conn 3");

    // A guest cannot take a guest's name, nor (look-alikes included) an account's.
    for (conn, name) in [(4, "bob"), (5, "B0B"), (6, "alice"), (7, "ALICE")] {
        let (rx, granted) = r.arrive(
            conn,
            "10.0.0.3:3000",
            Identity::guest(Mode::Json, name.into()),
        );
        assert!(!granted, "{name}");
        assert_eq!(events(&rx, "error")[0]["code"], "name_taken", "{name}");
    }
    assert_eq!(r.hub.names.get("bob"), Some(&2));
    assert_eq!(r.hub.names.get("alice"), Some(&3));
    assert!(events(&new, "bye").is_empty(), "the new session stays");
}
