//! A hostile member, item by item (issue "Hostile members"): each test makes the attack over
//! real sockets and checks the bound: what is refused, what data.csv says, and for the
//! attacks on memory, the server's RSS from /proc against what docs/RELIABILITY.md promises.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chatroom::attack::{self, Bystander, JsonClient, Trickle};
use chatroom::store::users::{Accounts, Role, USERS_FILE};
use serde_json::json;

mod availability;

use crate::support::{
    Client, ServerProcess, command, csv_rows, login, start_in, start_on, start_with, write_accounts,
};

/// The `message` of the next error event.
fn error(c: &mut Client) -> (String, String) {
    let e = c.next_of("error");
    (
        e["code"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

/// A server with a member (alice) and an administrator (boss), and the login delay short.
fn with_write_accounts(
    dir: &Path,
    tune: impl FnOnce(&mut chatroom::Config),
) -> crate::support::TestServer {
    write_accounts(
        dir,
        &[
            ("alice", "alice pw", Role::Member),
            ("boss", "boss pw", Role::Admin),
        ],
    );
    start_in(dir, |c| {
        c.login.login_delay = Duration::from_millis(1).into();
        tune(c);
    })
}

/// Item 1: a guest cannot take a registered name, in any case or look-alike, nor rename an
/// account; under --private nobody renames.
#[test]
fn a_guest_cannot_take_a_registered_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_write_accounts(dir.path(), |_| {});
    let mut eve = server.json("eve");
    for name in ["alice", "ALICE", "Boss", "b0ss"] {
        eve.send_json(json!({"type":"nick","name":name}));
        let (code, msg) = error(&mut eve);
        assert_eq!(code, "name_taken", "{name}: {msg}");
        assert!(msg.contains("registered name"), "{name}: {msg}");
    }
    // The real alice still gets in, under her own name.
    let mut alice = login(server.addr, "alice", "alice pw");
    alice.nothing_pending(true);
    // An account's name is the account's: alice cannot become someone else either.
    alice.send_json(json!({"type":"nick","name":"alice2"}));
    assert_eq!(error(&mut alice).0, "not_allowed");
    let rows = csv_rows(&server.read("data.csv"));
    assert!(!rows.iter().any(|r| r[1] == "nick"), "{rows:#?}");
}

/// Item 2: roles follow the account. An admin's `/op alice` makes the account an admin, not
/// whoever is called alice; `/deop` takes effect at once; a guest's `/kick` is refused.
#[test]
fn roles_follow_the_account_never_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_write_accounts(dir.path(), |_| {});
    let mut boss = login(server.addr, "boss", "boss pw");
    let mut eve = server.json("eve");
    eve.send_json(json!({"type":"nick","name":"alice"}));
    assert_eq!(error(&mut eve).0, "name_taken");
    command(&mut boss, "/op alice");
    assert!(
        boss.next_of("system")["text"]
            .as_str()
            .unwrap()
            .contains("alice is now an administrator")
    );
    command(&mut eve, "/kick boss");
    assert_eq!(error(&mut eve).0, "not_allowed");
    // The account's owner has the role...
    let mut alice = login(server.addr, "alice", "alice pw");
    command(&mut alice, "/kick eve testing");
    eve.next_of("bye");
    // ... until it is taken away, which holds for her live connection at once.
    command(&mut boss, "/deop alice");
    alice.until("alice is now a member (by boss)");
    command(&mut alice, "/kick boss");
    assert_eq!(error(&mut alice).0, "not_allowed");
    // The admin was never kicked: still connected, and no bye on the way.
    boss.nothing_pending_after(true, |line| !line.contains(r#""type":"bye""#));
}

/// Item 2 again: a guest who held a name before it was registered gives it up to the account.
#[test]
fn an_account_takes_its_name_back_from_a_guest() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_write_accounts(dir.path(), |_| {});
    let mut early = server.json("carol");
    let mut all = Accounts::load(&dir.path().join(USERS_FILE)).unwrap();
    all.add("carol", "carol pw", Role::Member).unwrap();
    all.save(&dir.path().join(USERS_FILE)).unwrap();
    let carol = login(server.addr, "carol", "carol pw");
    let bye = early.next_of("bye");
    assert!(
        bye["reason"]
            .as_str()
            .unwrap()
            .contains("belongs to a registered account"),
        "{bye}"
    );
    drop(carol);
}

/// Item 3: a name ban and a mute cannot be dodged with `/nick`.
#[test]
fn bans_and_mutes_hold_across_a_change_of_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_write_accounts(dir.path(), |_| {});
    let mut boss = login(server.addr, "boss", "boss pw");
    let mut mallory = server.json("mallory");
    command(&mut boss, "/ban mallory 1h spam");
    mallory.next_of("bye");
    let mut again = server.json("mallory2");
    again.send_json(json!({"type":"nick","name":"Mallory"}));
    assert_eq!(error(&mut again).0, "banned");

    let mut troll = server.json("troll");
    command(&mut boss, "/mute troll");
    troll.next_of("system");
    troll.send_json(json!({"type":"nick","name":"troll2"}));
    let (code, msg) = error(&mut troll);
    assert_eq!(code, "muted", "{msg}");
    troll.send_json(json!({"type":"say","text":"still here"}));
    assert_eq!(error(&mut troll).0, "muted");
    // A guest is muted by address: coming back under another name does not lift it.
    drop(troll);
    let mut again = server.json("troll_returns");
    again.send_json(json!({"type":"say","text":"back again"}));
    assert_eq!(error(&mut again).0, "muted");
    // An account is muted by account, not by the address it shares.
    let mut alice = login(server.addr, "alice", "alice pw");
    alice.send_json(json!({"type":"say","text":"I may speak"}));
    alice.next_of("message");
    let log = server.read("messages.csv");
    assert!(!log.contains("still here") && !log.contains("back again"));
}

/// Item 4: names that look like another's, or hold invisible or compatibility characters,
/// are refused; names in other scripts are welcome.
#[test]
fn look_alike_and_invisible_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_write_accounts(dir.path(), |_| {});
    let _bob = server.json("bob");
    let refused = |name: &str| {
        let mut c = Client::connect(server.addr);
        c.send_json(json!({"type":"hello","name":name}));
        let (code, msg) = error(&mut c);
        (code, msg)
    };
    // Cyrillic о in a Latin name; fullwidth and mathematical letters; Cyrillic а; long s;
    // Hangul fillers (invisible).
    for name in [
        "bоss",
        "ｂｏｓｓ",
        "𝐛𝐨𝐬𝐬",
        "аdmin",
        "ſerver",
        "\u{3164}",
        "\u{FFA0}\u{FFA0}\u{FFA0}",
    ] {
        let (code, msg) = refused(name);
        assert_eq!(code, "name_invalid", "{name:?}: {msg}");
    }
    // One script, but reads as a reserved name or as someone connected.
    assert_eq!(refused("ѕуѕор").0, "name_reserved");
    let (code, msg) = refused("b0b");
    assert_eq!(code, "name_taken");
    assert_eq!(msg, "the name b0b looks like bob, who is connected now");
    let (code, msg) = refused("B0SS");
    assert_eq!(
        code, "password_required",
        "a look-alike of an account is the account: {msg}"
    );
    let welcome: Vec<Client> = ["नमस्ते", "தமிழ்", "Zoë"]
        .iter()
        .map(|name| server.json(name))
        .collect();
    assert_eq!(welcome.len(), 3);
}

