//! The fan-out workload over several nodes of a cluster (`chat-server --redis`): the clients
//! of one room spread evenly over the nodes, senders and receivers on each, measured as the
//! single-node fan-out measures (`super::fanout`, which this leaves untouched). Every receiver
//! also checks the ids: they rise, and an id is the same message on every receiver, so all
//! receivers saw the messages in one order (the stream's).

use super::*;

/// The result of one fan-out run over several nodes.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    /// As for one node; `server` and `server_cpu_per_s` are the nodes' together (RSS, threads
    /// and CPU summed), when every node's pid is known.
    #[serde(flatten)]
    pub fanout: FanoutResult,
    pub nodes: Vec<SocketAddr>,
    /// Each node's CPU seconds per second of the run.
    pub node_cpu_per_s: Vec<Option<f64>>,
    /// Redis's CPU seconds per second of the run, when its pid is known.
    pub redis_cpu_per_s: Option<f64>,
    /// The load generator's own CPU seconds per second of the run (it shares the machine).
    pub bench_cpu_per_s: Option<f64>,
    /// Deliveries whose id was checked against the order.
    pub ids_checked: u64,
    /// Deliveries out of order: an id not above the receiver's previous one, or an id that
    /// carried another message on another receiver. 0 when every receiver saw one order.
    pub order_violations: u64,
}

/// Checks that every receiver sees the messages in one id order.
struct OrderCheck {
    /// The last id each receiver got.
    last: Vec<u64>,
    /// The first id seen: `by_id[id - base]` is the message (sender and sequence) of `id`.
    base: Option<u64>,
    /// `(sender + 1) << 40 | seq`; 0 for an id not seen yet.
    by_id: Vec<u64>,
    checked: u64,
    violations: u64,
}

impl OrderCheck {
    fn new(receivers: usize) -> OrderCheck {
        OrderCheck {
            last: vec![0; receivers],
            base: None,
            by_id: Vec::new(),
            checked: 0,
            violations: 0,
        }
    }

    /// Accounts one line received by `receiver`.
    fn line(&mut self, receiver: usize, line: &[u8]) {
        const HEAD: &[u8] = b"{\"type\":\"message\",\"id\":";
        const MARK: &[u8] = b"\"text\":\"B ";
        if !line.starts_with(HEAD) || line.ends_with(b",\"history\":true}") {
            return;
        }
        let rest = &line[HEAD.len()..];
        let Some(end) = rest.iter().position(|&b| b == b',') else {
            return;
        };
        let Some(at) = find(rest, MARK) else {
            return;
        };
        let mut fields = rest[at + MARK.len()..].split(|&b| b == b' ');
        let (Some(id), Some(sender), Some(seq)) = (
            num(&rest[..end]),
            fields.next().and_then(num),
            fields.next().and_then(num),
        ) else {
            return;
        };
        let key = ((sender + 1) << 40) | seq;
        self.checked += 1;
        let last = &mut self.last[receiver];
        if id <= *last {
            self.violations += 1;
        }
        *last = id;
        let base = *self.base.get_or_insert(id);
        // An id below the first one seen, or implausibly far above it, cannot be checked
        // against the others (it counts as checked only for its rise).
        let Some(i) = id.checked_sub(base).filter(|&i| i < 50_000_000) else {
            return;
        };
        let i = i as usize;
        if i >= self.by_id.len() {
            self.by_id.resize(i + 1, 0);
        }
        match self.by_id[i] {
            0 => self.by_id[i] = key,
            k if k != key => self.violations += 1,
            _ => {}
        }
    }
}

/// The even share of `total` that node `j` of `n` gets.
fn share(total: usize, n: usize, j: usize) -> usize {
    total / n + usize::from(j < total % n)
}

/// Sums the nodes' /proc readings; `None` unless every node's is known.
fn sum_stats(stats: &[Option<ProcStats>]) -> Option<ProcStats> {
    stats.iter().try_fold(
        ProcStats {
            rss_kib: 0,
            threads: 0,
            cpu_s: 0.0,
        },
        |acc, s| {
            s.map(|s| ProcStats {
                rss_kib: acc.rss_kib + s.rss_kib,
                threads: acc.threads + s.threads,
                cpu_s: acc.cpu_s + s.cpu_s,
            })
        },
    )
}

