use super::*;

#[test]
fn targets_and_networks() {
    let net = Target::parse("203.0.113.0/24").unwrap();
    assert!(net.covers("203.0.113.77".parse().unwrap()));
    assert!(!net.covers("203.0.114.1".parse().unwrap()));
    assert!(
        Target::parse("0.0.0.0/0")
            .unwrap()
            .covers("8.8.8.8".parse().unwrap())
    );
    let v6 = Target::parse("2001:db8::/32").unwrap();
    assert!(v6.covers("2001:db8:1::5".parse().unwrap()));
    assert!(!v6.covers("127.0.0.1".parse().unwrap()));
    assert_eq!(Target::parse("bob").unwrap(), Target::Name("bob".into()));
    assert!(Target::parse("10.0.0.0/33").is_err());
    assert!(Target::parse("not a name").is_err());
}

#[test]
fn bans_persist_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut bans = Bans::open(dir.path()).unwrap();
    bans.add(&Target::parse("Mallory").unwrap(), None, "boss", "spam")
        .unwrap();
    bans.add(
        &Target::parse("198.51.100.0/24").unwrap(),
        Some(Duration::from_secs(3600)),
        "boss",
        "",
    )
    .unwrap();
    let again = Bans::open(dir.path()).unwrap();
    assert_eq!(
        again.for_name("mallory").unwrap().describe(),
        "permanently (spam)"
    );
    assert!(
        again
            .for_ip("198.51.100.9".parse().unwrap())
            .unwrap()
            .describe()
            .starts_with("until ")
    );
    assert!(again.for_ip("198.51.101.9".parse().unwrap()).is_none());
    // An expired ban no longer applies.
    let mut expired = again;
    expired.list[1] = BanRecord {
        until: "2020-01-01T00:00:00Z".into(),
        parsed: Parsed::default(),
        ..expired.list[1].clone()
    };
    assert!(expired.for_ip("198.51.100.9".parse().unwrap()).is_none());
    assert_eq!(expired.remove("MALLORY").unwrap(), 1);
    assert!(Bans::open(dir.path()).unwrap().active().is_empty());
}
#[test]
fn a_single_address_ban_covers_that_address_only() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let one = Target::parse("203.0.113.5").unwrap();
    assert_eq!(one, Target::Ip(ip("203.0.113.5")));
    assert!(one.covers(ip("203.0.113.5")));
    assert!(!one.covers(ip("203.0.113.6")) && !one.covers(ip("::1")));
    let six = Target::parse("2001:db8::7").unwrap();
    assert!(six.covers(ip("2001:db8::7")));
    assert!(!six.covers(ip("2001:db8::8")));
}

#[test]
fn ipv6_networks_cover_their_prefix_only() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let net = Target::parse("2001:db8::/32").unwrap();
    assert!(net.covers(ip("2001:db8:ffff:ffff::1")));
    assert!(!net.covers(ip("2001:db9::1")));
    assert!(!net.covers(ip("2001:db7:ffff::1")));
    let host = Target::parse("2001:db8::1/128").unwrap();
    assert!(host.covers(ip("2001:db8::1")) && !host.covers(ip("2001:db8::2")));
    assert!(Target::parse("::/0").unwrap().covers(ip("2001:db9::1")));
    assert!(Target::parse("::/129").is_err());
}

#[test]
fn a_ban_ends_at_its_time() {
    let until = "2030-01-01T00:00:00Z";
    let ban = BanRecord {
        created: String::new(),
        kind: BanKind::Ip,
        target: "203.0.113.5".into(),
        until: until.into(),
        by: "boss".into(),
        reason: String::new(),
        parsed: Parsed::default(),
    };
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    assert!(ban.active(at("2029-12-31T23:59:59Z")));
    assert!(!ban.active(at(until)), "over at its time");
    assert!(!ban.active(at("2030-01-01T00:00:01Z")));
    let permanent = BanRecord {
        until: String::new(),
        parsed: Parsed::default(),
        ..ban
    };
    assert!(permanent.active(at("2999-01-01T00:00:00Z")));
    assert_eq!(permanent.describe(), "permanently");
}

