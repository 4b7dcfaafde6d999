//! Logging in: password checks on a small pool of threads, and the failed-login throttle.
//!
//! Verifying a password costs tens of milliseconds of CPU and 19 MiB by design, so it runs on
//! the checker pool, a few at a time, never on the broadcaster.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;

use crate::error::{Error, Result};
use crate::proto;
use crate::server::limits::address_key;
use crate::store::users::*;

/// Everything the connection threads need to log clients in.
pub struct Auth {
    pub directory: Directory,
    pub throttle: Throttle,
    /// Runs the password checks, a few at a time.
    pub checker: Checker,
    /// Only accounts may connect.
    pub private: bool,
}

/// What a password check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right: the account it opens.
    Granted(Account),
    /// Wrong password, or no such account.
    Refused,
    /// Every checker is busy and the queue is full: nothing was checked.
    Busy,
    /// The deadline passed before the answer came (the check is dropped if not yet begun).
    TimedOut,
}

impl Auth {
    /// Checks `password` for `name` on the checker pool, waiting at most until `deadline`. An
    /// unknown name is checked against a dummy hash, so the time taken does not tell whether
    /// the name exists.
    pub fn check(&self, name: &str, password: &str, deadline: Instant) -> Verdict {
        let account = self.directory.lookup(name);
        let hash = match &account {
            Some(a) => a.password_hash.clone(),
            None => DUMMY_HASH.to_string(),
        };
        match self.checker.verify(password, hash, deadline) {
            Checked::Matched(true) => account.map_or(Verdict::Refused, Verdict::Granted),
            Checked::Matched(false) => Verdict::Refused,
            Checked::Full => Verdict::Busy,
            Checked::TimedOut => Verdict::TimedOut,
        }
    }

    /// Whether `name` is an account's (and so must give its password), as of the directory's
    /// last refresh (the reader refreshes it as each name arrives; the broadcaster checks again).
    pub fn is_registered(&self, name: &str) -> bool {
        self.directory.cached(name).is_some()
    }
}

/// What a name without an account is checked against, so that the answer takes as long as for
/// a real account: the hash of a password nobody has, with the default cost.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$mPziOT67UpvHaPYlNiDSBQ$Lths7QBFMuW5bE9kO44ShgcVEKKV26Qs9/w4QoGvGs8";

/// Whether `password` matches the PHC string `hash`, computed in `memory`, which is grown to
/// the hash's cost once and then reused. This is what `verify_password` does (the same
/// parameters from the hash, the library's own hashing, its constant-time comparison of the
/// outputs), without asking the allocator for 19 MiB on every check: glibc keeps such blocks
/// per thread, a few times over (160 MiB after ten checks on two threads was seen).
fn verify_in(memory: &mut Vec<argon2::Block>, password: &str, hash: &str) -> bool {
    use argon2::password_hash::phc::Output;
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        argon2::Algorithm::try_from(parsed.algorithm.as_str()),
        argon2::Version::try_from(parsed.version.unwrap_or(0x13)),
        argon2::Params::try_from(&parsed),
    ) else {
        return false;
    };
    let blocks = params.block_count();
    // Grows once, to the largest cost seen; never shrinks.
    memory.resize(memory.len().max(blocks), argon2::Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && Output::new(&out).is_ok_and(|computed| &computed == expected)
}

/// Password checks on a small fixed pool of threads.
///
/// Argon2id takes tens of milliseconds and 19 MiB by design. Run on each connection's own
/// thread, sixty logins at once cost sixty times that, and the allocator keeps each thread's
/// share afterwards (1.7 GiB was seen). Here at most `threads` checks run at once, on threads
/// that reuse their memory; at most `queue` more wait, and past that a login is told the server
/// is busy. The connection thread waits for its answer; the broadcaster never does.
pub struct Checker {
    jobs: crossbeam_channel::Sender<Job>,
    /// Keeps the queue open while the checker lives, whatever becomes of its threads.
    _queue: crossbeam_channel::Receiver<Job>,
}

/// One password to check, and where the answer goes.
struct Job {
    password: String,
    hash: String,
    /// Nobody waits for the answer after this: a job still queued then is skipped, so a
    /// login that ran out of time costs no check.
    deadline: Instant,
    answer: crossbeam_channel::Sender<bool>,
}

