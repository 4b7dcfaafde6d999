//! Tests of the wire contract as a whole: parsing, encoding and validation together.

use super::names::NameError;
use super::*;

fn chat(text: &str) -> ChatMessage {
    ChatMessage {
        id: 7,
        ts: "2026-11-23T16:04:05.123Z".to_string(),
        room: "lobby".to_string(),
        from: "alice".to_string(),
        to: None,
        kind: Kind::Message,
        text: text.to_string(),
        history: false,
    }
}

fn msg(text: &str) -> ServerMsg {
    ServerMsg::Message(chat(text))
}

#[test]
fn hello_bare_name_is_human() {
    let h = parse_hello("alice\r").unwrap();
    assert_eq!((h.mode, h.name.as_str()), (Mode::Human, "alice"));
}

#[test]
fn hello_json_object_is_json() {
    let h = parse_hello(r#"{"type":"hello","name":"Bob.2"}"#).unwrap();
    assert_eq!(h.mode, Mode::Json);
    assert_eq!(h.name, "Bob.2");
    let h = parse_hello(r#"{"type":"hello","name":"bob","password":"s3cret"}"#).unwrap();
    assert_eq!(h.password.as_deref(), Some("s3cret"));
    assert!(
        !format!("{h:?}").contains("s3cret"),
        "passwords never reach a log"
    );
}

#[test]
fn hello_json_wrong_type_or_shape() {
    assert_eq!(
        parse_hello(r#"{"type":"say","name":"x"}"#)
            .unwrap_err()
            .code(),
        ErrorCode::BadRequest
    );
    assert_eq!(
        parse_hello(r#"{"type":"hello","name":5}"#)
            .unwrap_err()
            .code(),
        ErrorCode::BadRequest
    );
    assert_eq!(parse_hello("{oops").unwrap_err().code(), ErrorCode::BadJson);
}

#[test]
fn names_are_checked() {
    assert!(validate_name("a").is_ok());
    assert!(validate_name("Zoë_o-k.9").is_ok());
    assert!(validate_name(&"x".repeat(32)).is_ok());
    assert_eq!(
        validate_name(&"x".repeat(33)),
        Err(ProtocolError::Name(NameError::TooLong { chars: 33 }))
    );
    assert_eq!(
        validate_name(""),
        Err(ProtocolError::Name(NameError::Empty))
    );
    assert_eq!(
        validate_name("a b"),
        Err(ProtocolError::Name(NameError::InvalidChar { ch: ' ' }))
    );
    assert_eq!(
        validate_name("a\u{1b}"),
        Err(ProtocolError::Name(NameError::InvalidChar { ch: '\u{1b}' }))
    );
    assert_eq!(
        validate_name("Admin").unwrap_err().code(),
        ErrorCode::NameReserved
    );
    assert_eq!(
        validate_name("SERVER").unwrap_err().code(),
        ErrorCode::NameReserved
    );
}

#[test]
fn human_lines() {
    assert_eq!(
        parse_request(Mode::Human, "hello, world").unwrap(),
        Some(Request::Say("hello, world".into()))
    );
    assert_eq!(parse_request(Mode::Human, "   ").unwrap(), None);
    assert_eq!(
        parse_request(Mode::Human, "//etc/passwd").unwrap(),
        Some(Request::Say("/etc/passwd".into()))
    );
    assert_eq!(
        parse_request(Mode::Human, "/WHO").unwrap(),
        Some(Request::Who(None))
    );
    assert_eq!(
        parse_request(Mode::Human, "/quit gone fishing").unwrap(),
        Some(Request::Quit(Some("gone fishing".into())))
    );
    assert_eq!(
        parse_request(Mode::Human, "/who two rooms").unwrap_err(),
        ProtocolError::Usage {
            usage: "/who [ROOM]"
        }
    );
    assert_eq!(
        parse_request(Mode::Human, "/frobnicate")
            .unwrap_err()
            .code(),
        ErrorCode::UnknownCommand
    );
}

#[test]
fn json_requests() {
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"say","text":"a,\"b\"\nc"}"#).unwrap(),
        Some(Request::Say("a,\"b\"\nc".into()))
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"command","line":"/who"}"#).unwrap(),
        Some(Request::Who(None))
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"who"}"#).unwrap(),
        Some(Request::Who(None))
    );
    assert_eq!(
        parse_request(Mode::Json, r##"{"type":"say","text":"hi","room":"#Ops"}"##).unwrap(),
        Some(Request::SayIn {
            room: "#Ops".into(),
            text: "hi".into()
        })
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"me","text":"waves","room":"ops"}"#).unwrap(),
        Some(Request::MeIn {
            room: "ops".into(),
            text: "waves".into()
        })
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"msg","to":"bob","text":"psst"}"#).unwrap(),
        Some(Request::Msg {
            to: "bob".into(),
            text: "psst".into()
        })
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"join","room":"bad room"}"#)
            .unwrap_err()
            .code(),
        ErrorCode::RoomInvalid
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"ping","id":3}"#).unwrap(),
        Some(Request::Ping(Some(3)))
    );
    assert_eq!(
        parse_request(Mode::Json, "[1,2]").unwrap_err().code(),
        ErrorCode::BadJson
    );
    assert_eq!(
        parse_request(Mode::Json, "plain text").unwrap_err().code(),
        ErrorCode::BadJson
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"say","text":1}"#)
            .unwrap_err()
            .code(),
        ErrorCode::BadRequest
    );
    assert_eq!(
        parse_request(Mode::Json, r#"{"type":"launch"}"#)
            .unwrap_err()
            .code(),
        ErrorCode::BadRequest
    );
}

