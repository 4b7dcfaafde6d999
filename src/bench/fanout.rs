//! The fan-out workload: senders at a fixed rate, every receiver counting and timing.

use super::*;

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

/// The receiving side's loop, on its own thread: polls the receivers until the senders are
/// done (`epoch + duration`) and nothing has come for 500 ms, or 10 s past their end at the
/// latest; `read` reads a receiver that is readable (its index, and the time in ns since
/// `epoch`). Fails if `server` closed a receiver.
pub(super) fn receive(
    rpoll: &mut Poll,
    receivers: &mut [Conn],
    epoch: Instant,
    duration: Duration,
    server: &str,
    mut read: impl FnMut(&mut Conn, usize, u64) -> Result<()>,
) -> Result<()> {
    let mut events = Events::with_capacity(4096);
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
            read(c, idx, epoch.elapsed().as_nanos() as u64)?;
        }
    }
    match receivers.iter().find(|c| c.closed) {
        Some(c) => Err(Error::peer(format!(
            "{server} closed receiver {:?}",
            c.receiver
        ))),
        None => Ok(()),
    }
}

/// Writes each sender's messages due by now (`due` each, counted in `sent`), framed by `open`
/// and `close` around `B <sender> <seq> <t_ns> ` and padding to `size` bytes; the text's send
/// time is when it was due, not when it went, so a sender behind schedule shows as latency.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_due(
    senders: &mut [Conn],
    sent: &mut [u64],
    due: u64,
    per_sender: f64,
    size: usize,
    pad: &str,
    open: &[u8],
    close: &[u8],
) -> Result<()> {
    for (k, s) in senders.iter_mut().enumerate() {
        while sent[k] < due {
            let seq = sent[k];
            let t_ns = (seq as f64 / per_sender * 1e9) as u64;
            let head = format!("B {k} {seq} {t_ns} ");
            let fill = size.saturating_sub(head.len());
            s.wbuf.extend_from_slice(open);
            s.wbuf.extend_from_slice(head.as_bytes());
            s.wbuf.extend_from_slice(&pad.as_bytes()[..fill]);
            s.wbuf.extend_from_slice(close);
            sent[k] += 1;
        }
        s.flush().map_err(|e| Error::io("sender write failed", e))?;
    }
    Ok(())
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
            receive(
                &mut rpoll,
                &mut receivers,
                epoch,
                duration,
                "the server",
                |c, idx, now_ns| {
                    c.read_lines(|line, _| tracker.line(idx, line, now_ns))
                        .map_err(|e| Error::io("receiver read failed", e))
                },
            )?;
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
        send_due(
            &mut senders,
            &mut sent,
            due,
            per_sender,
            size,
            &pad,
            b"{\"type\":\"say\",\"text\":\"",
            b"\"}\n",
        )?;
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
    pub(super) fn new(
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