/// What [`Checker::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Whether the password matches.
    Matched(bool),
    /// The queue is full: not checked.
    Full,
    /// No answer by the deadline.
    TimedOut,
}

impl Checker {
    /// Starts `threads` checker threads with room for `queue` waiting checks.
    pub fn new(threads: usize, queue: usize) -> Result<Checker> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(queue);
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    // Each checker's Argon2 memory, allocated at its first check and kept.
                    let mut memory = Vec::new();
                    for job in rx {
                        if Instant::now() >= job.deadline {
                            continue;
                        }
                        let ok = verify_in(&mut memory, &job.password, &job.hash);
                        let _ = job.answer.send(ok);
                    }
                })
                .map_err(|e| Error::io("cannot start a password checker thread", e))?;
        }
        Ok(Checker { jobs, _queue: rx })
    }

    /// Checks `password` against `hash`, waiting at most until `deadline`.
    pub fn verify(&self, password: &str, hash: String, deadline: Instant) -> Checked {
        let (answer, rx) = crossbeam_channel::bounded(1);
        let job = Job {
            password: password.to_string(),
            hash,
            deadline,
            answer,
        };
        if self.jobs.try_send(job).is_err() {
            return Checked::Full;
        }
        rx.recv_deadline(deadline)
            .map_or(Checked::TimedOut, Checked::Matched)
    }
}

/// Above this many names and addresses with failures, those whose window has passed are
/// forgotten, so failures under many names cannot grow the table without bound.
const FORGET_ABOVE: usize = 100_000;

/// Failed logins, per address and per name: each failure makes the next answer wait longer
/// (doubling from `base`, at most 30 s), and `lockout_after` failures within `window` lock the
/// name or address out for the rest of the window.
///
/// An attempt counts as a failure from the moment it starts ([`Throttle::attempt`]) and is
/// taken back only when it succeeds, so attempts that arrive together cannot all slip under
/// the lockout: the eleventh of sixty simultaneous guesses is already locked out.
///
/// A name's lockout does not stop the addresses that logged in to it before (the last
/// `KNOWN_PER_NAME`): otherwise anyone could lock an administrator out with ten wrong
/// guesses. An address's lockout stops every name. Addresses are counted as
/// [`address_key`] does (an IPv6 /64 is one address).
pub struct Throttle {
    base: Duration,
    window: Duration,
    lockout_after: u32,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// By name: the addresses that logged in to it, latest last.
    known: Mutex<HashMap<String, Vec<IpAddr>>>,
}

/// How many addresses are remembered as the owner's, per name.
const KNOWN_PER_NAME: usize = 16;