#[test]
fn room_commands_and_names() {
    let cmd = |l: &str| parse_command(l);
    assert_eq!(cmd("/join #Ops"), Ok(Request::Join("#Ops".into())));
    assert_eq!(cmd("/leave"), Ok(Request::Leave(None)));
    assert_eq!(cmd("/part ops"), Ok(Request::Leave(Some("ops".into()))));
    assert_eq!(cmd("/switch dev"), Ok(Request::Switch("dev".into())));
    assert_eq!(cmd("/rooms"), Ok(Request::Rooms));
    assert_eq!(
        cmd("/msg bob  hi there, bob"),
        Ok(Request::Msg {
            to: "bob".into(),
            text: "hi there, bob".into()
        })
    );
    assert_eq!(cmd("/reply ok"), Ok(Request::Reply("ok".into())));
    assert_eq!(cmd("/me waves"), Ok(Request::Me("waves".into())));
    assert_eq!(cmd("/nick ally"), Ok(Request::Nick("ally".into())));
    assert_eq!(cmd("/away lunch"), Ok(Request::Away(Some("lunch".into()))));
    assert_eq!(cmd("/back"), Ok(Request::Back));
    assert_eq!(cmd("/whois bob"), Ok(Request::Whois("bob".into())));
    assert_eq!(cmd("/history 10"), Ok(Request::History(Some(10))));
    for (line, usage) in [
        ("/join", "/join ROOM"),
        ("/join a b", "/join ROOM"),
        ("/msg bob", "/msg NAME TEXT"),
        ("/me", "/me ACTION"),
        ("/history ten", "/history [N]"),
        ("/switch", "/switch ROOM"),
    ] {
        assert_eq!(cmd(line), Err(ProtocolError::Usage { usage }), "{line}");
    }
    assert_eq!(
        cmd("/nick admin").unwrap_err().code(),
        ErrorCode::NameReserved
    );
    assert_eq!(cmd("/join #").unwrap_err().code(), ErrorCode::RoomInvalid);
    assert_eq!(cmd("/join a/b").unwrap_err().code(), ErrorCode::RoomInvalid);
    assert!(validate_room(&format!("#{}", "r".repeat(64))).is_ok());
    assert!(validate_room(&"r".repeat(65)).is_err());
    assert_eq!(room_key("#Ops"), "ops");
    assert_eq!(room_display("#Ops"), "Ops");
}

