//! The web client in a real browser: `chat-server --web` as a process, headless Chromium
//! driven by `tests/web/e2e.mjs` (playwright-core), and a TCP client in the same room. The
//! browser user and the TCP user see each other's messages, an XSS attempt shows as text, the
//! page answers the server's ping and keeps its one connection, and the messages are in
//! `messages.csv`.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and `tests/web/node_modules` (`npm ci`
//! in `tests/web`): `scripts/test.sh` installs them. Without them this test fails; it never
//! skips.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The room both users meet in.
const ROOM: &str = "e2e";
/// Sent by the TCP client; the page must show it as text and run nothing.
const XSS: &str = "<img src=x onerror=window.__xss=1>";
/// The most the browser script may take, start to end (it stops itself after 60 s).
const NODE_LIMIT: Duration = Duration::from_secs(90);
/// How long any single read of the TCP client, or of the server's first lines, may block.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when the browser, node or playwright-core is missing.
fn require_tools() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut missing = Vec::new();
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (apt-get install chromium)"));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node (apt-get install nodejs npm)".into());
    }
    if !root()
        .join("tests/web/node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/web/node_modules/playwright-core (npm ci in tests/web)".into());
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run scripts/test.sh, which installs them",
        missing.join(", ")
    );
}

/// The lines a child writes to a pipe, read on a thread: `None` at the end.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// Waits for a child on a thread, so that waiting can be bounded.
fn exit_of(mut child: Child) -> Receiver<std::io::Result<ExitStatus>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx
}

/// Kills a process group (the node script and the Chromium it started) unless disarmed.
struct KillGroup(Option<u32>);

impl KillGroup {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // Usually the group is gone already; `kill` need not say so.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `chat-server --web` in a temp directory, with both of its addresses.
struct WebServer {
    pid: u32,
    exit: Option<Receiver<std::io::Result<ExitStatus>>>,
    chat: SocketAddr,
    web: String,
    dir: tempfile::TempDir,
}

impl WebServer {
    fn start() -> WebServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--bind", "127.0.0.1:0", "--web", "127.0.0.1:0"])
            // Quiet clients are pinged after a second: the page must answer and stay.
            .args(["--msg-rate", "0", "--ping-interval", "1", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chat-server");
        let out = lines_of(child.stdout.take().expect("piped stdout"));
        let pid = child.id();
        let exit = exit_of(child);
        let line = || match out.recv_timeout(READ_TIMEOUT) {
            Ok(Some(line)) => line,
            other => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("chat-server did not print its addresses: {other:?}");
            }
        };
        let first = line();
        let chat = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {first:?}"))
            .parse()
            .expect("chat address");
        let second = line();
        let web = second
            .strip_prefix("web on ")
            .unwrap_or_else(|| panic!("second line was {second:?}"))
            .to_string();
        assert!(web.starts_with("http://127.0.0.1:"), "web address {web:?}");
        // The rest of stdout is drained on the reader's thread.
        std::thread::spawn(move || while let Ok(Some(_)) = out.recv() {});
        WebServer {
            pid,
            exit: Some(exit),
            chat,
            web,
            dir,
        }
    }

