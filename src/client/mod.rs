//! `chat-client`'s logic: the JSON-mode handshake, turning typed lines into requests, and
//! rendering server events as coloured, escape-safe lines.
//!
//! Written over `BufRead`/`Write` plus a `TcpStream`, so tests drive it with byte buffers.
//! The main thread reads the socket and renders; a second thread reads the user's input and
//! writes requests. When the server closes, the main thread returns at once, whatever the
//! input thread is blocked on.

use std::hash::{Hash, Hasher};
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use chrono::{DateTime, Local};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::proto::{ErrorCode, Kind, ServerMsg, printable};
use crate::tls::Transport;

/// How the client looks and behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The name to ask for; when absent, the first input line is the name.
    pub name: Option<String>,
    /// ANSI colours in the output.
    pub color: bool,
    /// Input comes from a person at a terminal: prompt, and ask again after a refused name.
    pub interactive: bool,
    /// The password for a registered name (otherwise asked for when the server wants one).
    pub password: Option<String>,
    /// Input and output are one terminal: erase each typed line once sent, since the server's
    /// echo shows it again with its timestamp.
    pub erase_typed: bool,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// We asked to leave (`/quit` or end of input) and the server closed.
    Quit,
    /// The server closed the connection; the text says why, as far as we know.
    ServerClosed(String),
}

/// The port a server address without one gets (the server's default `--bind`).
pub const DEFAULT_PORT: u16 = 5555;

/// A server address as the user typed it, with [`DEFAULT_PORT`] added when it has no port:
/// `localhost` becomes `localhost:5555`, `::1` and `[::1]` become `[::1]:5555`;
/// `host:port` and `[v6]:port` stay as they are. Host names are resolved when connecting.
pub fn server_address(addr: &str) -> String {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_string();
    }
    // A bare IPv6 address: its colons are not a port.
    if let Ok(std::net::IpAddr::V6(ip)) = addr.parse() {
        return format!("[{ip}]:{DEFAULT_PORT}");
    }
    if let Some(inner) = addr.strip_prefix('[')
        && let Some(rest) = inner.split_once(']').map(|(_, rest)| rest)
    {
        return if rest.is_empty() {
            format!("{addr}:{DEFAULT_PORT}")
        } else {
            addr.to_string()
        };
    }
    match addr.rsplit_once(':') {
        Some(_) => addr.to_string(),
        None => format!("{addr}:{DEFAULT_PORT}"),
    }
}

/// Runs one session on `transport` (plain TCP or TLS): handshake, then chat until either side
/// ends it.
pub fn run<I, O>(
    transport: Arc<Transport>,
    mut input: I,
    out: &mut O,
    opts: &Options,
) -> Result<Ending>
where
    I: BufRead + Send + 'static,
    O: Write,
{
    let mut reader = BufReader::new(&*transport);
    let mut writer: &Transport = &transport;
    let style = Style { color: opts.color };
    let mut name = opts.name.clone();
    let me = loop {
        let wanted = match name.take() {
            Some(n) => n,
            None => {
                if opts.interactive {
                    write!(out, "name: ")
                        .and_then(|()| out.flush())
                        .map_err(out_err)?;
                }
                match read_input_line(&mut input)? {
                    Some(line) => line.trim().to_string(),
                    None => return Ok(Ending::Quit),
                }
            }
        };
        send(&mut writer, &json!({"type": "hello", "name": wanted}))?;
        let mut answer = await_welcome(&mut reader)?;
        if matches!(&answer, Err((ErrorCode::PasswordRequired, _))) {
            // A registered name (or a private server): log in.
            let password = match &opts.password {
                Some(p) => p.clone(),
                None if opts.interactive => {
                    rpassword::prompt_password(format!("password for {wanted}: "))
                        .map_err(|e| Error::io("cannot read the password", e))?
                }
                None => match read_input_line(&mut input)? {
                    Some(line) => line,
                    None => return Ok(Ending::Quit),
                },
            };
            send(
                &mut writer,
                &json!({"type": "hello", "name": wanted, "password": password}),
            )?;
            answer = await_welcome(&mut reader)?;
        }
        match answer.map_err(|(_, message)| message) {
            Ok(granted) => {
                writeln!(
                    out,
                    "{}",
                    style.system(&format!(
                        "connected as {granted}; /help lists the commands, /quit leaves"
                    ))
                )
                .map_err(out_err)?;
                break granted;
            }
            Err(refusal) => {
                writeln!(out, "{}", style.error(&refusal)).map_err(out_err)?;
                if !opts.interactive && opts.name.is_some() {
                    return Err(Error::peer(format!(
                        "the server refused the name: {refusal}"
                    )));
                }
            }
        }
    };

    let input_side = transport.clone();
    let quit_sent = Arc::new(AtomicBool::new(false));
    let erase = opts.erase_typed;
    let quit_flag = quit_sent.clone();
    thread::Builder::new()
        .name("input".into())
        .spawn(move || forward_input(&mut input, &mut &*input_side, &quit_flag, erase))
        .map_err(|e| Error::io("cannot start the input thread", e))?;

    let mut last_notice = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if crate::error::is_hangup(&e) => break,
            Err(e) => return Err(Error::io("cannot read from the server", e)),
        }
        // An event this version does not know (a newer server's) is skipped.
        let Ok(event) = serde_json::from_str::<ServerMsg>(&line) else {
            continue;
        };
        match &event {
            ServerMsg::Ping { id } => {
                // The server checks we are alive; the input thread may be writing too, but
                // each of our writes is one whole line, which TCP keeps whole.
                let _ = send(&mut writer, &json!({"type": "pong", "id": id}));
                continue;
            }
            ServerMsg::Bye { reason, .. } => last_notice = reason.clone(),
            _ => {}
        }
        if let Some(rendered) = render(&event, &me, &style) {
            out.write_all(rendered.as_bytes()).map_err(out_err)?;
            out.flush().map_err(out_err)?;
        }
    }
    let _ = transport.socket().shutdown(Shutdown::Both);
    if quit_sent.load(Ordering::SeqCst) {
        Ok(Ending::Quit)
    } else if last_notice.is_empty() {
        Ok(Ending::ServerClosed("the connection was closed".into()))
    } else {
        Ok(Ending::ServerClosed(last_notice))
    }
}

