//! Several nodes through a real `redis-server` (`--redis`): clients on different nodes in one
//! room and one order, names unique across nodes, a ban on one node applied on the others,
//! history across nodes, Redis restarted mid-conversation, a node killed with `kill -9`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Client, ServerProcess, csv_rows, write_accounts};

/// A `redis-server` of the test's own, on a free loopback port, without persistence.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(child) = Redis::spawn(port) {
                return Redis {
                    child: Some(child),
                    port,
                };
            }
        }
        panic!("redis-server would not start (scripts/test.sh installs it)");
    }

    /// Starts redis-server on `port`; `None` if it ended before it was ready (the port was
    /// taken meanwhile). Ready is what it says, not a guess: its log line.
    fn spawn(port: u16) -> Option<Child> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        // Read its log to the end, or it would block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_deadline(deadline) {
                Ok(line) if line.contains("Ready to accept connections") => return Some(child),
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it and starts it again on the same port, empty (no persistence).
    fn restart(&mut self) {
        self.stop();
        self.child = Some(Redis::spawn(self.port).expect("redis-server restarts"));
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node of the cluster at `redis`, named `node`, in `dir`.
fn node(dir: &Path, redis: &Redis, node: &str, extra: &[&str]) -> ServerProcess {
    let url = redis.url();
    let mut args = vec!["--redis", &url, "--node-id", node, "--redis-lease", "2"];
    args.extend_from_slice(extra);
    ServerProcess::start(dir, &args)
}

/// The next chat message a client gets.
fn message(c: &mut Client) -> Value {
    c.next_of("message")
}

/// Asks `who` until `name` is listed (the other nodes' members arrive within a second), or
/// fails after 10 s.
fn until_listed(c: &mut Client, name: &str, listed: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.send_json(json!({"type": "who"}));
        let users = c.next_of("users");
        let has = users["users"].as_array().unwrap().iter().any(|u| u == name);
        if has == listed {
            return;
        }
        assert!(Instant::now() < deadline, "{name} listed: {has}; {users}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn clients_on_two_nodes_chat_in_one_room_in_one_order() {
    let redis = Redis::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &redis, "a", &[]);
    let b = node(db.path(), &redis, "b", &[]);
    let mut alice = Client::json(a.addr, "alice");
    let mut bob = Client::json(b.addr, "bob");
    // Both talk at once: 40 lines each, interleaved.
    for i in 0..40 {
        alice.send_json(json!({"type": "say", "text": format!("a{i}")}));
        bob.send_json(json!({"type": "say", "text": format!("b{i}")}));
    }
    let seen = |c: &mut Client| -> Vec<(u64, String)> {
        (0..80)
            .map(|_| {
                let m = message(c);
                (
                    m["id"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (on_a, on_b) = (seen(&mut alice), seen(&mut bob));
    assert_eq!(on_a, on_b, "both nodes deliver in the cluster's one order");
    assert!(
        on_a.windows(2).all(|w| w[0].0 < w[1].0),
        "ids increase: {on_a:?}"
    );
    // Each node's log holds every message, with the same ids.
    drop((a, b));
    let rows = |d: &Path| csv_rows(&std::fs::read_to_string(d.join("messages.csv")).unwrap());
    assert_eq!(rows(da.path()), rows(db.path()));
    assert_eq!(rows(da.path()).len(), 80);
    // chat-log merges the two files into one view, each message once.
    let merged = Command::new(env!("CARGO_BIN_EXE_chat-log"))
        .arg("--data-dir")
        .arg(da.path())
        .arg("--data-dir")
        .arg(db.path())
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert!(merged.status.success(), "{merged:?}");
    let merged = csv_rows(&String::from_utf8(merged.stdout).unwrap());
    assert_eq!(merged.len(), 80, "{merged:?}");
}

#[test]
fn three_nodes_history_and_direct_messages_span_the_cluster() {
    let redis = Redis::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &redis, "a", &[]);
    let b = node(dirs[1].path(), &redis, "b", &[]);
    let mut alice = Client::json(a.addr, "alice");
    alice.send_json(json!({"type": "join", "room": "ops"}));
    alice.next_of("history_end");
    alice.send_json(json!({"type": "say", "text": "before carol came", "room": "ops"}));
    message(&mut alice);
    // A node started later catches up from the stream; its clients see the history.
    let c = node(dirs[2].path(), &redis, "c", &[]);
    let mut carol = Client::json(c.addr, "carol");
    carol.send_json(json!({"type": "join", "room": "ops"}));
    let history = message(&mut carol);
    assert_eq!(history["text"], "before carol came");
    assert_eq!(history["history"], true);
    let mut bob = Client::json(b.addr, "bob");
    bob.send_json(json!({"type": "join", "room": "ops"}));
    assert_eq!(message(&mut bob)["text"], "before carol came");
    carol.send_json(json!({"type": "say", "text": "from c", "room": "ops"}));
    assert_eq!(message(&mut alice)["text"], "from c");
    assert_eq!(message(&mut bob)["text"], "from c");
    // /who and /rooms list the members of every node.
    until_listed(&mut alice, "carol", true);
    alice.send_json(json!({"type": "rooms"}));
    let rooms = alice.next_of("rooms");
    let ops = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ops")
        .cloned();
    assert_eq!(ops.map(|r| r["members"].clone()), Some(json!(3)), "{rooms}");
    // A direct message to someone on another node.
    alice.send_json(json!({"type": "msg", "to": "carol", "text": "psst"}));
    let dm = loop {
        let m = message(&mut carol);
        if m["kind"] == "direct" {
            break m;
        }
    };
    assert_eq!(
        (dm["kind"].clone(), dm["from"].clone()),
        (json!("direct"), json!("alice"))
    );
    bob.nothing_pending_after(true, |l| !l.contains("psst"));
}

#[test]
fn a_name_held_on_one_node_is_refused_on_another_until_it_is_free() {
    let redis = Redis::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &redis, "a", &[]);
    let b = node(db.path(), &redis, "b", &[]);
    let mut alice = Client::json(a.addr, "alice");
    for name in ["alice", "ALICE", "a1ice"] {
        let mut other = Client::connect(b.addr);
        other.send_json(json!({"type": "hello", "name": name}));
        let err = other.next_of("error");
        assert_eq!(err["code"], "name_taken", "{name}: {err}");
    }
    alice.send_json(json!({"type": "quit"}));
    alice.next_of("bye");
    // Released when she leaves: the name is free on b as soon as a has told Redis.
    take_name(b.addr, "alice", Duration::from_secs(2));
}

/// Logs in as `name` on `addr`, asking again while the name is taken, for at most `within`.
fn take_name(addr: std::net::SocketAddr, name: &str, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    loop {
        let mut c = Client::connect(addr);
        c.send_json(json!({"type": "hello", "name": name}));
        let v = loop {
            let line = c.line();
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue; // The greeting.
            };
            if v["type"] == "welcome" || v["type"] == "error" {
                break v;
            }
        };
        if v["type"] == "welcome" {
            return c;
        }
        assert!(Instant::now() < deadline, "{name} is still held: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_ban_on_one_node_holds_on_the_others() {
    let redis = Redis::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_accounts(
        da.path(),
        &[("boss", "correct horse", chatroom::store::users::Role::Admin)],
    );
    let a = node(da.path(), &redis, "a", &[]);
    let b = node(db.path(), &redis, "b", &[]);
    let mut root = crate::support::login(a.addr, "boss", "correct horse");
    let mut mallory = Client::json(b.addr, "mallory");
    crate::support::command(&mut root, "/ban mallory spamming");
    let told = root.next_of("system");
    assert!(
        told["text"].as_str().unwrap().contains("banned mallory"),
        "{told}"
    );
    let bye = mallory.next_of("bye");
    assert!(bye["reason"].as_str().unwrap().contains("banned"), "{bye}");
    let mut again = Client::connect(b.addr);
    again.send_json(json!({"type": "hello", "name": "mallory"}));
    assert_eq!(again.next_of("error")["code"], "banned");
    let bans = std::fs::read_to_string(db.path().join("bans.csv")).unwrap();
    assert!(
        bans.contains("mallory") && bans.contains("spamming"),
        "{bans}"
    );
}

#[test]
fn a_node_serves_alone_while_redis_is_away_and_rejoins() {
    let mut redis = Redis::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &redis, "a", &[]);
    let b = node(db.path(), &redis, "b", &[]);
    let mut alice = Client::json(a.addr, "alice");
    let mut bob = Client::json(b.addr, "bob");
    alice.send_json(json!({"type": "say", "text": "one"}));
    assert_eq!(message(&mut bob)["text"], "one");
    let before = message(&mut alice)["id"].as_u64().unwrap();
    redis.stop();
    let warning = alice.next_of("system");
    assert!(
        warning["text"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{warning}"
    );
    // Alone: alice's message is logged and delivered on a, and only there.
    alice.send_json(json!({"type": "say", "text": "alone"}));
    let alone = message(&mut alice);
    assert_eq!(alone["text"], "alone");
    assert!(alone["id"].as_u64().unwrap() > before);
    redis.restart();
    let back = alice.next_of("system");
    assert!(back["text"].as_str().unwrap().contains("again"), "{back}");
    bob.next_of("system");
    let back_b = bob.next_of("system");
    assert!(
        back_b["text"].as_str().unwrap().contains("again"),
        "{back_b}"
    );
    alice.send_json(json!({"type": "say", "text": "together again"}));
    let m = message(&mut bob);
    assert_eq!(m["text"], "together again");
    // The counter was raised past what a logged alone: no id is given twice.
    assert!(
        m["id"].as_u64().unwrap() > alone["id"].as_u64().unwrap(),
        "{m}"
    );
}

#[test]
fn a_killed_node_s_names_are_freed_after_the_lease() {
    let redis = Redis::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &redis, "a", &[]);
    let b = node(db.path(), &redis, "b", &[]);
    let _alice = Client::json(a.addr, "alice");
    let mut bob = Client::json(b.addr, "bob");
    until_listed(&mut bob, "alice", true);
    a.signal("KILL");
    drop(a);
    // b goes on; alice leaves its lists and her name is free once the lease (2 s) ends.
    bob.send_json(json!({"type": "say", "text": "still here"}));
    assert_eq!(message(&mut bob)["text"], "still here");
    until_listed(&mut bob, "alice", false);
    take_name(b.addr, "alice", Duration::from_secs(10));
}

#[test]
fn accounts_and_mutes_hold_on_every_node() {
    let redis = Redis::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_accounts(
        da.path(),
        &[("boss", "correct horse", chatroom::store::users::Role::Admin)],
    );
    let a = node(da.path(), &redis, "a", &[]);
    let b = node(db.path(), &redis, "b", &[]);
    // An account added on a (with the command line, the server running) reaches b's users.csv.
    let mut add = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--data-dir")
        .arg(da.path())
        .args(["users", "add", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        add.stdin
            .take()
            .unwrap()
            .write_all(b"battery staple\n")
            .unwrap();
    }
    assert!(add.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let users = std::fs::read_to_string(db.path().join("users.csv")).unwrap_or_default();
        if users.contains("carol") && users.contains("boss") {
            break;
        }
        assert!(Instant::now() < deadline, "b's users.csv: {users}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut carol = crate::support::login(b.addr, "carol", "battery staple");
    // The administrator on a mutes a guest on b.
    let mut boss = crate::support::login(a.addr, "boss", "correct horse");
    let mut mallory = Client::json(b.addr, "mallory");
    until_listed(&mut boss, "mallory", true);
    crate::support::command(&mut boss, "/mute mallory 10m flooding");
    let muted = mallory.next_of("system");
    assert!(
        muted["text"].as_str().unwrap().contains("muted by boss"),
        "{muted}"
    );
    mallory.send_json(json!({"type": "say", "text": "still talking"}));
    assert_eq!(mallory.next_of("error")["code"], "muted");
    crate::support::command(&mut boss, "/unmute mallory");
    let unmuted = mallory.next_of("system");
    assert!(
        unmuted["text"].as_str().unwrap().contains("unmuted"),
        "{unmuted}"
    );
    mallory.send_json(json!({"type": "say", "text": "thanks"}));
    assert_eq!(message(&mut carol)["text"], "thanks");
}