#[test]
fn dangerous_text_is_refused() {
    for bad in [
        "a\u{1b}[31m",
        "\u{7}",
        "x\u{85}",
        "x\u{202E}cba",
        "\u{2066}",
        "a\rb",
        "\u{7f}",
    ] {
        assert_eq!(
            validate_text(bad).unwrap_err().code(),
            ErrorCode::ControlChar,
            "{bad:?}"
        );
    }
    assert!(validate_text("tab\tand\nnewline ok, ünïcödé ok 😀").is_ok());
    assert_eq!(validate_text(" \t "), Err(ProtocolError::EmptyMessage));
    assert_eq!(
        validate_text("ab\u{1b}"),
        Err(ProtocolError::ControlChar {
            ch: '\u{1b}',
            at: 2
        })
    );
}

/// `--yes` confirms a ban that covers the administrator: right after the target, after the
/// duration, or last; anywhere else it is part of the reason. The same in both modes.
#[test]
fn ban_takes_a_confirmation() {
    let ban = |line: &str| match parse_command(line).unwrap() {
        Request::Ban {
            target,
            duration,
            reason,
            confirmed,
        } => (target, duration.map(|d| d.as_secs()), reason, confirmed),
        other => panic!("{other:?}"),
    };
    let t = |s: &str| s.to_string();
    assert_eq!(ban("/ban 127.0.0.1"), (t("127.0.0.1"), None, t(""), false));
    assert_eq!(
        ban("/ban 127.0.0.1 --yes"),
        (t("127.0.0.1"), None, t(""), true)
    );
    assert_eq!(
        ban("/ban 10.0.0.0/8 --yes 2h office"),
        (t("10.0.0.0/8"), Some(7200), t("office"), true)
    );
    assert_eq!(
        ban("/ban 10.0.0.0/8 2h --yes office"),
        (t("10.0.0.0/8"), Some(7200), t("office"), true)
    );
    assert_eq!(
        ban("/ban boss 2h my own --yes"),
        (t("boss"), Some(7200), t("my own"), true)
    );
    assert_eq!(
        ban("/ban troll says --yes--no"),
        (t("troll"), None, t("says --yes--no"), false)
    );
    assert!(matches!(
        parse_command("/ban --yes"),
        Err(ProtocolError::Usage { .. })
    ));
    let json = r#"{"type":"command","line":"/ban 127.0.0.1 --yes"}"#;
    assert_eq!(
        parse_request(Mode::Json, json).unwrap(),
        parse_request(Mode::Human, "/ban 127.0.0.1 --yes").unwrap()
    );
}

#[test]
fn printable_escapes_controls() {
    assert_eq!(printable("a\u{1b}[0m\u{202E}"), "a\\u{1b}[0m\\u{202e}");
    assert_eq!(printable("plain ü"), "plain ü");
}

#[test]
fn human_encoding_names_the_sender() {
    let out = String::from_utf8(encode(&msg("hello"), Mode::Human)).unwrap();
    assert_eq!(out, "[16:04:05] #lobby alice: hello\n");
    let out = String::from_utf8(encode(&msg("one\ntwo"), Mode::Human)).unwrap();
    assert_eq!(
        out,
        "[16:04:05] #lobby alice: one\n                         two\n"
    );
    let action = ServerMsg::Message(ChatMessage {
        kind: Kind::Action,
        ..chat("waves")
    });
    assert_eq!(
        String::from_utf8(encode(&action, Mode::Human)).unwrap(),
        "[16:04:05] #lobby * alice waves\n"
    );
    let dm = ServerMsg::Message(ChatMessage {
        kind: Kind::Direct,
        room: String::new(),
        to: Some("bob".into()),
        ..chat("psst")
    });
    assert_eq!(
        String::from_utf8(encode(&dm, Mode::Human)).unwrap(),
        "[16:04:05] alice -> bob: psst\n"
    );
    let old = ServerMsg::Message(ChatMessage {
        history: true,
        ..chat("earlier")
    });
    assert_eq!(
        String::from_utf8(encode(&old, Mode::Human)).unwrap(),
        "[2026-11-23 16:04:05] #lobby alice: earlier\n"
    );
}

