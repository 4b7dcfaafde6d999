//! Admission: who may connect. A total cap, a cap per IP address, and a cap on new
//! connections per IP address per minute; loopback addresses are exempt from the per-IP caps
//! unless configured otherwise (local tools, tests and benchmarks).
//!
//! The per-IP defaults are generous on purpose: a whole office behind one NAT address is one
//! IP address to the server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::proto::{self, ErrorCode, Mode, ServerMsg};

/// The admission rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Connections served at once.
    pub max_clients: usize,
    /// Connections served at once from one IP address; 0 means no limit.
    pub max_per_ip: usize,
    /// New connections per minute from one IP address; 0 means no limit.
    pub per_ip_per_minute: usize,
    /// Apply the per-IP caps to loopback addresses too.
    pub limit_loopback: bool,
}

/// Why a connection was refused; its [`Refusal::lines`] go to the client before the close.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Full {
        max: usize,
    },
    TooManyFromAddress {
        max: usize,
    },
    TooFast {
        per_minute: usize,
    },
    /// The address is banned; `ban` says until when and why.
    Banned {
        ban: String,
    },
}

impl Refusal {
    /// Why, in words, for the client and the log.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Full { max } => {
                format!("the server is full ({max} connections); try again later")
            }
            Refusal::TooManyFromAddress { max } => {
                format!("too many connections from your address (at most {max}); close one first")
            }
            Refusal::TooFast { per_minute } => format!(
                "too many new connections from your address (at most {per_minute} a minute); try again in a minute"
            ),
            Refusal::Banned { ban } => format!("your address is banned {ban}"),
        }
    }

    /// The `code` of the JSON error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Full { .. } => ErrorCode::ServerFull,
            Refusal::TooManyFromAddress { .. } => ErrorCode::TooManyConnections,
            Refusal::TooFast { .. } => ErrorCode::ConnectionRate,
            Refusal::Banned { .. } => ErrorCode::Banned,
        }
    }

    /// A human line and a JSON line: the client's mode is not known yet.
    pub fn lines(&self) -> Vec<u8> {
        let msg = ServerMsg::failure(self.code(), self.reason());
        let mut out = proto::encode(&msg, Mode::Human);
        out.extend_from_slice(&proto::encode(&msg, Mode::Json));
        out
    }
}

/// The address under which a peer is counted: its IPv4 address (a dual-stack listener's
/// `::ffff:a.b.c.d` included), or its IPv6 /64 network, since one host or one home is given a
/// whole /64 and could otherwise count as 2^64 addresses against every per-address limit.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(net.into())
        }
        v4 => v4,
    }
}

/// Above this many addresses in the connection-rate table, addresses quiet for a minute are
/// forgotten, so a scan from many addresses cannot grow it without bound.
const FORGET_ABOVE: usize = 100_000;

/// Per (limited) address: the connections being served, and the bytes queued for all of them
/// (shared with their outboxes, which keep it).
type PerAddress = Arc<Mutex<HashMap<IpAddr, (usize, Arc<AtomicUsize>)>>>;

/// Held for as long as a connection is served; dropping it frees its place.
pub struct Ticket {
    live: Arc<AtomicUsize>,
    per_ip: Option<(PerAddress, IpAddr)>,
    /// The bytes queued for every connection of this address, when its limits apply.
    address_queue: Option<Arc<AtomicUsize>>,
}

impl Ticket {
    /// The count of bytes queued for all the connections of this address, for their outboxes
    /// to share: `None` when the per-address limits do not apply (loopback, by default).
    pub fn address_queue(&self) -> Option<Arc<AtomicUsize>> {
        self.address_queue.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        if let Some((map, ip)) = &self.per_ip {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((n, _)) = map.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(ip);
                }
            }
        }
    }
}

/// The accept loop's admission state.
pub struct Admission {
    rules: Rules,
    /// Connections being served.
    live: Arc<AtomicUsize>,
    /// Tickets lower it from other threads.
    per_ip: PerAddress,
    /// A token bucket of new connections per (limited) address: tokens, and when refilled.
    recent: HashMap<IpAddr, (f64, Instant)>,
}

impl Admission {
    pub fn new(rules: Rules) -> Admission {
        Admission {
            rules,
            live: Arc::new(AtomicUsize::new(0)),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            recent: HashMap::new(),
        }
    }

