//! The other side is the real full-screen `chat-client`, itself in a tmux of its own: an
//! administrator, `boss`, chats with an IRC user and then kicks them, each step read on both
//! screens.

use std::time::{Duration, Instant};

use chatroom::store::users::Role;

use super::{Chat, Door, Irc, IrcClient, SCREEN_TIMEOUT, Tmux};
use crate::support::csv_rows;

const BOSS_PASSWORD: &str = "b0ss-passw0rd";

/// `chat-client NAME` in full screen, logged in with `password` (`CHAT_PASSWORD`, as the
/// client's help recommends), waiting until it shows itself connected in the lobby.
fn chat_client(chat: &Chat, name: &str, password: &str) -> Tmux {
    let tmux = Tmux::start(&format!(
        "env CHAT_PASSWORD={password} LANG=C.UTF-8 {} --name {name} {}",
        env!("CARGO_BIN_EXE_chat-client"),
        chat.addr
    ));
    tmux.wait_line(&["│ ", name, " │ #lobby │ connected"]);
    tmux
}

/// Polls the server's `data.csv` until it has a row of `event` by `name` with `detail`.
fn wait_data_row(chat: &Chat, event: &str, name: &str, detail: &str) {
    let path = chat.dir.path().join("data.csv");
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let rows = csv_rows(&text);
        if rows
            .iter()
            .any(|r| (r[1].as_str(), r[6].as_str(), r[7].as_str()) == (event, name, detail))
        {
            return;
        }
        if Instant::now() > deadline {
            panic!("data.csv never had the row {event},{name},{detail}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The tour between an IRC client (alice) and `chat-client` (boss, an administrator):
/// messages and actions both ways in #lobby, direct messages both ways, WHOIS, a nick change,
/// and boss's `/kick`, seen on both screens and in `data.csv`.
fn chat_with_chat_client_and_get_kicked(kind: Irc) {
    let chat = Chat::start(&[("boss", BOSS_PASSWORD, Role::Admin)], false);
    let boss = chat_client(&chat, "boss", BOSS_PASSWORD);
    // A second room, for WHOIS to show; then back to the lobby, where boss talks.
    boss.line("/join ops");
    boss.wait_line(&["│ boss │ #ops │ connected"]);
    boss.line("/switch lobby");
    boss.wait_line(&["│ boss │ #lobby │ connected"]);

    let alice = IrcClient::connect(kind, "alice", chat.irc, Door::Plain(None));
    boss.wait_line(&["-- alice joined"]);
    // Joined already: /join shows its window.
    alice.line("/join #lobby");

    // Messages, both ways.
    boss.line("hello from the terminal");
    alice.wait_line(&["boss", "hello from the terminal"]);
    alice.line("hello from irc");
    boss.wait_line(&["alice: hello from irc"]);

    // Actions, both ways.
    boss.line("/me waves at irc");
    alice.wait_line(&["*", "boss", "waves at irc"]);
    alice.line("/me waves at the terminal");
    boss.wait_line(&["* alice waves at the terminal"]);

    alice.whois("boss", &["#lobby #ops"], "#lobby");

    // Direct messages, both ways: boss's /msg opens a pane for alice, which shows her answer.
    boss.line("/msg alice psst from the terminal");
    boss.wait_line(&["│ boss │ @alice │ connected"]);
    alice.line("/query boss");
    alice.wait_line(&["boss", "psst from the terminal"]);
    alice.line("psst from irc");
    boss.wait_line(&["alice: psst from irc"]);
    alice.show("#lobby");

    alice.line("/nick alicia");
    alice.wait_line(&["now known as alicia"]);
    // boss's direct pane follows the new name; the lobby tells of it.
    boss.wait_line(&["@alicia"]);
    boss.line("/switch lobby");
    boss.wait_line(&["-- alice is now known as alicia"]);

    boss.line("/kick alicia spam");
    boss.wait_line(&["-- alicia was kicked by boss: spam"]);
    boss.wait_line(&["-- alicia left (kicked by boss: spam)"]);
    // The KICK in the channel's window, with the reason; then the server closes the link, as
    // the server window says.
    alice.wait_line(match kind {
        Irc::Irssi => &["alicia was kicked from #lobby by boss", "spam"],
        Irc::Weechat => &["boss has kicked alicia", "spam"],
    });
    alice.show("1");
    alice.wait_line(&["Closing Link: you were kicked by boss: spam"]);
    wait_data_row(&chat, "kick", "boss", "alicia: spam");
}

#[test]
fn irssi_and_chat_client_chat_and_an_admin_kicks() {
    chat_with_chat_client_and_get_kicked(Irc::Irssi);
}

#[test]
fn weechat_and_chat_client_chat_and_an_admin_kicks() {
    chat_with_chat_client_and_get_kicked(Irc::Weechat);
}
