//! One client session over the JSON mode, for any front end (the line mode, a full-screen UI):
//! the handshake, typed [`Request`]s encoded as JSON requests, and the server's events decoded
//! into [`ServerMsg`]s.
//!
//! The session answers the server's `ping` itself, so a front end only sees what it shows or
//! counts. Reading and writing are separate: [`Session::link`] is a cheap clone that sends
//! from any thread, [`Session::into_events`] moves the reading to a thread of its own.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::proto::{ErrorCode, Request, ServerMsg, Standing};
use crate::tls::Transport;

/// What the server said when it welcomed us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The connection id, as in `data.csv`.
    pub conn: u64,
    /// The name granted (an account's name as registered, whatever was typed).
    pub name: String,
    /// The room we start in.
    pub room: String,
    pub members: usize,
    pub role: Standing,
}

/// The server's answer to a `hello` it did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// The sending half: cheap to clone, usable from any thread. Each request is one whole line
/// written under a lock, so lines from two threads never interleave.
#[derive(Clone)]
pub struct Link {
    transport: Arc<Transport>,
    /// Serializes whole-line writes (the reader thread answers pings meanwhile).
    write: Arc<Mutex<()>>,
}

impl Link {
    /// Sends one request.
    pub fn send(&self, req: &Request) -> Result<()> {
        self.send_json(&request_json(req))
    }

    /// Sends a `/command` line as it was typed, for a command this version does not know (a
    /// newer server may).
    pub fn send_command_line(&self, line: &str) -> Result<()> {
        self.send_json(&json!({"type": "command", "line": line}))
    }

    /// Sends `ping` with an `id`: its `pong` comes after every answer to what was sent before.
    pub fn ping(&self, id: u64) -> Result<()> {
        self.send_json(&json!({"type": "ping", "id": id}))
    }

    fn send_json(&self, value: &Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(value).expect("json values serialize");
        bytes.push(b'\n');
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        (&*self.transport)
            .write_all(&bytes)
            .map_err(|e| wire_error("cannot send to the server", e))
    }

    /// Closes the connection both ways: a blocked reader returns at once.
    pub fn close(&self) {
        let _ = self.transport.socket().shutdown(Shutdown::Both);
    }
}

/// A connection to a chat server in JSON mode.
pub struct Session {
    link: Link,
    reader: BufReader<Wire>,
    /// Plain-text lines starting with `!` seen before the welcome: a refusal sent before the
    /// server knew our mode (a TLS port, a full server, a banned address).
    notices: Vec<String>,
}

impl Session {
    /// A session on an open transport (plain TCP or TLS), before the handshake.
    pub fn new(transport: Arc<Transport>) -> Session {
        Session {
            reader: BufReader::new(Wire(transport.clone())),
            link: Link {
                transport,
                write: Arc::new(Mutex::new(())),
            },
            notices: Vec::new(),
        }
    }

