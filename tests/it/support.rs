//! Test helpers: a real server on `127.0.0.1:0` in its own temp directory, and line-oriented
//! clients with read timeouts that print their transcript when an expectation fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatroom::{Config, Server, ShutdownHandle};
use serde_json::Value;

/// How long any single read in a test may block.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Keeps the temp directory alive when the server owns it.
    _tmp: Option<tempfile::TempDir>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<chatroom::Result<()>>>,
}

/// Starts a server with default settings in a fresh temp directory.
pub fn start_server() -> TestServer {
    start_with(|_| {})
}

/// Starts a server in a fresh temp directory after `tune` adjusts the config.
pub fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut server = start_in(tmp.path(), tune);
    server._tmp = Some(tmp);
    server
}

/// Starts a server in a fresh temp directory, listening on `bind` (an address on loopback).
pub fn start_on(bind: &str, tune: impl FnOnce(&mut Config)) -> TestServer {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut server = start_listening(TcpListener::bind(bind).expect("bind"), tmp.path(), tune);
    server._tmp = Some(tmp);
    server
}

/// Starts a server on the data directory `dir` (which outlives it, for restart tests).
pub fn start_in(dir: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
    start_listening(TcpListener::bind("127.0.0.1:0").expect("bind"), dir, tune)
}

/// Starts a server on the data directory `dir`, listening on `bind`: a restart on the same
/// address, for clients that reconnect.
pub fn start_in_on(dir: &Path, bind: SocketAddr, tune: impl FnOnce(&mut Config)) -> TestServer {
    start_listening(TcpListener::bind(bind).expect("bind"), dir, tune)
}

/// Starts a server with a web port too (`--web`), in a fresh temp directory; returns it and
/// the web port's address.
pub fn start_web(tune: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let web = TcpListener::bind("127.0.0.1:0").expect("bind web");
    let web_addr = web.local_addr().expect("web addr");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut server = start_with_listeners(listener, Some(web), tmp.path(), tune);
    server._tmp = Some(tmp);
    (server, web_addr)
}

/// The IRC ports of a server started with [`start_irc`].
pub struct IrcPorts {
    /// `--irc`: plain TCP.
    pub plain: SocketAddr,
    /// `--irc-tls`, and the certificate to trust for it (`cert.pem`), when asked for.
    pub tls: Option<(SocketAddr, PathBuf)>,
}

/// Starts a server with an IRC port (`--irc`) in a fresh temp directory; with `tls`, a
/// self-signed certificate for `localhost` and an IRC TLS port (`--irc-tls`) too.
pub fn start_irc(tls: bool, tune: impl FnOnce(&mut Config)) -> (TestServer, IrcPorts) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cert_dir = tmp.path().join("tls");
    let server_tls = tls.then(|| {
        chatroom::tls::make_dev_cert(&cert_dir, &["localhost".into()]).expect("certificate");
        chatroom::tls::server_config(&cert_dir.join("cert.pem"), &cert_dir.join("key.pem"))
            .expect("tls config")
    });
    let irc = TcpListener::bind("127.0.0.1:0").expect("bind irc");
    let irc_tls = tls.then(|| TcpListener::bind("127.0.0.1:0").expect("bind irc tls"));
    let ports = IrcPorts {
        plain: irc.local_addr().expect("irc addr"),
        tls: irc_tls
            .as_ref()
            .map(|l| (l.local_addr().expect("addr"), cert_dir.join("cert.pem"))),
    };
    let others = chatroom::server::Listeners {
        irc: Some(irc),
        irc_tls,
        ..Default::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let data = tmp.path().join("data");
    let mut server = start_with_others(listener, others, &data, |c| {
        c.tls.server = server_tls;
        tune(c);
    });
    server._tmp = Some(tmp);
    (server, ports)
}

fn start_listening(
    listener: TcpListener,
    dir: &Path,
    tune: impl FnOnce(&mut Config),
) -> TestServer {
    start_with_listeners(listener, None, dir, tune)
}

fn start_with_listeners(
    listener: TcpListener,
    web: Option<TcpListener>,
    dir: &Path,
    tune: impl FnOnce(&mut Config),
) -> TestServer {
    let others = chatroom::server::Listeners {
        web,
        ..Default::default()
    };
    start_with_others(listener, others, dir, tune)
}

