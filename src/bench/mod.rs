//! `chat-bench`: the project's load generator and benchmark.
//!
//! It speaks the JSON mode (and IRC, for `fanout --proto irc`: `irc.rs`) over many
//! non-blocking sockets multiplexed with `mio` on a few threads (the thread-per-client rule is
//! the server's, not the load generator's). Every message carries its sender, a per-sender
//! sequence number and its *intended* send time, so a receiver can count lost and duplicated
//! messages and record the delivery latency without coordinated omission: a sender that falls
//! behind its schedule shows up as latency.
//!
//! Message text: `B <sender> <seq> <t_ns> xxxx...`, padded to the configured size.

mod cluster;
mod conn;
mod fanout;
mod hostile;
mod irc;
mod suite;
#[cfg(test)]
mod tests;
mod workloads;

pub use cluster::{ClusterResult, cluster_fanout, cluster_find_max};
use conn::*;
pub use fanout::{FanoutResult, FanoutSpec, fanout, find_max};
use fanout::{receive, send_due};
pub use hostile::{HostileResult, hostile};
pub use irc::{IrcFanoutResult, irc_fanout, irc_find_max, start_irc};
pub use suite::{SuiteOptions, Summary, median_min_max, suite};
pub use workloads::{
    ConnectionsResult, StartupResult, connections, generate_log, many_rooms, send_floor_us, startup,
};

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

/// Starts `chat-server` (next to this executable) on 127.0.0.1:0 with `dir` as its data
/// directory, `args` and `extra` after; its stdout piped, for the lines that say where it
/// listens. The benchmark floods on purpose: no per-client rate limit unless asked for.
fn spawn_server(dir: &Path, args: &[&str], extra: &[String]) -> Result<Child> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("cannot find the current executable", e))?
        .with_file_name("chat-server");
    Command::new(&exe)
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .args(["--msg-rate", "0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}", exe.display()), e))
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
        let started = Instant::now();
        let mut child = spawn_server(&dir, &[], extra)?;
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
