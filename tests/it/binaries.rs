//! The three binaries as a user runs them: flags, signals, exit codes, pipes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{Client, ServerProcess, TIMEOUT, csv_rows, start_server, wait_timeout};

const BINARIES: [&str; 3] = [
    env!("CARGO_BIN_EXE_chat-server"),
    env!("CARGO_BIN_EXE_chat-client"),
    env!("CARGO_BIN_EXE_chat-log"),
];

/// The load generator, built with the `bench` feature (as `scripts/test.sh` does).
#[cfg(feature = "bench")]
const BENCH: &str = env!("CARGO_BIN_EXE_chat-bench");

/// A few seconds of the benchmark against a real server process it starts itself: every
/// message reaches every receiver exactly once. Speed is not asserted here; that is the
/// benchmark's job (scripts/bench.sh).
#[cfg(feature = "bench")]
#[test]
fn a_short_benchmark_run_loses_nothing() {
    let out = Command::new(BENCH).arg("smoke").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lost 0, duplicated 0"), "{stdout}");
}

#[test]
fn every_binary_has_help_and_version() {
    #[cfg(feature = "bench")]
    let all = [&BINARIES[..], &[BENCH]].concat();
    #[cfg(not(feature = "bench"))]
    let all = BINARIES.to_vec();
    for bin in all {
        let help = Command::new(bin).arg("--help").output().unwrap();
        assert!(help.status.success(), "{bin} --help");
        let text = String::from_utf8(help.stdout).unwrap();
        assert!(text.contains("Usage:"), "{bin}: {text}");
        let version = Command::new(bin).arg("--version").output().unwrap();
        let text = String::from_utf8(version.stdout).unwrap();
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{bin}: {text}");
    }
    let help = Command::new(BINARIES[0]).arg("--help").output().unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--bind",
        "--data-dir",
        "--max-line",
        "--handshake-timeout",
        "[env: CHAT_BIND=",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

/// A value that makes no sense is a usage error (exit code 2, one line naming the flag), never
/// a panic and never a server that starts and fails later.
#[test]
fn bad_settings_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (args, flag) in [
        (&["--ping-interval=-1"][..], "--ping-interval"),
        (&["--handshake-timeout", "inf"], "--handshake-timeout"),
        (&["--ping-interval", "0"], "--ping-interval"),
        (&["--max-line", "0"], "--max-line"),
        (&["--history", "500"], "--history"),
        (&["--msg-rate", "NaN"], "--msg-rate"),
    ] {
        let child = Command::new(BINARIES[0])
            .args(["--bind", "127.0.0.1:0", "--data-dir", data])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let Ok(out) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = Command::new("kill").arg(&pid).status();
            panic!("{args:?}: the server started");
        };
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The README's table of flags tells the truth: each flag it lists exists, with the
/// environment variable and the default the server itself reports.
#[test]
fn the_readme_lists_the_flags_as_the_server_has_them() {
    let help = Command::new(BINARIES[0]).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    // The help of each flag: from its `--flag` line to the next flag.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") {
            let flag = trimmed.split([' ', '=']).next().unwrap().to_string();
            blocks.push((flag, String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(trimmed);
            text.push('\n');
        }
    }
    let readme = include_str!("../../README.md");
    let table = readme
        .split("| `chat-server` flag |")
        .nth(1)
        .expect("the README has the table of chat-server's flags");
    let table = table.split("\n\n").next().unwrap();
    let mut checked = 0;
    for row in table.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | `--flag ARG` | `ENV` | `default` | meaning |
        let flag = cells[1].trim_matches('`').split(' ').next().unwrap();
        let Some((_, text)) = blocks.iter().find(|(f, _)| f == flag) else {
            panic!("the README lists {flag}, which chat-server does not have");
        };
        let env = cells[2].trim_matches('`');
        if env.starts_with("CHAT_") && !env.contains(',') {
            assert!(text.contains(&format!("[env: {env}=")), "{flag}: {text}");
        }
        let default = cells[3];
        if default.starts_with('`') {
            let default = default.trim_matches('`');
            assert!(
                text.contains(&format!("[default: {default}]")),
                "{flag}: the README says {default}; the server says:\n{text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} defaults found in the README");
}

#[test]
fn settings_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BINARIES[0])
        .env("CHAT_BIND", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", dir.path())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first:?}");
    assert!(dir.path().join("messages.csv").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_tells_clients_writes_the_last_rows_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut human = Client::human(server.addr, "hana");
    let mut machine = Client::json(server.addr, "mech");
    human.until("mech joined");
    human.send("last words");
    machine.next_of("message");
    // One more connection still in its handshake.
    let mut shy = Client::connect(server.addr);
    shy.line();

    server.signal("TERM");
    assert!(
        human
            .until("disconnected:")
            .ends_with("the server is shutting down")
    );
    human.closed();
    let bye = machine.next_of("bye");
    assert_eq!(bye["reason"], "the server is shutting down");
    machine.closed();
    assert!(shy.closed().contains("shutting down"));
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");

    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("data.csv")).unwrap());
    let shut: Vec<_> = rows
        .iter()
        .filter(|r| r[1] == "disconnect" && r[7] == "server shutdown")
        .map(|r| r[6].clone())
        .collect();
    assert_eq!(shut, ["hana", "mech", ""], "{rows:#?}");
    assert_eq!(rows.last().unwrap()[1], "stop");
    let messages = std::fs::read_to_string(dir.path().join("messages.csv")).unwrap();
    assert_eq!(csv_rows(&messages)[0][6], "last words");
}