/// Runs one fanout workload with its clients spread over `nodes` (one room: the lobby, which
/// every node of a cluster shares). `redis_pid` is read for Redis's CPU.
pub fn cluster_fanout(
    nodes: &[Target],
    redis_pid: Option<u32>,
    spec: &FanoutSpec,
) -> Result<ClusterResult> {
    if nodes.is_empty() {
        return Err(Error::peer("no node to measure"));
    }
    let n = nodes.len();
    let join_started = Instant::now();
    let deadline = join_started + Duration::from_secs(120);
    let mut rpoll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let mut spoll = Poll::new().map_err(|e| Error::io("cannot create a poll", e))?;
    let tag = join_started.elapsed().as_nanos() % 100_000 + u128::from(std::process::id() % 1000);
    // Receivers then senders, node after node: a client's index is its token.
    let mut receivers = Vec::with_capacity(spec.receivers);
    let mut senders = Vec::with_capacity(spec.senders);
    for (j, node) in nodes.iter().enumerate() {
        let first = receivers.len();
        receivers.extend(connect_all(
            node.addr,
            &format!("r{tag}n{j}-"),
            share(spec.receivers, n, j),
            &mut rpoll,
            first,
            deadline,
        )?);
        let first = senders.len();
        senders.extend(connect_all(
            node.addr,
            &format!("s{tag}n{j}-"),
            share(spec.senders, n, j),
            &mut spoll,
            first,
            deadline,
        )?);
    }
    for (i, r) in receivers.iter_mut().enumerate() {
        r.receiver = Some(i);
    }
    let join_s = join_started.elapsed().as_secs_f64();

    let read_all = || nodes.iter().map(Target::stats).collect::<Vec<_>>();
    let redis_stats = || redis_pid.and_then(ProcStats::read);
    let nodes_before = read_all();
    let redis_before = redis_stats();
    let bench_before = ProcStats::read(std::process::id());
    let epoch = Instant::now();
    let duration = Duration::from_secs_f64(spec.duration_s);
    let warmup_ns = (spec.duration_s * 0.1 * 1e9) as u64;
    let per_sender = spec.rate / spec.senders as f64;
    let n_senders = spec.senders;
    let size = spec.size;

    // The receiving side runs on its own thread, as in `fanout`, and checks the order too.
    let receiving = std::thread::Builder::new()
        .name("bench-recv".into())
        .spawn(move || -> Result<(Tracker, OrderCheck)> {
            let mut tracker = Tracker::new(receivers.len(), n_senders);
            tracker.record_after_ns = warmup_ns;
            let mut order = OrderCheck::new(receivers.len());
            receive(
                &mut rpoll,
                &mut receivers,
                epoch,
                duration,
                "a node",
                |c, idx, now_ns| {
                    c.read_lines(|line, _| {
                        tracker.line(idx, line, now_ns);
                        order.line(idx, line);
                    })
                    .map_err(|e| Error::io("receiver read failed", e))
                },
            )?;
            Ok((tracker, order))
        })
        .map_err(|e| Error::io("cannot start the receiving thread", e))?;

    // Sending: open loop, each sender on its schedule, whatever its node.
    let mut sent = vec![0u64; n_senders];
    let mut events = Events::with_capacity(1024);
    let pad = "x".repeat(size);
    loop {
        let elapsed = epoch.elapsed();
        if elapsed >= duration {
            break;
        }
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
        spoll
            .poll(&mut events, Some(Duration::from_micros(500)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            senders[ev.token().0]
                .read_lines(|_, _| {})
                .map_err(|e| Error::io("sender read failed", e))?;
        }
    }
    let drain_until = Instant::now() + Duration::from_secs(12);
    while !receiving.is_finished() && Instant::now() < drain_until {
        spoll
            .poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            senders[ev.token().0]
                .read_lines(|_, _| {})
                .map_err(|e| Error::io("sender read failed", e))?;
        }
        for s in senders.iter_mut() {
            s.flush().map_err(|e| Error::io("sender write failed", e))?;
        }
    }
    let (tracker, order) = receiving
        .join()
        .map_err(|_| Error::peer("the receiving thread panicked"))??;
    let nodes_after = read_all();
    let redis_after = redis_stats();
    let bench_after = ProcStats::read(std::process::id());

    let run_s = spec.duration_s;
    let cpu = |b: &Option<ProcStats>, a: &Option<ProcStats>| match (b, a) {
        (Some(b), Some(a)) => Some((a.cpu_s - b.cpu_s) / run_s),
        _ => None,
    };
    let total_sent: u64 = sent.iter().sum();
    let expected = total_sent * spec.receivers as u64;
    Ok(ClusterResult {
        fanout: FanoutResult::new(
            spec.clone(),
            total_sent,
            expected,
            &tracker,
            join_s,
            (sum_stats(&nodes_before), sum_stats(&nodes_after)),
        ),
        nodes: nodes.iter().map(|t| t.addr).collect(),
        node_cpu_per_s: nodes_before
            .iter()
            .zip(&nodes_after)
            .map(|(b, a)| cpu(b, a))
            .collect(),
        redis_cpu_per_s: cpu(&redis_before, &redis_after),
        bench_cpu_per_s: cpu(&bench_before, &bench_after),
        ids_checked: order.checked,
        order_violations: order.violations,
    })
}

