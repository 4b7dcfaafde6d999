//! Accounts: guests and registered names, passwords in both modes, the throttle, private
//! servers, and the `chat-server users` commands.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chatroom::store::users::{Accounts, Role, USERS_FILE};
use serde_json::json;

use crate::support::{Client, csv_rows, login, start_in, write_accounts};

#[test]
fn guests_join_freely_and_registered_names_need_their_password() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("bob", "s3cret pass", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(10).into()
    });

    // A guest: no password asked.
    let mut g = Client::json(server.addr, "guest1");
    assert!(g.transcript.iter().any(|l| l.contains(r#""role":"guest""#)));
    g.nothing_pending(true);

    // Human mode: the server asks every name for a password on the next line (the same
    // words for all, so the prompt does not tell which names are registered).
    let mut h = Client::connect(server.addr);
    h.line();
    h.send("bob");
    assert_eq!(h.line(), "Password for bob (empty: join as a guest):");
    h.send("wrong");
    assert_eq!(h.line(), "! invalid name or password");
    assert_eq!(h.line(), "What is your name?");
    // The account's own name, whatever case was typed.
    h.send("BOB");
    assert_eq!(h.line(), "Password for BOB (empty: join as a guest):");
    h.send("s3cret pass");
    assert!(
        h.line().starts_with("* welcome, bob!"),
        "{:?}",
        h.transcript
    );
    h.send("/quit");
    h.closed();

    // A mistyped name does not turn the password that follows into a chat line.
    let mut typo = Client::connect(server.addr);
    typo.line();
    typo.send("bbo");
    assert_eq!(typo.line(), "Password for bbo (empty: join as a guest):");
    typo.send("s3cret pass");
    assert_eq!(typo.line(), "! invalid name or password");
    assert_eq!(typo.line(), "What is your name?");
    // An empty answer joins as a guest.
    typo.send("bbo");
    typo.line();
    typo.send("");
    typo.until("* welcome, bbo!");

    // JSON mode: the password travels in the hello.
    let mut j = Client::connect(server.addr);
    j.send(r#"{"type":"hello","name":"bob"}"#);
    assert_eq!(j.next_of("error")["code"], "password_required");
    j.send(r#"{"type":"hello","name":"bob","password":"nope"}"#);
    assert_eq!(j.next_of("error")["code"], "login_failed");
    j.send(r#"{"type":"hello","name":"bob","password":"s3cret pass"}"#);
    let welcome = j.next_of("welcome");
    assert_eq!(welcome["role"], "member");

    let rows = csv_rows(&server.read("data.csv"));
    let failed: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == "login_failed").collect();
    assert_eq!(failed.len(), 3, "{rows:#?}");
    assert!(failed.iter().all(|r| r[3] == "127.0.0.1"));
    assert!(
        rows.iter()
            .any(|r| r[1] == "named" && r[6] == "bob" && r[7] == "member")
    );
    assert!(
        rows.iter()
            .any(|r| r[1] == "named" && r[6] == "guest1" && r[7] == "guest")
    );
    // No password, right or wrong, is in any file.
    for file in ["data.csv", "messages.csv", USERS_FILE] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("nope"), "{file}");
    }
}

#[test]
fn failed_logins_are_throttled_and_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("bob", "right", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(40).into();
        c.login.login_lockout = 3;
    });
    let mut j = Client::connect(server.addr);
    let mut waits = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        j.send(r#"{"type":"hello","name":"bob","password":"wrong"}"#);
        assert_eq!(j.next_of("error")["code"], "login_failed");
        waits.push(started.elapsed());
    }
    // Each failure waits longer: 40, 80, 160 ms.
    assert!(waits[2] >= Duration::from_millis(160), "{waits:?}");
    assert!(waits[0] < waits[2], "{waits:?}");
    // Locked out now, even with the right password.
    j.send(r#"{"type":"hello","name":"bob","password":"right"}"#);
    let err = j.next_of("error");
    assert_eq!(err["code"], "login_locked");
    assert!(err["message"].as_str().unwrap().contains("try again in"));
}

#[test]
fn a_private_server_takes_only_accounts_and_does_not_say_which_names_exist() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("boss", "pw", Role::Admin)]);
    let server = start_in(dir.path(), |c| {
        c.login.private = true;
        c.login.login_delay = Duration::from_millis(1).into();
    });
    let mut h = Client::connect(server.addr);
    h.line();
    // An unknown name is asked for a password like any other, and refused the same way.
    h.send("stranger");
    assert_eq!(h.line(), "Password for stranger:");
    h.send("anything");
    assert_eq!(h.line(), "! invalid name or password");
    h.line();
    h.send("boss");
    assert_eq!(h.line(), "Password for boss:");
    h.send("wrong");
    assert_eq!(h.line(), "! invalid name or password");
    h.line();
    h.send("boss");
    h.line();
    h.send("pw");
    assert!(h.line().starts_with("* welcome, boss!"));
    let mut j = Client::connect(server.addr);
    j.send_json(json!({"type":"hello","name":"stranger"}));
    assert_eq!(j.next_of("error")["code"], "password_required");
}

