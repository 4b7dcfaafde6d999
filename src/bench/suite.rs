//! `chat-bench suite`: every workload, several runs, medians in a Markdown table.

use super::*;

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

pub(super) fn fmt_num(v: f64) -> String {
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
        // No server: what the kernel alone charges for those sends (half as many sockets,
        // since each pair is two descriptors of this process).
        let floor = send_floor_us((clients / 2).max(1), 100, 5)?;
        s.add(
            "floor: one loopback send(2) to an idle socket, no server (µs)",
            floor,
        );
        s.add(
            "floor: the sends of one message to everyone, one thread (ms)",
            floor * clients as f64 / 1e3,
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

pub(super) fn fanout_runs(opts: &SuiteOptions, spec: &FanoutSpec) -> Result<Summary> {
    let mut s = Summary::default();
    for _ in 0..opts.runs {
        let (target, _) = Target::start(None, &opts.server_args)?;
        let r = fanout(&target, spec)?;
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        s.add_run(&r);
    }
    Ok(s)
}
