//! Moderation: every command by an administrator, each refused for a member, bans that
//! survive a restart and bans that expire.

use std::path::Path;
use std::time::Duration;

use chatroom::store::users::{Accounts, Role, USERS_FILE};
use serde_json::json;

use crate::support::{Client, TestServer, command, csv_rows, login, start_in, write_accounts};

fn setup(dir: &Path) -> TestServer {
    write_accounts(
        dir,
        &[
            ("boss", "boss pw", Role::Admin),
            ("carol", "carol pw", Role::Member),
        ],
    );
    start_in(dir, |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    })
}

/// The next `system` event whose text starts with `prefix`.
fn system(c: &mut Client, prefix: &str) -> String {
    loop {
        let text = c.next_of("system")["text"].as_str().unwrap().to_string();
        if text.starts_with(prefix) {
            return text;
        }
    }
}

#[test]
fn members_are_refused_every_moderation_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path());
    let mut carol = login(server.addr, "carol", "carol pw");
    let _guest = server.human("guest");
    for (line, what) in [
        ("/kick guest", "/kick"),
        ("/ban guest", "/ban"),
        ("/unban guest", "/unban"),
        ("/bans", "/bans"),
        ("/mute guest", "/mute"),
        ("/unmute guest", "/unmute"),
        ("/op carol", "/op"),
        ("/deop boss", "/deop"),
    ] {
        command(&mut carol, line);
        let err = carol.next_of("error");
        assert_eq!(err["code"], "not_allowed", "{line}");
        assert_eq!(
            err["message"],
            format!("only administrators may use {what}")
        );
    }
}

#[test]
fn mute_takes_a_reason_and_an_admin_cannot_kick_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = setup(dir.path());
    let mut boss = login(server.addr, "boss", "boss pw");
    let mut bob = server.human("bob");

    command(&mut boss, "/mute bob 1m shouting in caps");
    assert!(
        bob.until("muted")
            .ends_with("* bob was muted by boss for 1m: shouting in caps"),
        "{:?}",
        bob.transcript
    );

    command(&mut boss, "/kick boss");
    let err = boss.next_of("error");
    assert_eq!(err["code"], "bad_request", "{err}");
    assert_eq!(
        err["message"],
        "you cannot kick yourself; use /quit to leave"
    );
    // Still connected, and still an administrator.
    command(&mut boss, "/unmute bob");
    assert!(bob.until("unmuted").ends_with("* bob was unmuted by boss"));

    server.stop();
    let rows = csv_rows(&server.read("data.csv"));
    let mute: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == "mute").collect();
    assert_eq!(mute.len(), 1, "{rows:?}");
    assert_eq!(mute[0][7], "bob for 1m: shouting in caps");
    assert!(!rows.iter().any(|r| r[1] == "kick"), "{rows:?}");
}

