//! `chat-client`'s line mode as a script sees it: the real binary against a real server, stdin
//! piped, and the exit status of each way a session can end.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chatroom::client::exit;
use chatroom::store::users::Role;
use serde_json::json;

use crate::support::{
    ServerProcess, csv_rows, login, start_in, start_with, wait_timeout_output, write_accounts,
};

/// Starts `chat-client` with `args` and `input` written to its stdin; the stdin stays open
/// when `keep_open` (returned), so the session lasts until the server ends it.
fn client(
    args: &[&str],
    input: &str,
    keep_open: bool,
) -> (Child, Option<std::process::ChildStdin>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-client"))
        .args(args)
        .env_remove("CHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat-client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    (child, keep_open.then_some(stdin))
}

/// Runs `chat-client` to its end on `input`: its exit code, stdout and stderr.
fn run(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let (child, _) = client(args, input, false);
    let (status, out, err) = wait_timeout_output(child);
    (status.code(), out, err)
}

fn texts(server_dir: &std::path::Path) -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(server_dir.join("messages.csv")).unwrap_or_default();
    csv_rows(&csv)
        .into_iter()
        .map(|r| (r[2].clone(), r[6].clone()))
        .collect()
}

#[test]
fn chat_client_paste_sends_one_message_and_the_session_goes_on() {
    let server = crate::support::start_server();
    let mut watcher = server.json("watcher");
    let addr = server.addr.to_string();
    let (code, out, err) = run(
        &["--name", "paster", &addr],
        "/paste\nline one\n  line two\n.\nafter the paste\n/help\n/quit\nnot sent\n",
    );
    assert_eq!(code, Some(i32::from(exit::OK)), "{err}\n{out}");
    let got = watcher.next_of("message");
    assert_eq!(got["text"], "line one\n  line two", "{got}");
    assert_eq!(watcher.next_of("message")["text"], "after the paste");
    let texts: Vec<String> = texts(&server.dir).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["line one\n  line two", "after the paste"]);
    assert!(out.contains("/paste"), "help lists /paste: {out}");
    assert!(out.contains("disconnected: you left"), "{out}");
}

#[test]
fn chat_client_exits_3_when_the_rate_limit_refuses_lines() {
    let server = start_with(|c| {
        c.chat.msg_rate = 1.0;
        c.chat.msg_burst = 5.0;
        c.chat.flood_limit = 1000;
    });
    let input: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    let (code, out, err) = run(&["--name", "hasty", &server.addr.to_string()], &input);
    assert_eq!(code, Some(i32::from(exit::REFUSED)), "{err}\n{out}");
    assert!(err.contains("refused"), "{err}");
    let delivered = texts(&server.dir).len();
    assert!(delivered < 30, "{delivered} delivered");
}

#[test]
fn chat_client_wait_paces_lines_so_all_are_delivered() {
    let server = start_with(|c| {
        c.chat.msg_rate = 20.0;
        c.chat.msg_burst = 5.0;
    });
    let input: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    let (code, out, err) = run(
        &["--name", "patient", "--wait", &server.addr.to_string()],
        &input,
    );
    assert_eq!(code, Some(i32::from(exit::OK)), "{err}\n{out}");
    let texts: Vec<String> = texts(&server.dir).into_iter().map(|(_, t)| t).collect();
    let expected: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, expected);
    assert!(
        !out.contains("rate"),
        "refusals are not shown with --wait: {out}"
    );
}

#[test]
fn chat_client_room_posts_in_that_room() {
    let server = crate::support::start_server();
    let (code, out, err) = run(
        &[
            "--name",
            "poster",
            "--room",
            "#Ops",
            &server.addr.to_string(),
        ],
        "deploy done\n",
    );
    assert_eq!(code, Some(i32::from(exit::OK)), "{err}\n{out}");
    assert_eq!(
        texts(&server.dir),
        [("Ops".to_string(), "deploy done".to_string())]
    );
    // A room that cannot be joined sends nothing, and says so.
    let (code, out, err) = run(
        &[
            "--name",
            "poster",
            "--room",
            "no room!",
            &server.addr.to_string(),
        ],
        "lost line\n",
    );
    assert_eq!(code, Some(i32::from(exit::REFUSED)), "{err}\n{out}");
    assert_eq!(texts(&server.dir).len(), 1);
}

#[test]
fn chat_client_exits_4_when_kicked() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("boss", "pw", Role::Admin)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    let mut boss = login(server.addr, "boss", "pw");
    let (child, _stdin) = client(
        &["--name", "victim", &server.addr.to_string()],
        "hi\n",
        true,
    );
    let said = boss.next_of("message");
    assert_eq!(said["from"], "victim", "{said}");
    boss.send_json(json!({"type":"command","line":"/kick victim go away"}));
    let (status, out, err) = wait_timeout_output(child);
    assert_eq!(
        status.code(),
        Some(i32::from(exit::REMOVED)),
        "{err}\n{out}"
    );
    assert!(err.contains("kicked"), "{err}");
}

#[test]
fn chat_client_exits_5_when_the_login_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("bob", "right", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    let (code, out, err) = run(
        &[
            "--name",
            "bob",
            "--password",
            "wrong",
            &server.addr.to_string(),
        ],
        "never sent\n",
    );
    assert_eq!(code, Some(i32::from(exit::LOGIN)), "{err}\n{out}");
    assert!(err.contains("refused the login"), "{err}");
    assert!(texts(&server.dir).is_empty());
}

#[test]
fn chat_client_exits_6_when_the_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut watcher = crate::support::Client::human(server.addr, "watcher");
    let (child, _stdin) = client(&["--name", "stayer", &server.addr.to_string()], "", true);
    watcher.until("stayer joined");
    drop(server); // SIGKILL: no goodbye
    let (status, out, err) = wait_timeout_output(child);
    assert_eq!(status.code(), Some(i32::from(exit::LOST)), "{err}\n{out}");
    assert!(err.contains("disconnected"), "{err}");
}

fn tls_server() -> (tempfile::TempDir, crate::support::TestServer) {
    let certs = tempfile::tempdir().unwrap();
    chatroom::tls::make_dev_cert(certs.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let config = chatroom::tls::server_config(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )
    .unwrap();
    let server = start_with(|c| c.tls.server = Some(config));
    (certs, server)
}

#[test]
fn chat_client_shows_the_servers_refusal_of_plain_text() {
    let (_certs, server) = tls_server();
    let (code, out, err) = run(&["--name", "plain", &server.addr.to_string()], "hi\n");
    assert_eq!(code, Some(i32::from(exit::FAILURE)), "{err}\n{out}");
    assert!(err.contains("this server speaks TLS"), "{err}");
}

#[test]
fn chat_client_hints_at_ca_for_a_self_signed_certificate() {
    let (_certs, server) = tls_server();
    let (code, out, err) = run(
        &["--name", "untrusting", "--tls", &server.addr.to_string()],
        "hi\n",
    );
    assert_eq!(code, Some(i32::from(exit::FAILURE)), "{err}\n{out}");
    assert!(err.contains("pass --ca FILE"), "{err}");
}
