//! Real IRC clients against `chat-server --irc`: irssi and weechat run in tmux (a tmux server
//! of their own per test, killed when the test ends, also on a panic), each with a throwaway
//! home in a temp directory and no network beyond loopback; `send-keys` types, `capture-pane
//! -p` reads the screen. A JSON client is the other side of every exchange here; in `tui`,
//! the full-screen `chat-client` in a tmux of its own.

mod tui;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use chatroom::store::users::Role;

use crate::support::{Client, write_accounts};

/// How long the screen may take to show what a test waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A `chat-server` process with an IRC port; killed on drop.
struct Chat {
    child: Child,
    /// Kept open: the server's stdout stays a pipe with a reader.
    _stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    irc: SocketAddr,
    /// The TLS port (`--irc-tls`), when started with TLS.
    irc_tls: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

impl Chat {
    /// Starts the server with `--irc 127.0.0.1:0` and these accounts (name, password, role); with
    /// `tls`, also `--irc-tls` with a certificate of `chat-server gen-cert` (in `DIR/tls`),
    /// which makes the chat port TLS too.
    fn start(accounts: &[(&str, &str, Role)], tls: bool) -> Chat {
        let dir = tempfile::tempdir().expect("temp dir");
        // Private, as the server wants its data directory (else it warns, and fixes it).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        if !accounts.is_empty() {
            write_accounts(dir.path(), accounts);
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
        if tls {
            let ok = Command::new(env!("CARGO_BIN_EXE_chat-server"))
                .args(["gen-cert", "--out"])
                .arg(dir.path().join("tls"))
                .stdout(Stdio::null())
                .status()
                .expect("gen-cert runs")
                .success();
            assert!(ok, "gen-cert failed");
            command
                .args(["--irc-tls", "127.0.0.1:0", "--tls-cert"])
                .arg(dir.path().join("tls/cert.pem"))
                .arg("--tls-key")
                .arg(dir.path().join("tls/key.pem"));
        }
        let mut child = command
            .args([
                "--bind",
                "127.0.0.1:0",
                "--irc",
                "127.0.0.1:0",
                "--msg-rate",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn chat-server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut addr, mut irc, mut irc_tls) = (None, None, None);
        while irc.is_none() || (tls && irc_tls.is_none()) {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("server output");
            assert!(!line.is_empty(), "chat-server ended before `irc on ADDR`");
            let line = line.trim();
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.parse().expect("chat address"));
            } else if let Some(a) = line.strip_prefix("irc on ") {
                irc = Some(a.parse().expect("irc address"));
            } else if let Some(a) = line.strip_prefix("irc-tls on ") {
                irc_tls = Some(a.parse().expect("irc-tls address"));
            }
        }
        Chat {
            child,
            _stdout: stdout,
            addr: addr.expect("`listening on ADDR` before `irc on ADDR`"),
            irc: irc.unwrap(),
            irc_tls,
            dir,
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmux server of its own running one program; killed on drop.
struct Tmux {
    socket: String,
    /// The socket's file, which `kill-server` leaves behind: removed on drop.
    path: String,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a 150x40 terminal.
    fn start(command: &str) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "chatroom-irc-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut tmux = Tmux {
            socket,
            path: String::new(),
        };
        // When the client exits, its status stays on screen for the failure message.
        let command = format!("{command}; echo \"client exited: $?\"; read _");
        tmux.run(&["new-session", "-d", "-x", "150", "-y", "40", &command]);
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

    /// Types a line as it is, then Enter.
    fn line(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
        self.run(&["send-keys", "Enter"]);
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

    /// Waits for a line of the screen that holds each of `parts`, in this order.
    fn wait_line(&self, parts: &[&str]) -> String {
        self.wait_for(&format!("a line with {parts:?}"), |s| {
            s.lines().any(|l| in_order(l, parts))
        })
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

/// Whether `line` holds each of `parts`, in this order.
fn in_order(line: &str, parts: &[&str]) -> bool {
    let mut rest = line;
    parts.iter().all(|p| match rest.find(p) {
        Some(at) => {
            rest = &rest[at + p.len()..];
            true
        }
        None => false,
    })
}

/// How a client reaches the server.
enum Door<'a> {
    /// The plain port, with a server password (PASS) or none.
    Plain(Option<&'a str>),
    /// The TLS port, trusting `ca`, logging in with SASL PLAIN (name, password).
    Tls {
        ca: &'a Path,
        sasl: (&'a str, &'a str),
    },
}

/// The IRC clients under test.
#[derive(Clone, Copy, Debug)]
enum Irc {
    Irssi,
    Weechat,
}

/// One IRC client in its terminal, with its home directory.
struct IrcClient {
    kind: Irc,
    tmux: Tmux,
    _home: tempfile::TempDir,
}

impl IrcClient {
    /// Starts the client on its own, connected to nothing: `setup` are the commands that
    /// connect it, typed as a user would.
    fn start(kind: Irc, nick: &str) -> IrcClient {
        let home = tempfile::tempdir().expect("temp dir");
        let h = home.path().display();
        // HOME too: nothing is read from or written to the real one.
        let env = format!("env HOME={h} LANG=C.UTF-8 LC_ALL=C.UTF-8");
        let command = match kind {
            Irc::Irssi => {
                write_irssi_config(home.path(), nick);
                format!("{env} irssi --home={h}/irssi --noconnect")
            }
            // Only the IRC plugin, no scripts, no autoconnect; no flood delay between lines (one
            // option since 4.2, two before: the unknown ones are refused), no paste confirmation,
            // whois replies in the buffer in use, no switch to a channel the client did not ask
            // to join (the lobby; 4.0 no longer switches anyway).
            Irc::Weechat => format!(
                "{env} weechat --dir {h}/weechat -a -s -P irc -r '/set irc.server_default.nicks \
                 {nick};/set irc.server_default.anti_flood 0;\
                 /set irc.server_default.anti_flood_prio_high 0;\
                 /set irc.server_default.anti_flood_prio_low 0;\
                 /set weechat.look.paste_max_lines -1;/set irc.msgbuffer.whois current;\
                 /set irc.look.buffer_switch_autojoin off'"
            ),
        };
        let tmux = Tmux::start(&command);
        let client = IrcClient {
            kind,
            tmux,
            _home: home,
        };
        match kind {
            Irc::Irssi => client.tmux.wait_line(&["Irssi v"]),
            Irc::Weechat => client.tmux.wait_line(&["https://weechat.org"]),
        };
        client
    }

    /// Starts the client connected to `irc` as `nick`, with the documented commands.
    fn connect(kind: Irc, nick: &str, irc: SocketAddr, door: Door) -> IrcClient {
        let client = IrcClient::start(kind, nick);
        for command in setup(kind, irc, door) {
            client.tmux.line(&command);
        }
        // Both stay in their server window, the lobby they are put in opens in another.
        client.wait_line(&["Welcome to the chatroom IRC network", nick]);
        client
    }

    fn line(&self, text: &str) {
        self.tmux.line(text);
    }

    fn wait_line(&self, parts: &[&str]) -> String {
        self.tmux.wait_line(parts)
    }

    /// Shows a window (irssi) or buffer (weechat): its number, a `#channel` or a nick.
    fn show(&self, window: &str) {
        self.line(&match self.kind {
            Irc::Irssi => format!("/window goto {window}"),
            Irc::Weechat => format!("/buffer {window}"),
        });
    }

    /// Asks for `nick`'s WHOIS and waits for a line with `parts`: irssi tells it in its
    /// status window (shown for it, then `back` again), weechat (as set up) in the buffer in
    /// use.
    fn whois(&self, nick: &str, parts: &[&str], back: &str) {
        self.line(&format!("/whois {nick}"));
        if let Irc::Irssi = self.kind {
            self.show("1");
        }
        self.wait_line(parts);
        if let Irc::Irssi = self.kind {
            self.show(back);
        }
    }
}

/// The commands that add and connect the server, as docs/IRC.md gives them.
fn setup(kind: Irc, irc: SocketAddr, door: Door) -> Vec<String> {
    let (host, port) = (irc.ip(), irc.port());
    // WeeChat 4 renamed its `ssl` options `tls` (and turned TLS on by default).
    let tls = || if weechat_3() { "ssl" } else { "tls" };
    let mut commands = match (kind, door) {
        (Irc::Irssi, Door::Plain(password)) => vec![
            "/network add chatroom".into(),
            format!(
                "/server add -network chatroom -notls {host} {port} {}",
                password.unwrap_or("")
            ),
        ],
        // irssi checks a certificate's DNS names only, not its IP addresses: `localhost`.
        (Irc::Irssi, Door::Tls { ca, sasl: (n, pw) }) => vec![
            format!(
                "/network add -sasl_mechanism PLAIN -sasl_username {n} -sasl_password {pw} \
                 chatroom"
            ),
            format!(
                "/server add -network chatroom -tls -tls_cafile {} localhost {port}",
                ca.display()
            ),
        ],
        (Irc::Weechat, Door::Plain(password)) => vec![format!(
            "/server add chatroom {host}/{port} -no{}{}",
            tls(),
            password
                .map(|p| format!(" -password={p}"))
                .unwrap_or_default()
        )],
        (Irc::Weechat, Door::Tls { ca, sasl: (n, pw) }) => vec![
            format!("/set weechat.network.gnutls_ca_user {}", ca.display()),
            format!(
                "/server add chatroom {host}/{port} -{} -sasl_mechanism=plain \
                 -sasl_username={n} -sasl_password={pw}",
                tls()
            ),
        ],
    };
    commands.push("/connect chatroom".into());
    commands
}

/// Whether the weechat installed is 3.x (Debian 12 has 3.8), whose options are named `ssl`.
fn weechat_3() -> bool {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let out = Command::new("weechat")
            .arg("--version")
            .output()
            .expect("weechat runs (scripts/test.sh installs it)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    version.starts_with("3.")
}

/// A minimal irssi config: the nick, no networks or servers of its own, and no flood delay
/// between lines.
fn write_irssi_config(home: &Path, nick: &str) {
    let dir = home.join("irssi");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "settings = {{\n  core = {{\n    real_name = \"{nick}\";\n    user_name = \"{nick}\";\n    \
         nick = \"{nick}\";\n  }};\n  \
         \"irc/core\" = {{ cmd_queue_speed = \"0\"; }};\n}};\n"
    );
    std::fs::write(dir.join("config"), config).unwrap();
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

/// The next event of type `kind` about `name` (its `name` or `old` field).
fn event_about(client: &mut Client, kind: &str, name: &str) -> Value {
    loop {
        let e = client.next_of(kind);
        if e["name"] == name || e["old"] == name {
            return e;
        }
    }
}

/// The whole tour with one IRC client: the lobby, a channel, messages, actions and direct
/// messages both ways, whois, a nick change and a quit, each seen on both sides.
fn chat_with_a_json_user(kind: Irc) {
    let chat = Chat::start(&[], false);
    let mut bob = Client::json(chat.addr, "bob");
    bob.send_json(json!({"type":"join","room":"ops"}));
    assert_eq!(bob.next_of("history_end")["room"], "ops");
    let alice = IrcClient::connect(kind, "alice", chat.irc, Door::Plain(None));
    // The lobby is joined for it: bob sees alice arrive there.
    assert_eq!(event_about(&mut bob, "joined", "alice")["room"], "lobby");
    // Joined already: /join shows its window.
    alice.line("/join #lobby");
    bob.send_json(json!({"type":"say","room":"lobby","text":"hello lobby"}));
    alice.wait_line(&["bob", "hello lobby"]);

    alice.line("/join #ops");
    assert_eq!(event_about(&mut bob, "joined", "alice")["room"], "ops");
    // The channel's names: bob is there.
    alice.wait_line(&["#ops", "2 nicks"]);

    // Messages, both ways.
    bob.send_json(json!({"type":"say","room":"ops","text":"hello from json"}));
    alice.wait_line(&["bob", "hello from json"]);
    alice.line("hello from irc");
    let m = message_from(&mut bob, "alice");
    assert_eq!(
        (&m["room"], &m["kind"], &m["text"]),
        (&json!("ops"), &json!("message"), &json!("hello from irc"))
    );

    // Actions, both ways (bob's current room is #ops since he joined it).
    bob.send_json(json!({"type":"me","text":"waves at irc"}));
    alice.wait_line(&["*", "bob", "waves at irc"]);
    alice.line("/me waves at json");
    let m = message_from(&mut bob, "alice");
    assert_eq!(
        (&m["room"], &m["kind"], &m["text"]),
        (&json!("ops"), &json!("action"), &json!("waves at json"))
    );

    alice.whois("bob", &["#lobby #ops"], "#ops");

    alice.line("/nick alicia");
    let e = event_about(&mut bob, "nick", "alice");
    assert_eq!(e["new"], "alicia");
    alice.wait_line(&["now known as alicia"]);

    // Direct messages, both ways.
    alice.line("/msg bob psst from irc");
    let m = message_from(&mut bob, "alicia");
    assert_eq!(
        (&m["kind"], &m["to"], &m["text"]),
        (&json!("direct"), &json!("bob"), &json!("psst from irc"))
    );
    bob.send_json(json!({"type":"msg","to":"alicia","text":"psst from json"}));
    // Both clients open a query for it; /query shows it (or waits there for it).
    alice.line("/query bob");
    alice.wait_line(&["bob", "psst from json"]);

    alice.line("/quit see you");
    let e = event_about(&mut bob, "left", "alicia");
    assert_eq!(e["reason"], "quit: see you");
    alice.wait_line(&["client exited: 0"]);
}

#[test]
fn irssi_chats_with_a_json_user() {
    chat_with_a_json_user(Irc::Irssi);
}

#[test]
fn weechat_chats_with_a_json_user() {
    chat_with_a_json_user(Irc::Weechat);
}

/// A registered name logs in with its password: the server password of both clients, as
/// docs/IRC.md configures it.
fn logs_in_with_a_password(kind: Irc) {
    let chat = Chat::start(&[("carol", "tr0ub4dor-pw", Role::Member)], false);
    let mut bob = Client::json(chat.addr, "bob");
    let door = Door::Plain(Some("tr0ub4dor-pw"));
    let carol = IrcClient::connect(kind, "carol", chat.irc, door);
    assert_eq!(event_about(&mut bob, "joined", "carol")["room"], "lobby");
    carol.wait_line(&["You are now logged in as carol"]);
}

#[test]
fn irssi_logs_in_with_a_password() {
    logs_in_with_a_password(Irc::Irssi);
}

#[test]
fn weechat_logs_in_with_a_password() {
    logs_in_with_a_password(Irc::Weechat);
}

/// The TLS port with SASL PLAIN, trusting the server's certificate, as docs/IRC.md
/// configures both clients.
fn logs_in_with_sasl_over_tls(kind: Irc) {
    let chat = Chat::start(&[("carol", "tr0ub4dor-pw", Role::Member)], true);
    let ca = chat.dir.path().join("tls/cert.pem");
    let door = Door::Tls {
        ca: &ca,
        sasl: ("carol", "tr0ub4dor-pw"),
    };
    let carol = IrcClient::connect(kind, "carol", chat.irc_tls.unwrap(), door);
    carol.line("/join #ops");
    carol.wait_line(&["carol", "has joined #ops"]);
    // Replies come in order: all that registration got is shown by now, in the server's
    // window.
    carol.show("1");
    let screen = carol.wait_line(&["You are now logged in as carol"]);
    assert!(screen.contains("SASL authentication succe"), "{screen}");
    // Nothing the client sent to register was refused (irssi sends NICK and USER after SASL).
    assert!(!screen.contains("You may not reregister"), "{screen}");
}

#[test]
fn irssi_logs_in_with_sasl_over_tls() {
    logs_in_with_sasl_over_tls(Irc::Irssi);
}

#[test]
fn weechat_logs_in_with_sasl_over_tls() {
    logs_in_with_sasl_over_tls(Irc::Weechat);
}
