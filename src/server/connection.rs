//! One connection's two threads: the reader, which runs the handshake and turns lines into
//! [`Event`]s for the broadcaster, and the writer, which drains the connection's outbox.
//!
//! The reader answers malformed lines straight into the outbox (and closes a connection that
//! sends nothing else); every request goes through the broadcaster, which charges it against
//! the client's rate. The writer coalesces whatever is queued into one `write`, so a burst
//! costs one syscall rather than one per message.

use std::cell::Cell;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::debug;

use crate::error::is_hangup;
use crate::proto::{self, ErrorCode, Hello, Identity, Mode, ProtocolError, Request, ServerMsg};
use crate::server::Config;
use crate::server::hub::Event;
use crate::server::lines::{Line, LineReader};
use crate::server::login::{Auth, Verdict};
use crate::server::outbox::{Outbox, OutboxReceiver, PushError};
use crate::store::Disconnect;
use crate::tls::{DeadlineReader, Transport, TransportReader};

/// The reader's buffer. Chat lines are short; a small buffer keeps an idle connection small
/// (a longer line simply takes several reads; `LineReader` bounds the line itself).
const READ_BUFFER: usize = 512;

/// The most bytes a writer gathers from its outbox into one write.
const MAX_COALESCE: usize = 64 * 1024;

/// How long a closing writer keeps reading (and discarding) what the peer still sends, so the
/// kernel closes with FIN rather than RST and the peer gets our last line.
const LINGER: Duration = Duration::from_secs(2);

/// What the reader thread needs besides its socket.
pub struct Reader {
    pub conn: u64,
    /// The client's address, for the login throttle.
    pub peer: std::net::SocketAddr,
    /// Accounts and the login throttle.
    pub auth: Arc<Auth>,
    /// The connection: plain TCP, or TLS over it.
    pub transport: Arc<Transport>,
    /// To the broadcaster.
    pub events: Sender<Event>,
    /// To this connection's own writer, for answers that need no shared state.
    pub outbox: Outbox,
    /// The server's configuration: lines, deadlines, the flood limit.
    pub config: Arc<Config>,
    /// Set when an answer did not fit in the outbox: the client does not read what it asks
    /// for, so the connection is ended as a slow consumer.
    pub overflowed: Cell<bool>,
}

/// The outcome of a login.
enum Login {
    /// In, as a guest or to an account.
    Granted(Identity),
    /// Refused; the client was told and may try again.
    Refused,
    /// The connection ended (closed, or the handshake ran out of time).
    Ended(Disconnect),
}

/// A paste in progress (human mode, `/paste` ... `.`).
struct Paste {
    text: String,
    lines: usize,
    /// Set when the paste passed a limit: the rest is read and discarded up to the `.`.
    refused: Option<ProtocolError>,
}

impl Reader {
    /// Serves the connection until it ends, then tells the broadcaster why.
    pub fn run(self) {
        let reason = match self.serve() {
            _ if self.overflowed.get() => Disconnect::SlowConsumer,
            Ok(reason) => reason,
            Err(e) if is_hangup(&e) => Disconnect::Reset,
            Err(e) => Disconnect::ReadError(e.to_string()),
        };
        debug!("conn {} reader ends: {reason}", self.conn);
        let _ = self.events.send(Event::Gone {
            conn: self.conn,
            reason,
        });
    }

    /// Returns the reason the connection ended, for `data.csv`.
    fn serve(&self) -> io::Result<Disconnect> {
        // The whole handshake (TLS, name, password) has one deadline, however slowly the
        // peer trickles its bytes.
        let deadline = Instant::now() + self.config.connection.handshake_timeout.get();
        if self.transport.is_tls()
            && let Some(reason) = self.refuse_plain_text(deadline)?
        {
            return Ok(reason);
        }
        let mut lines = LineReader::new(
            BufReader::with_capacity(
                READ_BUFFER,
                DeadlineReader::new(&self.transport, Some(deadline)),
            ),
            self.config.connection.max_line,
        );
        let mode = match self.handshake(&mut lines, deadline)? {
            Ok(mode) => mode,
            Err(reason) => return Ok(reason),
        };
        lines.get_mut().get_mut().deadline = None;
        self.transport.socket().set_read_timeout(None)?;
        self.chat(&mut lines, mode)
    }