/// Item 5: on a dual-stack listener IPv4 clients arrive as `::ffff:a.b.c.d`; bans, the
/// per-address limits (and loopback's exemption) and data.csv all see the IPv4 address.
#[test]
fn ipv4_mapped_peers_are_ipv4_everywhere() {
    let server = start_on("[::ffff:127.0.0.1]:0", |c| {
        c.limits.max_per_ip = 1;
        c.login.login_delay = Duration::from_millis(1).into();
    });
    // Written while it runs: the server reads users.csv again when it changes.
    write_accounts(&server.dir, &[("boss", "boss pw", Role::Admin)]);
    // Loopback is exempt from the per-address cap of 1, mapped or not.
    let a = server.json("a");
    let b = server.json("b");
    let mut boss = login(server.addr, "boss", "boss pw");
    let rows = csv_rows(&server.read("data.csv"));
    assert!(
        rows.iter()
            .filter(|r| r[1] == "connect")
            .all(|r| r[3] == "127.0.0.1"),
        "{rows:#?}"
    );
    // A ban of the one IPv4 address refuses the next client.
    command(&mut boss, "/ban 127.0.0.1 1h testing --yes");
    boss.next_of("bye");
    let mut refused = Client::connect(server.addr);
    let said = refused.closed();
    assert!(
        said.starts_with("! your address is banned until"),
        "{said:?}"
    );
    drop((a, b));
}

