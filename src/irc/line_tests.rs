//! What the server sends, as lines: a WHOIS of someone in many rooms, a KICK's reason.

use super::server::{expelled_by, kick_text};
use crate::irc::message::MAX_LINE;
use crate::irc::tests::{event, registered};
use crate::proto::ServerMsg;

#[test]
fn a_whois_of_someone_in_many_rooms_is_several_lines() {
    let mut st = registered();
    let rooms: Vec<String> = (0..99)
        .map(|i| format!("{i:02}{}", "r".repeat(60)))
        .collect();
    let whois = ServerMsg::Whois {
        name: "eve".into(),
        rooms: rooms.clone(),
        away: Some("\u{1F600}".repeat(200)),
        connected: "2026-11-26T10:00:00Z".into(),
    };
    let lines = event(&mut st, whois);
    assert!(lines.iter().all(|l| l.len() + 2 <= MAX_LINE), "{lines:?}");
    let listed: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" 319 "))
        .flat_map(|l| l.split_once(" :").unwrap().1.split(' '))
        .collect();
    let want: Vec<String> = rooms.iter().map(|r| format!("#{r}")).collect();
    assert_eq!(listed, want);
    assert!(lines.iter().filter(|l| l.contains(" 319 ")).count() > 10);
}

#[test]
fn a_kick_says_the_reason_once_and_a_ban_that_it_is_one() {
    let cases = [
        ("kicked by boss: spam", "boss", "spam"),
        ("kicked by boss", "boss", "kicked"),
        (
            "banned by boss until 2026-11-27T10:00:00Z (flooding)",
            "boss",
            "banned until 2026-11-27T10:00:00Z (flooding)",
        ),
        ("banned by boss permanently", "boss", "banned permanently"),
    ];
    for (reason, by, text) in cases {
        assert_eq!(expelled_by(reason), Some(by), "{reason}");
        assert_eq!(kick_text(reason), text, "{reason}");
    }
}