#[test]
fn json_encoding_is_typed() {
    let out = String::from_utf8(encode(&msg("hi"), Mode::Json)).unwrap();
    assert!(out.ends_with('\n'));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["id"], 7);
    assert_eq!(v["ts"], "2026-11-23T16:04:05.123Z");
    assert_eq!(v["from"], "alice");
    assert_eq!(v["room"], "lobby");
    assert_eq!(v["kind"], "message");
    assert!(v.get("history").is_none() && v.get("to").is_none(), "{v}");
    let err = ServerMsg::error(&ProtocolError::LineTooLong { limit: 10 });
    let v: serde_json::Value = serde_json::from_slice(&encode(&err, Mode::Json)).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["code"], "line_too_long");
    let v: serde_json::Value =
        serde_json::from_slice(&encode(&ServerMsg::Pong { id: None }, Mode::Json)).unwrap();
    assert_eq!(v, serde_json::json!({"type":"pong"}));
}

#[test]
fn every_error_has_a_human_line() {
    let err = ServerMsg::error(&ProtocolError::NameTaken {
        name: "bob".into(),
        holder: "Bob".into(),
    });
    assert_eq!(
        String::from_utf8(encode(&err, Mode::Human)).unwrap(),
        "! the name bob is taken by someone connected now\n"
    );
}
#[test]
fn hidden_and_direction_characters_are_refused() {
    for (text, ch) in [
        ("a\u{200F}b", '\u{200F}'),
        ("a\u{200E}b", '\u{200E}'),
        ("a\u{061C}b", '\u{061C}'),
        ("a\u{2028}b", '\u{2028}'),
        ("a\u{2029}b", '\u{2029}'),
        ("hi\u{E0041}\u{E0042}", '\u{E0041}'),
        // A tag sequence that is not a flag's.
        ("\u{1F3F4}\u{E0041}\u{E007F}", '\u{E0041}'),
        ("x\u{E007F}", '\u{E007F}'),
        ("a\u{200B}b", '\u{200B}'),
        ("a\u{2060}b", '\u{2060}'),
        ("a\u{FEFF}b", '\u{FEFF}'),
        ("a\u{3164}b", '\u{3164}'),
        ("a\u{00AD}b", '\u{00AD}'),
        ("a\u{206A}b", '\u{206A}'),
        ("a\u{FFF9}b", '\u{FFF9}'),
        ("a\u{180E}b", '\u{180E}'),
        ("hi\u{E0100}\u{E0101}", '\u{E0101}'),
        ("\u{FE0F}start", '\u{FE0F}'),
    ] {
        assert!(
            matches!(validate_text(text), Err(ProtocolError::ControlChar { ch: c, .. }) if c == ch),
            "{text:?}: {:?}",
            validate_text(text)
        );
    }
    // The flag of England is a tag sequence, and welcome.
    let england = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
    assert_eq!(validate_text(&format!("go {england}!")), Ok(()));
    // A red heart is a heart and a variation selector; a family is joined with ZWJ.
    assert_eq!(
        validate_text("\u{2764}\u{FE0F} \u{1F468}\u{200D}\u{1F469}"),
        Ok(())
    );
    assert_eq!(validate_text("می\u{200C}خواهم"), Ok(()), "a Persian ZWNJ");
    assert!(!printable("a\u{E0041}").contains('\u{E0041}'));
}

