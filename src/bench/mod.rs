//! `chat-bench`: the project's load generator and benchmark.
//!
//! It speaks the JSON mode over many non-blocking sockets multiplexed with `mio` on a few
//! threads (the thread-per-client rule is the server's, not the load generator's). Every
//! message carries its sender, a per-sender sequence number and its *intended* send time, so a
//! receiver can count lost and duplicated messages and record the delivery latency without
//! coordinated omission: a sender that falls behind its schedule shows up as latency.
//!
//! Message text: `B <sender> <seq> <t_ns> xxxx...`, padded to the configured size.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::error::{Error, Result};

/// A server to measure: one we started (and stop on drop), or one we attached to.
pub struct Target {
    pub addr: SocketAddr,
    /// The server process, when we started it.
    child: Option<Child>,
    /// Its pid, for /proc readings (also known for an attached server given `--pid`).
    pub pid: Option<u32>,
    /// A data directory we created and remove on drop.
    tmp: Option<PathBuf>,
}

impl Target {
    /// Starts `chat-server` (next to this executable) on 127.0.0.1:0 with its own data
    /// directory, or `data_dir` if given; returns once it prints `listening on`.
    pub fn start(data_dir: Option<&Path>, extra: &[String]) -> Result<(Target, Duration)> {
        let (dir, tmp) = match data_dir {
            Some(d) => (d.to_path_buf(), None),
            None => {
                let d = scratch_dir("data")?;
                (d.clone(), Some(d))
            }
        };
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("cannot find the current executable", e))?
            .with_file_name("chat-server");
        let started = Instant::now();
        // The benchmark floods on purpose: no per-client rate limit unless asked for.
        let mut child = Command::new(&exe)
            .args(["--bind", "127.0.0.1:0", "--msg-rate", "0", "--data-dir"])
            .arg(&dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io(format!("cannot start {}", exe.display()), e))?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .map_err(|e| Error::io("cannot read the server's first line", e))?;
        let startup = started.elapsed();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Error::peer(format!("the server printed {first:?}")))?;
        let pid = child.id();
        Ok((
            Target {
                addr,
                child: Some(child),
                pid: Some(pid),
                tmp,
            },
            startup,
        ))
    }

    /// A server started elsewhere.
    pub fn attach(addr: SocketAddr, pid: Option<u32>) -> Target {
        Target {
            addr,
            child: None,
            pid,
            tmp: None,
        }
    }

    /// RSS, threads and CPU time of the server, when its pid is known.
    pub fn stats(&self) -> Option<ProcStats> {
        self.pid.and_then(ProcStats::read)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.tmp.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A fresh directory under the system temp dir.
pub fn scratch_dir(what: &str) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("chat-bench-{what}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    Ok(dir)
}

/// What /proc says about a process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcStats {
    pub rss_kib: u64,
    pub threads: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_s: f64,
}

impl ProcStats {
    pub fn read(pid: u32) -> Option<ProcStats> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ProcStats {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
            // USER_HZ is 100 on every Linux architecture we run on.
            cpu_s: ticks / 100.0,
        })
    }
}

/// Raises this process's descriptor limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// One fanout-style run: `receivers` clients in the lobby, `senders` clients sending
/// `size`-byte messages at `rate` messages per second in total, for `duration`.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSpec {
    pub receivers: usize,
    pub senders: usize,
    pub rate: f64,
    pub size: usize,
    pub duration_s: f64,
}

/// The result of one fanout run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    pub spec: FanoutSpec,
    /// Messages the senders sent.
    pub sent: u64,
    /// Messages received by receivers (each message counts once per receiver).
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub lost: u64,
    pub duplicated: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Time to connect and join every client.
    pub join_s: f64,
    pub server: Option<ProcStats>,
    /// Server CPU seconds per second of the run (2.0 = both cores of this machine).
    pub server_cpu_per_s: Option<f64>,
}

/// A benchmark connection.
struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet split into lines.
    rbuf: Vec<u8>,
    /// Bytes to send when the socket accepts them.
    wbuf: Vec<u8>,
    welcomed: bool,
    /// For receivers, their index in the delivery-tracking table.
    receiver: Option<usize>,
    /// Set when the server closed the connection.
    closed: bool,
}

impl Conn {
    /// Starts a non-blocking connect; the hello goes out once the socket is writable.
    fn connect(addr: SocketAddr, name: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .map_err(|e| Error::io(format!("cannot connect to {addr}"), e))?;
        Ok(Conn::connect_from(stream, name))
    }

    /// A connection over `stream` with its hello queued.
    fn connect_from(stream: TcpStream, name: &str) -> Conn {
        let _ = stream.set_nodelay(true);
        let mut wbuf = Vec::with_capacity(64);
        wbuf.extend_from_slice(b"{\"type\":\"hello\",\"name\":\"");
        wbuf.extend_from_slice(name.as_bytes());
        wbuf.extend_from_slice(b"\"}\n");
        Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            wbuf,
            welcomed: false,
            receiver: None,
            closed: false,
        }
    }

    /// Writes what it can of `wbuf`.
    fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads everything available and hands each complete line to `line`.
    fn read_lines(&mut self, mut line: impl FnMut(&[u8], &mut bool)) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut start = 0;
        while let Some(pos) = self.rbuf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            line(&self.rbuf[start..end], &mut self.welcomed);
            start = end + 1;
        }
        self.rbuf.drain(..start);
        Ok(())
    }
}

/// Where a receiver is in each sender's sequence, and what it measured.
struct Tracker {
    /// `next[receiver * width + sender % width]`: the sequence number expected next.
    next: Vec<u64>,
    /// How many senders each receiver hears: all of them in one room, a room's size in many.
    width: usize,
    hist: Histogram<u64>,
    deliveries: u64,
    duplicated: u64,
    gaps: u64,
    /// Deliveries whose send time is before this are not recorded in the histogram (warm-up).
    record_after_ns: u64,
}