#[test]
fn kick_mute_op_and_deop_by_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = setup(dir.path());
    let mut boss = login(server.addr, "boss", "boss pw");
    assert!(
        boss.transcript
            .iter()
            .any(|l| l.contains(r#""role":"admin""#))
    );
    let mut bob = server.human("bob");
    let mut carol = login(server.addr, "carol", "carol pw");
    bob.until("carol joined");

    // Mute: bob's messages are refused with a reason; the room is told.
    command(&mut boss, "/mute bob 10m");
    assert!(
        bob.until("muted")
            .ends_with("* bob was muted by boss for 10m")
    );
    bob.send("can you hear me?");
    assert!(
        bob.line().starts_with("! you are muted for 10m more"),
        "{:?}",
        bob.transcript
    );
    command(&mut boss, "/unmute bob");
    assert!(bob.until("unmuted").ends_with("* bob was unmuted by boss"));
    bob.send("back again");
    assert!(carol.until("back again").contains("bob"));

    // Op: carol becomes an administrator, in users.csv too, and may kick.
    command(&mut boss, "/op carol");
    assert!(system(&mut carol, "carol is now").contains("carol is now an administrator"));
    let accounts = Accounts::load(&dir.path().join(USERS_FILE)).unwrap();
    assert_eq!(accounts.get("carol").unwrap().role, Role::Admin);
    command(&mut carol, "/kick bob spamming");
    let bye = bob.until("disconnected:");
    assert!(bye.ends_with("you were kicked by carol: spamming"), "{bye}");
    bob.closed();
    assert_eq!(
        system(&mut boss, "bob was kicked"),
        "bob was kicked by carol: spamming"
    );
    let left = boss.next_of("left");
    assert_eq!(left["reason"], "kicked by carol: spamming");

    // Deop: carol is a member again.
    command(&mut boss, "/deop carol");
    boss.until("carol is now a member");
    command(&mut carol, "/kick boss");
    assert_eq!(carol.next_of("error")["code"], "not_allowed");
    command(&mut boss, "/op nobody");
    assert_eq!(boss.next_of("error")["code"], "no_such_account");

    server.stop();
    let rows = csv_rows(&server.read("data.csv"));
    let actions: Vec<(String, String, String)> = rows
        .iter()
        .filter(|r| ["kick", "mute", "unmute", "op", "deop"].contains(&r[1].as_str()))
        .map(|r| (r[1].clone(), r[6].clone(), r[7].clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("mute".into(), "boss".into(), "bob for 10m".into()),
            ("unmute".into(), "boss".into(), "bob".into()),
            ("op".into(), "boss".into(), "carol".into()),
            ("kick".into(), "carol".into(), "bob: spamming".into()),
            ("deop".into(), "boss".into(), "carol".into()),
        ]
    );
}

#[test]
fn bans_by_name_and_network_survive_a_restart_and_can_be_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = setup(dir.path());
    let mut boss = login(server.addr, "boss", "boss pw");
    let mut mallory = server.human("mallory");
    boss.next_of("joined");

    command(&mut boss, "/ban Mallory 7d spam and abuse");
    let bye = mallory.until("disconnected:");
    assert!(bye.contains("you were banned by boss until 20"), "{bye}");
    assert!(bye.ends_with("(spam and abuse)"), "{bye}");
    mallory.closed();
    assert!(system(&mut boss, "banned Mallory").starts_with("banned Mallory until 20"));

    // The name is refused, with the reason and the expiry.
    let mut again = Client::connect(server.addr);
    again.line();
    again.send("mallory");
    assert!(again.line().starts_with("Password for mallory"));
    again.send("");
    let err = again.line();
    assert!(
        err.starts_with("! the name mallory is banned until 20")
            && err.ends_with("(spam and abuse)"),
        "{err}"
    );
    server.stop();

    // After a restart the ban still holds.
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    let mut again = Client::connect(server.addr);
    again.send_json(json!({"type":"hello","name":"mallory"}));
    assert_eq!(again.next_of("error")["code"], "banned");
    let mut boss = login(server.addr, "boss", "boss pw");
    command(&mut boss, "/bans");
    let list = system(&mut boss, "1 ban:");
    assert!(list.contains("Mallory (name) until"), "{list}");
    command(&mut boss, "/unban mallory");
    assert!(system(&mut boss, "lifted").contains("lifted 1 ban"));
    again.send_json(json!({"type":"hello","name":"mallory"}));
    again.next_of("welcome");

    // A network ban refuses the address at connect, before any name. It covers boss too, who
    // confirms it.
    command(&mut boss, "/ban 127.0.0.0/8 1h rogue office --yes");
    let bye = boss.next_of("bye");
    assert!(
        bye["reason"]
            .as_str()
            .unwrap()
            .contains("banned by boss until"),
        "{bye}"
    );
    let mut refused = Client::connect(server.addr);
    let said = refused.closed();
    assert!(
        said.starts_with("! your address is banned until 20"),
        "{said}"
    );
    assert!(said.contains(r#""code":"banned""#), "{said}");
    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("bans.csv")).unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1..3], ["cidr", "127.0.0.0/8"]);
    assert_eq!(rows[0][5], "rogue office");
}

