//! `chat-bench`: the load generator. Starts a `chat-server` (the one next to this binary) or
//! attaches to one, runs a workload, prints one JSON line per run and a readable summary.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use chatroom::bench::{self, FanoutSpec, SuiteOptions, Target};

/// Measure a chat server: deliveries per second, losses, latency, memory.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    workload: Workload,
    /// Attach to a running server instead of starting one.
    #[arg(long, global = true)]
    addr: Option<SocketAddr>,
    /// The attached server's pid, to read its memory and CPU from /proc.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Extra arguments for a server the benchmark starts (repeatable).
    #[arg(long = "server-arg", global = true, allow_hyphen_values = true)]
    server_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// Each attack of a hostile member against a fresh server with the default limits, while
    /// a bystander pings every 100 ms: the outcome, the server's RSS, the bystander's round
    /// trips. Fails when a round trip reaches 100 ms.
    Hostile,
    /// Receivers and senders in one room at a fixed total rate (open loop).
    Fanout {
        #[arg(long, default_value_t = 200)]
        receivers: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per second, all senders together.
        #[arg(long, default_value_t = 5000.0)]
        rate: f64,
        /// Bytes of message text.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Step the rate up and report the highest with 0 lost and p99 < 50 ms.
        #[arg(long)]
        find_max: bool,
        /// Spread the clients evenly over these running nodes (comma-separated addresses of
        /// `chat-server --redis` nodes of one cluster), senders and receivers on each, and
        /// check that every receiver gets the messages in one id order. Instead of --addr.
        #[arg(long, value_delimiter = ',', conflicts_with = "addr")]
        nodes: Vec<SocketAddr>,
        /// The nodes' pids, in the order of --nodes, for their memory and CPU.
        #[arg(long, value_delimiter = ',', requires = "nodes")]
        node_pids: Vec<u32>,
        /// The Redis server's pid, for its CPU (with --nodes).
        #[arg(long, requires = "nodes")]
        redis_pid: Option<u32>,
        /// The protocol every client speaks. `irc`: the same workload over the IRC port
        /// (`chat-server --irc`): NICK/USER, `001`, the lobby's `366`, then `PRIVMSG #lobby`;
        /// --addr is then the IRC port, and a server the benchmark starts gets
        /// `--irc 127.0.0.1:0`. Works with --find-max, not with --nodes.
        #[arg(long, value_enum, default_value_t = Proto::Json)]
        proto: Proto,
    },
    /// Many clients in many small rooms, all chatting slowly.
    ManyRooms {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        /// Seconds between two messages of one client.
        #[arg(long, default_value_t = 10.0)]
        interval: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Many idle clients: time to connect and join, memory per connection, one message round.
    Connections {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
    },
    /// Start-up and join on a generated messages.csv.
    Startup {
        /// Size of the generated log, in MiB.
        #[arg(long, default_value_t = 1024)]
        log_mib: u64,
    },
    /// The kernel's floor under fan-out, with no server: one `send(2)` of a line to each of
    /// many idle loopback sockets from one thread, in µs per send (median of 5 rounds).
    SendFloor {
        #[arg(long, default_value_t = 5_000)]
        sockets: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// A few seconds of light fanout; fails unless nothing was lost (used by the test suite).
    Smoke,
    /// Every workload, `--runs` times; prints the figures as Markdown.
    Suite {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Scale the client counts and rates (1.0 is the documented suite).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        #[arg(long, default_value_t = 1024)]
        log_mib: u64,
        /// Write the Markdown here instead of stdout.
        #[arg(long)]
        markdown: Option<std::path::PathBuf>,
    },
}

/// What the fan-out's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    /// The JSON mode of the chat port.
    Json,
    /// IRC, on the port of `chat-server --irc`.
    Irc,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn target(args: &Args) -> chatroom::Result<Target> {
    match args.addr {
        Some(addr) => Ok(Target::attach(addr, args.pid)),
        None => Ok(Target::start(None, &args.server_args)?.0),
    }
}

fn run(args: Args) -> chatroom::Result<bool> {
    let limit = bench::raise_fd_limit();
    log::info!("descriptor limit {limit}");
    match &args.workload {
        Workload::Fanout {
            receivers,
            senders,
            rate,
            size,
            duration,
            find_max,
            nodes,
            node_pids,
            redis_pid,
            proto,
        } => {
            let spec = FanoutSpec {
                receivers: *receivers,
                senders: *senders,
                rate: *rate,
                size: *size,
                duration_s: *duration,
            };
            if !nodes.is_empty() {
                if args.addr.is_some() {
                    return Err(chatroom::Error::peer(
                        "--nodes is instead of --addr, not with it",
                    ));
                }
                if *proto == Proto::Irc {
                    return Err(chatroom::Error::peer("--proto irc does not take --nodes"));
                }
                return cluster_fanout(nodes, node_pids, *redis_pid, &spec, *find_max);
            }
            if *proto == Proto::Irc {
                return irc_fanout(&args, &spec, *find_max);
            }
            let target = target(&args)?;
            if *find_max {
                let (best, r) = bench::find_max(&target, &spec)?;
                println!("highest rate with 0 lost and p99 < 50 ms: {best:.0} messages/s");
                if let Some(r) = r {
                    println!(
                        "  {:.0} deliveries/s, p99 {:.2} ms",
                        r.deliveries_per_s, r.p99_ms
                    );
                }
                return Ok(true);
            }
            let r = bench::fanout(&target, &spec)?;
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            println!(
                "fanout: {:.0} deliveries/s, lost {}, duplicated {}, latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}, server CPU {:.2} cores",
                r.deliveries_per_s,
                r.lost,
                r.duplicated,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.p999_ms,
                r.max_ms,
                r.server_cpu_per_s.unwrap_or(0.0)
            );
            Ok(r.lost == 0 && r.duplicated == 0)
        }
        Workload::ManyRooms {
            clients,
            room_size,
            interval,
            duration,
        } => {
            let target = target(&args)?;
            let r = bench::many_rooms(&target, *clients, *room_size, *interval, *duration)?;
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            println!(
                "many rooms: {} clients joined in {:.2} s; {:.0} messages/s, {:.0} deliveries/s, lost {}, duplicated {}, latency ms p50 {:.2} p99 {:.2} max {:.2}, server CPU {:.2} cores",
                r.spec.receivers,
                r.join_s,
                r.sent as f64 / r.spec.duration_s,
                r.deliveries_per_s,
                r.lost,
                r.duplicated,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.server_cpu_per_s.unwrap_or(0.0)
            );
            Ok(r.lost == 0 && r.duplicated == 0)
        }
        Workload::Connections { clients } => {
            let target = target(&args)?;
            let r = bench::connections(&target, *clients)?;
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            println!(
                "connections: {} clients joined in {:.2} s; server RSS {:.1} KiB per connection, {} threads; one message reached the first in {:.2} ms and the last in {:.2} ms",
                r.clients,
                r.connect_join_s,
                r.rss_per_conn_kib.unwrap_or(0.0),
                r.threads.unwrap_or(0),
                r.round_first_ms,
                r.round_last_ms
            );
            Ok(true)
        }
        Workload::Startup { log_mib } => {
            let dir = bench::scratch_dir("startup")?;
            let (bytes, rows) = bench::generate_log(&dir, log_mib << 20)?;
            let r = bench::startup(&dir, rows, bytes, &args.server_args);
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            println!(
                "startup: {} rows ({:.0} MiB): listening after {:.1} ms; connect to the end of the lobby's history ({} messages) {:.2} ms; joining another room to the end of its history ({} messages) {:.2} ms; next id {}",
                r.log_rows,
                r.log_bytes as f64 / (1 << 20) as f64,
                r.startup_ms,
                r.lobby_history,
                r.join_ms,
                r.room_history,
                r.room_join_ms,
                r.next_id
            );
            Ok(r.next_id == rows + 1)
        }
        Workload::Hostile => {
            let results = bench::hostile(&args.server_args)?;
            println!(
                "| attack | outcome | server RSS before → after (MiB) | bystander /ping p50 / p99 / max (ms) |"
            );
            println!("|---|---|---|---|");
            let mut ok = true;
            for r in &results {
                eprintln!("{}", serde_json::to_string(r).expect("serializes"));
                println!(
                    "| {} | {} | {:.1} → {:.1} | {:.1} / {:.1} / {:.1} ({} pings) |",
                    r.attack,
                    r.outcome,
                    r.rss_before_kib as f64 / 1024.0,
                    r.rss_after_kib as f64 / 1024.0,
                    r.ping_p50_ms,
                    r.ping_p99_ms,
                    r.ping_max_ms,
                    r.pings
                );
                ok &= r.ping_max_ms < 100.0;
            }
            Ok(ok)
        }
        Workload::SendFloor { sockets, size } => {
            let us = bench::send_floor_us(*sockets, *size, 5)?;
            println!(
                "send-floor: {us:.2} µs per send to {sockets} idle loopback sockets; one message to 10,000 clients is at least {:.0} ms of sending on one core",
                us * 10.0
            );
            Ok(true)
        }
        Workload::Smoke => {
            let target = target(&args)?;
            let spec = FanoutSpec {
                receivers: 20,
                senders: 2,
                rate: 200.0,
                size: 100,
                duration_s: 1.0,
            };
            let r = bench::fanout(&target, &spec)?;
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            let expected = r.sent * spec.receivers as u64;
            println!(
                "smoke: sent {}, {} of {} deliveries, lost {}, duplicated {}",
                r.sent, r.deliveries, expected, r.lost, r.duplicated
            );
            Ok(r.sent > 0 && r.lost == 0 && r.duplicated == 0 && r.deliveries == expected)
        }
        Workload::Suite {
            runs,
            scale,
            log_mib,
            markdown,
        } => {
            let opts = SuiteOptions {
                runs: *runs,
                scale: *scale,
                log_bytes: log_mib << 20,
                server_args: args.server_args.clone(),
            };
            let md = bench::suite(&opts)?;
            match markdown {
                Some(path) => std::fs::write(path, md).map_err(|e| {
                    chatroom::Error::io(format!("cannot write {}", path.display()), e)
                })?,
                None => print!("{md}"),
            }
            Ok(true)
        }
    }
}

/// `fanout --nodes`: the fan-out with its clients spread over the nodes of a cluster.
fn cluster_fanout(
    addrs: &[SocketAddr],
    pids: &[u32],
    redis_pid: Option<u32>,
    spec: &FanoutSpec,
    find_max: bool,
) -> chatroom::Result<bool> {
    if !pids.is_empty() && pids.len() != addrs.len() {
        return Err(chatroom::Error::peer(format!(
            "{} node pids for {} nodes",
            pids.len(),
            addrs.len()
        )));
    }
    let nodes: Vec<Target> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Target::attach(*a, pids.get(i).copied()))
        .collect();
    if find_max {
        let (best, r) = bench::cluster_find_max(&nodes, redis_pid, spec)?;
        println!(
            "highest rate with 0 lost, one order and p99 < 50 ms over {} nodes: {best:.0} messages/s",
            nodes.len()
        );
        if let Some(r) = r {
            println!(
                "  {:.0} deliveries/s, p99 {:.2} ms",
                r.fanout.deliveries_per_s, r.fanout.p99_ms
            );
        }
        return Ok(true);
    }
    let r = bench::cluster_fanout(&nodes, redis_pid, spec)?;
    println!("{}", serde_json::to_string(&r).expect("serializes"));
    let f = &r.fanout;
    let cpus: Vec<String> = r
        .node_cpu_per_s
        .iter()
        .map(|c| c.map_or("?".into(), |c| format!("{c:.2}")))
        .collect();
    println!(
        "fanout over {} nodes: {:.0} deliveries/s, lost {}, duplicated {}, out of order {} of {}, latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}, node CPU {} cores, Redis CPU {} cores, load generator CPU {} cores",
        r.nodes.len(),
        f.deliveries_per_s,
        f.lost,
        f.duplicated,
        r.order_violations,
        r.ids_checked,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.p999_ms,
        f.max_ms,
        cpus.join(" + "),
        r.redis_cpu_per_s.map_or("?".into(), |c| format!("{c:.2}")),
        r.bench_cpu_per_s.map_or("?".into(), |c| format!("{c:.2}"))
    );
    Ok(f.lost == 0 && f.duplicated == 0 && r.order_violations == 0)
}