#[test]
fn name_bans_match_names_only_while_active() {
    let dir = tempfile::tempdir().unwrap();
    let mut bans = Bans::open(dir.path()).unwrap();
    bans.add(&Target::parse("10.1.2.3").unwrap(), None, "boss", "")
        .unwrap();
    bans.add(&Target::parse("troll").unwrap(), None, "boss", "")
        .unwrap();
    assert!(bans.for_name("TROLL").is_some());
    assert!(
        bans.for_name("10.1.2.3").is_none(),
        "an address is not a name"
    );
    assert!(bans.for_ip("10.1.2.3".parse().unwrap()).is_some());
    assert!(bans.for_ip("10.1.2.4".parse().unwrap()).is_none());
    bans.list[1] = BanRecord {
        until: "2020-01-01T00:00:00Z".into(),
        parsed: Parsed::default(),
        ..bans.list[1].clone()
    };
    assert!(bans.for_name("troll").is_none(), "expired");
    assert_eq!(bans.active().len(), 1);
}

#[test]
fn removing_nothing_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut bans = Bans::open(dir.path()).unwrap();
    bans.add(&Target::parse("troll").unwrap(), None, "boss", "")
        .unwrap();
    bans.add(&Target::parse("mallory").unwrap(), None, "boss", "")
        .unwrap();
    // An expired ban still in the file: only a real change rewrites it.
    let path = dir.path().join(BANS_FILE);
    let text =
        fs::read_to_string(&path)
            .unwrap()
            .replacen(",,boss", ",2020-01-01T00:00:00Z,boss", 1);
    fs::write(&path, &text).unwrap();
    let mut bans = Bans::open(dir.path()).unwrap();
    assert_eq!(bans.remove("nobody").unwrap(), 0);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    assert_eq!(bans.remove("mallory").unwrap(), 1);
    assert!(Bans::open(dir.path()).unwrap().list.is_empty());
}

#[test]
fn an_unreadable_bans_file_is_an_error_not_no_bans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(BANS_FILE);
    // A symbolic link to itself: opening it fails with an error other than "not found".
    std::os::unix::fs::symlink(&path, &path).unwrap();
    let err = Bans::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("cannot open"), "{err}");
}

/// A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: bans written either way
/// cover them.
#[test]
fn mapped_addresses_are_ipv4() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mapped = ip("::ffff:203.0.113.5");
    assert!(Target::parse("203.0.113.5").unwrap().covers(mapped));
    assert!(Target::parse("203.0.113.0/24").unwrap().covers(mapped));
    assert!(
        Target::parse("127.0.0.0/8")
            .unwrap()
            .covers(ip("::ffff:127.0.0.1"))
    );
    assert_eq!(
        Target::parse("::ffff:203.0.113.5").unwrap(),
        Target::Ip(ip("203.0.113.5"))
    );
    // A prefix shorter than the mapping's own 96 bits is an IPv6 network.
    assert_eq!(
        Target::parse("::ffff:0:0/64").unwrap(),
        Target::Cidr(ip("::ffff:0:0"), 64)
    );
    let net = Target::parse("::ffff:203.0.113.0/120").unwrap();
    assert_eq!(net, Target::Cidr(ip("203.0.113.0"), 24));
    assert!(net.covers(ip("203.0.113.77")) && !net.covers(ip("203.0.114.1")));
    assert!(
        !Target::parse("203.0.113.5")
            .unwrap()
            .covers(ip("::203.0.113.5"))
    );
}