/// Reads lines the user types and sends them as requests; at end of input, asks to quit.
fn forward_input<I: BufRead>(
    input: &mut I,
    socket: &mut &Transport,
    quit_sent: &AtomicBool,
    erase_typed: bool,
) {
    loop {
        let request = match read_input_line(input) {
            Ok(Some(line)) => match request_for(&line) {
                Some(request) => {
                    if erase_typed && request["type"] == "say" {
                        // Cursor up one line, clear it: the echo will show the message.
                        let mut out = io::stdout().lock();
                        let _ = out.write_all(b"\x1b[1A\x1b[2K").and_then(|()| out.flush());
                    }
                    request
                }
                None => continue,
            },
            Ok(None) | Err(_) => json!({"type": "quit"}),
        };
        let quit = request["type"] == "quit";
        if quit {
            quit_sent.store(true, Ordering::SeqCst);
        }
        if send(socket, &request).is_err() || quit {
            return;
        }
    }
}

/// The JSON request for one typed line, or `None` for a blank line.
pub fn request_for(line: &str) -> Option<Value> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Some(json!({"type": "say", "text": format!("/{rest}")}));
    }
    if line.starts_with('/') {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or_default().to_ascii_lowercase();
        if cmd == "/quit" || cmd == "/exit" {
            let reason: Vec<&str> = words.collect();
            return Some(if reason.is_empty() {
                json!({"type": "quit"})
            } else {
                json!({"type": "quit", "reason": reason.join(" ")})
            });
        }
        return Some(json!({"type": "command", "line": line}));
    }
    Some(json!({"type": "say", "text": line}))
}

fn read_input_line<I: BufRead>(input: &mut I) -> Result<Option<String>> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(line.trim_end_matches(['\r', '\n']).to_string())),
        Err(e) => Err(Error::io("cannot read input", e)),
    }
}

