//! The fan-out workload over the IRC port (`chat-server --irc`): the same room (the lobby,
//! `#lobby`, where the server puts every client, IRC or not), the same numbers of receivers and
//! senders, rate, size and duration as [`super::fanout`], which this leaves untouched, but every
//! client registers with `NICK`/`USER`, waits for `001` and for the `366` that ends the lobby's
//! member list, and speaks IRC: senders send `PRIVMSG #lobby :B <sender> <seq> <t_ns> xxx...`,
//! receivers parse `:nick!user@host PRIVMSG #lobby :text`, and everyone answers `PING :x` with
//! `PONG :x`.
//!
//! An IRC line carries no id and no history flag: a delivery counts only when its sender's
//! nick is one of this run's senders (`is<tag>-<k>`, the tag unique to the run), and the `<k>`
//! of the nick is the `<sender>` of the text. The lobby's history a client is sent on joining
//! (earlier runs' messages) is thus skipped, as the JSON workload skips `"history":true`.
//! What remains is accounted by the same [`Tracker`] as the JSON workload: sequence gaps are
//! losses, repeats are duplicates, latency from the intended send time after the warm-up.
//! A sender gets no echo of its own messages over IRC (without `echo-message`), where a JSON
//! sender gets its echo; neither workload counts what senders receive, so the deliveries
//! expected are the same: every message once per receiver.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// The channel both workloads use: the lobby.
const CHANNEL: &str = "#lobby";

/// The result of one fan-out run over IRC.
#[derive(Debug, Clone, Serialize)]
pub struct IrcFanoutResult {
    /// Measured as for JSON; `server` is read after the run.
    #[serde(flatten)]
    pub fanout: FanoutResult,
    /// Always `"irc"`.
    pub proto: &'static str,
    /// The IRC port measured.
    pub irc: SocketAddr,
    /// PRIVMSGs received that were not this run's (the lobby's history, other clients).
    pub foreign: u64,
    /// PINGs the clients answered.
    pub pongs: u64,
    /// The server's threads halfway through the sending.
    pub server_threads_mid: Option<u64>,
    /// The load generator's own CPU seconds per second of the run.
    pub bench_cpu_per_s: Option<f64>,
}

/// Starts `chat-server` (next to this executable) with `--irc 127.0.0.1:0` and its own data
/// directory, as [`Target::start`] does; returns it, with the IRC port as its `addr`, once it
/// has printed `irc on ADDR`.
pub fn start_irc(extra: &[String]) -> Result<Target> {
    let dir = scratch_dir("data")?;
    let mut child = spawn_server(&dir, &["--irc", "127.0.0.1:0"], extra)?;
    let pid = child.id();
    // From here on the target owns the process and the directory, whatever happens.
    let mut target = Target {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        child: None,
        pid: Some(pid),
        tmp: Some(dir),
    };
    let stdout = child.stdout.take().expect("piped");
    target.child = Some(child);
    let mut lines = BufReader::new(stdout).lines();
    for _ in 0..4 {
        let line = match lines.next() {
            Some(Ok(l)) => l,
            Some(Err(e)) => return Err(Error::io("cannot read the server's output", e)),
            None => break,
        };
        if let Some(a) = line.trim().strip_prefix("irc on ") {
            target.addr = a
                .parse()
                .map_err(|_| Error::peer(format!("the server printed {line:?}")))?;
            return Ok(target);
        }
    }
    Err(Error::peer("the server did not print `irc on ADDR`"))
}

/// A tag unique to one run: the nicks of its clients are `ir<tag>-<i>` and `is<tag>-<k>`.
fn run_tag() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}x{}x{}",
        std::process::id() % 100_000,
        nanos % 100_000,
        RUNS.fetch_add(1, Ordering::Relaxed)
    )
}

/// One IRC line, split: its command and its parameters (the trailing one without its `:`).
/// Tags, the prefix and a final `\r` are dropped.
pub(super) struct Line<'a> {
    pub(super) command: &'a [u8],
    pub(super) params: Vec<&'a [u8]>,
}

fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn strip_tags_and_cr(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.first() == Some(&b'@') {
        split_word(line).1
    } else {
        line
    }
}

/// The nick of a prefix `nick!user@host` (or a server's name).
fn nick_of(prefix: &[u8]) -> &[u8] {
    &prefix[..memchr::memchr(b'!', prefix).unwrap_or(prefix.len())]
}

pub(super) fn parse(line: &[u8]) -> Line<'_> {
    let mut rest = strip_tags_and_cr(line);
    if let Some(r) = rest.strip_prefix(b":") {
        rest = split_word(r).1;
    }
    let (command, mut rest) = split_word(rest);
    let mut params = Vec::new();
    while !rest.is_empty() {
        if let Some(trailing) = rest.strip_prefix(b":") {
            params.push(trailing);
            break;
        }
        let (p, after) = split_word(rest);
        if !p.is_empty() {
            params.push(p);
        }
        rest = after;
    }
    Line { command, params }
}

/// The sender's nick, the target and the text of a PRIVMSG line; `None` for any other line.
/// (The receivers' hot path: no allocation.)
pub(super) fn privmsg(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let rest = strip_tags_and_cr(line).strip_prefix(b":")?;
    let (prefix, rest) = split_word(rest);
    let rest = rest.strip_prefix(b"PRIVMSG ")?;
    let (target, text) = split_word(rest);
    Some((
        nick_of(prefix),
        target,
        text.strip_prefix(b":").unwrap_or(text),
    ))
}

