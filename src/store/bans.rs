//! Bans: `bans.csv`, by name, address or network, permanent or until a time.
//!
//! Header `created,kind,target,until,by,reason`; `kind` is `name`, `ip` or `cidr`; `until` is
//! RFC 3339 UTC, or empty for a permanent ban. The file is rewritten atomically (temporary file,
//! sync, rename) on every change; expired bans stop applying at once and are dropped at the next
//! write.

use std::fs::{self, File};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    fn kind(&self) -> BanKind {
        match self {
            Target::Name(_) => BanKind::Name,
            Target::Ip(_) => BanKind::Ip,
            Target::Cidr(..) => BanKind::Cidr,
        }
    }

    fn text(&self) -> String {
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
}

impl BanRecord {
    /// The address or network this ban covers; a name ban covers none.
    fn network(&self) -> Option<Target> {
        match self.kind {
            BanKind::Ip | BanKind::Cidr => Target::parse(&self.target).ok(),
            BanKind::Name => None,
        }
    }

    fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_empty() || DateTime::parse_from_rfc3339(&self.until).is_ok_and(|u| u > now)
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
}

impl Bans {
    /// Reads `bans.csv` of `data_dir` (missing: no bans).
    pub fn open(data_dir: &Path) -> Result<Bans> {
        let path = data_dir.join(BANS_FILE);
        let mut list = Vec::new();
        match File::open(&path) {
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
        Ok(Bans { path, list })
    }

    /// The active ban covering `ip`, if any.
    pub fn for_ip(&self, ip: IpAddr) -> Option<&BanRecord> {
        let now = Utc::now();
        self.list
            .iter()
            .filter(|b| b.active(now))
            .find(|b| b.network().is_some_and(|t| t.covers(ip)))
    }

    /// The active ban on `name`, or on a name it looks like, if any.
    pub fn for_name(&self, name: &str) -> Option<&BanRecord> {
        let now = Utc::now();
        self.list
            .iter()
            .filter(|b| b.active(now) && b.kind == BanKind::Name)
            .find(|b| crate::proto::names::same(&b.target, name))
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
        };
        self.list.push(record.clone());
        self.save()?;
        Ok(record)
    }

    /// Removes every ban on `target` (as written, case-insensitive); returns how many.
    pub fn remove(&mut self, target: &str) -> Result<usize> {
        let before = self.list.len();
        let key = target.to_lowercase();
        self.list.retain(|b| b.target.to_lowercase() != key);
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_networks() {
        let net = Target::parse("203.0.113.0/24").unwrap();
        assert!(net.covers("203.0.113.77".parse().unwrap()));
        assert!(!net.covers("203.0.114.1".parse().unwrap()));
        assert!(
            Target::parse("0.0.0.0/0")
                .unwrap()
                .covers("8.8.8.8".parse().unwrap())
        );
        let v6 = Target::parse("2001:db8::/32").unwrap();
        assert!(v6.covers("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.covers("127.0.0.1".parse().unwrap()));
        assert_eq!(Target::parse("bob").unwrap(), Target::Name("bob".into()));
        assert!(Target::parse("10.0.0.0/33").is_err());
        assert!(Target::parse("not a name").is_err());
    }

    #[test]
    fn bans_persist_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut bans = Bans::open(dir.path()).unwrap();
        bans.add(&Target::parse("Mallory").unwrap(), None, "boss", "spam")
            .unwrap();
        bans.add(
            &Target::parse("198.51.100.0/24").unwrap(),
            Some(Duration::from_secs(3600)),
            "boss",
            "",
        )
        .unwrap();
        let again = Bans::open(dir.path()).unwrap();
        assert_eq!(
            again.for_name("mallory").unwrap().describe(),
            "permanently (spam)"
        );
        assert!(
            again
                .for_ip("198.51.100.9".parse().unwrap())
                .unwrap()
                .describe()
                .starts_with("until ")
        );
        assert!(again.for_ip("198.51.101.9".parse().unwrap()).is_none());
        // An expired ban no longer applies.
        let mut expired = again;
        expired.list[1].until = "2020-01-01T00:00:00Z".into();
        assert!(expired.for_ip("198.51.100.9".parse().unwrap()).is_none());
        assert_eq!(expired.remove("MALLORY").unwrap(), 1);
        assert!(Bans::open(dir.path()).unwrap().active().is_empty());
    }
    #[test]
    fn a_single_address_ban_covers_that_address_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let one = Target::parse("203.0.113.5").unwrap();
        assert_eq!(one, Target::Ip(ip("203.0.113.5")));
        assert!(one.covers(ip("203.0.113.5")));
        assert!(!one.covers(ip("203.0.113.6")) && !one.covers(ip("::1")));
        let six = Target::parse("2001:db8::7").unwrap();
        assert!(six.covers(ip("2001:db8::7")));
        assert!(!six.covers(ip("2001:db8::8")));
    }

    #[test]
    fn ipv6_networks_cover_their_prefix_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = Target::parse("2001:db8::/32").unwrap();
        assert!(net.covers(ip("2001:db8:ffff:ffff::1")));
        assert!(!net.covers(ip("2001:db9::1")));
        assert!(!net.covers(ip("2001:db7:ffff::1")));
        let host = Target::parse("2001:db8::1/128").unwrap();
        assert!(host.covers(ip("2001:db8::1")) && !host.covers(ip("2001:db8::2")));
        assert!(Target::parse("::/0").unwrap().covers(ip("2001:db9::1")));
        assert!(Target::parse("::/129").is_err());
    }

