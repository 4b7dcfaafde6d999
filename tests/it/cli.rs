//! What every command-line tool is expected to do, through the real binaries: name itself in
//! `--version`, complete in the usual shells, have man pages that `man` renders; host names
//! and IPv6 addresses wherever an address is given or shown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{Client, ServerProcess, TIMEOUT, wait_timeout, wait_timeout_output};

const BINARIES: [(&str, &str); 3] = [
    ("chat-server", env!("CARGO_BIN_EXE_chat-server")),
    ("chat-client", env!("CARGO_BIN_EXE_chat-client")),
    ("chat-log", env!("CARGO_BIN_EXE_chat-log")),
];

/// Runs `bin args`; its exit status, stdout and stderr.
fn run(bin: &str, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_timeout_output(child)
}

#[test]
fn every_binary_names_itself_in_its_version() {
    for (name, bin) in BINARIES {
        let (status, out, err) = run(bin, &["--version"]);
        assert!(status.success(), "{name}: {err}");
        assert_eq!(out, format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn every_binary_completes_in_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bin) in BINARIES {
        let (status, script, err) = run(bin, &["--completions", "bash"]);
        assert!(status.success(), "{name}: {err}");
        let file = dir.path().join(format!("{name}.bash"));
        std::fs::write(&file, &script).unwrap();
        let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
        assert!(
            check.status.success(),
            "bash -n rejects {name}'s completion: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(script.contains(&format!("-o default {name}")), "{script}");
        for shell in ["zsh", "fish"] {
            let (status, script, err) = run(bin, &["--completions", shell]);
            assert!(
                status.success() && script.contains(name),
                "{name} {shell}: {err}{script}"
            );
        }
        let (status, _, err) = run(bin, &["--completions", "tcsh"]);
        assert_eq!(
            status.code(),
            Some(2),
            "an unknown shell is a usage error: {err}"
        );
    }
    // chat-server has a subcommand for it too, and it says the same.
    let server = BINARIES[0].1;
    let (_, flag, _) = run(server, &["--completions", "bash"]);
    let (status, sub, _) = run(server, &["completions", "bash"]);
    assert!(status.success() && sub == flag);
    assert!(sub.contains("users") && sub.contains("--min-password"));
}

#[test]
fn every_binary_writes_man_pages_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    for (name, bin) in BINARIES {
        let (status, _, err) = run(bin, &["--man", man.to_str().unwrap()]);
        assert!(status.success(), "{name}: {err}");
    }
    let pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for page in [
        "chat-server.1",
        "chat-server-users-add.1",
        "chat-client.1",
        "chat-log.1",
    ] {
        assert!(
            pages.iter().any(|p| p == page),
            "{page} missing from {pages:?}"
        );
    }
    for page in &pages {
        let out = Command::new("man")
            .arg("-l")
            .arg(man.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .expect("man (Debian: man-db; scripts/test.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("NAME") && text.contains("SYNOPSIS"),
            "man -l {page}: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("man")
        .arg("-l")
        .arg(man.join("chat-server.1"))
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--bind") && text.contains("--min-password"),
        "{text}"
    );
}

#[test]
fn the_server_binds_a_host_name_and_logs_how_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(BINARIES[0].1)
        .args(["--bind", "localhost:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr: std::net::SocketAddr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {first:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{first:?}: {e}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let mut c = Client::human(addr, "ann");
    c.send("/quit");
    c.closed();
    // SIGTERM: the server ends cleanly, and its log said how it listens.
    terminate(child.id());
    let status = wait_timeout(child, TIMEOUT);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains(&format!("listening on {addr}: tls off, private mode off")),
        "{log}"
    );
}

/// Sends SIGTERM with kill(1), as the other tests do.
fn terminate(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn an_ipv6_server_shows_its_addresses_in_brackets() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--bind", "[::1]:0"]);
    assert_eq!(server.addr.ip(), std::net::Ipv6Addr::LOCALHOST);
    // The client takes the address as the server printed it.
    let mut client = Command::new(BINARIES[1].1)
        .args([
            "--name",
            "ann",
            "--color",
            "never",
            &server.addr.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // End of input: the client leaves.
    drop(client.stdin.take());
    let (status, out, err) = wait_timeout_output(client);
    assert!(
        status.success() && out.contains("connected as ann"),
        "{out}{err}"
    );
}

#[test]
fn chat_client_resolves_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let addr = format!("localhost:{}", server.addr.port());
    let mut client = Command::new(BINARIES[1].1)
        .args(["--name", "ann", "--color", "never", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(client.stdin.take());
    let (status, out, err) = wait_timeout_output(client);
    assert!(
        status.success() && out.contains("connected as ann"),
        "{out}{err}"
    );
}

#[test]
fn users_and_bans_commands_do_not_create_a_missing_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nothing-here");
    let data_arg = data.to_str().unwrap();
    for args in [
        &["users", "list"][..],
        &["users", "remove", "bob"],
        &["bans", "list"],
        &["bans", "remove", "bob"],
    ] {
        let mut all = vec!["--data-dir", data_arg];
        all.extend_from_slice(args);
        let (status, out, err) = run(BINARIES[0].1, &all);
        assert_eq!(status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("cannot open the data directory {data_arg}")),
            "{args:?}: {err}"
        );
        assert!(!data.exists(), "{args:?} created {data_arg}");
    }
    let (status, out, err) = run(
        BINARIES[0].1,
        &["--data-dir", data_arg, "bans", "add", "192.0.2.1"],
    );
    assert!(status.success(), "bans add creates it: {out}{err}");
    assert!(data.join("bans.csv").exists());
}