/// `find_max` over several nodes: steps the rate up from `spec.rate / 5` by 1.4× (3 s steps)
/// until a step loses or duplicates messages, breaks the order or has p99 >= 50 ms; returns
/// the highest good rate and its result.
pub fn cluster_find_max(
    nodes: &[Target],
    redis_pid: Option<u32>,
    spec: &FanoutSpec,
) -> Result<(f64, Option<ClusterResult>)> {
    let mut rate = (spec.rate / 5.0).max(10.0);
    let mut best = (0.0, None);
    loop {
        let step = FanoutSpec {
            rate,
            duration_s: 3.0,
            ..spec.clone()
        };
        let r = match cluster_fanout(nodes, redis_pid, &step) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chat-bench: at {rate:.0} messages/s: {e}");
                return Ok(best);
            }
        };
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        let f = &r.fanout;
        if f.lost > 0 || f.duplicated > 0 || r.order_violations > 0 || f.p99_ms >= 50.0 {
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

    fn msg(id: u64, sender: u64, seq: u64) -> String {
        format!(
            "{{\"type\":\"message\",\"id\":{id},\"ts\":\"t\",\"room\":\"lobby\",\"from\":\"s\",\"kind\":\"message\",\"text\":\"B {sender} {seq} 0 xx\"}}"
        )
    }

    #[test]
    fn one_order_passes() {
        let mut o = OrderCheck::new(2);
        for r in 0..2 {
            o.line(r, msg(7, 0, 0).as_bytes());
            o.line(r, msg(8, 1, 0).as_bytes());
            o.line(r, msg(9, 0, 1).as_bytes());
        }
        assert_eq!((o.checked, o.violations), (6, 0));
    }

    #[test]
    fn another_order_or_a_falling_id_is_a_violation() {
        let mut o = OrderCheck::new(2);
        o.line(0, msg(7, 0, 0).as_bytes());
        o.line(0, msg(8, 1, 0).as_bytes());
        // Receiver 1 got the two messages under swapped ids.
        o.line(1, msg(7, 1, 0).as_bytes());
        o.line(1, msg(8, 0, 0).as_bytes());
        assert_eq!(o.violations, 2);
        o.line(0, msg(8, 1, 0).as_bytes());
        assert_eq!(o.violations, 3);
    }

    #[test]
    fn history_and_other_lines_are_skipped() {
        let mut o = OrderCheck::new(1);
        let mut h = msg(3, 0, 0);
        h.truncate(h.len() - 1);
        h.push_str(",\"history\":true}");
        o.line(0, h.as_bytes());
        o.line(0, b"{\"type\":\"joined\",\"room\":\"lobby\"}");
        assert_eq!(o.checked, 0);
    }

    #[test]
    fn shares_are_even() {
        assert_eq!((share(201, 2, 0), share(201, 2, 1)), (101, 100));
        assert_eq!((share(10, 2, 0), share(10, 2, 1)), (5, 5));
    }
}