    #[test]
    fn a_ban_ends_at_its_time() {
        let until = "2030-01-01T00:00:00Z";
        let ban = BanRecord {
            created: String::new(),
            kind: BanKind::Ip,
            target: "203.0.113.5".into(),
            until: until.into(),
            by: "boss".into(),
            reason: String::new(),
        };
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(ban.active(at("2029-12-31T23:59:59Z")));
        assert!(!ban.active(at(until)), "over at its time");
        assert!(!ban.active(at("2030-01-01T00:00:01Z")));
        let permanent = BanRecord {
            until: String::new(),
            ..ban
        };
        assert!(permanent.active(at("2999-01-01T00:00:00Z")));
        assert_eq!(permanent.describe(), "permanently");
    }

    #[test]
    fn name_bans_match_names_only_while_active() {
        let dir = tempfile::tempdir().unwrap();
        let mut bans = Bans::open(dir.path()).unwrap();
        bans.add(&Target::parse("10.1.2.3").unwrap(), None, "boss", "")
            .unwrap();
        bans.add(&Target::parse("troll").unwrap(), None, "boss", "")
            .unwrap();
        assert!(bans.for_name("TROLL").is_some());
        assert!(
            bans.for_name("10.1.2.3").is_none(),
            "an address is not a name"
        );
        assert!(bans.for_ip("10.1.2.3".parse().unwrap()).is_some());
        assert!(bans.for_ip("10.1.2.4".parse().unwrap()).is_none());
        bans.list[1].until = "2020-01-01T00:00:00Z".into();
        assert!(bans.for_name("troll").is_none(), "expired");
        assert_eq!(bans.active().len(), 1);
    }

    #[test]
    fn removing_nothing_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut bans = Bans::open(dir.path()).unwrap();
        bans.add(&Target::parse("troll").unwrap(), None, "boss", "")
            .unwrap();
        bans.add(&Target::parse("mallory").unwrap(), None, "boss", "")
            .unwrap();
        // An expired ban still in the file: only a real change rewrites it.
        let path = dir.path().join(BANS_FILE);
        let text =
            fs::read_to_string(&path)
                .unwrap()
                .replacen(",,boss", ",2020-01-01T00:00:00Z,boss", 1);
        fs::write(&path, &text).unwrap();
        let mut bans = Bans::open(dir.path()).unwrap();
        assert_eq!(bans.remove("nobody").unwrap(), 0);
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        assert_eq!(bans.remove("mallory").unwrap(), 1);
        assert!(Bans::open(dir.path()).unwrap().list.is_empty());
    }

    #[test]
    fn an_unreadable_bans_file_is_an_error_not_no_bans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BANS_FILE);
        // A symbolic link to itself: opening it fails with an error other than "not found".
        std::os::unix::fs::symlink(&path, &path).unwrap();
        let err = Bans::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot open"), "{err}");
    }

    /// A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: bans written either way
    /// cover them.
    #[test]
    fn mapped_addresses_are_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mapped = ip("::ffff:203.0.113.5");
        assert!(Target::parse("203.0.113.5").unwrap().covers(mapped));
        assert!(Target::parse("203.0.113.0/24").unwrap().covers(mapped));
        assert!(
            Target::parse("127.0.0.0/8")
                .unwrap()
                .covers(ip("::ffff:127.0.0.1"))
        );
        assert_eq!(
            Target::parse("::ffff:203.0.113.5").unwrap(),
            Target::Ip(ip("203.0.113.5"))
        );
        // A prefix shorter than the mapping's own 96 bits is an IPv6 network.
        assert_eq!(
            Target::parse("::ffff:0:0/64").unwrap(),
            Target::Cidr(ip("::ffff:0:0"), 64)
        );
        let net = Target::parse("::ffff:203.0.113.0/120").unwrap();
        assert_eq!(net, Target::Cidr(ip("203.0.113.0"), 24));
        assert!(net.covers(ip("203.0.113.77")) && !net.covers(ip("203.0.114.1")));
        assert!(
            !Target::parse("203.0.113.5")
                .unwrap()
                .covers(ip("::203.0.113.5"))
        );
    }
}