/// Reads until the server answers our `hello`: `Ok(name)` when welcomed, `Err((code, reason))`
/// when refused. Lines that are not JSON (the human greeting) are skipped.
fn await_welcome(
    reader: &mut impl BufRead,
) -> Result<std::result::Result<String, (ErrorCode, String)>> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io("cannot read from the server", e))?;
        if n == 0 {
            return Err(Error::io(
                "the server closed the connection during the handshake",
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        match serde_json::from_str::<ServerMsg>(&line) {
            Ok(ServerMsg::Welcome { name, .. }) => return Ok(Ok(name)),
            Ok(ServerMsg::Error { code, message, .. }) => return Ok(Err((code, message))),
            _ => {}
        }
    }
}

fn send(socket: &mut &Transport, request: &Value) -> Result<()> {
    let mut bytes = serde_json::to_vec(request).expect("json values serialize");
    bytes.push(b'\n');
    socket
        .write_all(&bytes)
        .map_err(|e| Error::io("cannot send to the server", e))
}

fn out_err(e: io::Error) -> Error {
    Error::io("cannot write output", e)
}

/// Renders one server event as terminal lines, or `None` for events with nothing to show.
pub fn render(event: &ServerMsg, me: &str, style: &Style) -> Option<String> {
    let text = match event {
        ServerMsg::Message(m) => {
            let from = printable(&m.from);
            let room = printable(&m.room);
            let to = printable(m.to.as_deref().unwrap_or_default());
            let when = if m.history {
                local_date_clock(&m.ts)
            } else {
                local_clock(&m.ts)
            };
            let name = style.sender(&from, from == me);
            let (head, sep, visible_head) = match m.kind {
                Kind::Direct => (
                    format!("{name} -> {to}"),
                    ": ",
                    format!("{from} -> {to}").chars().count(),
                ),
                Kind::Action => (
                    format!("#{room} * {name}"),
                    " ",
                    room.chars().count() + from.chars().count() + 4,
                ),
                Kind::Message => (
                    format!("#{room} {name}"),
                    ": ",
                    room.chars().count() + from.chars().count() + 2,
                ),
            };
            let prefix = format!("[{when}] ");
            let indent = " ".repeat(prefix.chars().count() + visible_head + sep.len());
            let body = m
                .text
                .split('\n')
                .map(printable)
                .collect::<Vec<_>>()
                .join(&format!("\n{indent}"));
            format!("{}{head}{sep}{body}", style.dim(&prefix))
        }
        ServerMsg::HistoryEnd { room, count } => style.system(&format!(
            "end of history of #{} ({})",
            printable(room),
            crate::proto::count(*count, "message", "messages")
        )),
        ServerMsg::Rooms { rooms, .. } => {
            let rooms: Vec<String> = rooms
                .iter()
                .map(|r| format!("#{} ({})", printable(&r.name), r.members))
                .collect();
            style.system(&format!(
                "{}: {}",
                crate::proto::count(rooms.len(), "room", "rooms"),
                rooms.join(", ")
            ))
        }
        ServerMsg::Switched { room } => {
            style.system(&format!("your messages now go to #{}", printable(room)))
        }
        ServerMsg::Nick { ts, old, new } => style.system(&format!(
            "[{}] {} is now known as {}",
            local_clock(ts),
            printable(old),
            printable(new)
        )),
        ServerMsg::Presence { ts, name, away } => {
            let what = match away.as_deref() {
                Some("") => "is away".to_string(),
                Some(r) => format!("is away: {}", printable(r)),
                None => "is back".to_string(),
            };
            style.system(&format!("[{}] {} {what}", local_clock(ts), printable(name)))
        }
        ServerMsg::Whois {
            name,
            rooms,
            away,
            connected,
        } => {
            let rooms: Vec<String> = rooms.iter().map(|r| format!("#{}", printable(r))).collect();
            let away = match away.as_deref() {
                Some("") => "; away".to_string(),
                Some(r) => format!("; away: {}", printable(r)),
                None => String::new(),
            };
            style.system(&format!(
                "{}: in {}; connected since {}{away}",
                printable(name),
                if rooms.is_empty() {
                    "no room".to_string()
                } else {
                    rooms.join(", ")
                },
                local_date_clock(connected)
            ))
        }
        ServerMsg::Joined { ts, room, name } => style.system(&format!(
            "[{}] {} joined #{}",
            local_clock(ts),
            printable(name),
            printable(room)
        )),
        ServerMsg::Left {
            ts,
            room,
            name,
            reason,
        } => style.system(&format!(
            "[{}] {} left #{} ({})",
            local_clock(ts),
            printable(name),
            printable(room),
            printable(reason)
        )),
        ServerMsg::Users { room, users, .. } => {
            let users: Vec<String> = users.iter().map(|u| printable(u)).collect();
            style.system(&format!(
                "{} in {}: {}",
                users.len(),
                printable(room),
                users.join(", ")
            ))
        }
        ServerMsg::Help { commands } => {
            let mut lines = vec![style.system("commands:")];
            for c in commands {
                let usage = printable(&c.usage);
                let desc = printable(&c.description);
                lines.push(style.system(&format!("  {usage:<16} {desc}")));
            }
            lines.join("\n")
        }
        ServerMsg::System { ts, text } => {
            style.system(&format!("[{}] {}", local_clock(ts), printable(text)))
        }
        ServerMsg::Bye { ts, reason } => style.system(&format!(
            "[{}] disconnected: {}",
            local_clock(ts),
            printable(reason)
        )),
        ServerMsg::Error { message, .. } => style.error(&printable(message)),
        ServerMsg::Pong { .. } => style.system("pong"),
        ServerMsg::Welcome { .. } | ServerMsg::Ping { .. } => return None,
    };
    Some(text + "\n")
}

/// `YYYY-MM-DD HH:MM` in local time, for history (which may be from another day).
fn local_date_clock(ts: &str) -> String {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| "----------".to_string())
}