/// `PONG :x` for a `PING :x` line, appended to `out`; true if it was one.
fn pong(line: &[u8], out: &mut Vec<u8>) -> bool {
    let l = parse(line);
    if l.command != b"PING" {
        return false;
    }
    out.extend_from_slice(b"PONG :");
    out.extend_from_slice(l.params.last().copied().unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    true
}

/// Turns IRC deliveries into what [`Tracker::line`] reads, so both workloads account alike.
struct Deliveries {
    /// `is<tag>-`: the nick of this run's sender `k` is this and `k`.
    sender_prefix: Vec<u8>,
    /// Reused: `"text":"` and the head of a text (`B <sender> <seq> <t_ns> `).
    buf: Vec<u8>,
    foreign: u64,
}

impl Deliveries {
    fn new(tag: &str) -> Deliveries {
        Deliveries {
            sender_prefix: format!("is{tag}-").into_bytes(),
            buf: Vec::with_capacity(96),
            foreign: 0,
        }
    }

    /// The sender index of a nick of this run, if it is one.
    fn sender(&self, nick: &[u8]) -> Option<u64> {
        nick.strip_prefix(self.sender_prefix.as_slice())
            .and_then(num)
    }

    /// Accounts one PRIVMSG line received by `receiver` at `now_ns`; other lines are ignored.
    fn line(&mut self, tracker: &mut Tracker, receiver: usize, line: &[u8], now_ns: u64) {
        let Some((nick, target, text)) = privmsg(line) else {
            return;
        };
        let Some(k) = self.sender(nick) else {
            self.foreign += 1;
            return;
        };
        // `B <sender> <seq> <t_ns> ...`: the sender of the text must be the nick's.
        let mut fields = text.splitn(5, |&b| b == b' ');
        let (Some(b"B"), Some(sender), Some(seq), Some(t)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            self.foreign += 1;
            return;
        };
        if num(sender) != Some(k) || !target.eq_ignore_ascii_case(CHANNEL.as_bytes()) {
            self.foreign += 1;
            return;
        }
        self.buf.clear();
        for part in [&b"\"text\":\"B"[..], sender, seq, t] {
            self.buf.extend_from_slice(part);
            self.buf.push(b' ');
        }
        tracker.line(receiver, &self.buf, now_ns);
    }
}

/// Connects `count` IRC clients named `prefix0..` (at most `MAX_INFLIGHT` not yet in the
/// lobby at a time), each registering and waiting for `001` and the lobby's `366`; returns
/// them registered with `poll` under tokens `first_token..`, readable only.
fn connect_irc(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    poll: &mut Poll,
    first_token: usize,
    deadline: Instant,
) -> Result<(Vec<Conn>, u64)> {
    const MAX_INFLIGHT: usize = 1000;
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    let mut events = Events::with_capacity(1024);
    let mut ready = 0;
    let mut pongs = 0;
    let mut refused = None;
    let mut out = Vec::new();
    while ready < count {
        while conns.len() < count && conns.len() - ready < MAX_INFLIGHT {
            let i = conns.len();
            let name = format!("{prefix}{i}");
            let stream = TcpStream::connect(addr)
                .map_err(|e| Error::io(format!("cannot connect to {addr}"), e))?;
            let mut c = Conn::connect_from(stream, &name);
            c.wbuf.clear();
            c.wbuf.extend_from_slice(
                format!("NICK {name}\r\nUSER {name} 0 * :{name}\r\n").as_bytes(),
            );
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
                "{} of {count} IRC clients were not in {CHANNEL} in time",
                count - ready
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
                c.flush().map_err(|e| Error::io("cannot register", e))?;
            }
            if !ev.is_readable() {
                continue;
            }
            let was = c.welcomed;
            c.read_lines(|line, in_lobby| {
                if pong(line, &mut out) {
                    pongs += 1;
                    return;
                }
                let l = parse(line);
                match l.command {
                    // The end of the lobby's member list: registered and in the room.
                    b"366"
                        if l.params
                            .get(1)
                            .is_some_and(|c| c.eq_ignore_ascii_case(CHANNEL.as_bytes())) =>
                    {
                        *in_lobby = true
                    }
                    // 422 (no MOTD) is part of every welcome.
                    b"422" => {}
                    b"ERROR" => refused = Some(String::from_utf8_lossy(line).into_owned()),
                    [b'4' | b'5', b'0'..=b'9', b'0'..=b'9'] => {
                        refused = Some(String::from_utf8_lossy(line).into_owned())
                    }
                    _ => {}
                }
            })
            .map_err(|e| Error::io("read failed while registering", e))?;
            if !out.is_empty() {
                c.wbuf.append(&mut out);
                c.flush()
                    .map_err(|e| Error::io("cannot answer a PING", e))?;
            }
            if let Some(r) = refused.take() {
                return Err(Error::peer(format!("an IRC client was refused: {r}")));
            }
            if c.closed {
                return Err(Error::peer(
                    "the server closed an IRC client while it registered",
                ));
            }
            if !was && c.welcomed {
                ready += 1;
            }
        }
    }
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .reregister(&mut c.stream, Token(first_token + i), Interest::READABLE)
            .map_err(|e| Error::io("cannot register a socket", e))?;
    }
    Ok((conns, pongs))
}

/// Reads what `c` has, answering PINGs (the callback sees the other lines); returns the PINGs
/// answered.
fn read_answering(c: &mut Conn, out: &mut Vec<u8>, mut other: impl FnMut(&[u8])) -> Result<u64> {
    let mut pongs = 0;
    c.read_lines(|line, _| {
        // A PRIVMSG, nearly every line, has a prefix; a PING has none.
        if !line.starts_with(b":") && pong(line, out) {
            pongs += 1;
        } else {
            other(line);
        }
    })
    .map_err(|e| Error::io("read failed", e))?;
    if !out.is_empty() {
        c.wbuf.append(out);
    }
    if !c.wbuf.is_empty() {
        c.flush()
            .map_err(|e| Error::io("cannot answer a PING", e))?;
    }
    Ok(pongs)
}