#[test]
fn the_users_commands_manage_accounts_atomically() {
    let dir = tempfile::tempdir().unwrap();
    // Private already, so the commands have nothing to say about its mode.
    std::fs::set_permissions(
        dir.path(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("users")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that fails early (or needs no password) may exit before reading stdin.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = crate::support::wait_timeout_output(child);
        (out.0.success(), out.1 + &out.2)
    };
    assert_eq!(
        run(&["add", "boss", "--admin"], "first pw\n"),
        (true, "added boss (admin)\n".into())
    );
    assert_eq!(
        run(&["add", "carol"], "carol pw\n"),
        (true, "added carol (member)\n".into())
    );
    let (ok, out) = run(&["add", "Carol"], "x\n");
    assert!(!ok && out.contains("exists already"), "{out}");
    let (ok, out) = run(&["add", "dave"], "\n");
    assert!(!ok && out.contains("the password is empty"), "{out}");
    let (ok, out) = run(&["add", "dave"], "seven c\n");
    assert!(!ok && out.contains("too short: 7 of at least 8"), "{out}");
    let (ok, out) = run(&["--min-password", "4", "add", "dave"], "four\n");
    assert!(ok, "--min-password lowers the minimum: {out}");
    assert!(run(&["remove", "dave"], "").0);
    assert!(run(&["passwd", "boss"], "second pw\n").0);
    let (ok, out) = run(&["list"], "");
    assert!(
        ok && out.contains("boss") && out.contains("admin") && out.contains("carol"),
        "{out}"
    );
    assert!(!out.contains("argon2"), "list shows no hashes: {out}");
    assert!(run(&["remove", "carol"], "").0);
    let (ok, out) = run(&["remove", "carol"], "");
    assert!(!ok && out.contains("there is no account carol"), "{out}");

    let accounts = Accounts::load(&dir.path().join(USERS_FILE)).unwrap();
    let boss = accounts.get("boss").unwrap();
    assert_eq!(boss.role, Role::Admin);
    assert!(chatroom::store::users::verify_password(
        "second pw",
        &boss.password_hash
    ));
    assert!(accounts.get("carol").is_none());
    // Only users.csv is there: every write went through a temporary file and a rename.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [USERS_FILE]);

    // A running server sees the change without a restart.
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    assert!(run(&["add", "erin"], "erin password\n").0);
    let mut e = Client::connect(server.addr);
    e.send_json(json!({"type":"hello","name":"erin","password":"erin password"}));
    assert_eq!(e.next_of("welcome")["role"], "member");
}

#[test]
fn chat_client_logs_in_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("bob", "bob pw", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    // In a script the password is the line after the name (or CHAT_PASSWORD).
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-client"))
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"bob\nbob pw\nhello as bob\n")
        .unwrap();
    let (status, stdout, stderr) = crate::support::wait_timeout_output(child);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("connected as bob"), "{stdout}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-client"))
        .args(["--name", "bob", &server.addr.to_string()])
        .env("CHAT_PASSWORD", "bob pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"again\n").unwrap();
    let (status, stdout, stderr) = crate::support::wait_timeout_output(child);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("connected as bob"), "{stdout}");
    let texts: Vec<String> = csv_rows(&server.read("messages.csv"))
        .into_iter()
        .map(|r| r[6].clone())
        .collect();
    assert_eq!(texts, ["hello as bob", "again"]);
}

