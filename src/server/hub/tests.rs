//! The hub alone: in-memory logs, outboxes without sockets.

use std::time::Duration;

use super::*;
use crate::server::login::{Checker, Throttle};
use crate::server::outbox::{OutboxReceiver, queued};
use crate::store::users::Directory;

/// A hub over in-memory logs; its clients are outboxes, with no socket at all.
struct Rig {
    hub: Hub<Vec<u8>>,
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
    let messages = CsvLog::new(Vec::new(), 0, "messages".into());
    let connections = CsvLog::new(Vec::new(), 0, "connections".into());
    Rig {
        hub: Hub::new(messages, connections, 1, config, bans, auth),
        _dir: dir,
    }
}

impl Rig {
    /// A guest named `name` whose outbox holds at most `limit` bytes. Queued, so
    /// everything for it goes through the outbox, where the test reads it.
    fn client(&mut self, conn: u64, name: &str, limit: usize) -> OutboxReceiver {
        let (tx, rx) = queued(None, limit, None);
        self.hub.handle(Event::Connect {
            conn,
            peer: "127.0.0.1:1".parse().unwrap(),
            thread: "t".into(),
            outbox: tx,
        });
        let (reply, granted) = crossbeam_channel::bounded(1);
        let who = Identity::guest(Mode::Human, name.into());
        self.hub.handle(Event::Hello { conn, who, reply });
        self.hub.flush();
        assert_eq!(granted.try_recv(), Ok(true));
        drain(&rx);
        rx
    }

    fn request(&mut self, conn: u64, req: Request) {
        self.hub.handle(Event::Request { conn, req });
    }
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
