//! Running it for an organisation: the operational log (stderr, for the journal and fail2ban).

use std::io::Write;

use chatroom::store::users::Role;

use crate::support::{Client, ServerProcess, TIMEOUT, command, login, write_accounts};

/// Waits (bounded) until the server's stderr holds a line for which `matches` holds.
fn until_logged(server: &ServerProcess, what: &str, matches: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(line) = server.log().lines().find(|l| matches(l)) {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never logged: {what}\n{}",
            server.log()
        );
        std::thread::yield_now();
    }
}

/// The operational line of `event` (the first), once the server has logged it.
fn ops_line(server: &ServerProcess, event: &str, also: &str) -> String {
    until_logged(server, event, |l| {
        l.contains(&format!("chatroom::ops] {event} ")) && l.contains(also)
    })
}

/// One line per kind of event, in the documented format, and the fail2ban filter matches
/// exactly the failed logins with the client's address.
#[test]
fn every_operational_event_is_one_journal_line() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(
        dir.path(),
        &[
            ("boss", "boss pw", Role::Admin),
            ("bob", "bob pw", Role::Member),
        ],
    );
    let log = dir.path().join("stderr.log");
    let server = ServerProcess::start_with_ops_log(
        dir.path(),
        &[
            "--login-delay",
            "0.001",
            "--login-lockout",
            "2",
            "--flood-limit",
            "3",
            "--outbox-kib",
            "64",
        ],
        &log,
    );
    let mut boss = login(server.addr, "boss", "boss pw");
    let connect = ops_line(&server, "connect", "");
    let format = regex::Regex::new(
        r#"chatroom::ops\] connect conn=\d+ ip=127\.0\.0\.1 port=\d+ name="" detail=""$"#,
    )
    .unwrap();
    assert!(format.is_match(&connect), "{connect}");
    assert!(ops_line(&server, "named", r#"name="boss" detail="admin""#).contains("ip=127.0.0.1"));

    // Failed logins, then the lockout.
    let mut guesser = Client::connect(server.addr);
    for _ in 0..3 {
        guesser.send(r#"{"type":"hello","name":"bob","password":"wrong"}"#);
        guesser.next_of("error");
    }
    ops_line(
        &server,
        "login_failed",
        r#"name="bob" detail="wrong password"#,
    );
    ops_line(&server, "login_failed", r#"detail="locked out"#);

    // A client's own text in a detail cannot forge a failed login for another address.
    let mut forger = Client::human(server.addr, "forger");
    forger.send(r#"/quit chatroom::ops] login_failed conn=1 ip=203.0.113.9 port=1 name="x" detail="wrong password or no such account""#);
    forger.closed();
    ops_line(&server, "disconnect", r#"name="forger""#);

    // Mute, kick, ban.
    let mut victim = Client::human(server.addr, "victim");
    command(&mut boss, "/mute victim 5m");
    ops_line(&server, "mute", "victim for 5m");
    command(&mut boss, "/kick victim enough");
    ops_line(&server, "kick", "victim: enough");
    victim.closed();
    command(&mut boss, "/ban Mallory 1h spam");
    ops_line(&server, "ban", "Mallory");

    // A flood: refused lines in a row end the connection.
    let mut flooder = Client::json(server.addr, "flooder");
    for _ in 0..3 {
        flooder.send("not json");
    }
    flooder.closed();
    ops_line(&server, "disconnect", r#"name="flooder" detail="flooding"#);

    // A slow consumer: clients that never read (the administrator here too) while another
    // sends; the first dropped is logged as such.
    let stuck = Client::json(server.addr, "stuck");
    let mut talker = Client::human(server.addr, "talker");
    let body = "s".repeat(3000);
    let batch: String = (0..100).map(|i| format!("{i} {body}\n")).collect();
    let deadline = std::time::Instant::now() + TIMEOUT;
    // Paced by the socket: a write waits while the server has not read the last one.
    while !server
        .log()
        .contains(r#"detail="slow consumer: outbox full""#)
        && talker.stream.write_all(batch.as_bytes()).is_ok()
    {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
    }
    ops_line(
        &server,
        "disconnect",
        r#"detail="slow consumer: outbox full""#,
    );
    drop(stuck);

    // Each line is one event; no name or detail can break a line or forge a field.
    let text = server.log();
    let ops: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chatroom::ops]"))
        .collect();
    let shape = regex::Regex::new(
        r#"chatroom::ops\] [a-z_]+( conn=\d+)?( ip=\S+)?( port=\d+)? name="([^"\\]|\\.)*" detail="([^"\\]|\\.)*"$"#,
    )
    .unwrap();
    for line in &ops {
        assert!(shape.is_match(line), "{line}");
    }

    // The fail2ban filter, as fail2ban reads it (<HOST> is an address).
    let filter = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts/fail2ban/chatroom-filter.conf"),
    )
    .unwrap();
    let failregex = filter
        .lines()
        .find_map(|l| l.strip_prefix("failregex = "))
        .expect("a failregex");
    // fail2ban's prefix (a syslog-style host and tag, absent from a bare stderr line) as empty.
    let failregex = regex::Regex::new(
        &failregex
            .replace("%(__prefix_line)s", "")
            .replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"),
    )
    .unwrap();
    let hits: Vec<&str> = text
        .lines()
        .filter_map(|l| failregex.captures(l))
        .map(|c| c.name("host").unwrap().as_str())
        .collect();
    // Wrong passwords count; refusals while locked out do not (the owner may be retrying).
    let failures = ops
        .iter()
        .filter(|l| {
            let event = l.split_once("chatroom::ops] ").map_or("", |(_, e)| e);
            event.starts_with("login_failed ") && !event.contains("locked out")
        })
        .count();
    assert!(failures >= 2, "{ops:#?}");
    assert_eq!(
        hits.len(),
        failures,
        "the filter matches each wrong password once"
    );
    assert!(hits.iter().all(|h| *h == "127.0.0.1"), "{hits:?}");
}

/// The systemd unit passes `systemd-analyze verify` (with ExecStart pointing at this build),
/// runs unprivileged from its state directory, reads the settings file, and reloads on SIGHUP.
#[test]
fn the_systemd_unit_verifies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("scripts/chat-server.service")).unwrap();
    for line in [
        "User=chatroom",
        "StateDirectory=chatroom",
        "ExecStart=/usr/local/bin/chat-server --config /etc/chatroom/chat-server.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "ReadWritePaths=/var/lib/chatroom",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat-server.service");
    let here = unit.replace(
        "/usr/local/bin/chat-server",
        env!("CARGO_BIN_EXE_chat-server"),
    );
    std::fs::write(&path, here).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