fn start_with_others(
    listener: TcpListener,
    others: chatroom::server::Listeners,
    dir: &Path,
    tune: impl FnOnce(&mut Config),
) -> TestServer {
    // Tests send as fast as they can; the rate limit has tests of its own that turn it on.
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.chat.msg_rate = 0.0;
    tune(&mut config);
    // The socket is bound before the server thread starts: clients can connect at once.
    let addr = listener.local_addr().expect("local addr");
    let server = Server::with_listeners(listener, others, config).expect("server starts");
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    TestServer {
        addr,
        dir: dir.to_path_buf(),
        _tmp: None,
        handle,
        thread: Some(thread),
    }
}

impl TestServer {
    /// Stops the server and waits until it has written its last rows; the data directory
    /// stays until the `TestServer` is dropped.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread").expect("server run");
        }
    }

    /// The contents of a file in the data directory.
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).expect("data file")
    }

    pub fn human(&self, name: &str) -> Client {
        Client::human(self.addr, name)
    }

    pub fn json(&self, name: &str) -> Client {
        Client::json(self.addr, name)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Writes `users.csv` in `dir` with these accounts: (name, password, role).
pub fn write_accounts(dir: &Path, list: &[(&str, &str, chatroom::store::users::Role)]) {
    let mut a = chatroom::store::users::Accounts::default();
    for (name, pw, role) in list {
        a.add(name, pw, *role).unwrap();
    }
    a.save(&dir.join(chatroom::store::users::USERS_FILE))
        .unwrap();
}

/// A JSON client logged in to an account, past the lobby's history.
pub fn login(addr: SocketAddr, name: &str, password: &str) -> Client {
    let mut c = Client::connect(addr);
    c.send_json(serde_json::json!({"type":"hello","name":name,"password":password}));
    c.next_of("welcome");
    c.next_of("history_end");
    c
}

/// Sends a `/command` line from a JSON client.
pub fn command(c: &mut Client, line: &str) {
    c.send_json(serde_json::json!({"type":"command","line":line}));
}

/// Parses a CSV file's rows (without the header) as string records.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid csv").iter().map(str::to_string).collect())
        .collect()
}

/// A line-oriented test client.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Everything read so far, for failure messages.
    pub transcript: Vec<String>,
}

impl Client {
    /// Connects and sets the read timeout; reads nothing yet.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client {
            stream,
            reader,
            transcript: Vec::new(),
        }
    }

    /// Connects in human mode as `name` and reads up to the end of the lobby's history.
    pub fn human(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::connect(addr);
        let greeting = c.line();
        assert!(greeting.contains("What is your name?"), "{greeting:?}");
        c.send(name);
        // Once a server has accounts it asks every name for a password; empty joins as a
        // guest.
        loop {
            let line = c.line();
            if line.starts_with("Password for ") {
                c.send("");
            } else if line.contains(&format!("* welcome, {name}!")) {
                break;
            }
        }
        c.until("* end of history of #lobby");
        c
    }

    /// Connects in JSON mode as `name` and reads up to the end of the lobby's history.
    pub fn json(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::connect(addr);
        c.send(&serde_json::json!({"type": "hello", "name": name}).to_string());
        let welcome = c.next_of("welcome");
        assert_eq!(welcome["name"], name);
        c.next_of("history_end");
        c
    }

    /// Sends one line (a newline is added).
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn send_json(&mut self, v: Value) {
        self.send(&v.to_string());
    }

    /// The next line, without its newline. Fails the test on timeout or end of stream.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => self.fail("the server closed the connection"),
            Ok(_) => {}
            Err(e) => self.fail(&format!("read failed: {e}")),
        }
        let line = line.trim_end_matches('\n').to_string();
        self.transcript.push(line.clone());
        line
    }

    /// Reads lines until one contains `needle`; returns it.
    pub fn until(&mut self, needle: &str) -> String {
        loop {
            let line = self.line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The next line as JSON.
    pub fn json_line(&mut self) -> Value {
        let line = self.line();
        serde_json::from_str(&line)
            .unwrap_or_else(|e| self.fail(&format!("not json ({e}): {line}")))
    }

    /// Reads JSON events until one of type `kind`; skips the human greeting and other events.
    pub fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let line = self.line();
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["type"] == kind
            {
                return v;
            }
        }
    }

    /// Expects the server to close the connection (EOF or reset) within the timeout;
    /// returns what was still read before the end.
    pub fn closed(&mut self) -> String {
        let mut rest = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 65536];
        loop {
            if Instant::now() > deadline {
                self.fail("the server did not close the connection");
            }
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                // A signal interrupted the read (EINTR): nothing was lost, read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => self.fail(&format!("read failed while waiting for close: {e}")),
            }
        }
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Proves that nothing was queued for this client before now: asks for a pong and checks
    /// it is the very next thing received.
    pub fn nothing_pending(&mut self, json: bool) {
        if json {
            self.send_json(serde_json::json!({"type": "ping", "id": 424242}));
            let v = self.json_line();
            assert_eq!(
                v["type"], "pong",
                "unexpected event {v}; transcript {:#?}",
                self.transcript
            );
        } else {
            self.send("/ping");
            let line = self.line();
            assert_eq!(line, "* pong", "transcript {:#?}", self.transcript);
        }
    }

    /// Sends a ping and reads up to its pong; every line before it must satisfy `expected`.
    pub fn nothing_pending_after(&mut self, json: bool, expected: impl Fn(&str) -> bool) {
        if json {
            self.send_json(serde_json::json!({"type": "ping", "id": 777}));
        } else {
            self.send("/ping");
        }
        loop {
            let line = self.line();
            if (json && line.contains(r#""type":"pong""#)) || (!json && line == "* pong") {
                return;
            }
            if !expected(&line) {
                self.fail(&format!("unexpected line before the pong: {line:?}"));
            }
        }
    }

    pub fn fail(&self, why: &str) -> ! {
        panic!("{why}\ntranscript:\n{}", self.transcript.join("\n"))
    }
}