#[test]
fn sigint_stops_the_server_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut c = Client::human(server.addr, "solo");
    server.signal("INT");
    c.closed();
    assert_eq!(server.wait().code(), Some(0));
}

#[test]
fn chat_client_works_from_a_pipe_and_exits_on_end_of_input() {
    let server = start_server();
    let mut watcher = server.human("watcher");
    let mut child = chat_client(
        &["--name", "piper", &server.addr.to_string()],
        Stdio::piped(),
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"hello from a pipe\n/who\n//literal slash\n")
        .unwrap();
    assert!(watcher.until("piper joined").contains("piper"));
    assert!(watcher.line().ends_with("piper: hello from a pipe"));
    assert!(watcher.line().ends_with("piper: /literal slash"));
    watcher.send("welcome, piper");
    // Read the client's output as it comes, and close its input only once it has shown the
    // reply; closing earlier would race the reply with the quit.
    let lines = line_channel(child.stdout.take().unwrap());
    let mut stdout = Vec::new();
    while !stdout
        .iter()
        .any(|l: &String| l.contains("watcher: welcome, piper"))
    {
        stdout.push(
            lines
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("{stdout:#?}")),
        );
    }
    drop(stdin);
    assert!(watcher.line().ends_with("* piper left #lobby (quit)"));
    let status = wait_timeout(child, TIMEOUT);
    assert_eq!(status.code(), Some(0));
    stdout.extend(lines.iter());
    let stdout = stdout.join("\n");
    assert!(stdout.contains("connected as piper"), "{stdout}");
    assert!(stdout.contains("2 in lobby: piper, watcher"), "{stdout}");
    assert!(stdout.contains("disconnected: you left"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "colour codes in piped output: {stdout:?}"
    );
}

/// Starts `chat-client` with `args`, its output captured.
fn chat_client(args: &[&str], stdin: Stdio) -> std::process::Child {
    Command::new(BINARIES[1])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines a child prints, as they come.
fn line_channel(out: std::process::ChildStdout) -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn chat_client_asks_for_a_name_and_reports_a_refusal() {
    let server = start_server();
    let _taken = server.human("taken");
    // A refused --name from a script is an error, with the reason.
    let child = chat_client(
        &["--name", "taken", &server.addr.to_string()],
        Stdio::null(),
    );
    let (status, stdout, stderr) = wait_output(child);
    assert_eq!(
        status.code(),
        Some(i32::from(chatroom::client::exit::LOGIN))
    );
    assert!(stderr.contains("refused the login"), "{stderr}");
    assert!(
        stdout.contains("taken by someone connected now"),
        "{stdout}"
    );

    // Without --name, the first line of input is the name.
    let mut child = chat_client(&[&server.addr.to_string()], Stdio::piped());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"named-by-stdin\nhi\n")
        .unwrap();
    let (status, stdout, _) = wait_output(child);
    assert_eq!(status.code(), Some(0));
    assert!(stdout.contains("connected as named-by-stdin"), "{stdout}");
}