/// A change made by someone else (the `bans` command, another process) is seen by
/// `refresh`, and never written over by the next `add` or `remove` of the server.
#[test]
fn changes_on_disk_are_read_again_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = RwLock::new(Bans::open(dir.path()).unwrap());
    assert!(!refresh(&server), "nothing changed");
    let mut cli = Bans::open(dir.path()).unwrap();
    cli.add(&Target::parse("10.0.0.0/8").unwrap(), None, "cli:ops", "")
        .unwrap();
    let first = server.read().unwrap().generation();
    assert!(refresh(&server));
    assert_ne!(server.read().unwrap().generation(), first);
    assert!(!refresh(&server), "read once per change");
    assert!(
        server
            .read()
            .unwrap()
            .for_ip("10.1.2.3".parse().unwrap())
            .is_some()
    );
    // The server's next ban reads a newer file first, so the command's ban stays.
    cli.add(&Target::parse("troll").unwrap(), None, "cli:ops", "")
        .unwrap();
    server
        .write()
        .unwrap()
        .add(&Target::parse("mallory").unwrap(), None, "boss", "")
        .unwrap();
    let on_disk = Bans::open(dir.path()).unwrap();
    let targets: Vec<&str> = on_disk.all().iter().map(|b| b.target.as_str()).collect();
    assert_eq!(targets, ["10.0.0.0/8", "troll", "mallory"]);
    // Its own write is not a change to read again.
    assert!(!refresh(&server));
    // Removal, by the other side, and an address written another way.
    assert_eq!(cli.remove("::ffff:10.0.0.0/104").unwrap(), 1);
    assert!(refresh(&server));
    assert!(
        server
            .read()
            .unwrap()
            .for_ip("10.1.2.3".parse().unwrap())
            .is_none()
    );
    // A file that does not parse keeps the bans read before, and is not read again until
    // it changes.
    fs::write(dir.path().join(BANS_FILE), "not,a\nbans file\n\"").unwrap();
    assert!(!refresh(&server));
    assert!(server.read().unwrap().for_name("troll").is_some());
    assert!(!server.read().unwrap().is_stale());
    fs::remove_file(dir.path().join(BANS_FILE)).unwrap();
    assert!(refresh(&server), "a removed file is no bans");
    assert!(server.read().unwrap().active().is_empty());
}

#[test]
fn the_bans_command_adds_lists_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |c: BansCommand| bans_command(dir.path(), &c, "cli:ops");
    assert_eq!(run(BansCommand::List).unwrap(), "no bans\n");
    let add = |t: &str, d: Option<u64>, reason: &str| BansCommand::Add {
        target: Target::parse(t).unwrap(),
        duration: d.map(Duration::from_secs),
        reason: reason.into(),
    };
    let out = run(add("::ffff:127.0.0.1", None, "locked out")).unwrap();
    assert!(
        out.starts_with("banned 127.0.0.1 permanently (locked out)"),
        "{out}"
    );
    run(add("troll", Some(7200), "")).unwrap();
    let list = run(BansCommand::List).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("TARGET") && lines[0].contains("REASON"));
    assert!(
        lines[1].starts_with("127.0.0.1  ") && lines[1].contains("permanent"),
        "{list}"
    );
    assert!(
        lines[1].contains("cli:ops") && lines[1].ends_with("locked out"),
        "{list}"
    );
    assert!(
        lines[2].contains("troll") && lines[2].contains(" name ") && lines[2].contains("20"),
        "{list}"
    );
    let err = run(BansCommand::Remove {
        target: "nobody".into(),
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "nobody is not banned");
    let out = run(BansCommand::Remove {
        target: "127.0.0.1".into(),
    })
    .unwrap();
    assert_eq!(out, "lifted 1 ban on 127.0.0.1\n");
}

#[test]
fn the_table_marks_expired_bans_and_escapes_what_it_shows() {
    let ban = |until: &str, reason: &str| BanRecord {
        created: String::new(),
        kind: BanKind::Name,
        target: "troll".into(),
        until: until.into(),
        by: "boss".into(),
        reason: reason.into(),
        parsed: Parsed::default(),
    };
    let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let table = ban_table(
        &[ban("2029-01-01T00:00:00Z", "old"), ban("", "evil\u{1b}[2J")],
        now,
    );
    assert!(table.contains("expired 2029-01-01T00:00:00Z"), "{table}");
    assert!(table.contains("permanent"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table}");
}