    /// Connections being served now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(&mut self, ip: IpAddr) -> Result<Ticket, Refusal> {
        self.admit_at(ip, Instant::now())
    }

    /// [`Admission::admit`] at the time `now`: the clock is a parameter so that tests can
    /// check the refill rate without waiting for it.
    fn admit_at(&mut self, ip: IpAddr, now: Instant) -> Result<Ticket, Refusal> {
        let ip = address_key(ip);
        if self.live.load(Ordering::Acquire) >= self.rules.max_clients {
            return Err(Refusal::Full {
                max: self.rules.max_clients,
            });
        }
        let limited = self.rules.limit_loopback || !ip.is_loopback();
        if limited && self.rules.per_ip_per_minute > 0 {
            self.take_connection_token(ip, now)?;
        }
        let mut per_ip = None;
        let mut address_queue = None;
        if limited && self.rules.max_per_ip > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let (n, queue) = map.entry(ip).or_default();
            if *n >= self.rules.max_per_ip {
                return Err(Refusal::TooManyFromAddress {
                    max: self.rules.max_per_ip,
                });
            }
            *n += 1;
            address_queue = Some(queue.clone());
            per_ip = Some((self.per_ip.clone(), ip));
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(Ticket {
            live: self.live.clone(),
            per_ip,
            address_queue,
        })
    }

    fn take_connection_token(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let per_minute = self.rules.per_ip_per_minute;
        let capacity = per_minute as f64;
        if self.recent.len() > FORGET_ABOVE {
            // Forget addresses whose bucket is full again: they have been quiet for a minute.
            self.recent.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * capacity / 60.0 < capacity
            });
        }
        let (tokens, at) = self.recent.entry(ip).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * capacity / 60.0).min(capacity);
        *at = now;
        if *tokens < 1.0 {
            return Err(Refusal::TooFast { per_minute });
        }
        *tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            max_clients: 10,
            max_per_ip: 2,
            per_ip_per_minute: 3,
            limit_loopback: false,
        }
    }

    #[test]
    fn per_address_caps_and_release() {
        let mut a = Admission::new(rules());
        let office: IpAddr = "203.0.113.7".parse().unwrap();
        let t1 = a.admit(office).unwrap();
        let _t2 = a.admit(office).unwrap();
        assert_eq!(
            a.admit(office).err(),
            Some(Refusal::TooManyFromAddress { max: 2 })
        );
        // Attempts count against the rate, refused ones too: the fourth in a minute is too
        // fast even though a place is free again.
        drop(t1);
        assert_eq!(
            a.admit(office).err(),
            Some(Refusal::TooFast { per_minute: 3 })
        );
        // Another address is not affected; loopback is exempt.
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(a.admit(other).is_ok());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let many: Vec<Ticket> = (0..5).map(|_| a.admit(lo).unwrap()).collect();
        assert_eq!(a.live(), 1 + 5);
        drop(many);
        assert_eq!(a.live(), 1);
    }

    #[test]
    fn the_total_cap_and_loopback_when_limited() {
        let mut a = Admission::new(Rules {
            max_clients: 1,
            limit_loopback: true,
            ..rules()
        });
        let lo: IpAddr = "::1".parse().unwrap();
        let _t = a.admit(lo).unwrap();
        assert_eq!(a.admit(lo).err(), Some(Refusal::Full { max: 1 }));
        let lines = String::from_utf8(Refusal::Full { max: 1 }.lines()).unwrap();
        assert!(lines.starts_with("! the server is full (1 connections); try again later\n"));
        assert!(
            lines.contains(r#"{"type":"error","code":"server_full""#),
            "{lines}"
        );
    }
    fn limited(max_per_ip: usize, per_ip_per_minute: usize) -> Admission {
        Admission::new(Rules {
            max_clients: 1_000_000,
            max_per_ip,
            per_ip_per_minute,
            limit_loopback: false,
        })
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn a_closed_connection_frees_its_place_and_only_its_own() {
        // No rate limit (0), so only the per-address cap decides.
        let mut a = limited(2, 0);
        let office: IpAddr = "203.0.113.7".parse().unwrap();
        let home: IpAddr = "198.51.100.1".parse().unwrap();
        let t1 = a.admit(office).unwrap();
        let t2 = a.admit(office).unwrap();
        let h = a.admit(home).unwrap();
        assert!(a.admit(office).is_err());
        drop(t1);
        let t3 = a.admit(office).unwrap();
        assert_eq!(
            a.admit(office).err(),
            Some(Refusal::TooManyFromAddress { max: 2 }),
            "one place was freed, not two"
        );
        assert_eq!(a.live(), 3);
        drop((t2, t3, h));
        assert_eq!(a.live(), 0);
        assert!(
            a.per_ip.lock().unwrap().is_empty(),
            "no address left behind"
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let mut a = limited(0, 0);
        let office: IpAddr = "203.0.113.7".parse().unwrap();
        let held: Vec<Ticket> = (0..1000).map(|_| a.admit(office).unwrap()).collect();
        assert_eq!(a.live(), 1000);
        assert!(a.recent.is_empty() && a.per_ip.lock().unwrap().is_empty());
        drop(held);
    }

    #[test]
    fn connection_tokens_refill_at_the_configured_rate() {
        let mut a = limited(0, 60);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t0 = Instant::now();
        let at = |secs: f64| t0 + std::time::Duration::from_secs_f64(secs);
        let admitted = |a: &mut Admission, when: f64| {
            let mut n = 0;
            while a.admit_at(ip, at(when)).is_ok() {
                n += 1;
                assert!(n <= 1000, "no limit at all");
            }
            n
        };
        // A full bucket at first, then one connection a second.
        assert_eq!(admitted(&mut a, 0.0), 60);
        assert_eq!(admitted(&mut a, 0.5), 0);
        assert_eq!(admitted(&mut a, 1.0), 1);
        assert_eq!(admitted(&mut a, 11.0), 10);
        // Never more than a minute's worth, however long the address was quiet.
        assert_eq!(admitted(&mut a, 3600.0), 60);
        assert_eq!(
            a.admit_at(ip, at(3600.0)).err(),
            Some(Refusal::TooFast { per_minute: 60 })
        );
    }

    #[test]
    fn quiet_addresses_are_forgotten_once_the_table_is_large() {
        let mut a = limited(0, 3);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + std::time::Duration::from_secs(secs);
        for n in 0..FORGET_ABOVE as u32 - 1 {
            a.admit_at(v4(0x0a00_0000 + n), at(0)).unwrap();
        }
        // 3 a minute: one token back every 20 s. After 20 s this bucket is exactly full.
        let exactly_full = v4(1);
        a.admit_at(exactly_full, at(41)).unwrap();
        assert_eq!(a.recent.len(), FORGET_ABOVE);
        let recent = v4(2);
        a.admit_at(recent, at(60)).unwrap();
        assert_eq!(
            a.recent.len(),
            FORGET_ABOVE + 1,
            "not above the threshold yet"
        );
        let newcomer = v4(3);
        a.admit_at(newcomer, at(61)).unwrap();
        let mut kept: Vec<IpAddr> = a.recent.keys().copied().collect();
        kept.sort();
        assert_eq!(
            kept,
            [recent, newcomer],
            "only buckets not yet full are kept"
        );
    }

    #[test]
    fn each_refusal_has_its_code_and_words() {
        let cases = [
            (
                Refusal::Full { max: 5 },
                ErrorCode::ServerFull,
                "the server is full (5",
            ),
            (
                Refusal::TooManyFromAddress { max: 7 },
                ErrorCode::TooManyConnections,
                "too many connections from your address (at most 7)",
            ),
            (
                Refusal::TooFast { per_minute: 9 },
                ErrorCode::ConnectionRate,
                "at most 9 a minute",
            ),
            (
                Refusal::Banned {
                    ban: "permanently (spam)".into(),
                },
                ErrorCode::Banned,
                "your address is banned permanently (spam)",
            ),
        ];
        for (refusal, code, words) in cases {
            assert_eq!(refusal.code(), code);
            assert!(refusal.reason().contains(words), "{}", refusal.reason());
            let lines = String::from_utf8(refusal.lines()).unwrap();
            assert!(
                lines.starts_with(&format!("! {}\n{{", refusal.reason())),
                "{lines}"
            );
        }
    }

    #[test]
    fn an_ipv6_network_of_64_bits_is_one_address() {
        let mut a = limited(2, 0);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _t1 = a.admit(ip("2001:db8:0:1::1")).unwrap();
        let _t2 = a.admit(ip("2001:db8:0:1:ffff::2")).unwrap();
        assert!(a.admit(ip("2001:db8:0:1::3")).is_err(), "the same /64");
        assert!(a.admit(ip("2001:db8:0:2::1")).is_ok(), "another /64");
        assert_eq!(address_key(ip("::ffff:203.0.113.5")), ip("203.0.113.5"));
        assert_eq!(address_key(ip("2001:db8::1:2:3:4")), ip("2001:db8::"));
    }

    #[test]
    fn the_connections_of_one_address_share_one_queue_count() {
        let mut a = limited(3, 0);
        let office: IpAddr = "203.0.113.7".parse().unwrap();
        let home: IpAddr = "198.51.100.1".parse().unwrap();
        let (t1, t2) = (a.admit(office).unwrap(), a.admit(office).unwrap());
        let h = a.admit(home).unwrap();
        let (q1, q2) = (t1.address_queue().unwrap(), t2.address_queue().unwrap());
        assert!(Arc::ptr_eq(&q1, &q2), "one count for the address");
        assert!(!Arc::ptr_eq(&q1, &h.address_queue().unwrap()));
        // Loopback is exempt by default: no shared budget.
        let lo = a.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert!(lo.address_queue().is_none());
    }
}