impl Tracker {
    fn new(receivers: usize, width: usize) -> Tracker {
        Tracker {
            next: vec![0; receivers * width],
            width,
            hist: Histogram::new_with_bounds(1_000, 120_000_000_000, 3).expect("valid bounds"),
            deliveries: 0,
            duplicated: 0,
            gaps: 0,
            record_after_ns: 0,
        }
    }

    /// Accounts one line received by `receiver` at `now_ns`.
    fn line(&mut self, receiver: usize, line: &[u8], now_ns: u64) {
        const MARK: &[u8] = b"\"text\":\"B ";
        // Messages sent again as history (to a client joining after an earlier run on the
        // same server) are not deliveries of this run; the flag is the last field.
        if line.ends_with(b",\"history\":true}") {
            return;
        }
        let Some(at) = find(line, MARK) else {
            return;
        };
        let mut fields = line[at + MARK.len()..].split(|&b| b == b' ');
        let (Some(s), Some(q), Some(t)) = (fields.next(), fields.next(), fields.next()) else {
            return;
        };
        let (Some(sender), Some(seq), Some(sent_ns)) = (num(s), num(q), num(t)) else {
            return;
        };
        let slot = &mut self.next[receiver * self.width + sender as usize % self.width];
        if seq < *slot {
            self.duplicated += 1;
            return;
        }
        if seq > *slot {
            self.gaps += seq - *slot;
        }
        *slot = seq + 1;
        self.deliveries += 1;
        if sent_ns >= self.record_after_ns {
            self.hist
                .saturating_record(now_ns.saturating_sub(sent_ns).max(1_000));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn num(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

fn is_welcome(line: &[u8]) -> bool {
    line.starts_with(b"{\"type\":\"welcome\"")
}

fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"{\"type\":\"error\"")
}

/// Connects `count` clients named `prefix0..` with non-blocking connects (at most
/// `MAX_INFLIGHT` not yet welcomed at a time, like a crowd logging in), and polls until every
/// one is welcomed. Returns them registered with `poll` under tokens `first_token..`.
fn connect_all(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    poll: &mut Poll,
    first_token: usize,
    deadline: Instant,
) -> Result<Vec<Conn>> {
    const MAX_INFLIGHT: usize = 1000;
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    let mut events = Events::with_capacity(1024);
    let mut welcomed = 0;
    let mut refused = None;
    while welcomed < count {
        while conns.len() < count && conns.len() - welcomed < MAX_INFLIGHT {
            let i = conns.len();
            let mut c = Conn::connect(addr, &format!("{prefix}{i}"))?;
            poll.registry()
                .register(
                    &mut c.stream,
                    Token(first_token + i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| Error::io("cannot register a socket", e))?;
            conns.push(c);
        }
        if Instant::now() > deadline {
            return Err(Error::peer(format!(
                "{} of {count} clients were not welcomed in time",
                count - welcomed
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            let i = ev.token().0 - first_token;
            let Some(c) = conns.get_mut(i) else { continue };
            if ev.is_writable() && !c.wbuf.is_empty() {
                match c.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => {
                        return Err(Error::io(format!("cannot connect to {addr}"), e));
                    }
                }
                c.flush().map_err(|e| Error::io("cannot send hello", e))?;
            }
            if !ev.is_readable() {
                continue;
            }
            let was = c.welcomed;
            c.read_lines(|line, welcomed| {
                if is_welcome(line) {
                    *welcomed = true;
                } else if is_error(line) {
                    refused = Some(String::from_utf8_lossy(line).into_owned());
                }
            })
            .map_err(|e| Error::io("read failed while joining", e))?;
            if !was && c.welcomed {
                welcomed += 1;
            }
            if let Some(r) = refused.take() {
                return Err(Error::peer(format!("a client was refused: {r}")));
            }
        }
    }
    // From here on only reading matters: stop the writable wake-ups.
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .reregister(&mut c.stream, Token(first_token + i), Interest::READABLE)
            .map_err(|e| Error::io("cannot register a socket", e))?;
    }
    Ok(conns)
}

/// Runs one fanout workload against `target`.
pub fn fanout(target: &Target, spec: &FanoutSpec) -> Result<FanoutResult> {
    let join_started = Instant::now();
    let deadline = join_started + Duration::from_secs(120);
    let mut rpoll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let mut spoll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let tag = join_started.elapsed().as_nanos() % 100_000 + u128::from(std::process::id() % 1000);
    let mut receivers = connect_all(
        target.addr,
        &format!("r{tag}-"),
        spec.receivers,
        &mut rpoll,
        0,
        deadline,
    )?;
    for (i, r) in receivers.iter_mut().enumerate() {
        r.receiver = Some(i);
    }
    let mut senders = connect_all(
        target.addr,
        &format!("s{tag}-"),
        spec.senders,
        &mut spoll,
        0,
        deadline,
    )?;
    let join_s = join_started.elapsed().as_secs_f64();

    let cpu_before = target.stats();
    let epoch = Instant::now();
    let duration = Duration::from_secs_f64(spec.duration_s);
    let warmup_ns = (spec.duration_s * 0.1 * 1e9) as u64;
    let per_sender = spec.rate / spec.senders as f64;
    let n_senders = spec.senders;
    let size = spec.size;

    // The receiving side runs on its own thread.
    let receiving = std::thread::Builder::new()
        .name("bench-recv".into())
        .spawn(move || -> Result<Tracker> {
            let mut tracker = Tracker::new(receivers.len(), n_senders);
            tracker.record_after_ns = warmup_ns;
            let mut events = Events::with_capacity(4096);
            // Run until the senders are done and the deliveries stop, bounded in time.
            let hard_stop = epoch + duration + Duration::from_secs(10);
            let mut quiet_since = Instant::now();
            loop {
                let now = Instant::now();
                if now > hard_stop {
                    break;
                }
                rpoll
                    .poll(&mut events, Some(Duration::from_millis(20)))
                    .map_err(|e| Error::io("poll failed", e))?;
                if events.is_empty() {
                    if now > epoch + duration
                        && now.duration_since(quiet_since) > Duration::from_millis(500)
                    {
                        break;
                    }
                    continue;
                }
                quiet_since = Instant::now();
                for ev in events.iter() {
                    let c = &mut receivers[ev.token().0];
                    let idx = c.receiver.expect("receiver");
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    c.read_lines(|line, _| tracker.line(idx, line, now_ns))
                        .map_err(|e| Error::io("receiver read failed", e))?;
                }
            }
            if let Some(c) = receivers.iter().find(|c| c.closed) {
                return Err(Error::peer(format!(
                    "the server closed receiver {:?}",
                    c.receiver
                )));
            }
            Ok(tracker)
        })
        .map_err(|e| Error::io("cannot start the receiving thread", e))?;

    // Sending: open loop, each sender on its schedule.
    let mut sent = vec![0u64; n_senders];
    let mut events = Events::with_capacity(1024);
    let pad = "x".repeat(size);
    loop {
        let elapsed = epoch.elapsed();
        if elapsed >= duration {
            break;
        }
        // Message `seq` is due at `seq / per_sender` seconds: the first one at once.
        let due = (elapsed.as_secs_f64() * per_sender) as u64 + 1;
        for (k, s) in senders.iter_mut().enumerate() {
            while sent[k] < due {
                let seq = sent[k];
                let t_ns = (seq as f64 / per_sender * 1e9) as u64;
                let head = format!("B {k} {seq} {t_ns} ");
                let fill = size.saturating_sub(head.len());
                s.wbuf.extend_from_slice(b"{\"type\":\"say\",\"text\":\"");
                s.wbuf.extend_from_slice(head.as_bytes());
                s.wbuf.extend_from_slice(&pad.as_bytes()[..fill]);
                s.wbuf.extend_from_slice(b"\"}\n");
                sent[k] += 1;
            }
            s.flush().map_err(|e| Error::io("sender write failed", e))?;
        }
        // Drain what the senders receive (they are room members too) and wait a moment.
        spoll
            .poll(&mut events, Some(Duration::from_micros(500)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            let s = &mut senders[ev.token().0];
            s.read_lines(|_, _| {})
                .map_err(|e| Error::io("sender read failed", e))?;
        }
    }
    // Keep draining the senders while the receivers finish.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while !receiving.is_finished() && Instant::now() < drain_until + Duration::from_secs(10) {
        spoll
            .poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            let s = &mut senders[ev.token().0];
            s.read_lines(|_, _| {})
                .map_err(|e| Error::io("sender read failed", e))?;
        }
        for s in senders.iter_mut() {
            s.flush().map_err(|e| Error::io("sender write failed", e))?;
        }
    }
    let tracker = receiving
        .join()
        .map_err(|_| Error::peer("the receiving thread panicked"))??;
    let cpu_after = target.stats();

    let total_sent: u64 = sent.iter().sum();
    let expected = total_sent * spec.receivers as u64;
    Ok(FanoutResult::new(
        spec.clone(),
        total_sent,
        expected,
        &tracker,
        join_s,
        (cpu_before, cpu_after),
    ))
}

impl FanoutResult {
    /// The result of a run that sent `sent` messages, which should have made `expected`
    /// deliveries, as `tracker` saw them; `cpu` is the server's before and after.
    fn new(
        spec: FanoutSpec,
        sent: u64,
        expected: u64,
        tracker: &Tracker,
        join_s: f64,
        cpu: (Option<ProcStats>, Option<ProcStats>),
    ) -> FanoutResult {
        let ms = |v: u64| v as f64 / 1e6;
        let h = &tracker.hist;
        let run_s = spec.duration_s;
        FanoutResult {
            sent,
            deliveries: tracker.deliveries,
            deliveries_per_s: tracker.deliveries as f64 / run_s,
            lost: expected
                .saturating_sub(tracker.deliveries)
                .max(tracker.gaps),
            duplicated: tracker.duplicated,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            join_s,
            server: cpu.1,
            server_cpu_per_s: match cpu {
                (Some(b), Some(a)) => Some((a.cpu_s - b.cpu_s) / run_s),
                _ => None,
            },
            spec,
        }
    }
}

/// The result of the connections workload.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsResult {
    pub clients: usize,
    /// From the first connect to the last welcome.
    pub connect_join_s: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub rss_per_conn_kib: Option<f64>,
    pub threads: Option<u64>,
    /// One message from one client to all the others: when the first and the last got it.
    pub round_first_ms: f64,
    pub round_last_ms: f64,
}

/// Connects `clients` idle clients, then sends one message round to all of them.
pub fn connections(target: &Target, clients: usize) -> Result<ConnectionsResult> {
    let before = target.stats();
    let mut poll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let started = Instant::now();
    let tag = std::process::id() % 10_000;
    let mut conns = connect_all(
        target.addr,
        &format!("c{tag}-"),
        clients,
        &mut poll,
        0,
        started + Duration::from_secs(120),
    )?;
    let connect_join_s = started.elapsed().as_secs_f64();
    // Let the server settle its last deliveries, then read the memory.
    drain(&mut poll, &mut conns, Duration::from_millis(300))?;
    let after = target.stats();

    let sent_at = Instant::now();
    conns[0]
        .wbuf
        .extend_from_slice(b"{\"type\":\"say\",\"text\":\"B 0 0 0 round\"}\n");
    conns[0].flush().map_err(|e| Error::io("send failed", e))?;
    let mut got = vec![false; conns.len()];
    let mut remaining = conns.len();
    let mut first = None;
    let mut last = Duration::ZERO;
    let mut events = Events::with_capacity(4096);
    let deadline = sent_at + Duration::from_secs(30);
    while remaining > 0 && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let mut hit = false;
            conns[i]
                .read_lines(|line, _| hit |= find(line, b"B 0 0 0 round").is_some())
                .map_err(|e| Error::io("read failed", e))?;
            if hit && !got[i] {
                got[i] = true;
                remaining -= 1;
                let t = sent_at.elapsed();
                first.get_or_insert(t);
                last = t;
            }
        }
    }
    if remaining > 0 {
        return Err(Error::peer(format!(
            "{remaining} clients never got the round message"
        )));
    }
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some((a.rss_kib.saturating_sub(b.rss_kib)) as f64 / clients as f64),
        _ => None,
    };
    Ok(ConnectionsResult {
        clients,
        connect_join_s,
        rss_before_kib: before.map(|s| s.rss_kib),
        rss_after_kib: after.map(|s| s.rss_kib),
        rss_per_conn_kib: per_conn,
        threads: after.map(|s| s.threads),
        round_first_ms: first.unwrap_or_default().as_secs_f64() * 1e3,
        round_last_ms: last.as_secs_f64() * 1e3,
    })
}

