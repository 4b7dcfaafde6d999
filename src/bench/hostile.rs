//! `chat-bench hostile`: each attack of a hostile member, and a bystander's latency meanwhile.

use super::*;

/// One attack of `chat-bench hostile`: what the attacker got, what it cost the server, and
/// what an honest bystander saw meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct HostileResult {
    pub attack: String,
    /// What the attack came to, in words (refused, dropped, checked...).
    pub outcome: String,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// The bystander's `/ping` round trips during the attack.
    pub pings: usize,
    pub ping_p50_ms: f64,
    pub ping_p99_ms: f64,
    pub ping_max_ms: f64,
    pub seconds: f64,
}

/// Runs each attack of [`crate::attack`] against a fresh server with the default limits (plus
/// `server_args`), with a bystander pinging every 100 ms (well within its own rate limit); one
/// result per attack.
pub fn hostile(server_args: &[String]) -> Result<Vec<HostileResult>> {
    use crate::attack::{self, Bystander, Trickle};
    type Attack = Box<dyn Fn(SocketAddr) -> std::io::Result<String>>;
    let away = serde_json::json!({"type": "away", "reason": "x".repeat(200)});
    let nick = serde_json::json!({"type": "nick", "name": "nicky"});
    let history = serde_json::json!({"type": "history", "n": 200});
    let attacks: Vec<(&str, Vec<&str>, Attack)> = vec![
        // These two with the rate limit off: the bound on rooms must hold without it.
        (
            "join and leave 100,000 rooms (rate limit off)",
            vec!["--msg-rate", "0"],
            Box::new(|a| attack::room_churn(a, "churn", 100_000).map(|()| "done".into())),
        ),
        (
            "20 connections join 1,000 rooms each and hang up (rate limit off)",
            vec!["--msg-rate", "0"],
            Box::new(|a| {
                let mut granted = 0;
                for i in 0..20 {
                    granted += attack::join_many_and_hang_up(a, &format!("roam{i}"), 1000)?.0;
                }
                Ok(format!("{granted} joins granted of 20,000"))
            }),
        ),
        (
            "60 logins answer the password prompt at once",
            vec!["--login-delay", "0.01"],
            Box::new(|a| {
                let s = attack::login_storm(a, "alice", 60, "alice pw")?;
                Ok(format!(
                    "{} checked ({} right, {} wrong), {} locked out",
                    s.welcomed + s.failed,
                    s.welcomed,
                    s.failed,
                    s.locked
                ))
            }),
        ),
        (
            "50 connections trickle a byte every 2 s (--handshake-timeout 5)",
            vec!["--handshake-timeout", "5"],
            Box::new(|a| {
                let how = Trickle {
                    first: Vec::new(),
                    silence: Duration::ZERO,
                    byte: b'x',
                    every: Duration::from_secs(2),
                };
                let open = attack::trickle(a, 50, &how, Duration::from_secs(30))?;
                Ok(format!("longest open {:.1} s", open.as_secs_f64()))
            }),
        ),
        (
            "100 clients ask for /help as fast as they can and never read",
            vec![],
            Box::new(|a| {
                let dropped = attack::silent_flood(a, 100, 100_000, Duration::from_secs(60))?;
                Ok(format!("{dropped} of 100 disconnected"))
            }),
        ),
        (
            "/away with a 200-character reason x3000",
            vec![],
            Box::new(move |a| {
                let f = attack::request_flood(a, "awayer", &away, "presence", 3000)?;
                Ok(format!(
                    "{} done, {} refused, disconnected: {}",
                    f.done, f.limited, f.disconnected
                ))
            }),
        ),
        (
            "/nick x3000",
            vec![],
            Box::new(move |a| {
                let f = attack::request_flood(a, "nicky", &nick, "nick", 3000)?;
                Ok(format!(
                    "{} done, {} refused, disconnected: {}",
                    f.done, f.limited, f.disconnected
                ))
            }),
        ),
        (
            "/history 200 x100 from 5 connections at once",
            vec![],
            Box::new(move |a| {
                let floods: Vec<_> = (0..5)
                    .map(|i| {
                        let h = history.clone();
                        std::thread::spawn(move || {
                            attack::request_flood(a, &format!("reader{i}"), &h, "history_end", 100)
                        })
                    })
                    .collect();
                let mut done = 0;
                for f in floods {
                    done += f
                        .join()
                        .map_err(|_| std::io::Error::other("panicked"))??
                        .done;
                }
                Ok(format!("{done} of 500 answered"))
            }),
        ),
    ];
    let mut results = Vec::new();
    for (name, extra, run) in attacks {
        let dir = scratch_dir("hostile")?;
        let mut users = crate::store::users::Accounts::default();
        users.add("alice", "alice pw", crate::store::users::Role::Member)?;
        users.save(&dir.join(crate::store::users::USERS_FILE))?;
        let mut args: Vec<String> = vec!["--msg-rate".into(), "5".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(server_args.iter().cloned());
        let (target, _) = Target::start(Some(&dir), &args)?;
        // A lobby with history, for /history to send.
        let seed = crate::attack::JsonClient::join(target.addr, "seed");
        if let Ok(mut seed) = seed {
            for i in 0..20 {
                let _ = seed.send(&serde_json::json!({"type": "say", "text": format!("{i} {}", "h".repeat(1000))}));
            }
            let _ = seed.sync();
        }
        let before = target.stats().map_or(0, |s| s.rss_kib);
        let io = |e: std::io::Error| Error::io(format!("attack {name:?}"), e);
        let bystander =
            Bystander::start(target.addr, "bystander", Duration::from_millis(100)).map_err(io)?;
        let started = Instant::now();
        let outcome = run(target.addr).map_err(io)?;
        let seconds = started.elapsed().as_secs_f64();
        let latency = bystander.finish().map_err(io)?;
        let after = target.stats().map_or(0, |s| s.rss_kib);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let r = HostileResult {
            attack: name.to_string(),
            outcome,
            rss_before_kib: before,
            rss_after_kib: after,
            pings: latency.count,
            ping_p50_ms: ms(latency.p50),
            ping_p99_ms: ms(latency.p99),
            ping_max_ms: ms(latency.max),
            seconds,
        };
        drop(target);
        let _ = fs::remove_dir_all(&dir);
        results.push(r);
    }
    Ok(results)
}
