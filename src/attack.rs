//! What a hostile member can do to a server, over real sockets: each attack is a function, so
//! the tests can run it and check the bound the server promises (memory from /proc, what was
//! refused, what `data.csv` says), and `chat-bench hostile` can run it while a [`Bystander`]
//! measures the `/ping` round trip of an honest client.
//!
//! Blocking sockets and threads, like the server; every read has a timeout, so an attack that
//! the server does not answer ends with an error instead of hanging.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long any one read of an attack may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A JSON-mode client that reads line by line.
pub struct JsonClient {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl JsonClient {
    /// Connects and says hello as `name`; returns after the lobby's history.
    pub fn join(addr: SocketAddr, name: &str) -> io::Result<JsonClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut c = JsonClient { stream, reader };
        c.send(&json!({"type": "hello", "name": name}))?;
        c.until("history_end")?;
        Ok(c)
    }

    pub fn send(&mut self, v: &Value) -> io::Result<()> {
        let mut line = v.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes())
    }

    /// The next event (a `ping` from the server is answered, not returned);
    /// `UnexpectedEof` when the server closed the connection.
    pub fn event(&mut self) -> io::Result<Value> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if !line.starts_with('{') {
                return Ok(json!({"type": "text", "text": line}));
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if v["type"] == "ping" {
                self.send(&json!({"type": "pong", "id": v["id"]}))?;
                continue;
            }
            return Ok(v);
        }
    }

    /// Reads events up to one of type `kind`, which it returns.
    pub fn until(&mut self, kind: &str) -> io::Result<Value> {
        loop {
            let v = self.event()?;
            if v["type"] == kind {
                return Ok(v);
            }
        }
    }

    /// Sends a ping and reads up to its pong: everything asked before it has been answered.
    pub fn sync(&mut self) -> io::Result<()> {
        self.send(&json!({"type": "ping", "id": 1}))?;
        self.until("pong").map(|_| ())
    }
}

/// Round trips of an honest client's `/ping` while something else goes on.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    fn of(mut rtts: Vec<Duration>) -> Latency {
        rtts.sort();
        let at = |q: f64| {
            rtts.get(((rtts.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Latency {
            count: rtts.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: rtts.last().copied().unwrap_or_default(),
        }
    }
}

/// An honest client in the lobby that pings every `every` and times each answer.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<Vec<Duration>>>,
}

impl Bystander {
    pub fn start(addr: SocketAddr, name: &str, every: Duration) -> io::Result<Bystander> {
        let mut client = JsonClient::join(addr, name)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rtts = Vec::new();
            let mut id = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                id += 1;
                let sent = Instant::now();
                client.send(&json!({"type": "ping", "id": id}))?;
                loop {
                    let v = client.event()?;
                    if v["type"] == "pong" && v["id"] == id {
                        break;
                    }
                    if v["type"] == "error" {
                        return Err(io::Error::other(format!("the bystander was refused: {v}")));
                    }
                }
                rtts.push(sent.elapsed());
                std::thread::sleep(every);
            }
            Ok(rtts)
        });
        Ok(Bystander { stop, thread })
    }

    /// Stops pinging; the round trips seen.
    pub fn finish(self) -> io::Result<Latency> {
        self.stop.store(true, Ordering::Relaxed);
        let rtts = self
            .thread
            .join()
            .map_err(|_| io::Error::other("the bystander panicked"))??;
        Ok(Latency::of(rtts))
    }
}

/// One guest joins and leaves `rooms` rooms no one else uses, in pipelined batches.
pub fn room_churn(addr: SocketAddr, name: &str, rooms: usize) -> io::Result<()> {
    let mut c = JsonClient::join(addr, name)?;
    let mut out = String::new();
    for i in 0..rooms {
        out.push_str(&json!({"type": "join", "room": format!("r{i}-{name}")}).to_string());
        out.push('\n');
        out.push_str(&json!({"type": "leave", "room": format!("r{i}-{name}")}).to_string());
        out.push('\n');
        if out.len() > 32 * 1024 || i + 1 == rooms {
            c.stream.write_all(out.as_bytes())?;
            out.clear();
            c.sync()?;
        }
    }
    Ok(())
}

/// One connection joins up to `rooms` rooms, then hangs up. Returns how many joins were
/// granted and how many refused.
pub fn join_many_and_hang_up(
    addr: SocketAddr,
    name: &str,
    rooms: usize,
) -> io::Result<(usize, usize)> {
    let mut c = JsonClient::join(addr, name)?;
    let mut out = String::new();
    for i in 0..rooms {
        out.push_str(&json!({"type": "join", "room": format!("m{i}")}).to_string());
        out.push('\n');
    }
    c.stream.write_all(out.as_bytes())?;
    c.send(&json!({"type": "ping", "id": 1}))?;
    let (mut joined, mut refused) = (0, 0);
    loop {
        let v = c.event()?;
        match v["type"].as_str() {
            Some("joined") if v["name"] == name => joined += 1,
            Some("error") if v["code"] == "too_many_rooms" => refused += 1,
            Some("pong") => break,
            _ => {}
        }
    }
    c.stream.shutdown(std::net::Shutdown::Both)?;
    Ok((joined, refused))
}

/// What a storm of logins came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginStorm {
    pub welcomed: usize,
    pub failed: usize,
    pub locked: usize,
    pub busy: usize,
    pub other: usize,
}

