//! Bans: `bans.csv`, by name, address or network, permanent or until a time.
//!
//! Header `created,kind,target,until,by,reason`; `kind` is `name`, `ip` or `cidr`; `until` is
//! RFC 3339 UTC, or empty for a permanent ban. The file is rewritten atomically (temporary file,
//! sync, rename) on every change; expired bans stop applying at once and are dropped at the next
//! write.
//!
//! Others may change the file while the server runs (`chat-server bans`, an editor): [`Bans`]
//! remembers the file's modification time, size and inode as it read or wrote them, and
//! [`refresh`] reads it again when they differ. A change is never written over: `add` and
//! `remove` read a changed file again before they change it.

use std::fs::{self, File};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proto;

/// The file name of the bans inside the data directory.
pub const BANS_FILE: &str = "bans.csv";

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String),
    Ip(IpAddr),
    /// An address and a prefix length.
    Cidr(IpAddr, u8),
}

impl Target {
    /// `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`, or a name. An IPv4 address written
    /// as IPv6 (`::ffff:203.0.113.7`, as a dual-stack listener sees it) is the IPv4 address.
    pub fn parse(s: &str) -> std::result::Result<Target, String> {
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| format!("{s} is not a network"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s}: the prefix length must be 0 to {max}"))?;
            return Ok(match ip.to_canonical() {
                IpAddr::V4(v4) if ip.is_ipv6() && bits >= 96 => {
                    Target::Cidr(IpAddr::V4(v4), bits - 96)
                }
                _ => Target::Cidr(ip, bits),
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target::Ip(ip.to_canonical()));
        }
        proto::validate_name(s).map_err(|e| e.to_string())?;
        Ok(Target::Name(s.to_string()))
    }

    /// What the ban is on: the `kind` column.
    pub fn kind(&self) -> BanKind {
        match self {
            Target::Name(_) => BanKind::Name,
            Target::Ip(_) => BanKind::Ip,
            Target::Cidr(..) => BanKind::Cidr,
        }
    }

    /// The target as `bans.csv` writes it (an address in its canonical form).
    pub fn text(&self) -> String {
        match self {
            Target::Name(n) => n.clone(),
            Target::Ip(ip) => ip.to_string(),
            Target::Cidr(ip, bits) => format!("{ip}/{bits}"),
        }
    }

    /// Whether this target covers `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn covers(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match *self {
            Target::Name(_) => false,
            Target::Ip(a) => a == ip,
            Target::Cidr(net, bits) => match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
        }
    }
}

/// What a ban is on: the `kind` column of `bans.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanKind {
    Name,
    Ip,
    Cidr,
}

impl std::fmt::Display for BanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BanKind::Name => "name",
            BanKind::Ip => "ip",
            BanKind::Cidr => "cidr",
        })
    }
}

/// One row of `bans.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    pub created: String,
    pub kind: BanKind,
    pub target: String,
    /// Empty for a permanent ban.
    pub until: String,
    pub by: String,
    pub reason: String,
    /// What the columns mean, worked out once per record (bans are looked up at every
    /// connection and login, and a file may hold thousands).
    /// Private, so that only this module makes records. A record's columns are not changed
    /// in place; one built from another with `..` and a changed column gets
    /// `parsed: Parsed::default()`, so that its meaning is worked out again.
    #[serde(skip)]
    parsed: Parsed,
}

/// A ban's target and expiry as values, computed on first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed(std::sync::OnceLock<Meaning>);

/// Not part of a record's identity: records are equal by their columns.
impl PartialEq for Parsed {
    fn eq(&self, _: &Parsed) -> bool {
        true
    }
}

impl Eq for Parsed {}

#[derive(Debug, Clone)]
pub(crate) struct Meaning {
    /// `None`: permanent; an unreadable time never applies (as before).
    until: Option<Option<DateTime<Utc>>>,
    network: Option<Target>,
    /// A name ban's two look-alike keys.
    keys: Option<(String, String)>,
}