    /// SIGTERM, and the exit within the read timeout: the CSV files are complete then.
    fn stop(&mut self) -> ExitStatus {
        let exit = self.exit.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match exit.recv_timeout(READ_TIMEOUT) {
            Ok(status) => status.expect("wait for chat-server"),
            Err(_) => panic!("chat-server did not stop within {READ_TIMEOUT:?} of SIGTERM"),
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        if self.exit.is_some() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// A JSON client on the chat port, with a read timeout; keeps what it read.
struct TcpUser {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    transcript: Vec<String>,
}

impl TcpUser {
    fn connect(addr: SocketAddr, name: &str) -> TcpUser {
        let stream = TcpStream::connect(addr).expect("connect to the chat port");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut user = TcpUser {
            stream,
            reader,
            transcript: Vec::new(),
        };
        user.send(json!({"type": "hello", "name": name}));
        user.next(|v| v["type"] == "welcome");
        user.next(|v| v["type"] == "history_end");
        user
    }

    fn send(&mut self, v: Value) {
        let line = format!("{v}\n");
        self.stream.write_all(line.as_bytes()).expect("send");
    }

    /// Reads events until one satisfies `want`; fails on timeout or end of stream.
    fn next(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("the server closed the TCP client: {:#?}", self.transcript),
                Ok(_) => {}
                Err(e) => panic!("TCP client read failed ({e}): {:#?}", self.transcript),
            }
            self.transcript.push(line.trim_end().to_string());
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["type"] == "ping" {
                self.send(json!({"type": "pong", "id": v["id"]}));
            } else if want(&v) {
                return v;
            }
        }
    }
}

/// Whether `v` is a message in `ROOM` from `from` with this text.
fn is_message(v: &Value, from: &str, text: &str) -> bool {
    v["type"] == "message" && v["room"] == ROOM && v["from"] == from && v["text"] == text
}

#[test]
fn browser_and_tcp_client_chat_in_one_room() {
    require_tools();
    let mut server = WebServer::start();
    let mut tcp = TcpUser::connect(server.chat, "tcpuser");
    tcp.send(json!({"type": "join", "room": ROOM}));
    tcp.next(|v| v["type"] == "history_end" && v["room"] == ROOM);

    let artifacts = root().join("target/e2e-artifacts");
    std::fs::create_dir_all(&artifacts).expect("target/e2e-artifacts");
    let shot = artifacts.join("web-room.png");
    let _ = std::fs::remove_file(&shot);

    let mut node = Command::new("node");
    node.arg("tests/web/e2e.mjs")
        .arg(&server.web)
        .arg(ROOM)
        .current_dir(root())
        .env("E2E_SCREENSHOT", &shot)
        .env("E2E_EXPECT_PING", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so that a timeout kills Chromium with it.
    std::os::unix::process::CommandExt::process_group(&mut node, 0);
    let mut child = node.spawn().expect("spawn node");
    let mut group = KillGroup(Some(child.id()));
    let out = lines_of(child.stdout.take().expect("piped stdout"));
    let err = lines_of(child.stderr.take().expect("piped stderr"));
    let exit = exit_of(child);

    let started = Instant::now();
    let deadline = started + NODE_LIMIT;
    let mut said = Vec::new();
    let explain = |said: &[String], err: &Receiver<Option<String>>| {
        let stderr: Vec<String> = err.try_iter().flatten().collect();
        format!(
            "node's stdout:\n{}\nnode's stderr:\n{}",
            said.join("\n"),
            stderr.join("\n")
        )
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match out.recv_timeout(left) {
            Ok(Some(line)) => {
                if line == "READY" {
                    tcp.send(json!({"type": "say", "room": ROOM, "text": "hello from tcp"}));
                    tcp.send(json!({"type": "say", "room": ROOM, "text": XSS}));
                    tcp.send(json!({"type": "me", "text": "waves at the browser"}));
                }
                said.push(line);
            }
            Ok(None) => break,
            Err(RecvTimeoutError::Timeout) => {
                group.kill();
                panic!(
                    "the browser test did not finish within {NODE_LIMIT:?}; {}",
                    explain(&said, &err)
                );
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let status = match exit.recv_timeout(left) {
        Ok(status) => status.expect("wait for node"),
        Err(_) => {
            group.kill();
            panic!("node did not exit; {}", explain(&said, &err));
        }
    };
    // The script exited: nothing of its group should be left, but make sure.
    group.kill();
    println!(
        "browser test took {:.1} s; screenshot: {}",
        started.elapsed().as_secs_f64(),
        shot.display()
    );
    assert!(
        status.success() && said.iter().any(|l| l == "OK"),
        "the browser script failed ({status}); {}",
        explain(&said, &err)
    );
    assert!(
        said.iter().any(|l| l == "READY"),
        "no READY; {}",
        explain(&said, &err)
    );
    assert!(
        said.contains(&format!("SCREENSHOT {}", shot.display())),
        "{}",
        explain(&said, &err)
    );
    let png = std::fs::read(&shot).expect("the screenshot file");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a PNG of a page ({} bytes)",
        shot.display(),
        png.len()
    );

    // The TCP user saw the browser user arrive and both of its messages.
    tcp.next(|v| v["type"] == "joined" && v["room"] == ROOM && v["name"] == "webuser");
    tcp.next(|v| is_message(v, "webuser", "hello from the browser"));
    tcp.next(|v| is_message(v, "webuser", "first line\nsecond line"));
    tcp.next(|v| is_message(v, "webuser", "still here after a ping"));

    // Both ends' messages are in the log.
    let status = server.stop();
    assert!(status.success(), "chat-server exited with {status}");
    let log =
        std::fs::read_to_string(server.dir.path().join("messages.csv")).expect("messages.csv");
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(log.as_bytes())
        .records()
        .map(|r| r.expect("valid csv").iter().map(str::to_string).collect())
        .collect();
    // Columns: id,timestamp,room,sender,recipient,kind,text.
    let logged = |sender: &str, kind: &str, text: &str| {
        rows.iter()
            .any(|r| r[2] == ROOM && r[3] == sender && r[5] == kind && r[6] == text)
    };
    for (sender, kind, text) in [
        ("webuser", "message", "hello from the browser"),
        ("webuser", "message", "first line\nsecond line"),
        ("webuser", "message", "still here after a ping"),
        ("tcpuser", "message", "hello from tcp"),
        ("tcpuser", "message", XSS),
        ("tcpuser", "action", "waves at the browser"),
    ] {
        assert!(
            logged(sender, kind, text),
            "no {kind} of {sender} {text:?} in messages.csv:\n{log}"
        );
    }
}