/// Runs one fanout workload against the IRC port `target.addr`.
pub fn irc_fanout(target: &Target, spec: &FanoutSpec) -> Result<IrcFanoutResult> {
    if spec.size + "PRIVMSG #lobby :\r\n".len() > 512 {
        return Err(Error::peer(
            "an IRC line is at most 512 bytes: use --size 490 or less",
        ));
    }
    if spec.senders == 0 || spec.receivers == 0 {
        return Err(Error::peer("the fan-out needs senders and receivers"));
    }
    let join_started = Instant::now();
    let deadline = join_started + Duration::from_secs(120);
    let mut rpoll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let mut spoll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let tag = run_tag();
    let (mut receivers, pongs_r) = connect_irc(
        target.addr,
        &format!("ir{tag}-"),
        spec.receivers,
        &mut rpoll,
        0,
        deadline,
    )?;
    for (i, r) in receivers.iter_mut().enumerate() {
        r.receiver = Some(i);
    }
    let (mut senders, pongs_s) = connect_irc(
        target.addr,
        &format!("is{tag}-"),
        spec.senders,
        &mut spoll,
        0,
        deadline,
    )?;
    let join_s = join_started.elapsed().as_secs_f64();

    let cpu_before = target.stats();
    let bench_before = ProcStats::read(std::process::id());
    let epoch = Instant::now();
    let duration = Duration::from_secs_f64(spec.duration_s);
    let warmup_ns = (spec.duration_s * 0.1 * 1e9) as u64;
    let per_sender = spec.rate / spec.senders as f64;
    let n_senders = spec.senders;
    let size = spec.size;
    let mut deliveries = Deliveries::new(&tag);

    // The receiving side runs on its own thread, as in `fanout`.
    let receiving = std::thread::Builder::new()
        .name("bench-recv".into())
        .spawn(move || -> Result<(Tracker, u64, u64)> {
            let mut tracker = Tracker::new(receivers.len(), n_senders);
            tracker.record_after_ns = warmup_ns;
            let mut pongs = 0;
            let mut out = Vec::new();
            receive(
                &mut rpoll,
                &mut receivers,
                epoch,
                duration,
                "the server",
                |c, idx, now_ns| {
                    pongs += read_answering(c, &mut out, |line| {
                        deliveries.line(&mut tracker, idx, line, now_ns)
                    })?;
                    Ok(())
                },
            )?;
            Ok((tracker, deliveries.foreign, pongs))
        })
        .map_err(|e| Error::io("cannot start the receiving thread", e))?;

    // Sending: open loop, each sender on its schedule, as in `fanout`.
    let mut sent = vec![0u64; n_senders];
    let mut events = Events::with_capacity(1024);
    let pad = "x".repeat(size);
    let mut out = Vec::new();
    let mut pongs = pongs_r + pongs_s;
    let mut mid = None;
    loop {
        let elapsed = epoch.elapsed();
        if elapsed >= duration {
            break;
        }
        if mid.is_none() && elapsed >= duration / 2 {
            mid = Some(target.stats());
        }
        let due = (elapsed.as_secs_f64() * per_sender) as u64 + 1;
        send_due(
            &mut senders,
            &mut sent,
            due,
            per_sender,
            size,
            &pad,
            b"PRIVMSG #lobby :",
            b"\r\n",
        )?;
        // Drain what the senders receive (the other senders' messages) and wait a moment.
        spoll
            .poll(&mut events, Some(Duration::from_micros(500)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            pongs += read_answering(&mut senders[ev.token().0], &mut out, |_| {})?;
        }
    }
    let drain_until = Instant::now() + Duration::from_secs(12);
    while !receiving.is_finished() && Instant::now() < drain_until {
        spoll
            .poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            pongs += read_answering(&mut senders[ev.token().0], &mut out, |_| {})?;
        }
        for s in senders.iter_mut() {
            s.flush().map_err(|e| Error::io("sender write failed", e))?;
        }
    }
    let (tracker, foreign, pongs_recv) = receiving
        .join()
        .map_err(|_| Error::peer("the receiving thread panicked"))??;
    let cpu_after = target.stats();
    let bench_after = ProcStats::read(std::process::id());

    let total_sent: u64 = sent.iter().sum();
    let expected = total_sent * spec.receivers as u64;
    Ok(IrcFanoutResult {
        fanout: FanoutResult::new(
            spec.clone(),
            total_sent,
            expected,
            &tracker,
            join_s,
            (cpu_before, cpu_after),
        ),
        proto: "irc",
        irc: target.addr,
        foreign,
        pongs: pongs + pongs_recv,
        server_threads_mid: mid.flatten().map(|s| s.threads),
        bench_cpu_per_s: match (bench_before, bench_after) {
            (Some(b), Some(a)) => Some((a.cpu_s - b.cpu_s) / spec.duration_s),
            _ => None,
        },
    })
}