#[test]
fn an_expired_ban_no_longer_applies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bans.csv"),
        "created,kind,target,until,by,reason\n\
         2026-01-01T00:00:00.000Z,name,oldtimer,2026-01-02T00:00:00Z,boss,over\n\
         2026-01-01T00:00:00.000Z,name,current,2999-01-01T00:00:00Z,boss,still on\n",
    )
    .unwrap();
    let server = setup(dir.path());
    let _ok = server.json("oldtimer");
    let mut c = Client::connect(server.addr);
    c.send_json(json!({"type":"hello","name":"current"}));
    let err = c.next_of("error");
    assert_eq!(err["code"], "banned");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("until 2999-01-01T00:00:00Z (still on)")
    );
}

/// Runs `chat-server --data-dir DIR bans ARGS`; returns its exit code and what it printed.
fn bans_cli(dir: &Path, args: &[&str]) -> (i32, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--data-dir")
        .arg(dir)
        .arg("bans")
        .args(args)
        .env("USER", "ops")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn chat-server bans");
    let (status, out, err) = crate::support::wait_timeout_output(child);
    (status.code().unwrap_or(-1), out + &err)
}

/// A data directory only its owner may read, as the server makes it, so the commands have
/// nothing to say about its mode.
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .unwrap();
    dir
}

/// The rows of bans.csv (none when it does not exist).
fn ban_rows(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("bans.csv"))
        .map(|t| csv_rows(&t))
        .unwrap_or_default()
}

/// Logs in to an account in human mode, up to the end of the lobby's history.
fn human_login(server: &TestServer, name: &str, password: &str) -> Client {
    let mut c = Client::connect(server.addr);
    c.line();
    c.send(name);
    c.until(&format!("Password for {name}"));
    c.send(password);
    c.until(&format!("* welcome, {name}!"));
    c.until("* end of history of #lobby");
    c
}

/// The issue "an administrator can lock everyone out": a `/ban` that covers the
/// administrator's own connection (an address, a network, their name) is refused, in either
/// mode, with whom else it would disconnect, unless confirmed with `--yes`.
#[test]
fn a_ban_that_covers_the_admin_needs_yes_and_says_whom_it_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(
        dir.path(),
        &[
            ("boss", "boss pw", Role::Admin),
            ("dana", "dana pw", Role::Admin),
        ],
    );
    let server = start_in(dir.path(), |c| {
        c.login.login_delay = Duration::from_millis(1).into()
    });
    let mut boss = login(server.addr, "boss", "boss pw");
    let mut bob = server.human("bob");
    let mut dana = human_login(&server, "dana", "dana pw");
    boss.until("dana");

    command(&mut boss, "/ban 127.0.0.1");
    let err = boss.next_of("error");
    assert_eq!(err["code"], "confirmation_needed", "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.starts_with("not banned: 127.0.0.1 covers your address 127.0.0.1")
            && msg.contains("disconnect you and bob, dana")
            && msg.contains("--yes"),
        "{msg}"
    );
    dana.send("/ban 127.0.0.0/8 1h");
    let line = dana.until("! ");
    assert!(
        line.starts_with("! not banned: 127.0.0.0/8 covers your address 127.0.0.1")
            && line.contains("disconnect you and bob, boss and keep you out"),
        "{line}"
    );
    command(&mut boss, "/ban BOSS 1h");
    let err = boss.next_of("error");
    assert_eq!(err["code"], "confirmation_needed");
    assert!(
        err["message"].as_str().unwrap().starts_with(
            "not banned: BOSS is your own name, so the ban would disconnect you and keep you out"
        ),
        "{err}"
    );
    // Nothing was banned, nobody was disconnected.
    assert!(ban_rows(dir.path()).is_empty());
    bob.nothing_pending_after(false, |_| true);

    // Confirmed: the administrator is told first, then everyone it covers is disconnected.
    command(&mut boss, "/ban 127.0.0.1 10m locked --yes");
    let told = system(&mut boss, "banned 127.0.0.1");
    assert!(
        told.starts_with("banned 127.0.0.1 until 20")
            && told.ends_with("(locked); disconnecting you and bob, dana"),
        "{told}"
    );
    let bye = boss.next_of("bye");
    assert!(
        bye["reason"]
            .as_str()
            .unwrap()
            .starts_with("you were banned by boss until"),
        "{bye}"
    );
    assert!(
        bob.until("disconnected:")
            .contains("you were banned by boss")
    );
    bob.closed();
    dana.closed();
    let said = Client::connect(server.addr).closed();
    assert!(
        said.starts_with("! your address is banned until 20") && said.contains("(locked)"),
        "{said}"
    );
    let rows = ban_rows(dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1..3], ["ip", "127.0.0.1"]);
}