/// Reads and discards whatever arrives on `conns` for `for_how_long`.
fn drain(poll: &mut Poll, conns: &mut [Conn], for_how_long: Duration) -> Result<()> {
    let until = Instant::now() + for_how_long;
    let mut events = Events::with_capacity(4096);
    while Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            conns[ev.token().0]
                .read_lines(|_, _| {})
                .map_err(|e| Error::io("read failed", e))?;
        }
    }
    Ok(())
}

/// The result of the start-up workload.
#[derive(Debug, Clone, Serialize)]
pub struct StartupResult {
    pub log_bytes: u64,
    pub log_rows: u64,
    /// From spawning the server to its `listening on` line.
    pub startup_ms: f64,
    /// From connecting to the end of the lobby's history (the welcome, the member list and the
    /// lobby's last messages).
    pub join_ms: f64,
    /// History messages that join brought.
    pub lobby_history: usize,
    /// From a `join` of another room to the end of its history.
    pub room_join_ms: f64,
    /// History messages that join brought.
    pub room_history: usize,
    /// The id of the first message sent after start-up: the log's last id plus one.
    pub next_id: u64,
}

/// Writes a `messages.csv` of about `bytes` bytes into `dir`; returns (bytes, rows).
pub fn generate_log(dir: &Path, bytes: u64) -> Result<(u64, u64)> {
    let path = dir.join(crate::store::MESSAGES_FILE);
    let file = fs::File::create(&path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    let mut rows = 0u64;
    let header = format!("{}\n", crate::store::MESSAGES_HEADER);
    out.write_all(header.as_bytes())
        .map_err(|e| Error::io("write failed", e))?;
    written += header.len() as u64;
    let rooms = ["lobby", "ops", "random", "dev", "support"];
    while written < bytes {
        rows += 1;
        let line = format!(
            "{rows},2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z,{},user{},,message,\"generated message {rows}, with a comma and \"\"quotes\"\"\"\n",
            1 + (rows / 400_000) % 28,
            (rows / 3600) % 24,
            (rows / 60) % 60,
            rows % 60,
            rows % 1000,
            rooms[(rows % 5) as usize],
            rows % 97,
        );
        out.write_all(line.as_bytes())
            .map_err(|e| Error::io("write failed", e))?;
        written += line.len() as u64;
    }
    out.flush().map_err(|e| Error::io("write failed", e))?;
    Ok((written, rows))
}

/// Starts a server on a data directory holding a generated log of `bytes` bytes and measures
/// its start-up and a join.
pub fn startup(dir: &Path, rows: u64, bytes: u64, extra: &[String]) -> Result<StartupResult> {
    let (target, startup) = Target::start(Some(dir), extra)?;
    let mut poll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let started = Instant::now();
    // One connection of our own (not `connect_all`, which reads past the welcome): every line
    // up to the lobby's history end is seen here.
    let std_stream = std::net::TcpStream::connect(target.addr)
        .map_err(|e| Error::io(format!("cannot connect to {}", target.addr), e))?;
    std_stream
        .set_nonblocking(true)
        .map_err(|e| Error::io("cannot set non-blocking", e))?;
    let mut conn = Conn::connect_from(TcpStream::from_std(std_stream), "joiner");
    let c = &mut conn;
    poll.registry()
        .register(&mut c.stream, Token(0), Interest::READABLE)
        .map_err(|e| Error::io("cannot register a socket", e))?;
    c.flush().map_err(|e| Error::io("cannot send hello", e))?;
    // The lobby's history follows the welcome; then a join of another room, timed from the
    // request to its history's end.
    let (lobby_history, _) = until_history_end(&mut poll, c)?;
    let join = started.elapsed();
    let join_started = Instant::now();
    c.wbuf
        .extend_from_slice(b"{\"type\":\"join\",\"room\":\"ops\"}\n");
    c.flush().map_err(|e| Error::io("send failed", e))?;
    let (room_history, _) = until_history_end(&mut poll, c)?;
    let room_join = join_started.elapsed();
    c.wbuf
        .extend_from_slice(b"{\"type\":\"say\",\"text\":\"after start-up\"}\n");
    c.flush().map_err(|e| Error::io("send failed", e))?;
    let mut next_id = 0;
    let mut events = Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_secs(10);
    while next_id == 0 && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        c.read_lines(|line, _| {
            if line.starts_with(b"{\"type\":\"message\"")
                && find(line, b"\"history\":true").is_none()
                && let Some(at) = find(line, b"\"id\":")
            {
                let digits: Vec<u8> = line[at + 5..]
                    .iter()
                    .copied()
                    .take_while(u8::is_ascii_digit)
                    .collect();
                next_id = num(&digits).unwrap_or(0);
            }
        })
        .map_err(|e| Error::io("read failed", e))?;
    }
    drop(target);
    // Remove the message we added so the generated log can be reused as it was.
    truncate_to(&dir.join(crate::store::MESSAGES_FILE), bytes)?;
    Ok(StartupResult {
        log_bytes: bytes,
        log_rows: rows,
        startup_ms: startup.as_secs_f64() * 1e3,
        join_ms: join.as_secs_f64() * 1e3,
        lobby_history,
        room_join_ms: room_join.as_secs_f64() * 1e3,
        room_history,
        next_id,
    })
}