/// [`find_max`] over IRC: steps the rate up from `spec.rate / 5` by 1.4× (3 s steps) until a
/// step loses or duplicates messages or has p99 >= 50 ms; returns the highest good rate and
/// its result.
pub fn irc_find_max(target: &Target, spec: &FanoutSpec) -> Result<(f64, Option<IrcFanoutResult>)> {
    let mut rate = (spec.rate / 5.0).max(10.0);
    let mut best = (0.0, None);
    loop {
        let step = FanoutSpec {
            rate,
            duration_s: 3.0,
            ..spec.clone()
        };
        let r = match irc_fanout(target, &step) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chat-bench: at {rate:.0} messages/s: {e}");
                return Ok(best);
            }
        };
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        let f = &r.fanout;
        if f.lost > 0 || f.duplicated > 0 || f.p99_ms >= 50.0 {
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
    fn lines_split() {
        let l = parse(b"@time=x :a!b@c PRIVMSG #lobby :hello there\r");
        assert_eq!(l.command, b"PRIVMSG");
        assert_eq!(l.params, vec![&b"#lobby"[..], b"hello there"]);
        let l = parse(b":chatroom 366 me #lobby :End of /NAMES list");
        assert_eq!(l.command, b"366");
        assert_eq!(l.params[1], b"#lobby");
        let mut out = Vec::new();
        assert!(pong(b"PING :123\r", &mut out));
        assert!(!pong(b":x PRIVMSG #a :PING", &mut out));
        assert_eq!(out, b"PONG :123\r\n");
        assert_eq!(
            privmsg(b":n!u@h PRIVMSG #lobby :B 1 2 3 xx"),
            Some((&b"n"[..], &b"#lobby"[..], &b"B 1 2 3 xx"[..]))
        );
        assert_eq!(privmsg(b":n!u@h JOIN #lobby"), None);
    }

    #[test]
    fn deliveries_are_this_runs_senders_only() {
        let mut t = Tracker::new(1, 2);
        let mut d = Deliveries::new("7x8x0");
        let line = |nick: &str, k: u64, q: u64, ns: u64| {
            format!(":{nick}!{nick}@chatroom PRIVMSG #lobby :B {k} {q} {ns} xxxx\r")
        };
        d.line(
            &mut t,
            0,
            line("is7x8x0-0", 0, 0, 1_000_000).as_bytes(),
            3_000_000,
        );
        d.line(
            &mut t,
            0,
            line("is7x8x0-0", 0, 2, 1_000_000).as_bytes(),
            3_000_000,
        );
        d.line(
            &mut t,
            0,
            line("is7x8x0-0", 0, 2, 1_000_000).as_bytes(),
            3_000_000,
        );
        d.line(
            &mut t,
            0,
            line("is7x8x0-1", 1, 0, 1_000_000).as_bytes(),
            2_000_000,
        );
        // History of another run, a sender whose text names another, anything else.
        d.line(&mut t, 0, line("is7x8x9-1", 1, 5, 1).as_bytes(), 2);
        d.line(&mut t, 0, line("is7x8x0-1", 0, 5, 1).as_bytes(), 2);
        d.line(&mut t, 0, b":is7x8x0-1!a@b JOIN #lobby", 2);
        assert_eq!((t.deliveries, t.gaps, t.duplicated), (3, 1, 1));
        assert_eq!(d.foreign, 2);
        assert_eq!(t.hist.len(), 3);
        assert!((t.hist.max() as f64 - 2_000_000.0).abs() < 5_000.0);
    }
}