/// Starts a server on `dir` in this process, or returns why it would not start.
fn try_start(dir: &Path) -> Result<chatroom::Server, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = chatroom::Config {
        data_dir: dir.to_path_buf(),
        ..chatroom::Config::default()
    };
    chatroom::Server::new(listener, config).map_err(|e| e.to_string())
}

const HEADER: &str = chatroom::store::MESSAGES_HEADER;

/// Item 13: start-up takes what a crash, a hand edit or another encoding left behind: a
/// header without its newline is completed (not lost), a deleted header is refused with a
/// clear error, a row that is not UTF-8 or far longer than any message is left out of
/// history (named by its byte offset) and the server starts anyway, quickly.
#[test]
fn start_up_survives_odd_logs() {
    // The header alone, without its newline.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("messages.csv"), HEADER).unwrap();
    drop(try_start(dir.path()).unwrap());
    let text = std::fs::read_to_string(dir.path().join("messages.csv")).unwrap();
    assert_eq!(text, format!("{HEADER}\n"));

    // No header at all: refused, saying what to do.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("messages.csv"),
        "1,2026-11-26T04:00:00.000Z,lobby,bob,,message,hi\n",
    )
    .unwrap();
    let err = try_start(dir.path()).err().expect("refused");
    assert!(err.contains("does not start with its header line"), "{err}");

    // One Latin-1 byte, and a row of 30 MB (a hand edit): both left out of history.
    let dir = tempfile::tempdir().unwrap();
    let mut log = format!("{HEADER}\n1,2026-11-26T04:00:00.000Z,lobby,bob,,message,").into_bytes();
    log.extend(std::iter::repeat_n(b'z', 30 << 20));
    log.extend_from_slice(b"\n2,2026-11-26T04:00:01.000Z,lobby,bob,,message,first\n");
    let latin1_at = log.len();
    log.extend_from_slice(b"3,2026-11-26T04:00:02.000Z,lobby,bob,,message,caf\xe9\n");
    log.extend_from_slice(b"4,2026-11-26T04:00:03.000Z,lobby,bob,,message,last\n");
    std::fs::write(dir.path().join("messages.csv"), &log).unwrap();
    let stderr = dir.path().join("server.log");
    let started = Instant::now();
    let server = ServerProcess::start_logged(dir.path(), &[], &stderr);
    let took = started.elapsed();
    // Reading 30 MB backwards took 52 s when each chunk copied the whole record again.
    assert!(took < Duration::from_secs(10), "start-up took {took:?}");
    let log = server.log();
    assert!(
        log.contains(&format!("byte {latin1_at}: the row is not valid UTF-8")),
        "{log}"
    );
    assert!(log.contains("more than --max-line"), "{log}");
    // A joiner gets the history that is whole, and is not dropped for the giant row.
    let mut joiner = Client::connect(server.addr);
    joiner.send_json(json!({"type":"hello","name":"joiner"}));
    joiner.line();
    let mut texts = Vec::new();
    loop {
        let v = joiner.json_line();
        match v["type"].as_str() {
            Some("message") => texts.push(v["text"].as_str().unwrap().to_string()),
            Some("history_end") => break,
            _ => {}
        }
    }
    assert_eq!(texts, ["first", "last"]);
    joiner.nothing_pending(true);
}