impl BanRecord {
    fn meaning(&self) -> &Meaning {
        self.parsed.0.get_or_init(|| Meaning {
            until: (!self.until.is_empty()).then(|| {
                DateTime::parse_from_rfc3339(&self.until)
                    .ok()
                    .map(|u| u.with_timezone(&Utc))
            }),
            network: match self.kind {
                BanKind::Ip | BanKind::Cidr => Target::parse(&self.target).ok(),
                BanKind::Name => None,
            },
            keys: (self.kind == BanKind::Name).then(|| {
                (
                    crate::proto::names::key(&self.target),
                    crate::proto::names::upper_key(&self.target),
                )
            }),
        })
    }

    /// The address or network this ban covers; a name ban covers none.
    fn network(&self) -> Option<Target> {
        self.meaning().network.clone()
    }

    /// Whether the ban still applies at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        match self.meaning().until {
            None => true,
            Some(until) => until.is_some_and(|u| u > now),
        }
    }

    /// "until 2026-11-24T12:00:00Z (reason)" or "permanently (reason)".
    pub fn describe(&self) -> String {
        let when = if self.until.is_empty() {
            "permanently".to_string()
        } else {
            format!("until {}", self.until)
        };
        if self.reason.is_empty() {
            when
        } else {
            format!("{when} ({})", self.reason)
        }
    }
}

/// The bans, as the server holds them.
#[derive(Debug)]
pub struct Bans {
    path: PathBuf,
    list: Vec<BanRecord>,
    /// The file as `list` was read from it or written to it: another stamp on disk means
    /// someone else changed it, and it is read again.
    stamp: Option<Stamp>,
    /// Which reading of the file this is, new at every read (`open` and `reload` alike, so a
    /// `Bans` replaced whole counts too): whoever enforces the bans on those already
    /// connected (the hub) compares it with the one it last enforced.
    generation: u64,
}

/// What tells one version of `bans.csv` from another without reading it. The inode alone
/// would do for the server and the `bans` command (each write renames a new file into
/// place); the time and the size catch an editor that writes in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// Where generations come from: unique in the process.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The stamp of the file at `path` now; `None` when it does not exist (or cannot be seen).
fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Reads `bans.csv` again if it changed on disk since `bans` last read or wrote it; true when
/// it did. A stat under the read lock when nothing changed, so cheap enough for every accepted
/// connection. A file that cannot be read is logged once per change, and the bans read before
/// stay in force.
pub fn refresh(bans: &RwLock<Bans>) -> bool {
    if !bans.read().unwrap_or_else(|p| p.into_inner()).is_stale() {
        return false;
    }
    let mut bans = bans.write().unwrap_or_else(|p| p.into_inner());
    let now = stamp(&bans.path);
    if now == bans.stamp {
        return false;
    }
    match bans.reload() {
        Ok(active) => {
            log::info!(
                "{} changed: read again, {active} active bans",
                bans.path.display()
            );
            true
        }
        Err(e) => {
            log::error!("{e}; keeping the bans read before");
            bans.stamp = now;
            false
        }
    }
}

impl Bans {
    /// Reads `bans.csv` of `data_dir` (missing: no bans).
    pub fn open(data_dir: &Path) -> Result<Bans> {
        let path = data_dir.join(BANS_FILE);
        // The stamp before the read: a change made during the read is read again later.
        let stamp = stamp(&path);
        let list = read_list(&path)?;
        Ok(Bans {
            path,
            list,
            stamp,
            generation: next_generation(),
        })
    }

    /// Whether `bans.csv` changed on disk since it was last read or written here.
    pub fn is_stale(&self) -> bool {
        stamp(&self.path) != self.stamp
    }

    /// Reads `bans.csv` again, changed or not (for SIGHUP); returns how many bans are active.
    /// On an error the bans read before stay.
    pub fn reload(&mut self) -> Result<usize> {
        let stamp = stamp(&self.path);
        self.list = read_list(&self.path)?;
        self.stamp = stamp;
        self.generation = next_generation();
        Ok(self.active().len())
    }