    /// Greets, and reads names until one is granted: `Ok(Ok(mode))`, or `Ok(Err(reason))` when
    /// the connection ended first. Its own frame, not inlined into `serve`: the stack's deepest
    /// point sets how much of each thread's stack stays resident.
    #[inline(never)]
    fn handshake(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        deadline: Instant,
    ) -> io::Result<Result<Mode, Disconnect>> {
        self.send_raw(proto::GREETING.as_bytes());
        // Names refused so far: they count toward the flood limit like refused lines.
        let mut refused = 0u32;
        loop {
            if refused >= self.config.chat.flood_limit {
                return Ok(Err(self.flooded(Mode::Human)));
            }
            let line = match lines.read_line() {
                Ok(line) => line,
                Err(e) if is_timeout(&e) => return Ok(Err(self.handshake_timed_out())),
                Err(e) => return Err(e),
            };
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::TooLong => {
                    let limit = self.config.connection.max_line;
                    self.refuse_name(Mode::Human, &ProtocolError::LineTooLong { limit });
                    refused += 1;
                    continue;
                }
                Line::Eof | Line::EofMidLine => return Ok(Err(Disconnect::ClosedDuringHandshake)),
            };
            if matches!(
                utf8(bytes).map(proto::parse_command),
                Ok(Ok(Request::Quit(_)))
            ) {
                return Ok(Err(self.quit_before_name()));
            }
            let guess = if bytes.trim_ascii_start().starts_with(b"{") {
                Mode::Json
            } else {
                Mode::Human
            };
            let hello = match utf8(bytes).and_then(proto::parse_hello) {
                Ok(hello) => hello,
                Err(e) => {
                    self.refuse_name(guess, &e);
                    refused += 1;
                    continue;
                }
            };
            let mode = hello.mode;
            // The hello (and the password in it) ends here, on this thread: the broadcaster
            // is told who the client is, never what it typed to prove it.
            let who = match self.log_in(lines, hello, deadline)? {
                Login::Granted(who) => who,
                Login::Refused => {
                    self.prompt_again(mode);
                    continue;
                }
                Login::Ended(reason) => return Ok(Err(reason)),
            };
            let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
            let hello_event = Event::Hello {
                conn: self.conn,
                who,
                reply: reply_tx,
            };
            if self.events.send(hello_event).is_err() {
                return Ok(Err(Disconnect::ServerStopping));
            }
            match reply_rx.recv() {
                Ok(true) => return Ok(Ok(mode)),
                // The broadcaster has sent the reason; ask again.
                Ok(false) => {
                    self.prompt_again(mode);
                    refused += 1;
                }
                Err(_) => return Ok(Err(Disconnect::ServerStopping)),
            }
        }
    }

    /// Checks the password when there is one to check. A registered name (or any name on a
    /// private server) must give its password. In human mode, once the server has accounts,
    /// every name is asked (an empty answer joins as a guest): so a mistyped name never turns
    /// the password typed next into a chat line, and the prompt does not tell which names are
    /// registered. Each attempt counts against the throttle before it is checked; wrong
    /// passwords wait longer each time and are logged.
    #[inline(never)]
    fn log_in(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        hello: Hello,
        deadline: Instant,
    ) -> io::Result<Login> {
        let mode = hello.mode;
        let private = self.auth.private;
        let registered = self.auth.is_registered(&hello.name);
        let password = match mode {
            Mode::Json => match hello.password {
                Some(p) => p,
                None if registered || private => {
                    let msg = format!(
                        "{} needs a password: send {{\"type\":\"hello\",\"name\":...,\"password\":...}}",
                        hello.name
                    );
                    self.send(mode, &ServerMsg::failure(ErrorCode::PasswordRequired, msg));
                    return Ok(Login::Refused);
                }
                None => return Ok(Login::Granted(Identity::guest(mode, hello.name))),
            },
            Mode::Human => {
                if !private && !self.auth.directory.any() {
                    return Ok(Login::Granted(Identity::guest(mode, hello.name)));
                }
                let prompt = if private {
                    format!("Password for {}:\n", hello.name)
                } else {
                    format!("Password for {} (empty: join as a guest):\n", hello.name)
                };
                self.send_raw(prompt.as_bytes());
                match lines.read_line() {
                    Ok(Line::Complete(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                    Ok(Line::TooLong) => "\u{0}too long".to_string(),
                    Ok(Line::Eof | Line::EofMidLine) => {
                        return Ok(Login::Ended(Disconnect::ClosedDuringHandshake));
                    }
                    Err(e) if is_timeout(&e) => {
                        return Ok(Login::Ended(self.handshake_timed_out()));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if password.is_empty() && !registered && !private {
            return Ok(Login::Granted(Identity::guest(mode, hello.name)));
        }
        let ip = self.peer.ip();
        // Failures count against the account, however its name was spelt (`BOB`, `b0b`).
        let counted = self
            .auth
            .directory
            .lookup(&hello.name)
            .map_or_else(|| hello.name.clone(), |a| a.name);
        let wait = match self.auth.throttle.attempt(ip, &counted) {
            Ok(wait) => wait,
            Err(left) => {
                let msg = format!(
                    "too many failed logins; try again in {} s",
                    left.as_secs() + 1
                );
                self.send(mode, &ServerMsg::failure(ErrorCode::LoginLocked, msg));
                return Ok(Login::Refused);
            }
        };
        match self.auth.check(&hello.name, &password, deadline) {
            Verdict::Granted(account) => {
                self.auth.throttle.succeeded(ip, &counted);
                let who = Identity::account(mode, account.name, account.role.into());
                return Ok(Login::Granted(who));
            }
            // Out of time: the attempt stays counted (it may have been checked).
            Verdict::TimedOut => return Ok(Login::Ended(self.handshake_timed_out())),
            Verdict::Busy => {
                self.auth.throttle.withdraw(ip, &counted);
                let msg = "the server is busy checking passwords; try again in a moment";
                self.send(mode, &ServerMsg::failure(ErrorCode::LoginBusy, msg.into()));
                return Ok(Login::Refused);
            }
            Verdict::Refused => {}
        }
        let _ = self.events.send(Event::LoginFailed {
            conn: self.conn,
            name: hello.name.clone(),
            why: "wrong password or no such account".into(),
        });
        std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
        let msg = "invalid name or password".to_string();
        self.send(mode, &ServerMsg::failure(ErrorCode::LoginFailed, msg));
        Ok(Login::Refused)
    }

    /// Reads requests until the connection ends; returns why it ended.
    #[inline(never)]
    fn chat(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        mode: Mode,
    ) -> io::Result<Disconnect> {
        let mut paste: Option<Paste> = None;
        // Lines refused in a row; a good request starts the count again.
        let mut refused = 0u32;
        // When the server pinged this (JSON) client and is waiting for any line back.
        let mut pinged = false;
        let mut ping_id = 0u64;
        let mut timeout = None;
        loop {
            let wanted = Some(match (mode, pinged) {
                (Mode::Json, false) => self.config.connection.ping_interval.get(),
                (Mode::Json, true) => self.config.connection.ping_timeout.get(),
                (Mode::Human, _) => self.config.connection.idle_timeout.get(),
            });
            if wanted != timeout {
                self.transport.socket().set_read_timeout(wanted)?;
                timeout = wanted;
            }
            let line = match lines.read_line() {
                Ok(line) => line,
                Err(e) if is_timeout(&e) => match (mode, pinged) {
                    (Mode::Json, false) => {
                        ping_id += 1;
                        self.send(mode, &ServerMsg::Ping { id: ping_id });
                        pinged = true;
                        continue;
                    }
                    (Mode::Json, true) => return Ok(self.silent(mode, Disconnect::NoPingAnswer)),
                    (Mode::Human, _) => return Ok(self.silent(mode, Disconnect::Idle)),
                },
                Err(e) => return Err(e),
            };
            pinged = false;
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::TooLong => {
                    let limit = self.config.connection.max_line;
                    let err = ProtocolError::LineTooLong { limit };
                    match &mut paste {
                        Some(p) => {
                            p.refused.get_or_insert(err);
                        }
                        None => {
                            self.send(mode, &ServerMsg::error(&err));
                            refused += 1;
                            if refused >= self.config.chat.flood_limit {
                                return Ok(self.flooded(mode));
                            }
                        }
                    }
                    continue;
                }
                Line::Eof => return Ok(Disconnect::Closed),
                Line::EofMidLine => return Ok(Disconnect::ClosedMidLine),
            };
            if let Some(p) = &mut paste {
                let Some(text) = self.paste_line(p, bytes) else {
                    continue;
                };
                paste = None;
                match text {
                    Ok(text) => {
                        refused = 0;
                        if !self.forward(Request::Say(text)) {
                            return Ok(Disconnect::ServerStopping);
                        }
                    }
                    Err(e) => {
                        self.send(mode, &ServerMsg::error(&e));
                        refused += 1;
                        if refused >= self.config.chat.flood_limit {
                            return Ok(self.flooded(mode));
                        }
                    }
                }
                continue;
            }
            let req = match utf8(bytes).and_then(|line| proto::parse_request(mode, line)) {
                Ok(Some(req)) => req,
                Ok(None) => continue,
                Err(e) => {
                    self.send(mode, &ServerMsg::error(&e));
                    refused += 1;
                    if refused >= self.config.chat.flood_limit {
                        return Ok(self.flooded(mode));
                    }
                    continue;
                }
            };
            // Only a request the broadcaster takes (and charges) starts the count again: a
            // `pong` or a `/paste` costs nothing.
            match req {
                Request::Pong => {}
                Request::Paste => {
                    let ts = crate::store::now_timestamp();
                    let text = format!(
                        "pasting: send the lines, then a line holding only '.' (at most {} bytes, {} lines)",
                        self.config.connection.max_line,
                        proto::MAX_MESSAGE_LINES
                    );
                    self.send(mode, &ServerMsg::System { ts, text });
                    paste = Some(Paste {
                        text: String::new(),
                        lines: 0,
                        refused: None,
                    });
                }
                Request::Quit(_) => {
                    self.forward(req);
                    return Ok(Disconnect::Quit(None));
                }
                req => {
                    refused = 0;
                    if !self.forward(req) {
                        return Ok(Disconnect::ServerStopping);
                    }
                }
            }
        }
    }

    /// Adds one line to a paste. `None` while the paste goes on; at its `.`, the text or why
    /// it was refused.
    fn paste_line(&self, p: &mut Paste, bytes: &[u8]) -> Option<Result<String, ProtocolError>> {
        if bytes == b"." {
            let done = std::mem::replace(
                p,
                Paste {
                    text: String::new(),
                    lines: 0,
                    refused: None,
                },
            );
            return Some(match done.refused {
                Some(e) => Err(e),
                None => proto::validate_text(&done.text).map(|()| done.text),
            });
        }
        if p.refused.is_some() {
            return None;
        }
        let line = match utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                p.refused = Some(e);
                return None;
            }
        };
        p.lines += 1;
        if p.lines > proto::MAX_MESSAGE_LINES {
            p.refused = Some(ProtocolError::TooManyLines { lines: p.lines });
        } else if p.text.len() + line.len() + 1 > self.config.connection.max_line {
            p.refused = Some(ProtocolError::LineTooLong {
                limit: self.config.connection.max_line,
            });
        } else {
            if p.lines > 1 {
                p.text.push('\n');
            }
            p.text.push_str(line);
        }
        None
    }

    /// Hands a request to the broadcaster; false when it is gone (the server is stopping).
    fn forward(&self, req: Request) -> bool {
        self.events
            .send(Event::Request {
                conn: self.conn,
                req,
            })
            .is_ok()
    }

    /// Says goodbye to a client that sent nothing but refused lines; the reason for
    /// `data.csv`.
    #[cold]
    #[inline(never)]
    fn flooded(&self, mode: Mode) -> Disconnect {
        let bye = ServerMsg::Bye {
            ts: crate::store::now_timestamp(),
            reason: format!(
                "disconnected for flooding ({} refused lines in a row); you may reconnect",
                self.config.chat.flood_limit
            ),
        };
        self.send(mode, &bye);
        Disconnect::Flooding
    }

    /// Says goodbye to a client that went silent; returns the reason for `data.csv`.
    #[cold]
    #[inline(never)]
    fn silent(&self, mode: Mode, why: Disconnect) -> Disconnect {
        let bye = ServerMsg::Bye {
            ts: crate::store::now_timestamp(),
            reason: why.told(),
        };
        self.send(mode, &bye);
        why
    }

    /// On a TLS port, a client that speaks plain text (`nc`, a client without `--tls`) gets a
    /// readable refusal instead of a TLS alert it cannot read. Peeks at the first byte: every
    /// TLS connection starts with a handshake record.
    #[cold]
    #[inline(never)]
    fn refuse_plain_text(&self, deadline: Instant) -> io::Result<Option<Disconnect>> {
        let sock = self.transport.socket();
        let left = deadline.saturating_duration_since(Instant::now());
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let mut first = [0u8; 1];
        match sock.peek(&mut first) {
            Ok(0) => return Ok(Some(Disconnect::ClosedDuringHandshake)),
            Ok(_) if first[0] == crate::tls::TLS_HANDSHAKE => return Ok(None),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                // A plain client waiting for our greeting: tell it too.
            }
            Err(e) => return Err(e),
        }
        let _ = (&**sock).write_all(
            b"! this server speaks TLS: connect with chat-client --tls (or openssl s_client)\n",
        );
        let _ = sock.shutdown(Shutdown::Both);
        Ok(Some(Disconnect::PlainTextOnTls))
    }

    #[cold]
    #[inline(never)]
    fn quit_before_name(&self) -> Disconnect {
        let bye = ServerMsg::Bye {
            ts: crate::store::now_timestamp(),
            reason: Disconnect::QuitDuringHandshake.told(),
        };
        self.send(Mode::Human, &bye);
        Disconnect::QuitDuringHandshake
    }

    #[cold]
    #[inline(never)]
    fn handshake_timed_out(&self) -> Disconnect {
        let secs = self.config.connection.handshake_timeout.get().as_secs_f64();
        let err = ServerMsg::failure(
            ErrorCode::HandshakeTimeout,
            format!("no name given within {secs} s; closing the connection"),
        );
        self.send(Mode::Human, &err);
        Disconnect::HandshakeTimeout
    }

    #[cold]
    #[inline(never)]
    fn refuse_name(&self, mode: Mode, err: &ProtocolError) {
        self.send(mode, &ServerMsg::error(err));
        self.prompt_again(mode);
    }

    fn prompt_again(&self, mode: Mode) {
        if mode == Mode::Human {
            self.send_raw(proto::NAME_PROMPT.as_bytes());
        }
    }

    fn send(&self, mode: Mode, msg: &ServerMsg) {
        self.send_raw(&proto::encode(msg, mode));
    }

    /// Queues bytes for this connection's writer. A full outbox means the client does not
    /// read what it asks for: like any slow consumer it is disconnected (the socket is shut,
    /// so the next read ends the connection), and nothing more is queued.
    fn send_raw(&self, bytes: &[u8]) {
        if self.overflowed.get() {
            return;
        }
        if self.outbox.push(Arc::from(bytes)) == Err(PushError::Full) {
            self.overflowed.set(true);
            crate::server::outbox::abandon(self.transport.socket());
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ProtocolError> {
    std::str::from_utf8(bytes).map_err(|e| ProtocolError::InvalidUtf8 {
        at: e.valid_up_to(),
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Drains `outbox` into `stream` until every sender is gone or the peer stops accepting
/// bytes, then closes the connection politely.
pub fn write_loop(conn: u64, transport: Arc<Transport>, outbox: OutboxReceiver) {
    let stream = transport.socket().clone();
    // Allocated only when two or more messages are waiting at once; a lone message is written
    // straight from its shared bytes.
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(first) = outbox.recv() {
        // Hold the write lock from here, so the broadcaster's fast path cannot slip a later
        // message onto the socket before these.
        let _writing = outbox.lock();
        let mut taken = crate::server::outbox::charge(&first);
        let result = match outbox.try_recv() {
            Err(_) => (&*transport).write_all(&first),
            Ok(second) => {
                taken += crate::server::outbox::charge(&second);
                buf.clear();
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second);
                while buf.len() < MAX_COALESCE {
                    match outbox.try_recv() {
                        Ok(more) => {
                            taken += crate::server::outbox::charge(&more);
                            buf.extend_from_slice(&more);
                        }
                        Err(_) => break,
                    }
                }
                let r = (&*transport).write_all(&buf);
                if buf.capacity() > 4 * MAX_COALESCE {
                    buf = Vec::new();
                }
                r
            }
        };
        outbox.written(taken);
        if let Err(e) = result {
            if is_hangup(&e) {
                debug!("conn {conn}: peer went away while writing: {e}");
            } else {
                debug!("conn {conn}: write failed: {e}");
            }
            // Wake the reader so the broadcaster hears of the end.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
    close_politely(&stream);
}

/// Every sender is gone: the connection is over. Sends FIN, then reads what the peer still
/// sends for a moment, so unread input does not turn our close into a reset that could destroy
/// the last lines we wrote. Kept out of `write_loop` so its buffer does not enlarge (and, with
/// stack probes, touch) the writer's stack frame for the whole life of the connection.
#[inline(never)]
fn close_politely(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER));
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 512];
    while Instant::now() < deadline {
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