impl Throttle {
    pub fn new(base: Duration, window: Duration, lockout_after: u32) -> Throttle {
        Throttle {
            base,
            window,
            lockout_after,
            failures: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    fn keys(ip: IpAddr, name: &str) -> [String; 2] {
        [
            format!("ip:{}", address_key(ip)),
            format!("name:{}", proto::name_key(name)),
        ]
    }

    /// Starts a login attempt for `name` from `ip`: `Err(time left)` when either is locked
    /// out; otherwise the attempt is counted as a failure now and `Ok(wait)` says how long to
    /// wait before answering if it does fail.
    pub fn attempt(&self, ip: IpAddr, name: &str) -> std::result::Result<Duration, Duration> {
        self.attempt_at(ip, name, Instant::now())
    }

    /// The attempt succeeded: takes back what it counted, and remembers the address as the
    /// owner's. The failures of others stay until their window ends: a success does not open
    /// a locked name to strangers (the owner's addresses pass it anyway).
    pub fn succeeded(&self, ip: IpAddr, name: &str) {
        let name_key = Self::keys(ip, name)[1].clone();
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let addresses = known.entry(name_key.clone()).or_default();
            addresses.retain(|a| *a != address_key(ip));
            if addresses.len() >= KNOWN_PER_NAME {
                addresses.remove(0);
            }
            addresses.push(address_key(ip));
        }
        self.withdraw(ip, name);
    }

    /// Takes back what an attempt counted: it was never checked (the checkers were busy), or
    /// it succeeded.
    pub fn withdraw(&self, ip: IpAddr, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in Self::keys(ip, name) {
            if let Some(entry) = map.get_mut(&key) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    /// [`Throttle::attempt`] at the time `now` (a parameter, so tests need not wait).
    fn attempt_at(
        &self,
        ip: IpAddr,
        name: &str,
        now: Instant,
    ) -> std::result::Result<Duration, Duration> {
        let keys = Self::keys(ip, name);
        let owner = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&keys[1])
            .is_some_and(|a| a.contains(&address_key(ip)));
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // The name's own lockout does not stop an address its owner logged in from.
        let checked = if owner { &keys[..1] } else { &keys[..] };
        let locked = checked
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|(n, at)| *n >= self.lockout_after && now - *at < self.window)
            .map(|(_, at)| self.window - (now - *at))
            .max();
        if let Some(left) = locked {
            return Err(left);
        }
        if map.len() > FORGET_ABOVE {
            let window = self.window;
            map.retain(|_, (_, at)| now - *at < window);
        }
        let mut worst = 0;
        for k in keys {
            let entry = map.entry(k).or_insert((0, now));
            if now - entry.1 >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
            entry.1 = now;
            worst = worst.max(entry.0);
        }
        Ok(
            (self.base * 2u32.saturating_pow(worst.saturating_sub(1).min(16)))
                .min(Duration::from_secs(30)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_grows_and_locks_out() {
        let t = Throttle::new(Duration::from_millis(10), Duration::from_secs(60), 3);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(t.attempt(ip, "bob"), Ok(Duration::from_millis(10)));
        assert_eq!(t.attempt(ip, "bob"), Ok(Duration::from_millis(20)));
        assert_eq!(t.attempt(ip, "bob"), Ok(Duration::from_millis(40)));
        assert!(t.attempt(ip, "bob").is_err(), "the fourth is locked out");
        // The address is locked out for every name; another address, for this name only.
        assert!(t.attempt(ip, "carol").is_err());
        let other: IpAddr = "198.51.100.10".parse().unwrap();
        assert!(t.attempt(other, "BOB").is_err());
        assert!(t.attempt(other, "carol").is_ok());
    }

    /// Attempts that start together are counted before any is checked: however many arrive
    /// at once, no more than the lockout get a check.
    #[test]
    fn simultaneous_attempts_cannot_pass_the_lockout() {
        let t = Throttle::new(Duration::ZERO, Duration::from_secs(60), 10);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let started = (0..60).filter(|_| t.attempt(ip, "alice").is_ok()).count();
        assert_eq!(started, 10);
        // A success takes back its own count; its address is the owner's from now on, and
        // passes the name's lockout, not the address's.
        t.succeeded(ip, "alice");
        assert!(t.attempt(ip, "alice").is_ok());
        assert!(t.attempt(ip, "alice").is_err());
        // An attempt never checked is taken back whole.
        let t = Throttle::new(Duration::ZERO, Duration::from_secs(60), 1);
        t.attempt(ip, "bob").unwrap();
        t.withdraw(ip, "bob");
        assert!(t.failures.lock().unwrap().is_empty(), "nothing left behind");
        assert!(t.attempt(ip, "bob").is_ok());
        assert!(t.failures.lock().unwrap().len() == 2);
    }

    #[test]
    fn auth_checks_passwords_on_the_pool_and_knows_registered_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        let mut accounts = Accounts::default();
        accounts.add("erin", "secret", Role::Admin).unwrap();
        accounts.add("frank", "secret", Role::Member).unwrap();
        accounts.save(&path).unwrap();
        let auth = Auth {
            directory: Directory::open(path.clone()).unwrap(),
            throttle: Throttle::new(Duration::ZERO, Duration::from_secs(60), 3),
            checker: Checker::new(1, 4).unwrap(),
            private: false,
        };
        let soon = || Instant::now() + Duration::from_secs(5);
        let granted = |v: Verdict| match v {
            Verdict::Granted(a) => (a.name, a.role),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            granted(auth.check("erin", "secret", soon())),
            ("erin".into(), Role::Admin)
        );
        // The account's own name comes back, whatever case or look-alike was typed.
        assert_eq!(
            granted(auth.check("FRANK", "secret", soon())),
            ("frank".into(), Role::Member)
        );
        assert_eq!(auth.check("erin", "wrong", soon()), Verdict::Refused);
        assert_eq!(auth.check("nobody", "secret", soon()), Verdict::Refused);
        // A look-alike of an account's name (Cyrillic а) is that account's name.
        assert!(auth.is_registered("Erin") && auth.is_registered("fr\u{430}nk"));
        assert!(!auth.is_registered("guest"));
        // A deadline already past decides nothing.
        assert_eq!(
            auth.check("erin", "secret", Instant::now()),
            Verdict::TimedOut
        );
    }

    #[test]
    fn a_full_queue_is_busy_and_a_late_answer_is_no_answer() {
        // No checker threads at all: nothing is ever taken from the queue.
        let checker = Checker::new(0, 1).unwrap();
        let hash = hash_password("pw").unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            checker.verify("pw", hash.clone(), soon),
            Checked::TimedOut,
            "deadline"
        );
        let later = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        assert_eq!(
            checker.verify("pw", hash, later),
            Checked::Full,
            "queue full"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once"
        );
    }

    #[test]
    fn a_success_takes_back_only_its_own_attempt() {
        let t = Throttle::new(Duration::from_millis(10), Duration::from_secs(60), 5);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let other: IpAddr = "198.51.100.10".parse().unwrap();
        t.attempt(ip, "bob").unwrap();
        t.attempt(ip, "bob").unwrap();
        t.attempt(ip, "bob").unwrap();
        t.succeeded(ip, "bob");
        // Two failures stay on the name and on the address.
        assert_eq!(t.attempt(other, "bob"), Ok(Duration::from_millis(40)));
        assert_eq!(t.attempt(ip, "carol"), Ok(Duration::from_millis(40)));
    }

    #[test]
    fn failures_expire_with_the_window_and_the_lockout_counts_down() {
        let window = Duration::from_secs(60);
        let t = Throttle::new(Duration::from_millis(10), window, 2);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(
            t.attempt_at(ip, "bob", at(0)),
            Ok(Duration::from_millis(10))
        );
        assert_eq!(
            t.attempt_at(ip, "bob", at(10)),
            Ok(Duration::from_millis(20))
        );
        assert_eq!(t.attempt_at(ip, "bob", at(10)), Err(window));
        assert_eq!(
            t.attempt_at(ip, "bob", at(40)),
            Err(Duration::from_secs(30))
        );
        assert_eq!(t.attempt_at(ip, "bob", at(69)), Err(Duration::from_secs(1)));
        // The window has passed: the count starts again.
        assert_eq!(
            t.attempt_at(ip, "bob", at(70)),
            Ok(Duration::from_millis(10))
        );
        assert_eq!(
            t.attempt_at(ip, "bob", at(70)),
            Ok(Duration::from_millis(20))
        );
        assert_eq!(t.attempt_at(ip, "bob", at(70)), Err(window));
    }

    #[test]
    fn old_failures_are_forgotten_once_the_table_is_large() {
        let window = Duration::from_secs(60);
        let t = Throttle::new(Duration::ZERO, window, 3);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let ip = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(n));
        // Each failure is two keys: its address and its name.
        for n in 0..(FORGET_ABOVE / 2) as u32 - 2 {
            t.attempt_at(ip(n), &format!("n{n}"), at(0)).unwrap();
        }
        t.attempt_at(ip(1 << 29), "edge", at(1)).unwrap();
        t.attempt_at(ip(1 << 30), "late", at(2)).unwrap();
        assert_eq!(t.failures.lock().unwrap().len(), FORGET_ABOVE);
        t.attempt_at(ip(1 << 31), "later", at(60)).unwrap();
        assert_eq!(
            t.failures.lock().unwrap().len(),
            FORGET_ABOVE + 2,
            "not above yet"
        );
        // At 61 s the failures of 0 s and 1 s are a window old, those of 2 s are not.
        t.attempt_at(ip(3 << 30), "last", at(61)).unwrap();
        let mut kept: Vec<String> = t.failures.lock().unwrap().keys().cloned().collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "ip:128.0.0.0",
                "ip:192.0.0.0",
                "ip:64.0.0.0",
                "name:last",
                "name:late",
                "name:later"
            ]
        );
    }

    #[test]
    fn checking_in_reused_memory_agrees_with_the_library() {
        let hash = hash_password("correct horse").unwrap();
        let mut memory = Vec::new();
        assert!(verify_in(&mut memory, "correct horse", &hash));
        assert!(!verify_in(&mut memory, "wrong horse", &hash));
        assert!(
            verify_in(&mut memory, "correct horse", &hash),
            "memory reused"
        );
        assert!(!verify_in(&mut memory, "x", "not a phc string"));
        // The dummy is a real hash, of a password nobody types.
        assert!(DUMMY_HASH.starts_with("$argon2id$") && !verify_password("", DUMMY_HASH));
        assert!(!verify_in(&mut memory, "", DUMMY_HASH));
    }

    /// Ten wrong guesses from anywhere lock the name, but not for the addresses its owner
    /// logged in from; an IPv6 /64 counts as one address.
    #[test]
    fn a_locked_name_still_lets_its_owner_in_from_a_known_address() {
        let t = Throttle::new(Duration::ZERO, Duration::from_secs(900), 3);
        let home: IpAddr = "198.51.100.9".parse().unwrap();
        let attacker: IpAddr = "203.0.113.66".parse().unwrap();
        t.attempt(home, "alice").unwrap();
        t.succeeded(home, "alice");
        for _ in 0..3 {
            t.attempt(attacker, "alice").unwrap();
        }
        assert!(t.attempt(attacker, "alice").is_err());
        assert!(
            t.attempt("192.0.2.1".parse().unwrap(), "alice").is_err(),
            "a stranger"
        );
        assert!(t.attempt(home, "alice").is_ok(), "the owner's address");
        let v6: IpAddr = "2001:db8:0:7::1".parse().unwrap();
        for _ in 0..3 {
            t.attempt(v6, "bob").unwrap();
        }
        assert!(
            t.attempt("2001:db8:0:7::9".parse().unwrap(), "carol")
                .is_err()
        );
    }

    #[test]
    fn the_owner_keeps_every_address_it_logged_in_from_up_to_the_last_few() {
        let t = Throttle::new(Duration::ZERO, Duration::from_secs(900), 3);
        let home: IpAddr = "198.51.100.9".parse().unwrap();
        let office: IpAddr = "192.0.2.7".parse().unwrap();
        for ip in [home, office, office] {
            t.attempt(ip, "alice").unwrap();
            t.succeeded(ip, "alice");
        }
        let attacker: IpAddr = "203.0.113.66".parse().unwrap();
        for _ in 0..3 {
            t.attempt(attacker, "alice").unwrap();
        }
        assert!(t.attempt(attacker, "alice").is_err());
        assert!(
            t.attempt(home, "alice").is_ok(),
            "the first address is still known"
        );
        assert!(t.attempt(office, "alice").is_ok());
    }

    #[test]
    fn only_the_last_few_owner_addresses_are_remembered() {
        let t = Throttle::new(Duration::ZERO, Duration::from_secs(900), 3);
        let home: IpAddr = "198.51.100.9".parse().unwrap();
        let last = IpAddr::from([10, 0, 0, KNOWN_PER_NAME as u8]);
        t.attempt(home, "alice").unwrap();
        t.succeeded(home, "alice");
        for i in 1..=KNOWN_PER_NAME {
            let ip = IpAddr::from([10, 0, 0, i as u8]);
            t.attempt(ip, "alice").unwrap();
            t.succeeded(ip, "alice");
        }
        let attacker: IpAddr = "203.0.113.66".parse().unwrap();
        for _ in 0..3 {
            t.attempt(attacker, "alice").unwrap();
        }
        assert!(
            t.attempt(home, "alice").is_err(),
            "pushed out by newer addresses"
        );
        assert!(t.attempt(last, "alice").is_ok());
    }
}