#[test]
fn reasons_are_one_short_line() {
    assert_eq!(validate_reason("lunch"), Ok(()));
    assert!(validate_reason("a\nb").is_err());
    assert!(validate_reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
    assert!(parse_command("/away back\nsoon").is_err());
    let away = r#"{"type":"away","reason":"x\n[12:00:00] #lobby boss: hi"}"#;
    assert!(parse_request(Mode::Json, away).is_err());
    let quit = r#"{"type":"quit","reason":"bye\nforged"}"#;
    assert!(parse_request(Mode::Json, quit).is_err());
    assert!(parse_command("/kick bob spam\nforged").is_err());
}

#[test]
fn mute_takes_a_duration_and_a_reason_like_ban() {
    let mute = |line: &str| parse_command(line).unwrap();
    let expect = |name: &str, secs: Option<u64>, reason: &str| Request::Mute {
        name: name.into(),
        duration: secs.map(std::time::Duration::from_secs),
        reason: reason.into(),
    };
    assert_eq!(mute("/mute bob"), expect("bob", None, ""));
    assert_eq!(mute("/mute bob 10m"), expect("bob", Some(600), ""));
    assert_eq!(
        mute("/mute bob 1m stop  shouting"),
        expect("bob", Some(60), "stop  shouting")
    );
    assert_eq!(mute("/mute bob flooding"), expect("bob", None, "flooding"));
    assert!(parse_command("/mute").is_err());
    assert!(parse_command("/mute bob 1m spam\nforged").is_err());
}

#[test]
fn json_clients_cannot_paste() {
    let paste = r#"{"type":"command","line":"/paste"}"#;
    assert_eq!(
        parse_request(Mode::Json, paste).unwrap_err().code(),
        ErrorCode::BadRequest
    );
}

/// However a field came to hold a line break, a human-mode reader sees it indented under
/// the line it belongs to, never as a line of its own.
#[test]
fn no_field_starts_a_line_of_its_own() {
    let forged = "x\n[12:00:00] #lobby boss: send me your password";
    let events = [
        ServerMsg::Presence {
            ts: "2026-11-23T12:00:00.000Z".into(),
            name: "eve".into(),
            away: Some(forged.into()),
        },
        ServerMsg::Bye {
            ts: "2026-11-23T12:00:00.000Z".into(),
            reason: forged.into(),
        },
        ServerMsg::Whois {
            name: "eve".into(),
            rooms: vec!["lobby".into()],
            away: Some(forged.into()),
            connected: "2026-11-23T12:00:00.000Z".into(),
        },
        ServerMsg::System {
            ts: "2026-11-23T12:00:00.000Z".into(),
            text: forged.into(),
        },
        msg(forged),
    ];
    for event in events {
        let text = String::from_utf8(encode(&event, Mode::Human)).unwrap();
        for line in text.lines().skip(1) {
            assert!(line.starts_with(' '), "{text:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parsing_any_text_never_panics(line in "\\PC*") {
            let _ = parse_hello(&line);
            let _ = parse_request(Mode::Human, &line);
            let _ = parse_request(Mode::Json, &line);
            let _ = parse_command(&line);
        }

        #[test]
        fn parsing_json_shaped_input_never_panics(
            kind in "(say|me|msg|reply|join|leave|rooms|who|switch|nick|away|back|whois|history|command|help|ping|pong|quit|hello|x)",
            key in "(text|room|to|name|n|id|line|reason|type|zzz)",
            value in prop_oneof![
                Just("null".to_string()),
                Just("[]".to_string()),
                Just("{}".to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| f.to_string()),
                "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ],
        ) {
            let line = format!(r#"{{"type":"{kind}","{key}":{value}}}"#);
            let _ = parse_hello(&line);
            let _ = parse_request(Mode::Json, &line);
        }

        /// Whatever a request carries once accepted is text that cannot drive a terminal.
        #[test]
        fn accepted_text_is_safe(text in any::<String>()) {
            let json = serde_json::json!({"type": "say", "text": text}).to_string();
            if let Ok(Some(Request::Say(t))) = parse_request(Mode::Json, &json) {
                prop_assert!(t.chars().all(|c| c == '\n' || c == '\t' || !is_dangerous(c)));
                prop_assert!(!t.trim().is_empty());
                // And it encodes in both modes without panicking.
                let msg = ServerMsg::Message(ChatMessage {
                    id: 1,
                    ts: "2026-11-23T16:04:05.123Z".into(),
                    room: "lobby".into(),
                    from: "a".into(),
                    to: None,
                    kind: Kind::Message,
                    text: t,
                    history: false,
                });
                let human = encode(&msg, Mode::Human);
                prop_assert!(!human.contains(&0x1b));
                encode(&msg, Mode::Json);
            }
        }

        #[test]
        fn printable_output_is_always_safe(text in any::<String>()) {
            prop_assert!(!printable(&text).chars().any(is_dangerous));
        }
    }
}