    /// Which reading of the file this is (see [`refresh`]): another one means the bans may
    /// cover someone they did not.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every ban in the file, expired ones included (until the next write drops them).
    pub fn all(&self) -> &[BanRecord] {
        &self.list
    }

    /// Reads the file again first if someone else changed it, so their change is kept.
    fn catch_up(&mut self) -> Result<()> {
        if self.is_stale() {
            self.reload()?;
        }
        Ok(())
    }

    /// The active ban covering `ip`, if any.
    pub fn for_ip(&self, ip: IpAddr) -> Option<&BanRecord> {
        let now = Utc::now();
        self.list
            .iter()
            .filter(|b| b.active(now))
            .find(|b| b.meaning().network.as_ref().is_some_and(|t| t.covers(ip)))
    }

    /// The active ban on `name`, or on a name it looks like, if any.
    pub fn for_name(&self, name: &str) -> Option<&BanRecord> {
        let now = Utc::now();
        let (key, upper) = (
            crate::proto::names::key(name),
            crate::proto::names::upper_key(name),
        );
        self.list
            .iter()
            .filter(|b| b.active(now) && b.kind == BanKind::Name)
            .find(|b| {
                let (k, u) = b.meaning().keys.as_ref().expect("a name ban has keys");
                *k == key || *u == upper
            })
    }

    /// Active bans, oldest first.
    pub fn active(&self) -> Vec<&BanRecord> {
        let now = Utc::now();
        self.list.iter().filter(|b| b.active(now)).collect()
    }