/// Item 14: one server per data directory, and everything in it private to its owner
/// whatever the umask: the directory 0700, the logs, users.csv, bans.csv, the lock and the
/// keys of `gen-cert` 0600.
#[test]
fn one_server_per_data_dir_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let first = start_in(dir.path(), |_| {});
    let err = try_start(dir.path())
        .err()
        .expect("a second server is refused");
    assert!(err.contains("in use by another chat-server"), "{err}");
    drop(first);

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // Files made before (or by hand) readable by others are made private at start-up.
    let old = tempfile::tempdir().unwrap();
    let set =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    std::fs::write(old.path().join("messages.csv"), format!("{HEADER}\n")).unwrap();
    set(&old.path().join("messages.csv"), 0o644);
    set(old.path(), 0o755);
    drop(try_start(old.path()).unwrap());
    assert_eq!(mode(old.path()), 0o700);
    assert_eq!(mode(&old.path().join("messages.csv")), 0o600);
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    // With umask 0, as a careless service file might leave it.
    let run = |args: &[&str], input: &str| {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 0; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_chat-server"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child
    };
    let data_arg = data.to_str().unwrap();
    let added = run(
        &[
            "--data-dir",
            data_arg,
            "users",
            "add",
            "boss",
            "--admin",
            "--min-password",
            "4",
        ],
        "boss pw\n",
    );
    let (status, _, stderr) = crate::support::wait_timeout_output(added);
    assert!(status.success(), "{stderr}");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("users.csv")), 0o600);
    let certs = base.path().join("tls");
    let made = run(&["gen-cert", "--out", certs.to_str().unwrap()], "");
    assert!(crate::support::wait_timeout_output(made).0.success());
    assert_eq!(mode(&certs.join("key.pem")), 0o600);

    let mut child = run(
        &[
            "--bind",
            "127.0.0.1:0",
            "--msg-rate",
            "0",
            "--login-delay",
            "0",
            "--data-dir",
            data_arg,
        ],
        "",
    );
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let mut boss = login(addr, "boss", "boss pw");
    command(&mut boss, "/ban troll 1h");
    boss.next_of("system");
    for file in ["messages.csv", "data.csv", "bans.csv", ".lock", "users.csv"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Item 15: a JSON client cannot start a paste (which swallowed its later lines); text that
/// hides or reorders (direction marks, line separators, stray tag characters) is refused;
/// `chat-log --excel-safe` gives spreadsheets text, not formulas. (A mistyped name that
/// would post the password: accounts::guests_join_freely_and_registered_names_need_their_password.)
#[test]
fn smaller_holes_are_closed() {
    let server = start_with(|_| {});
    let mut j = server.json("j");
    command(&mut j, "/paste");
    assert_eq!(error(&mut j).0, "bad_request");
    j.send_json(json!({"type":"say","text":"still a JSON client"}));
    assert_eq!(j.next_of("message")["text"], "still a JSON client");
    for text in [
        "a\u{200F}b",
        "a\u{061C}b",
        "a\u{2028}b",
        "hidden\u{E0041}\u{E0042}",
    ] {
        j.send_json(json!({"type":"say","text":text}));
        assert_eq!(error(&mut j).0, "control_char", "{text:?}");
    }
    j.send_json(json!({"type":"say","text":"=HYPERLINK(\"http://x\",\"y\")"}));
    j.next_of("message");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat-log"))
        .args(["--format", "csv", "--excel-safe", "--data-dir"])
        .arg(&server.dir)
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
        "{csv}"
    );
    // The log itself keeps what was sent.
    assert!(server.read("messages.csv").contains(",\"=HYPERLINK("));
}