/// `n` human-mode connections ask to log in as `name` and wait at the password prompt; then
/// all answer at once: the first with `right`, the rest with wrong passwords.
pub fn login_storm(addr: SocketAddr, name: &str, n: usize, right: &str) -> io::Result<LoginStorm> {
    let mut parked = Vec::new();
    for _ in 0..n {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        (&stream).write_all(format!("{name}\n").as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        if !line.starts_with("Password for") {
            return Err(io::Error::other(format!("no password prompt: {line:?}")));
        }
        parked.push((stream, reader));
    }
    for (i, (stream, _)) in parked.iter().enumerate() {
        let pw = if i == 0 {
            right.to_string()
        } else {
            format!("wrong {i}")
        };
        (&*stream).write_all(format!("{pw}\n").as_bytes())?;
    }
    let mut storm = LoginStorm::default();
    for (_, mut reader) in parked {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.starts_with("* welcome") {
            storm.welcomed += 1;
        } else if line.contains("invalid name or password") {
            storm.failed += 1;
        } else if line.contains("too many failed logins") {
            storm.locked += 1;
        } else if line.contains("busy") {
            storm.busy += 1;
        } else {
            storm.other += 1;
        }
    }
    Ok(storm)
}

/// How a trickling connection starts.
#[derive(Debug, Clone)]
pub struct Trickle {
    /// Sent at once (`b"alice\n"` to reach a password prompt; nothing to trickle the name).
    pub first: Vec<u8>,
    /// Silence before the trickle starts.
    pub silence: Duration,
    /// The byte trickled.
    pub byte: u8,
    /// One byte per connection this often.
    pub every: Duration,
}

/// `conns` connections that never finish their handshake: after `first` and `silence`, one
/// byte every `every`. Returns how long the longest stayed open, or `limit` if any was still
/// open then.
pub fn trickle(
    addr: SocketAddr,
    conns: usize,
    how: &Trickle,
    limit: Duration,
) -> io::Result<Duration> {
    let started = Instant::now();
    let mut open: Vec<TcpStream> = Vec::new();
    for _ in 0..conns {
        let s = TcpStream::connect(addr)?;
        s.set_nonblocking(true)?;
        (&s).write_all(&how.first)?;
        open.push(s);
    }
    let mut longest = Duration::ZERO;
    let mut next_byte = started + how.silence;
    let mut sink = [0u8; 4096];
    while !open.is_empty() {
        if started.elapsed() >= limit {
            return Ok(limit);
        }
        let now = Instant::now();
        let send = now >= next_byte;
        if send {
            next_byte = now + how.every;
        }
        open.retain(|s| {
            // Drain what the server said; the end of the stream is the server hanging up.
            let closed = loop {
                match (&*s).read(&mut sink) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            let closed = closed || (send && (&*s).write_all(&[how.byte]).is_err());
            if closed {
                longest = longest.max(started.elapsed());
            }
            !closed
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(longest)
}

/// `conns` named clients that never read, each sending `lines` requests that the server
/// answers itself (`help`, a few KiB each) as fast as it can: every one makes the server
/// queue its answer. Returns how many the server disconnected within `limit`.
pub fn silent_flood(
    addr: SocketAddr,
    conns: usize,
    lines: usize,
    limit: Duration,
) -> io::Result<usize> {
    let mut clients = Vec::new();
    for i in 0..conns {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        // A small receive window: the server's replies pile up on its side, not in ours.
        socket.set_recv_buffer_size(4096)?;
        socket.connect(&addr.into())?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        (&stream)
            .write_all(format!("{{\"type\":\"hello\",\"name\":\"silent{i}\"}}\n").as_bytes())?;
        let mut line = String::new();
        while !line.contains("\"history_end\"") {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        clients.push(stream);
    }
    let junk = "{\"type\":\"help\"}\n".repeat(lines);
    let deadline = Instant::now() + limit;
    let mut dropped = 0;
    // Each client writes from its own thread, as fast as the server takes its lines; a write
    // that fails means the server has closed the connection.
    std::thread::scope(|scope| {
        for s in &clients {
            let junk = &junk;
            scope.spawn(move || {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = s.set_write_timeout(Some(left.max(Duration::from_millis(10))));
                let _ = (&*s).write_all(junk.as_bytes());
            });
        }
    });
    // Find out which the server closed, without reading a byte of what it sent (reading would
    // let it catch up): a write to a socket the server has closed fails.
    let mut open = clients;
    while !open.is_empty() && Instant::now() < deadline {
        open.retain(|s| {
            let _ = s.set_nonblocking(true);
            // One byte: written whole, or not at all.
            match (&*s).write(b"\n") {
                Ok(n) => n == 1,
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            }
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    dropped += conns - open.len();
    Ok(dropped)
}

/// What a flood of requests came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flood {
    /// Requests answered as asked.
    pub done: usize,
    /// Requests refused for the rate.
    pub limited: usize,
    /// Requests refused for another reason.
    pub refused: usize,
    /// The server disconnected the client.
    pub disconnected: bool,
}

/// One client sends `n` copies of `request` at once and counts the answers: `answer` is the
/// event type that means "done".
pub fn request_flood(
    addr: SocketAddr,
    name: &str,
    request: &Value,
    answer: &str,
    n: usize,
) -> io::Result<Flood> {
    let mut c = JsonClient::join(addr, name)?;
    let mut line = request.to_string();
    line.push('\n');
    let all = line.repeat(n);
    c.stream.write_all(all.as_bytes())?;
    c.send(&json!({"type": "ping", "id": 1}))?;
    let mut flood = Flood::default();
    loop {
        let v = match c.event() {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                flood.disconnected = true;
                return Ok(flood);
            }
            Err(e) => return Err(e),
        };
        match v["type"].as_str() {
            Some(t) if t == answer => flood.done += 1,
            Some("error") if v["code"] == "rate_limited" => flood.limited += 1,
            Some("error") => flood.refused += 1,
            Some("bye") => flood.disconnected = true,
            Some("pong") => return Ok(flood),
            _ => {}
        }
    }
}