    /// Adds a ban and writes the file.
    pub fn add(
        &mut self,
        target: &Target,
        duration: Option<Duration>,
        by: &str,
        reason: &str,
    ) -> Result<BanRecord> {
        self.catch_up()?;
        let until = duration
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| (Utc::now() + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let record = BanRecord {
            created: crate::store::now_timestamp(),
            kind: target.kind(),
            target: target.text(),
            until,
            by: by.to_string(),
            reason: reason.to_string(),
            parsed: Parsed::default(),
        };
        self.list.push(record.clone());
        self.save()?;
        Ok(record)
    }

    /// Removes every ban on `target` (as written, case-insensitive; an address also as
    /// written another way, `::ffff:10.0.0.1` for `10.0.0.1`); returns how many.
    pub fn remove(&mut self, target: &str) -> Result<usize> {
        self.catch_up()?;
        let before = self.list.len();
        let key = target.to_lowercase();
        let network = match Target::parse(target) {
            Ok(t @ (Target::Ip(_) | Target::Cidr(..))) => Some(t),
            _ => None,
        };
        self.list.retain(|b| {
            b.target.to_lowercase() != key && (network.is_none() || b.network() != network)
        });
        let removed = before - self.list.len();
        if removed > 0 {
            self.save()?;
        }
        Ok(removed)
    }

    /// Writes the active bans atomically.
    fn save(&mut self) -> Result<()> {
        let now = Utc::now();
        self.list.retain(|b| b.active(now));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{BANS_FILE}.{}.tmp", std::process::id()));
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let csv_err = |e| Error::csv(format!("cannot write {}", tmp.display()), e);
        let mut w = csv::Writer::from_writer(
            crate::store::create_private_file(&tmp).map_err(|e| io("cannot create", e))?,
        );
        if self.list.is_empty() {
            w.write_record(["created", "kind", "target", "until", "by", "reason"])
                .map_err(csv_err)?;
        }
        for b in &self.list {
            w.serialize(b).map_err(csv_err)?;
        }
        let mut file = w
            .into_inner()
            .map_err(|e| io("cannot write", e.into_error()))?;
        file.flush().map_err(|e| io("cannot write", e))?;
        file.sync_all().map_err(|e| io("cannot sync", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io("cannot rename", e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        self.stamp = stamp(&self.path);
        Ok(())
    }
}

/// The rows of `bans.csv` at `path`; a missing file is no bans.
fn read_list(path: &Path) -> Result<Vec<BanRecord>> {
    let mut list = Vec::new();
    match File::open(path) {
        Ok(f) => {
            for row in csv::Reader::from_reader(f).deserialize::<BanRecord>() {
                list.push(
                    row.map_err(|e| Error::csv(format!("cannot read {}", path.display()), e))?,
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
    }
    Ok(list)
}

/// `chat-server bans ...`: manage `bans.csv` from the command line, whether or not the server
/// runs (a running server reads the file again at its next connection, and at once on SIGHUP).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BansCommand {
    /// The bans in force, and expired ones not yet dropped from the file (marked).
    List,
    /// Ban a name, an address or a network (`203.0.113.0/24`), as `/ban` does.
    Add {
        /// A name, an address or a network.
        #[arg(value_parser = Target::parse)]
        target: Target,
        /// How long (`30s`, `10m`, `2h`, `7d`, `2w`); for good without it.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_for)]
        duration: Option<Duration>,
        /// Why, shown to whoever the ban refuses.
        #[arg(long, value_name = "TEXT", default_value = "", value_parser = parse_reason)]
        reason: String,
    },
    /// Lift every ban on a name, an address or a network, as `/unban` does.
    Remove { target: String },
}

/// `--for`: a duration as `/ban` and `/mute` take it.
fn parse_for(s: &str) -> std::result::Result<Duration, String> {
    proto::parse_duration(s).ok_or_else(|| format!("{s} is not a duration (30s, 10m, 2h, 7d, 2w)"))
}

/// `--reason`: what `/ban` would accept as a reason.
fn parse_reason(s: &str) -> std::result::Result<String, String> {
    if !s.is_empty() {
        proto::validate_reason(s).map_err(|e| e.to_string())?;
    }
    Ok(s.to_string())
}

/// Runs a `bans` command on the `bans.csv` of `data_dir`; `by` goes to the `by` column
/// (`cli:alice`). Returns what to print; lifting a ban that does not exist is an error.
pub fn bans_command(data_dir: &Path, command: &BansCommand, by: &str) -> Result<String> {
    // Only `add` creates a missing directory (below); `list` and `remove` say it is missing.
    if !matches!(command, BansCommand::Add { .. }) {
        crate::store::existing_dir(data_dir)?;
    }
    match command {
        BansCommand::List => Ok(ban_table(Bans::open(data_dir)?.all(), Utc::now())),
        BansCommand::Add {
            target,
            duration,
            reason,
        } => {
            crate::store::create_private_dir(data_dir)?;
            let ban = Bans::open(data_dir)?.add(target, *duration, by, reason)?;
            Ok(format!(
                "banned {} {}; a running server refuses it from its next connection on\n",
                ban.target,
                ban.describe()
            ))
        }
        BansCommand::Remove { target } => match Bans::open(data_dir)?.remove(target)? {
            0 => Err(Error::account(format!("{target} is not banned"))),
            1 => Ok(format!("lifted 1 ban on {target}\n")),
            n => Ok(format!("lifted {n} bans on {target}\n")),
        },
    }
}

/// The bans as a table with a header, one row each; expired ones say so in `UNTIL`. Every
/// field is made printable: the file may have been edited by hand.
fn ban_table(list: &[BanRecord], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return "no bans\n".to_string();
    }
    let mut rows = vec![["TARGET", "KIND", "UNTIL", "BY", "REASON"].map(String::from)];
    for b in list {
        let until = match (b.until.is_empty(), b.active(now)) {
            (true, _) => "permanent".to_string(),
            (false, true) => b.until.clone(),
            (false, false) => format!("expired {}", b.until),
        };
        rows.push(
            [&b.target, &b.kind.to_string(), &until, &b.by, &b.reason].map(|s| proto::printable(s)),
        );
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<0$}  ", widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