#[test]
fn chat_client_leaves_on_quit_while_its_input_stays_open() {
    let server = start_server();
    let mut watcher = server.human("watcher");
    let mut child = chat_client(
        &["--name", "quitter", &server.addr.to_string()],
        Stdio::piped(),
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"/quit bye all\n").unwrap();
    assert!(watcher.until("quitter left").ends_with("(quit: bye all)"));
    let (status, stdout, stderr) = wait_output(child);
    drop(stdin);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("disconnected: you left"), "{stdout}");
}

#[test]
fn chat_client_says_why_when_the_server_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut watcher = Client::human(server.addr, "watcher");
    let mut child = chat_client(
        &["--name", "stayer", &server.addr.to_string()],
        Stdio::piped(),
    );
    let _stdin = child.stdin.take().unwrap();
    watcher.until("stayer joined");
    server.signal("TERM");
    let (status, stdout, stderr) = wait_output(child);
    assert_eq!(status.code(), Some(i32::from(chatroom::client::exit::LOST)));
    assert!(
        stdout.contains("disconnected: the server is shutting down"),
        "{stdout}"
    );
    assert!(
        stderr.contains("disconnected: the server is shutting down"),
        "{stderr}"
    );
}

#[test]
fn chat_log_prints_and_follows_the_log() {
    let server = start_server();
    let mut a = server.json("alice");
    a.send_json(json!({"type":"say","text":"one, \"two\"\nthree"}));
    a.next_of("message");

    let out = Command::new(BINARIES[2])
        .args(["--data-dir", server.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("  #lobby       alice: one, \"two\""),
        "{text}"
    );
    assert_eq!(lines[1].trim(), "three");
    assert!(!text.contains('\u{1b}'));
    let coloured = Command::new(BINARIES[2])
        .args([
            "--color",
            "always",
            "--data-dir",
            server.dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(coloured.stdout)
            .unwrap()
            .contains("\u{1b}[")
    );

    let mut follower = Command::new(BINARIES[2])
        .args(["--follow", "--data-dir", server.dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_channel(follower.stdout.take().unwrap());
    let next = || {
        rx.recv_timeout(TIMEOUT)
            .expect("chat-log printed nothing in time")
    };
    assert!(next().ends_with("alice: one, \"two\""));
    assert_eq!(next().trim(), "three");
    a.send_json(json!({"type":"say","text":"appended later"}));
    assert!(next().ends_with("alice: appended later"));

    // A half-written row is held back until its end arrives.
    let path = server.dir.join("messages.csv");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"99,2026-11-23T16:04:05.123Z,lobby,zed,,message,\"torn")
        .unwrap();
    f.flush().unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "a torn row was printed"
    );
    f.write_all(b" and mended\"\n").unwrap();
    assert!(next().ends_with("zed: torn and mended"));
    follower.kill().unwrap();
    follower.wait().unwrap();
}

#[test]
fn chat_log_exits_quietly_into_head_and_clearly_on_a_missing_file() {
    let server = start_server();
    let mut a = server.json("alice");
    // Send in windows and read the echoes, as a client that keeps up does.
    for window in 0..20 {
        for i in 0..100 {
            a.send_json(json!({"type":"say","text":format!("line {}", window * 100 + i)}));
        }
        for _ in 0..100 {
            a.next_of("message");
        }
    }
    let pipeline = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' --data-dir '{}' | head -n 3",
            BINARIES[2],
            server.dir.display()
        ))
        .output()
        .unwrap();
    assert!(pipeline.status.success(), "{pipeline:?}");
    assert_eq!(
        String::from_utf8(pipeline.stdout).unwrap().lines().count(),
        3
    );
    assert!(
        pipeline.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&pipeline.stderr)
    );

    let missing = Command::new(BINARIES[2])
        .args(["--data-dir", "/nonexistent/chat"])
        .output()
        .unwrap();
    // 2, like grep: an error, not "nothing matched" (1).
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8(missing.stderr).unwrap();
    assert!(err.contains("/nonexistent/chat/messages.csv"), "{err}");
}

/// Waits for a child (bounded) and returns its status, stdout and stderr.
fn wait_output(mut child: std::process::Child) -> (std::process::ExitStatus, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let status = wait_timeout(child, TIMEOUT);
    (status, out.join().unwrap(), err.join().unwrap())
}