/// The way back from a lockout: `chat-server bans` changes bans.csv while the server runs; the
/// next connection sees the change at once, and those connected that a new ban covers are
/// disconnected within a second.
#[test]
fn bans_from_the_command_line_apply_to_a_running_server() {
    let dir = private_dir();
    let server = start_in(dir.path(), |_| {});
    let mut bob = server.human("bob");

    let (code, out) = bans_cli(dir.path(), &["add", "127.0.0.1", "--reason", "maintenance"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("banned 127.0.0.1 permanently (maintenance)"),
        "{out}"
    );
    // Loopback is exempt from the per-address limits, not from bans.
    let said = Client::connect(server.addr).closed();
    assert!(
        said.starts_with("! your address is banned permanently (maintenance)\n")
            && said.contains(r#""code":"banned""#),
        "{said}"
    );
    let bye = bob.until("disconnected:");
    assert!(
        bye.ends_with("you were banned permanently (maintenance)"),
        "{bye}"
    );
    bob.closed();
    let rows = ban_rows(dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][4], "cli:ops");

    let (code, out) = bans_cli(dir.path(), &["list"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("127.0.0.1")
                && l.contains("permanent")
                && l.ends_with("maintenance")),
        "{out}"
    );
    let (code, out) = bans_cli(dir.path(), &["remove", "127.0.0.1"]);
    assert_eq!((code, out.as_str()), (0, "lifted 1 ban on 127.0.0.1\n"));
    let _carol = server.human("carol");
}

#[test]
fn the_bans_commands_check_what_they_are_given() {
    let dir = private_dir();
    let (code, out) = bans_cli(dir.path(), &["list"]);
    assert_eq!((code, out.as_str()), (0, "no bans\n"));
    for bad in [
        &["add", "10.0.0.0/33"][..],
        &["add", "not a name"],
        &["add", "troll", "--for", "5x"],
        &["add", "troll", "--for", "0s"],
        &["remove"],
    ] {
        let (code, out) = bans_cli(dir.path(), bad);
        assert_eq!(code, 2, "{bad:?}: a usage error: {out}");
    }
    let (code, out) = bans_cli(dir.path(), &["add", "10.0.0.0/33"]);
    assert!(
        out.contains("the prefix length must be 0 to 32"),
        "{code} {out}"
    );
    assert!(ban_rows(dir.path()).is_empty());

    let (code, out) = bans_cli(
        dir.path(),
        &["add", "troll", "--for", "2h", "--reason", "spam"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("banned troll until 20") && out.contains("(spam)"),
        "{out}"
    );
    let (code, out) = bans_cli(dir.path(), &["add", "198.51.100.0/24"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = bans_cli(dir.path(), &["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("TARGET"), "{out}");
    assert!(
        lines[1].starts_with("troll") && lines[1].ends_with("spam"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("198.51.100.0/24") && lines[2].contains("cidr"),
        "{out}"
    );

    let (code, out) = bans_cli(dir.path(), &["remove", "nobody"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nobody is not banned"), "{out}");
    assert_eq!(bans_cli(dir.path(), &["remove", "TROLL"]).0, 0);
    assert_eq!(ban_rows(dir.path()).len(), 1);
}