/// `HH:MM:SS` in local time, from an RFC 3339 timestamp.
fn local_clock(ts: &str) -> String {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&Local).format("%H:%M:%S").to_string())
        .unwrap_or_else(|_| "--:--:--".to_string())
}

/// Terminal styling; every method returns plain text when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A sender's name in its own stable colour; our own name in bold.
    pub fn sender(&self, name: &str, is_me: bool) -> String {
        const PALETTE: [&str; 6] = ["31", "32", "33", "34", "35", "36"];
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.to_lowercase().hash(&mut h);
        let colour = PALETTE[(h.finish() % PALETTE.len() as u64) as usize];
        if is_me {
            self.paint(&format!("1;{colour}"), name)
        } else {
            self.paint(colour, name)
        }
    }

    pub fn system(&self, text: &str) -> String {
        self.paint("2", &format!("* {text}"))
    }

    pub fn error(&self, text: &str) -> String {
        self.paint("1;31", &format!("! {text}"))
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_address_without_a_port_gets_the_default_one() {
        for (typed, meant) in [
            ("localhost", "localhost:5555"),
            ("chat.example.org", "chat.example.org:5555"),
            ("localhost:6000", "localhost:6000"),
            ("127.0.0.1", "127.0.0.1:5555"),
            ("127.0.0.1:6000", "127.0.0.1:6000"),
            ("::1", "[::1]:5555"),
            ("[::1]", "[::1]:5555"),
            ("[::1]:6000", "[::1]:6000"),
        ] {
            assert_eq!(server_address(typed), meant, "{typed}");
        }
    }

    #[test]
    fn typed_lines_become_requests() {
        assert_eq!(
            request_for("hi, all"),
            Some(json!({"type":"say","text":"hi, all"}))
        );
        assert_eq!(request_for("  "), None);
        assert_eq!(request_for("/quit"), Some(json!({"type":"quit"})));
        assert_eq!(
            request_for("/quit bye now"),
            Some(json!({"type":"quit","reason":"bye now"}))
        );
        assert_eq!(
            request_for("/who"),
            Some(json!({"type":"command","line":"/who"}))
        );
        assert_eq!(
            request_for("//slash"),
            Some(json!({"type":"say","text":"/slash"}))
        );
    }

    fn typed(v: serde_json::Value) -> ServerMsg {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn events_a_newer_server_may_send_are_skipped_not_fatal() {
        assert!(serde_json::from_str::<ServerMsg>(r#"{"type":"reaction","emoji":"+1"}"#).is_err());
        let err: ServerMsg =
            serde_json::from_str(r#"{"type":"error","code":"brand_new","message":"x"}"#).unwrap();
        assert!(matches!(
            err,
            ServerMsg::Error {
                code: ErrorCode::Other,
                ..
            }
        ));
    }

    #[test]
    fn rendering_is_escape_safe_and_plain_without_colour() {
        let style = Style { color: false };
        let ev = json!({"type":"message","id":1,"ts":"2026-11-23T16:04:05.123Z","room":"lobby",
                        "from":"mallory","kind":"message","text":"hi\u{1b}[2J\nsecond"});
        let out = render(&typed(ev), "me", &style).unwrap();
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("#lobby mallory: hi\\u{1b}[2J\n"), "{out:?}");
        let first = out.lines().next().unwrap();
        let indent = out.lines().nth(1).unwrap().len() - "second".len();
        assert_eq!(
            &first[indent..indent + 2],
            "hi",
            "continuation aligned: {out:?}"
        );
        let dm = json!({"type":"message","id":2,"ts":"2026-11-23T16:04:05.123Z",
                        "from":"bob","to":"me","kind":"direct","text":"psst"});
        assert!(
            render(&typed(dm), "me", &style)
                .unwrap()
                .ends_with("bob -> me: psst\n")
        );
        let me_action = json!({"type":"message","id":3,"ts":"2026-11-23T16:04:05.123Z","room":"ops",
                        "from":"bob","kind":"action","text":"waves"});
        assert!(
            render(&typed(me_action), "me", &style)
                .unwrap()
                .ends_with("#ops * bob waves\n")
        );
        let err = json!({"type":"error","code":"name_taken","message":"taken"});
        assert_eq!(render(&typed(err), "me", &style).unwrap(), "! taken\n");
    }

    #[test]
    fn colour_is_stable_per_sender() {
        let style = Style { color: true };
        assert_eq!(
            style.sender("Bob", false),
            style.sender("bob", false).replace("bob", "Bob")
        );
        assert!(style.sender("bob", true).starts_with("\x1b[1;"));
    }
}