/// Reads until a `history_end` arrives; returns how many history messages came before it.
fn until_history_end(poll: &mut Poll, c: &mut Conn) -> Result<(usize, bool)> {
    let mut events = Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut count = 0;
    let mut done = false;
    loop {
        c.read_lines(|line, _| {
            if done {
                return;
            }
            if line.starts_with(b"{\"type\":\"history_end\"") {
                done = true;
            } else if find(line, b"\"history\":true").is_some() {
                count += 1;
            }
        })
        .map_err(|e| Error::io("read failed", e))?;
        if done {
            return Ok((count, true));
        }
        if Instant::now() > deadline {
            return Err(Error::peer("no history_end within 10 s"));
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
    }
}

/// The many-rooms workload: `clients` clients in rooms of `room_size`, each sending one
/// message every `interval_s` seconds (spread evenly), for `duration_s`.
pub fn many_rooms(
    target: &Target,
    clients: usize,
    room_size: usize,
    interval_s: f64,
    duration_s: f64,
) -> Result<FanoutResult> {
    let join_started = Instant::now();
    let mut poll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let tag = std::process::id() % 10_000;
    let mut conns = connect_all(
        target.addr,
        &format!("m{tag}-"),
        clients,
        &mut poll,
        0,
        join_started + Duration::from_secs(120),
    )?;
    for (i, c) in conns.iter_mut().enumerate() {
        c.receiver = Some(i);
        c.wbuf.extend_from_slice(
            format!("{{\"type\":\"join\",\"room\":\"r{}\"}}\n", i / room_size).as_bytes(),
        );
        c.flush().map_err(|e| Error::io("cannot send join", e))?;
    }
    // Each client is joined once the history of its own room has ended.
    let mut joined = vec![false; clients];
    let mut waiting = clients;
    let mut events = Events::with_capacity(4096);
    let deadline = Instant::now() + Duration::from_secs(120);
    while waiting > 0 {
        if Instant::now() > deadline {
            return Err(Error::peer(format!(
                "{waiting} clients never joined their room"
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let mut done = false;
            conns[i]
                .read_lines(|line, _| {
                    done |= line.starts_with(b"{\"type\":\"history_end\",\"room\":\"r")
                })
                .map_err(|e| Error::io("read failed", e))?;
            if done && !joined[i] {
                joined[i] = true;
                waiting -= 1;
            }
        }
    }
    let join_s = join_started.elapsed().as_secs_f64();

    let rate = clients as f64 / interval_s;
    let mut tracker = Tracker::new(clients, room_size);
    tracker.record_after_ns = (duration_s * 0.1 * 1e9) as u64;
    let cpu_before = target.stats();
    let epoch = Instant::now();
    let duration = Duration::from_secs_f64(duration_s);
    let mut sent: u64 = 0;
    let mut last_event = Instant::now();
    loop {
        let elapsed = epoch.elapsed();
        if elapsed < duration {
            // The k-th send overall is client k % clients's message number k / clients.
            let due = (elapsed.as_secs_f64() * rate) as u64 + 1;
            while sent < due {
                let k = (sent % clients as u64) as usize;
                let seq = sent / clients as u64;
                let t_ns = (sent as f64 / rate * 1e9) as u64;
                let c = &mut conns[k];
                c.wbuf.extend_from_slice(
                    format!(
                        "{{\"type\":\"say\",\"text\":\"B {k} {seq} {t_ns} chatting slowly\"}}\n"
                    )
                    .as_bytes(),
                );
                c.flush().map_err(|e| Error::io("send failed", e))?;
                sent += 1;
            }
        } else if last_event.elapsed() > Duration::from_millis(500)
            || elapsed > duration + Duration::from_secs(10)
        {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(1)))
            .map_err(|e| Error::io("poll failed", e))?;
        if !events.is_empty() {
            last_event = Instant::now();
        }
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            c.read_lines(|line, _| tracker.line(i, line, now_ns))
                .map_err(|e| Error::io("read failed", e))?;
            if c.closed {
                return Err(Error::peer(format!("the server closed client {i}")));
            }
        }
        for c in conns.iter_mut().filter(|c| !c.wbuf.is_empty()) {
            c.flush().map_err(|e| Error::io("send failed", e))?;
        }
    }
    let cpu_after = target.stats();
    // Every member of a room, the sender included (its echo), gets each message once.
    let spec = FanoutSpec {
        receivers: clients,
        senders: clients,
        rate,
        size: 0,
        duration_s,
    };
    Ok(FanoutResult::new(
        spec,
        sent,
        sent * room_size as u64,
        &tracker,
        join_s,
        (cpu_before, cpu_after),
    ))
}

fn truncate_to(path: &Path, len: u64) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    f.set_len(len)
        .map_err(|e| Error::io(format!("cannot truncate {}", path.display()), e))
}

/// Median, min and max of `values` (which must not be empty).
pub fn median_min_max(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Groups numbers by name, for summaries over repeated runs.
#[derive(Default)]
pub struct Summary {
    order: Vec<String>,
    values: HashMap<String, Vec<f64>>,
}

impl Summary {
    pub fn add(&mut self, name: &str, value: f64) {
        if !self.values.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.values.entry(name.to_string()).or_default().push(value);
    }

    /// The figures of one fanout-style run.
    pub fn add_run(&mut self, r: &FanoutResult) {
        self.add("deliveries/s", r.deliveries_per_s);
        self.add("lost", r.lost as f64);
        self.add("duplicated", r.duplicated as f64);
        self.add("latency p50 (ms)", r.p50_ms);
        self.add("latency p90 (ms)", r.p90_ms);
        self.add("latency p99 (ms)", r.p99_ms);
        self.add("latency p99.9 (ms)", r.p999_ms);
        self.add("latency max (ms)", r.max_ms);
        self.add("server CPU (cores)", r.server_cpu_per_s.unwrap_or(0.0));
        let rss = r.server.map(|p| p.rss_kib as f64 / 1024.0).unwrap_or(0.0);
        self.add("server RSS (MiB)", rss);
    }

    /// Markdown table rows: `| name | median | min | max |`.
    pub fn markdown(&self) -> String {
        let mut out =
            String::from("| figure | median | min | max |\n| --- | ---: | ---: | ---: |\n");
        for name in &self.order {
            let (med, min, max) = median_min_max(&self.values[name]);
            out.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                fmt_num(med),
                fmt_num(min),
                fmt_num(max)
            ));
        }
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v);
        // Thousands separators for readability.
        let bytes = s.as_bytes();
        let mut out = String::new();
        for (i, c) in bytes.iter().enumerate() {
            if i > 0 && (bytes.len() - i) % 3 == 0 && *c != b'-' {
                out.push(',');
            }
            out.push(*c as char);
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// How the whole suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub runs: usize,
    /// Scales the workloads down (for a quick look); 1.0 is the documented suite.
    pub scale: f64,
    /// Bytes of the generated log for the start-up workload.
    pub log_bytes: u64,
    pub server_args: Vec<String>,
}

/// Runs every workload `runs` times, printing one JSON line per run, and returns the figures
/// as Markdown.
pub fn suite(opts: &SuiteOptions) -> Result<String> {
    let mut md = String::new();
    let scaled = |n: usize| ((n as f64 * opts.scale).round() as usize).max(1);

    // 1. fanout at the target rate, and the highest rate that holds.
    let spec = FanoutSpec {
        receivers: scaled(200),
        senders: 10,
        rate: 5000.0 * opts.scale,
        size: 100,
        duration_s: 5.0,
    };
    md.push_str(&format!(
        "### fanout\n\n{} receivers and {} senders in one room, {}-byte messages, {} messages/s in total (open loop), {} s per run, messages.csv logging on.\n\n",
        spec.receivers, spec.senders, spec.size, spec.rate, spec.duration_s
    ));
    md.push_str(&fanout_runs(opts, &spec)?.markdown());
    md.push('\n');
    let mut best = Summary::default();
    for _ in 0..opts.runs {
        let (target, _) = Target::start(None, &opts.server_args)?;
        let (rate, res) = find_max(&target, &spec)?;
        best.add(
            "highest rate with 0 lost and p99 < 50 ms (messages/s)",
            rate,
        );
        best.add(
            "deliveries/s at that rate",
            res.map(|r| r.deliveries_per_s).unwrap_or(0.0),
        );
    }
    md.push_str("`--find-max` (3 s steps):\n\n");
    md.push_str(&best.markdown());
    md.push('\n');

    // 5. durability: the same fanout under each --fsync mode.
    md.push_str(&format!(
        "### durability\n\nThe fanout above ({} receivers, {} messages/s) under each `--fsync` mode. `batch` (the default) syncs once per batch before delivering it; `always` once per message.\n\n",
        spec.receivers, spec.rate
    ));
    let mut table = String::from(
        "| `--fsync` | deliveries/s | lost | p50 (ms) | p99 (ms) | max (ms) | server CPU (cores) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for mode in ["never", "batch", "always"] {
        let mut args = opts.server_args.clone();
        args.extend(["--fsync".to_string(), mode.to_string()]);
        let mut runs: Vec<FanoutResult> = Vec::new();
        let mut failed = None;
        for _ in 0..opts.runs {
            let (target, _) = Target::start(None, &args)?;
            match fanout(&target, &spec) {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r).expect("serializes"));
                    runs.push(r);
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if runs.is_empty() {
            table.push_str(&format!(
                "| {mode} | failed: {} | | | | | |\n",
                failed.unwrap_or_default()
            ));
            continue;
        }
        let med =
            |f: fn(&FanoutResult) -> f64| median_min_max(&runs.iter().map(f).collect::<Vec<_>>()).0;
        table.push_str(&format!(
            "| {mode} | {} | {} | {} | {} | {} | {} |\n",
            fmt_num(med(|r| r.deliveries_per_s)),
            fmt_num(med(|r| r.lost as f64)),
            fmt_num(med(|r| r.p50_ms)),
            fmt_num(med(|r| r.p99_ms)),
            fmt_num(med(|r| r.max_ms)),
            fmt_num(med(|r| r.server_cpu_per_s.unwrap_or(0.0))),
        ));
        if let Some(e) = failed {
            table.push_str(&format!("| {mode} | (a run failed: {e}) | | | | | |\n"));
        }
    }
    md.push_str(&table);
    md.push_str("\nMedians of the runs.\n\n");

    // 2. big room.
    let spec = FanoutSpec {
        receivers: scaled(2000),
        senders: 10,
        rate: 50.0,
        size: 100,
        duration_s: 5.0,
    };
    md.push_str(&format!(
        "### big room\n\n{} receivers and {} senders in one room, {} messages/s in total.\n\n",
        spec.receivers, spec.senders, spec.rate
    ));
    md.push_str(&fanout_runs(opts, &spec)?.markdown());
    md.push('\n');

    // 3. many rooms.
    let clients = scaled(10_000);
    let mut s = Summary::default();
    for _ in 0..opts.runs {
        let (target, _) = Target::start(None, &opts.server_args)?;
        let r = many_rooms(&target, clients, 10, 10.0, 10.0)?;
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        s.add("connect and join all (s)", r.join_s);
        s.add("messages/s", r.sent as f64 / r.spec.duration_s);
        s.add_run(&r);
    }
    md.push_str(&format!(
        "### many rooms\n\n{clients} clients in {} rooms of 10; each sends a message every 10 s (spread evenly), for 10 s; every member, the sender included, gets each message of its room.\n\n",
        clients / 10
    ));
    md.push_str(&s.markdown());
    md.push('\n');

    // 4. connections.
    let clients = scaled(10_000);
    let mut s = Summary::default();
    for _ in 0..opts.runs {
        let (target, _) = Target::start(None, &opts.server_args)?;
        let r = connections(&target, clients)?;
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        s.add("connect and join all (s)", r.connect_join_s);
        s.add(
            "server RSS per connection (KiB)",
            r.rss_per_conn_kib.unwrap_or(0.0),
        );
        s.add(
            "server RSS with all connected (MiB)",
            r.rss_after_kib.unwrap_or(0) as f64 / 1024.0,
        );
        s.add("server threads", r.threads.unwrap_or(0) as f64);
        s.add(
            "one message to everyone: first received (ms)",
            r.round_first_ms,
        );
        s.add(
            "one message to everyone: last received (ms)",
            r.round_last_ms,
        );
    }
    md.push_str(&format!(
        "### connections\n\n{clients} idle clients connect and join the lobby.\n\n"
    ));
    md.push_str(&s.markdown());
    md.push('\n');

    // 6. history: start-up on a large log.
    let dir = scratch_dir("history")?;
    let (bytes, rows) = generate_log(&dir, opts.log_bytes)?;
    let mut s = Summary::default();
    for _ in 0..opts.runs {
        let r = startup(&dir, rows, bytes, &opts.server_args)?;
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        if r.next_id != rows + 1 {
            return Err(Error::peer(format!(
                "after start-up on {rows} rows the next id was {}, not {}",
                r.next_id,
                rows + 1
            )));
        }
        s.add("server start-up, spawn to listening (ms)", r.startup_ms);
        s.add("connect, welcome and lobby history (ms)", r.join_ms);
        s.add("history messages with it", r.lobby_history as f64);
        s.add(
            "join of another room, to the end of its history (ms)",
            r.room_join_ms,
        );
        s.add("history messages with it", r.room_history as f64);
    }
    let _ = fs::remove_dir_all(&dir);
    md.push_str(&format!(
        "### history\n\nA generated messages.csv of {:.0} MiB ({rows} rows); the first message after start-up gets id {}.\n\n",
        bytes as f64 / (1 << 20) as f64,
        rows + 1
    ));
    md.push_str(&s.markdown());
    Ok(md)
}

fn fanout_runs(opts: &SuiteOptions, spec: &FanoutSpec) -> Result<Summary> {
    let mut s = Summary::default();
    for _ in 0..opts.runs {
        let (target, _) = Target::start(None, &opts.server_args)?;
        let r = fanout(&target, spec)?;
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        s.add_run(&r);
    }
    Ok(s)
}

/// Steps the rate up from `spec.rate / 5` until a step loses messages or has p99 >= 50 ms;
/// returns the highest good rate and its result.
pub fn find_max(target: &Target, spec: &FanoutSpec) -> Result<(f64, Option<FanoutResult>)> {
    let mut rate = (spec.rate / 5.0).max(10.0);
    let mut best = (0.0, None);
    loop {
        let step = FanoutSpec {
            rate,
            duration_s: 3.0,
            ..spec.clone()
        };
        // A step that fails outright (the server dropped a client that fell behind) is a
        // step that did not hold.
        let r = match fanout(target, &step) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chat-bench: at {rate:.0} messages/s: {e}");
                return Ok(best);
            }
        };
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        if r.lost > 0 || r.duplicated > 0 || r.p99_ms >= 50.0 {
            return Ok(best);
        }
        best = (rate, Some(r));
        rate *= 1.4;
        if rate > spec.rate * 20.0 {
            return Ok(best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_gaps_duplicates_and_latency() {
        let mut t = Tracker::new(1, 2);
        let line = |s: u64, q: u64, ns: u64| {
            format!(
                r#"{{"type":"message","id":1,"ts":"x","room":"lobby","from":"s","text":"B {s} {q} {ns} xxx"}}"#
            )
        };
        t.line(0, line(0, 0, 1_000_000).as_bytes(), 3_000_000);
        t.line(0, line(0, 2, 1_000_000).as_bytes(), 3_000_000);
        t.line(0, line(0, 2, 1_000_000).as_bytes(), 3_000_000);
        t.line(0, line(1, 0, 1_000_000).as_bytes(), 2_000_000);
        t.line(0, br#"{"type":"joined"}"#, 0);
        t.line(
            0,
            line(0, 9, 1).replace('}', r#","history":true}"#).as_bytes(),
            2,
        );
        assert_eq!(t.deliveries, 3);
        assert_eq!(t.gaps, 1);
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.hist.len(), 3);
        assert!((t.hist.max() as f64 - 2_000_000.0).abs() < 5_000.0);
    }

    #[test]
    fn summary_reports_median_min_max() {
        let mut s = Summary::default();
        for v in [3.0, 1.0, 2.0] {
            s.add("x", v);
        }
        assert!(s.markdown().contains("| x | 2.00 | 1.00 | 3.00 |"));
        assert_eq!(fmt_num(1234567.0), "1,234,567");
    }
}

/// One attack of `chat-bench hostile`: what the attacker got, what it cost the server, and
/// what an honest bystander saw meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct HostileResult {
    pub attack: String,
    /// What the attack came to, in words (refused, dropped, checked...).
    pub outcome: String,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// The bystander's `/ping` round trips during the attack.
    pub pings: usize,
    pub ping_p50_ms: f64,
    pub ping_p99_ms: f64,
    pub ping_max_ms: f64,
    pub seconds: f64,
}

/// Runs each attack of [`crate::attack`] against a fresh server with the default limits (plus
/// `server_args`), with a bystander pinging every 100 ms (well within its own rate limit); one
/// result per attack.
pub fn hostile(server_args: &[String]) -> Result<Vec<HostileResult>> {
    use crate::attack::{self, Bystander, Trickle};
    type Attack = Box<dyn Fn(SocketAddr) -> std::io::Result<String>>;
    let away = serde_json::json!({"type": "away", "reason": "x".repeat(200)});
    let nick = serde_json::json!({"type": "nick", "name": "nicky"});
    let history = serde_json::json!({"type": "history", "n": 200});
    let attacks: Vec<(&str, Vec<&str>, Attack)> = vec![
        // These two with the rate limit off: the bound on rooms must hold without it.
        (
            "join and leave 100,000 rooms (rate limit off)",
            vec!["--msg-rate", "0"],
            Box::new(|a| attack::room_churn(a, "churn", 100_000).map(|()| "done".into())),
        ),
        (
            "20 connections join 1,000 rooms each and hang up (rate limit off)",
            vec!["--msg-rate", "0"],
            Box::new(|a| {
                let mut granted = 0;
                for i in 0..20 {
                    granted += attack::join_many_and_hang_up(a, &format!("roam{i}"), 1000)?.0;
                }
                Ok(format!("{granted} joins granted of 20,000"))
            }),
        ),
        (
            "60 logins answer the password prompt at once",
            vec!["--login-delay", "0.01"],
            Box::new(|a| {
                let s = attack::login_storm(a, "alice", 60, "alice pw")?;
                Ok(format!(
                    "{} checked ({} right, {} wrong), {} locked out",
                    s.welcomed + s.failed,
                    s.welcomed,
                    s.failed,
                    s.locked
                ))
            }),
        ),
        (
            "50 connections trickle a byte every 2 s (--handshake-timeout 5)",
            vec!["--handshake-timeout", "5"],
            Box::new(|a| {
                let how = Trickle {
                    first: Vec::new(),
                    silence: Duration::ZERO,
                    byte: b'x',
                    every: Duration::from_secs(2),
                };
                let open = attack::trickle(a, 50, &how, Duration::from_secs(30))?;
                Ok(format!("longest open {:.1} s", open.as_secs_f64()))
            }),
        ),
        (
            "100 clients ask for /help as fast as they can and never read",
            vec![],
            Box::new(|a| {
                let dropped = attack::silent_flood(a, 100, 100_000, Duration::from_secs(60))?;
                Ok(format!("{dropped} of 100 disconnected"))
            }),
        ),
        (
            "/away with a 200-character reason x3000",
            vec![],
            Box::new(move |a| {
                let f = attack::request_flood(a, "awayer", &away, "presence", 3000)?;
                Ok(format!(
                    "{} done, {} refused, disconnected: {}",
                    f.done, f.limited, f.disconnected
                ))
            }),
        ),
        (
            "/nick x3000",
            vec![],
            Box::new(move |a| {
                let f = attack::request_flood(a, "nicky", &nick, "nick", 3000)?;
                Ok(format!(
                    "{} done, {} refused, disconnected: {}",
                    f.done, f.limited, f.disconnected
                ))
            }),
        ),
        (
            "/history 200 x100 from 5 connections at once",
            vec![],
            Box::new(move |a| {
                let floods: Vec<_> = (0..5)
                    .map(|i| {
                        let h = history.clone();
                        std::thread::spawn(move || {
                            attack::request_flood(a, &format!("reader{i}"), &h, "history_end", 100)
                        })
                    })
                    .collect();
                let mut done = 0;
                for f in floods {
                    done += f
                        .join()
                        .map_err(|_| std::io::Error::other("panicked"))??
                        .done;
                }
                Ok(format!("{done} of 500 answered"))
            }),
        ),
    ];
    let mut results = Vec::new();
    for (name, extra, run) in attacks {
        let dir = scratch_dir("hostile")?;
        let mut users = crate::store::users::Accounts::default();
        users.add("alice", "alice pw", crate::store::users::Role::Member)?;
        users.save(&dir.join(crate::store::users::USERS_FILE))?;
        let mut args: Vec<String> = vec!["--msg-rate".into(), "5".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(server_args.iter().cloned());
        let (target, _) = Target::start(Some(&dir), &args)?;
        // A lobby with history, for /history to send.
        let seed = crate::attack::JsonClient::join(target.addr, "seed");
        if let Ok(mut seed) = seed {
            for i in 0..20 {
                let _ = seed.send(&serde_json::json!({"type": "say", "text": format!("{i} {}", "h".repeat(1000))}));
            }
            let _ = seed.sync();
        }
        let before = target.stats().map_or(0, |s| s.rss_kib);
        let io = |e: std::io::Error| Error::io(format!("attack {name:?}"), e);
        let bystander =
            Bystander::start(target.addr, "bystander", Duration::from_millis(100)).map_err(io)?;
        let started = Instant::now();
        let outcome = run(target.addr).map_err(io)?;
        let seconds = started.elapsed().as_secs_f64();
        let latency = bystander.finish().map_err(io)?;
        let after = target.stats().map_or(0, |s| s.rss_kib);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let r = HostileResult {
            attack: name.to_string(),
            outcome,
            rss_before_kib: before,
            rss_after_kib: after,
            pings: latency.count,
            ping_p50_ms: ms(latency.p50),
            ping_p99_ms: ms(latency.p99),
            ping_max_ms: ms(latency.max),
            seconds,
        };
        drop(target);
        let _ = fs::remove_dir_all(&dir);
        results.push(r);
    }
    Ok(results)
}