#[test]
fn accounts_without_tls_on_a_public_address_give_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("boss", "pw", Role::Admin)]);
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--bind", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("listening on 0.0.0.0:"), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("without TLS: passwords cross the network in clear"),
        "{said}"
    );
}

/// Logging in again ends the session left behind: the old one is told why (with the new
/// one's address) and closed, the new one is welcomed, the room sees alice leave and come
/// back, and `data.csv` says who took the name over.
#[test]
fn a_login_takes_over_the_accounts_connected_session() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("alice", "alice pw", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    // The old session, in human mode (the one a dropped network leaves behind longest).
    let mut old = Client::connect(server.addr);
    old.line();
    old.send("alice");
    old.line();
    old.send("alice pw");
    old.until("* welcome, alice!");
    old.until("* end of history of #lobby");
    let mut bob = Client::json(server.addr, "bob");

    let mut new = Client::connect(server.addr);
    new.send_json(json!({"type":"hello","name":"ALICE","password":"alice pw"}));
    let welcome = new.next_of("welcome");
    assert_eq!(welcome["name"], "alice");
    let new_conn = welcome["conn"].as_u64().unwrap();
    new.next_of("history_end");

    let told = format!(
        "you logged in from another connection ({}); this session is closed",
        new.stream.local_addr().unwrap()
    );
    let rest = old.until("* disconnected:");
    assert!(rest.ends_with(&told), "{:?}", old.transcript);
    old.closed();

    let left = bob.next_of("left");
    assert_eq!(left["name"], "alice");
    assert_eq!(left["reason"], "logged in again");
    assert_eq!(bob.next_of("joined")["name"], "alice");

    new.nothing_pending(true);
    let rows = csv_rows(&server.read("data.csv"));
    let gone: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[1] == "disconnect" && r[6] == "alice")
        .collect();
    assert_eq!(gone.len(), 1, "{rows:#?}");
    assert_eq!(gone[0][7], format!("taken over by conn {new_conn}"));
    assert!(
        rows.iter().any(|r| r[1] == "named"
            && r[2] == new_conn.to_string()
            && r[6] == "alice"
            && r[7] == "member"),
        "{rows:#?}"
    );
}

/// A wrong password takes nothing over: it is a failed login as before, and the session
/// stays.
#[test]
fn a_wrong_password_does_not_take_over() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("alice", "alice pw", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    let mut alice = login(server.addr, "alice", "alice pw");
    let mut other = Client::connect(server.addr);
    other.send_json(json!({"type":"hello","name":"alice","password":"guess"}));
    assert_eq!(other.next_of("error")["code"], "login_failed");
    alice.nothing_pending(true);
    let rows = csv_rows(&server.read("data.csv"));
    assert!(
        rows.iter()
            .any(|r| r[1] == "login_failed" && r[6] == "alice"),
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r[1] == "disconnect"), "{rows:#?}");
}

/// Guests have no password to prove anything with: a guest's name, or an account's that is
/// connected, stays with whoever holds it.
#[test]
fn guests_cannot_take_over_a_connected_name() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("alice", "alice pw", Role::Member)]);
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    let mut carol = Client::json(server.addr, "carol");
    let mut alice = login(server.addr, "alice", "alice pw");

    // A guest's name, and a look-alike of it.
    let mut other = Client::connect(server.addr);
    for name in ["carol", "CAROL", "caro1"] {
        other.send_json(json!({"type":"hello","name":name}));
        assert_eq!(other.next_of("error")["code"], "name_taken", "{name}");
    }
    // An account's name, connected, in both modes.
    other.send_json(json!({"type":"hello","name":"alice"}));
    assert_eq!(other.next_of("error")["code"], "password_required");
    let mut human = Client::connect(server.addr);
    human.line();
    human.send("alice");
    human.line();
    human.send("");
    assert_eq!(human.line(), "! invalid name or password");

    // Carol saw alice arrive, and nothing since.
    carol.nothing_pending_after(true, |l| l.contains(r#""type":"joined""#));
    alice.nothing_pending(true);
    let rows = csv_rows(&server.read("data.csv"));
    assert!(!rows.iter().any(|r| r[1] == "disconnect"), "{rows:#?}");
}