/// A `chat-server` process, for what only a real process shows (signals, exit codes, RSS).
pub struct ServerProcess {
    /// Taken by [`ServerProcess::wait`]; killed on drop otherwise.
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The web port's address, when started with `--web`.
    pub web: Option<SocketAddr>,
    /// The IRC port's address, when started with `--irc` (and without `--web`).
    pub irc: Option<SocketAddr>,
    pub pid: u32,
    /// Where the server's stderr goes, when captured.
    pub stderr: Option<PathBuf>,
}

impl ServerProcess {
    pub fn start(dir: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::spawn(dir, extra, None)
    }

    /// Starts the server with its stderr written to `log`, to check what it said.
    pub fn start_logged(dir: &Path, extra: &[&str], log: &Path) -> ServerProcess {
        ServerProcess::spawn_with(dir, extra, Some(log), "warn")
    }

    /// Like [`ServerProcess::start_logged`], with the operational log (`chatroom::ops`) on.
    pub fn start_with_ops_log(dir: &Path, extra: &[&str], log: &Path) -> ServerProcess {
        ServerProcess::spawn_with(dir, extra, Some(log), "warn,chatroom::ops=info")
    }

    fn spawn(dir: &Path, extra: &[&str], log: Option<&Path>) -> ServerProcess {
        ServerProcess::spawn_with(dir, extra, log, "warn")
    }

    fn spawn_with(dir: &Path, extra: &[&str], log: Option<&Path>, filter: &str) -> ServerProcess {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--bind", "127.0.0.1:0", "--msg-rate", "0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn chat-server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).expect("first line");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {first:?}"))
            .parse()
            .expect("address");
        // With --web the second line is `web on http://ADDR/`.
        let web = extra.contains(&"--web").then(|| {
            let mut second = String::new();
            out.read_line(&mut second).expect("second line");
            second
                .trim()
                .split_once("://")
                .and_then(|(_, rest)| rest.trim_end_matches('/').parse().ok())
                .unwrap_or_else(|| panic!("second line was {second:?}"))
        });
        // With --irc (and no --web) it is `irc on ADDR`.
        let irc = (web.is_none() && extra.contains(&"--irc")).then(|| {
            let mut second = String::new();
            out.read_line(&mut second).expect("second line");
            second
                .trim()
                .strip_prefix("irc on ")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("second line was {second:?}"))
        });
        let pid = child.id();
        ServerProcess {
            child: Some(child),
            addr,
            web,
            irc,
            pid,
            stderr: log.map(Path::to_path_buf),
        }
    }

    /// The server's resident set size, in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// How many threads the server has now, from /proc.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .unwrap()
            .count()
    }

    /// What the server wrote to stderr so far (when captured).
    pub fn log(&self) -> String {
        self.stderr
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit, at most `TIMEOUT`.
    pub fn wait(mut self) -> std::process::ExitStatus {
        wait_timeout(self.child.take().expect("not waited yet"), TIMEOUT)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit within `limit`, killing it and failing otherwise.
pub fn wait_timeout(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let pid = child.id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("process {pid} did not exit within {limit:?}");
        }
    }
}

/// Waits for a child (bounded) and returns its status, stdout and stderr.
pub fn wait_timeout_output(mut child: Child) -> (std::process::ExitStatus, String, String) {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(child, TIMEOUT);
    (status, out.join().unwrap(), err.join().unwrap())
}