/// `fanout --proto irc`: the fan-out over the IRC port.
fn irc_fanout(args: &Args, spec: &FanoutSpec, find_max: bool) -> chatroom::Result<bool> {
    let target = match args.addr {
        Some(addr) => Target::attach(addr, args.pid),
        None => bench::start_irc(&args.server_args)?,
    };
    if find_max {
        let (best, r) = bench::irc_find_max(&target, spec)?;
        println!("highest rate with 0 lost and p99 < 50 ms over IRC: {best:.0} messages/s");
        if let Some(r) = r {
            println!(
                "  {:.0} deliveries/s, p99 {:.2} ms",
                r.fanout.deliveries_per_s, r.fanout.p99_ms
            );
        }
        return Ok(true);
    }
    let r = bench::irc_fanout(&target, spec)?;
    println!("{}", serde_json::to_string(&r).expect("serializes"));
    let f = &r.fanout;
    println!(
        "fanout over IRC: {:.0} deliveries/s, lost {}, duplicated {}, latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}, server CPU {:.2} cores, {} server threads mid-run, load generator CPU {:.2} cores",
        f.deliveries_per_s,
        f.lost,
        f.duplicated,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.p999_ms,
        f.max_ms,
        f.server_cpu_per_s.unwrap_or(0.0),
        r.server_threads_mid
            .map_or("?".to_string(), |t| t.to_string()),
        r.bench_cpu_per_s.unwrap_or(0.0)
    );
    Ok(f.lost == 0 && f.duplicated == 0)
}
