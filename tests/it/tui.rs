//! The full-screen `chat-client` in a real terminal: tmux runs the binary against a real
//! server, `send-keys` types, `capture-pane -p` reads the screen. Each test has its own tmux
//! server (`-L`), killed when the test ends, also on a panic.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Client, start_in, start_in_on, start_server};

/// How long the screen may take to show what a test waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A tmux server of its own running one `chat-client`; killed on drop.
struct Tmux {
    socket: String,
    /// The socket's file, which `kill-server` leaves behind: removed on drop.
    path: String,
}

impl Tmux {
    /// Starts `chat-client ARGS` in a 100x30 terminal.
    fn start(args: &str) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "chatroom-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut tmux = Tmux {
            socket,
            path: String::new(),
        };
        // When the client exits, its status stays on screen for the failure message.
        let command = format!(
            "{} {args}; echo \"chat-client exited: $?\"; read _",
            env!("CARGO_BIN_EXE_chat-client")
        );
        tmux.run(&["new-session", "-d", "-x", "100", "-y", "30", &command]);
        tmux.path = tmux
            .run(&["display-message", "-p", "#{socket_path}"])
            .trim()
            .to_string();
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text as it is (no key names).
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
    }

    /// Presses keys by tmux's names (`Enter`, `Tab`, `M-1`, `C-c`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Pastes `text` as a terminal does (bracketed, since the client asks for it).
    fn paste(&self, text: &str) {
        self.run(&["set-buffer", "--", text]);
        self.run(&["paste-buffer", "-p", "-d"]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// Polls the screen until `ready` holds; fails with the screen after the deadline.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        if !self.path.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The last non-empty line: the input.
fn input_line(screen: &str) -> &str {
    screen.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

/// The status line: the one above the input.
fn status_line(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let input = lines
        .iter()
        .rposition(|l| l.starts_with('>'))
        .unwrap_or_else(|| panic!("no input line:\n{screen}"));
    lines[input - 1].to_string()
}

/// The next message `client` receives from `from`.
fn message_from(client: &mut Client, from: &str) -> Value {
    loop {
        let m = client.next_of("message");
        if m["from"] == from {
            return m;
        }
    }
}

fn connected_alice(addr: std::net::SocketAddr) -> Tmux {
    let tmux = Tmux::start(&format!("--name alice {addr}"));
    tmux.wait_for("alice connected", |s| {
        s.contains("│ alice │ #lobby │ connected")
    });
    tmux
}

#[test]
fn a_half_typed_line_survives_an_incoming_message_and_is_sent_whole() {
    let server = start_server();
    let tmux = connected_alice(server.addr);
    let mut bob = Client::json(server.addr, "bob");
    tmux.type_text("half of a");
    tmux.wait_for("the typed text", |s| input_line(s) == "> half of a");
    bob.send_json(json!({"type":"say","text":"interrupting you"}));
    let screen = tmux.wait_text("bob: interrupting you");
    assert_eq!(input_line(&screen), "> half of a", "{screen}");
    tmux.type_text(" sentence");
    tmux.keys(&["Enter"]);
    assert_eq!(
        message_from(&mut bob, "alice")["text"],
        "half of a sentence"
    );
    let screen = tmux.wait_text("alice: half of a sentence");
    assert_eq!(input_line(&screen), ">", "{screen}");
}

#[test]
fn a_multi_line_paste_is_one_message() {
    let server = start_server();
    let tmux = connected_alice(server.addr);
    let mut bob = Client::json(server.addr, "bob");
    tmux.paste("first line\nsecond line");
    tmux.wait_for("both lines in the input", |s| {
        s.contains("> first line") && s.contains("  second line")
    });
    tmux.keys(&["M-Enter"]);
    tmux.type_text("third");
    tmux.keys(&["Enter"]);
    assert_eq!(
        message_from(&mut bob, "alice")["text"],
        "first line\nsecond line\nthird"
    );
}

#[test]
fn tab_completes_a_name_and_a_command() {
    let server = start_server();
    let mut bob = Client::json(server.addr, "bobby");
    let tmux = connected_alice(server.addr);
    tmux.wait_text("bobby");
    tmux.type_text("bo");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the name completed", |s| input_line(s) == "> bobby:");
    tmux.type_text("hello");
    tmux.keys(&["Enter"]);
    assert_eq!(message_from(&mut bob, "alice")["text"], "bobby: hello");
    tmux.type_text("/whoi");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the command completed", |s| input_line(s) == "> /whois");
}

#[test]
fn rooms_switch_and_count_unread_messages() {
    let server = start_server();
    let tmux = connected_alice(server.addr);
    let mut bob = Client::json(server.addr, "bob");
    tmux.type_text("/join ops");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#ops shown", |s| status_line(s).contains("│ #ops │"));
    bob.send_json(json!({"type":"say","text":"in the lobby"}));
    tmux.wait_text("1 #lobby 1");
    tmux.keys(&["M-1"]);
    let screen = tmux.wait_for("#lobby shown", |s| status_line(s).contains("│ #lobby │"));
    assert!(screen.contains("bob: in the lobby"), "{screen}");
    // Plain lines go to the room shown.
    tmux.type_text("back here");
    tmux.keys(&["Enter"]);
    let m = message_from(&mut bob, "alice");
    assert_eq!(
        (m["room"].as_str(), m["text"].as_str()),
        (Some("lobby"), Some("back here"))
    );
    tmux.type_text("/switch ops");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#ops shown again", |s| status_line(s).contains("│ #ops │"));
}

#[test]
fn a_server_restart_reconnects_rejoins_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_in(dir.path(), |_| {});
    let addr = server.addr;
    let tmux = connected_alice(addr);
    let mut bob = Client::json(addr, "bob");
    tmux.type_text("/join ops");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#ops shown", |s| status_line(s).contains("│ #ops │"));
    tmux.keys(&["M-1"]);
    tmux.wait_for("#lobby shown", |s| status_line(s).contains("│ #lobby │"));
    bob.send_json(json!({"type":"say","text":"before the restart"}));
    tmux.wait_text("bob: before the restart");

    drop(bob);
    server.stop();
    tmux.wait_text("reconnecting");
    let _server = start_in_on(dir.path(), addr, |_| {});
    tmux.wait_text("-- reconnected");
    let screen = tmux.wait_for("connected again", |s| {
        status_line(s).contains("│ #lobby │ connected")
    });
    assert!(screen.contains("2 #ops"), "{screen}");

    let mut carol = Client::json(addr, "carol");
    carol.send_json(json!({"type":"say","text":"after the restart"}));
    let screen = tmux.wait_text("carol: after the restart");
    assert_eq!(
        screen.matches("bob: before the restart").count(),
        1,
        "the lobby's history repeated a message:\n{screen}"
    );
    // The rejoined room works: a line typed there reaches it.
    tmux.keys(&["M-2"]);
    tmux.wait_for("#ops shown", |s| status_line(s).contains("│ #ops │"));
    carol.send_json(json!({"type":"join","room":"ops"}));
    tmux.wait_text("carol joined");
    tmux.type_text("still here");
    tmux.keys(&["Enter"]);
    let m = message_from(&mut carol, "alice");
    assert_eq!(
        (m["room"].as_str(), m["text"].as_str()),
        (Some("ops"), Some("still here"))
    );
}

#[test]
fn ctrl_c_leaves_and_gives_the_terminal_back() {
    let server = start_server();
    let tmux = connected_alice(server.addr);
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_text("chat-client exited: 0");
    // The alternate screen is gone: the shell's screen shows no trace of the interface.
    assert!(!screen.contains("│ alice │"), "{screen}");
}

/// A terminal that goes away (its window closed, tmux killed) ends the client: it leaves the
/// server instead of spinning on a terminal that reads as end of file for ever.
#[test]
fn a_closed_terminal_ends_the_client() {
    let server = start_server();
    let mut observer = Client::json(server.addr, "observer");
    let tmux = connected_alice(server.addr);
    observer.until(r#""name":"alice""#);
    let _ = Command::new("tmux")
        .args(["-L", &tmux.socket, "kill-server"])
        .output();
    loop {
        let left = observer.next_of("left");
        if left["name"] == "alice" {
            break;
        }
    }
}
