//! The other workloads: many connections, start-up on a big log, many rooms.

use super::*;

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

pub(super) fn truncate_to(path: &Path, len: u64) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    f.set_len(len)
        .map_err(|e| Error::io(format!("cannot truncate {}", path.display()), e))
}

/// What one `send(2)` of a `size`-byte line to an idle loopback socket costs on this machine,
/// with no server at all: `pairs` connected pairs, one thread sending to each in turn with
/// `MSG_DONTWAIT`, peers not reading; the median per send of `rounds` rounds, in µs. This is
/// the floor under any fan-out figure of a thread-per-client server here: one message to N
/// clients is at least N sends, split over the cores.
pub fn send_floor_us(pairs: usize, size: usize, rounds: usize) -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("cannot listen on 127.0.0.1", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("no local address", e))?;
    let mut peers = Vec::with_capacity(pairs);
    let mut ours = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let peer = std::net::TcpStream::connect(addr).map_err(|e| Error::io("connect", e))?;
        let (s, _) = listener.accept().map_err(|e| Error::io("accept", e))?;
        s.set_nodelay(true).map_err(|e| Error::io("nodelay", e))?;
        peers.push(peer);
        ours.push(s);
    }
    let mut line = vec![b'x'; size.max(1)];
    *line.last_mut().expect("not empty") = b'\n';
    let mut per_send = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for s in &ours {
            socket2::SockRef::from(s)
                .send_with_flags(&line, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .map_err(|e| Error::io("send", e))?;
        }
        per_send.push(started.elapsed().as_secs_f64() * 1e6 / pairs as f64);
        // Keep the peers' buffers from filling over the rounds.
        for p in &peers {
            let _ = p.set_nonblocking(true);
            let mut buf = [0u8; 4096];
            while matches!((&*p).read(&mut buf), Ok(n) if n > 0) {}
        }
    }
    per_send.sort_by(f64::total_cmp);
    Ok(per_send[per_send.len() / 2])
}