    /// Asks for `name` (with a password for an account). A refusal leaves the session open:
    /// another `hello` may follow on the same connection.
    pub fn hello(
        &mut self,
        name: &str,
        password: Option<&str>,
    ) -> Result<std::result::Result<Welcome, Refusal>> {
        let hello = match password {
            Some(pw) => json!({"type": "hello", "name": name, "password": pw}),
            None => json!({"type": "hello", "name": name}),
        };
        self.link.send_json(&hello)?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| wire_error("cannot read from the server", e))?;
            if n == 0 {
                return Err(match self.notices.last() {
                    Some(notice) => Error::peer(format!(
                        "the server closed the connection: {}",
                        crate::proto::printable(notice.trim_start_matches("! "))
                    )),
                    None => Error::peer(
                        "the server closed the connection during the handshake".to_string(),
                    ),
                });
            }
            match serde_json::from_str::<ServerMsg>(&line) {
                Ok(ServerMsg::Welcome {
                    conn,
                    name,
                    room,
                    members,
                    role,
                    ..
                }) => {
                    return Ok(Ok(Welcome {
                        conn,
                        name,
                        room,
                        members,
                        role,
                    }));
                }
                Ok(ServerMsg::Error { code, message, .. }) => {
                    return Ok(Err(Refusal { code, message }));
                }
                Ok(_) => {}
                Err(_) => {
                    let text = line.trim_end();
                    if text.starts_with("! ") {
                        self.notices.push(text.to_string());
                    }
                }
            }
        }
    }

    /// The sending half.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Sends one request.
    pub fn send(&self, req: &Request) -> Result<()> {
        self.link.send(req)
    }

    /// The next event, or `None` once the server has closed the connection. Pings are
    /// answered here; events this version does not know (a newer server's) are skipped.
    pub fn recv(&mut self) -> Result<Option<ServerMsg>> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if crate::error::is_hangup(&e) => return Ok(None),
                Err(e) => return Err(wire_error("cannot read from the server", e)),
            }
            match serde_json::from_str::<ServerMsg>(&line) {
                Ok(ServerMsg::Ping { id }) => {
                    // Failing to answer shows up as the connection closing.
                    let _ = self.link.send_json(&json!({"type": "pong", "id": id}));
                }
                Ok(event) => return Ok(Some(event)),
                Err(_) => {}
            }
        }
    }

    /// Moves the reading to a thread: every event arrives on the channel, in order; a read
    /// error arrives as the last item; the channel disconnects when the server has closed.
    pub fn into_events(mut self) -> Result<(Link, crossbeam_channel::Receiver<Result<ServerMsg>>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let link = self.link();
        thread::Builder::new()
            .name("server-events".into())
            .spawn(move || {
                loop {
                    match self.recv() {
                        Ok(Some(event)) => {
                            if tx.send(Ok(event)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::io("cannot start the reading thread", e))?;
        Ok((link, rx))
    }
}

/// The JSON request for a [`Request`]. Requests that JSON has no type of its own for
/// (moderation) travel as the command line they were parsed from.
pub fn request_json(req: &Request) -> Value {
    let command = |line: String| json!({"type": "command", "line": line});
    let with_reason = |cmd: &str, word: &str, reason: &str| {
        if reason.is_empty() {
            command(format!("{cmd} {word}"))
        } else {
            command(format!("{cmd} {word} {reason}"))
        }
    };
    let duration = |d: &Option<std::time::Duration>| {
        d.map(|d| format!(" {}s", d.as_secs())).unwrap_or_default()
    };
    match req {
        Request::Say(text) => json!({"type": "say", "text": text}),
        Request::SayIn { room, text } => json!({"type": "say", "room": room, "text": text}),
        Request::Me(text) => json!({"type": "me", "text": text}),
        Request::MeIn { room, text } => json!({"type": "me", "room": room, "text": text}),
        Request::Msg { to, text } => json!({"type": "msg", "to": to, "text": text}),
        Request::Reply(text) => json!({"type": "reply", "text": text}),
        Request::Join(room) => json!({"type": "join", "room": room}),
        Request::Leave(None) => json!({"type": "leave"}),
        Request::Leave(Some(room)) => json!({"type": "leave", "room": room}),
        Request::Rooms => json!({"type": "rooms"}),
        Request::Who(None) => json!({"type": "who"}),
        Request::Who(Some(room)) => json!({"type": "who", "room": room}),
        Request::Switch(room) => json!({"type": "switch", "room": room}),
        Request::Nick(name) => json!({"type": "nick", "name": name}),
        Request::Away(None) => json!({"type": "away"}),
        Request::Away(Some(reason)) => json!({"type": "away", "reason": reason}),
        Request::Back => json!({"type": "back"}),
        Request::Whois(name) => json!({"type": "whois", "name": name}),
        Request::History(None) => json!({"type": "history"}),
        Request::History(Some(n)) => json!({"type": "history", "n": n}),
        Request::Kick { name, reason } => with_reason("/kick", name, reason),
        Request::Ban {
            target,
            duration: d,
            reason,
            confirmed,
        } => {
            let mut line = format!("/ban {target}{}", duration(d));
            if !reason.is_empty() {
                line = format!("{line} {reason}");
            }
            if *confirmed {
                line.push_str(" --yes");
            }
            command(line)
        }
        Request::Unban(target) => command(format!("/unban {target}")),
        Request::Bans => command("/bans".into()),
        Request::Mute {
            name,
            duration: d,
            reason,
        } => with_reason("/mute", &format!("{name}{}", duration(d)), reason),
        Request::Unmute(name) => command(format!("/unmute {name}")),
        Request::Op(name) => command(format!("/op {name}")),
        Request::Deop(name) => command(format!("/deop {name}")),
        Request::Help => json!({"type": "help"}),
        Request::Ping(None) => json!({"type": "ping"}),
        Request::Ping(Some(id)) => json!({"type": "ping", "id": id}),
        Request::Pong => json!({"type": "pong"}),
        // A paste is collected by the client and sent as one `say`; alone it means nothing
        // in JSON, and the server says so.
        Request::Paste => command("/paste".into()),
        Request::Quit(None) => json!({"type": "quit"}),
        Request::Quit(Some(reason)) => json!({"type": "quit", "reason": reason}),
    }
}

/// The reading side of a transport, owned so that a reader thread can hold it.
struct Wire(Arc<Transport>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// An I/O error on the connection, with a hint when it is a certificate nobody vouches for.
fn wire_error(doing: &str, e: io::Error) -> Error {
    let unknown_issuer = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| {
            matches!(
                tls,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    if unknown_issuer {
        return Error::tls(
            "the server's certificate is not signed by a known authority; if it is \
             self-signed, pass --ca FILE"
                .to_string(),
        );
    }
    Error::io(doing, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Mode, parse_request};

    #[test]
    fn typed_lines_encode_as_the_server_reads_them() {
        for line in [
            "hi",
            "//slash",
            "/me waves",
            "/msg bob psst",
            "/join ops",
            "/kick bob too loud",
            "/ban 10.0.0.0/8 2h spam --yes",
            "/mute bob 10m flooding",
            "/quit bye",
            "/history 5",
        ] {
            let req = parse_request(Mode::Human, line).unwrap().unwrap();
            let encoded = request_json(&req).to_string();
            let back = parse_request(Mode::Json, &encoded).unwrap().unwrap();
            assert_eq!(back, req, "{line} -> {encoded}");
        }
        let paste = Request::Say("one\ntwo".into());
        assert_eq!(
            request_json(&paste),
            json!({"type": "say", "text": "one\ntwo"})
        );
    }
}
