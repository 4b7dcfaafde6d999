//! The line mode of `chat-client`, for scripts and plain terminals: each input line is a
//! message or a command, each event one rendered line, and the session ends with an exit
//! status that says whether every line was delivered.
//!
//! "Delivered" means acknowledged: in JSON mode the server echoes a sender's own message back
//! with its id. The main thread owns all the counting; the input and the server events
//! arrive from two threads through channels, so neither a silent server nor a silent stdin
//! can hold the other up. At the end of input the client sends `quit`, which costs nothing
//! and is handled after every earlier request, and waits (bounded) for the server to close:
//! every acknowledgement or refusal has arrived by then. No reconnecting: a script wants the
//! exit status.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never, select};

use super::session::{Link, Refusal, Session};
use super::{Options, Style, render};
use crate::error::{Error, Result};
use crate::proto::{
    ErrorCode, HelpEntry, Mode, ProtocolError, Request, ServerMsg, parse_request, printable,
    room_key, validate_room,
};
use crate::store::Disconnect;
use crate::tls::Transport;

/// How long to wait, after our `quit`, for the server to answer everything and close.
pub const ACK_WAIT: Duration = Duration::from_secs(10);

/// The documented exit statuses of `chat-client` in line mode.
pub mod exit {
    /// Every line was delivered (acknowledged) and the session ended normally.
    pub const OK: u8 = 0;
    /// The session could not start: cannot connect, TLS, bad input, an I/O error.
    pub const FAILURE: u8 = 1;
    /// A usage error (clap's).
    pub const USAGE: u8 = 2;
    /// Some lines were refused (rate limit, too long, muted, unknown command, …) or never
    /// acknowledged.
    pub const REFUSED: u8 = 3;
    /// The server removed us: kicked, banned, disconnected for flooding, logged in elsewhere.
    pub const REMOVED: u8 = 4;
    /// The login was refused: wrong password, password required, name refused.
    pub const LOGIN: u8 = 5;
    /// The connection was lost: closed without a goodbye, the server shut down, no answer.
    pub const LOST: u8 = 6;
}

/// How a line-mode session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every line was delivered and we left.
    Done,
    /// We left, but not every line was delivered.
    Refused { refused: u64, unacknowledged: u64 },
    /// The server ended the session (kick, ban, flooding); the text is its reason.
    Removed(String),
    /// The server did not accept our name or password.
    LoginRefused(String),
    /// The connection ended without our asking.
    Lost(String),
}

impl Ending {
    /// The process exit status for this ending (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Ending::Done => exit::OK,
            Ending::Refused { .. } => exit::REFUSED,
            Ending::Removed(_) => exit::REMOVED,
            Ending::LoginRefused(_) => exit::LOGIN,
            Ending::Lost(_) => exit::LOST,
        }
    }

    /// What to tell the user on stderr, if anything.
    pub fn describe(&self) -> Option<String> {
        match self {
            Ending::Done => None,
            Ending::Refused {
                refused,
                unacknowledged,
            } => Some(format!(
                "not every line was delivered: {refused} refused, {unacknowledged} not acknowledged"
            )),
            Ending::Removed(why) => Some(format!("disconnected: {why}")),
            Ending::LoginRefused(why) => Some(format!("the server refused the login: {why}")),
            Ending::Lost(why) => Some(format!("disconnected: {why}")),
        }
    }
}

/// Runs one line-mode session on `transport`: handshake, an optional `--room`, then every
/// input line, then `quit`.
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
    let style = Style { color: opts.color };
    let mut session = Session::new(transport);
    let Some(me) = log_in(&mut session, &mut input, out, opts, &style)? else {
        return Ok(Ending::Done);
    };
    let me = match me {
        Ok(me) => me,
        Err(refusal) => {
            return Ok(match refusal.code {
                ErrorCode::Banned => Ending::Removed(refusal.message),
                ErrorCode::ServerFull
                | ErrorCode::TooManyConnections
                | ErrorCode::ConnectionRate => Ending::Lost(refusal.message),
                _ => Ending::LoginRefused(refusal.message),
            });
        }
    };
    let (link, events) = session.into_events()?;
    let lines = spawn_input(input, opts.erase_typed)?;
    let mut state = State::new(link, me, opts, style);
    if let Some(room) = &opts.room {
        if let Err(e) = validate_room(room) {
            writeln!(out, "{}", style.error(&e.to_string())).map_err(out_err)?;
            state.refused += 1;
            state.input_done = true;
        } else {
            state.queue.push_back(Outgoing::Room(room.clone()));
        }
    }
    state.main_loop(lines, events, out)
}

/// The handshake: `Ok(None)` when input ended before a name was given.
fn log_in<I: BufRead, O: Write>(
    session: &mut Session,
    input: &mut I,
    out: &mut O,
    opts: &Options,
    style: &Style,
) -> Result<Option<std::result::Result<String, Refusal>>> {
    let mut name = opts.name.clone();
    loop {
        let wanted = match name.take() {
            Some(n) => n,
            None => {
                if opts.interactive {
                    write!(out, "name: ")
                        .and_then(|()| out.flush())
                        .map_err(out_err)?;
                }
                match read_input_line(input)? {
                    Some(line) => line.trim().to_string(),
                    None => return Ok(None),
                }
            }
        };
        let mut answer = session.hello(&wanted, opts.password.as_deref())?;
        if matches!(&answer, Err(r) if r.code == ErrorCode::PasswordRequired) {
            // A registered name (or a private server): log in.
            let password = match &opts.password {
                Some(p) => p.clone(),
                None if opts.interactive => {
                    rpassword::prompt_password(format!("password for {wanted}: "))
                        .map_err(|e| Error::io("cannot read the password", e))?
                }
                None => match read_input_line(input)? {
                    Some(line) => line,
                    None => return Ok(None),
                },
            };
            answer = session.hello(&wanted, Some(&password))?;
        }
        match answer {
            Ok(welcome) => {
                writeln!(
                    out,
                    "{}",
                    style.system(&format!(
                        "connected as {}; /help lists the commands, /quit leaves",
                        printable(&welcome.name)
                    ))
                )
                .map_err(out_err)?;
                return Ok(Some(Ok(welcome.name)));
            }
            Err(refusal) => {
                writeln!(out, "{}", style.error(&printable(&refusal.message))).map_err(out_err)?;
                let fatal = matches!(
                    refusal.code,
                    ErrorCode::Banned
                        | ErrorCode::ServerFull
                        | ErrorCode::TooManyConnections
                        | ErrorCode::ConnectionRate
                        | ErrorCode::HandshakeTimeout
                );
                if !opts.interactive || fatal {
                    return Ok(Some(Err(refusal)));
                }
            }
        }
    }
}

/// Reads input lines on a thread of their own; `None` marks the end of input.
fn spawn_input<I: BufRead + Send + 'static>(
    mut input: I,
    erase_typed: bool,
) -> Result<Receiver<Option<String>>> {
    let (tx, rx) = crossbeam_channel::bounded(64);
    thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            loop {
                let line = read_input_line(&mut input).ok().flatten();
                let end = line.is_none();
                if erase_typed && line.as_deref().is_some_and(|l| !l.starts_with('/')) {
                    // Cursor up one line, clear it: the echo will show the message.
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(b"\x1b[1A\x1b[2K").and_then(|()| out.flush());
                }
                if tx.send(line).is_err() || end {
                    return;
                }
            }
        })
        .map_err(|e| Error::io("cannot start the input thread", e))?;
    Ok(rx)
}

/// One thing to send, in input order.
#[derive(Debug, Clone)]
enum Outgoing {
    /// A message, acknowledged by its echo: `say`, `me`, `msg`, `reply`, a paste.
    Message(Request),
    /// Any other request.
    Command(Request),
    /// A command line this version does not know, sent as typed.
    Raw(String),
    /// `--room`: join it before any line is sent.
    Room(String),
    Quit(Option<String>),
}

/// What has been sent and not yet answered, when we wait for the answer before going on
/// (`--room` always, every line with `--wait`).
#[derive(Debug)]
struct InFlight {
    item: Outgoing,
    /// The `ping` sent after a command: its `pong` marks the command done.
    ping: Option<u64>,
}

struct State {
    link: Link,
    /// Our name, to recognize our own messages (the acknowledgements); follows `/nick`.
    me: String,
    style: Style,
    wait: bool,
    interactive: bool,
    queue: VecDeque<Outgoing>,
    in_flight: Option<InFlight>,
    /// With `--wait`, after a `rate_limited` refusal: when the server will take the next one.
    retry_at: Option<Instant>,
    /// Lines collected since `/paste`, until a lone `.`.
    paste: Option<Vec<String>>,
    input_done: bool,
    /// When our `quit` went out: the server must close within [`ACK_WAIT`].
    quit_sent: Option<Instant>,
    next_ping: u64,
    messages_sent: u64,
    acknowledged: u64,
    refused: u64,
    bye: Option<String>,
}

impl State {
    fn new(link: Link, me: String, opts: &Options, style: Style) -> State {
        State {
            link,
            me,
            style,
            wait: opts.wait,
            interactive: opts.interactive,
            queue: VecDeque::new(),
            in_flight: None,
            retry_at: None,
            paste: None,
            input_done: false,
            quit_sent: None,
            next_ping: 1,
            messages_sent: 0,
            acknowledged: 0,
            refused: 0,
            bye: None,
        }
    }

    fn main_loop<O: Write>(
        mut self,
        lines: Receiver<Option<String>>,
        events: Receiver<Result<ServerMsg>>,
        out: &mut O,
    ) -> Result<Ending> {
        let never_lines = never();
        loop {
            if let Err(e) = self.pump() {
                return Ok(Ending::Lost(e.to_string()));
            }
            let lines_rx = if self.input_done || self.queue.len() >= 64 {
                &never_lines
            } else {
                &lines
            };
            let deadline = match (self.quit_sent, self.retry_at) {
                (Some(at), _) => Some(at + ACK_WAIT),
                (None, Some(at)) => Some(at),
                (None, None) => None,
            };
            let timeout = deadline
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            select! {
                recv(lines_rx) -> line => match line {
                    Ok(Some(line)) => self.typed(&line, out)?,
                    Ok(None) | Err(_) => self.end_of_input(),
                },
                recv(events) -> event => match event {
                    Ok(Ok(event)) => self.event(event, out)?,
                    Ok(Err(e)) => return Ok(Ending::Lost(e.to_string())),
                    Err(_) => return Ok(self.ending()),
                },
                default(timeout) => {
                    if self.quit_sent.is_some_and(|at| at.elapsed() >= ACK_WAIT) {
                        self.link.close();
                        return Ok(Ending::Lost(format!(
                            "the server did not close the session within {}s of our quit",
                            ACK_WAIT.as_secs()
                        )));
                    }
                    if self.retry_at.is_some_and(|at| at <= Instant::now()) {
                        self.retry_at = None;
                    }
                }
            }
        }
    }

    /// One typed line.
    fn typed<O: Write>(&mut self, line: &str, out: &mut O) -> Result<()> {
        if let Some(paste) = &mut self.paste {
            if line == "." {
                let text = self.paste.take().unwrap_or_default().join("\n");
                self.message_or_refusal(Request::Say(text), out)?;
            } else {
                paste.push(line.to_string());
            }
            return Ok(());
        }
        match parse_request(Mode::Human, line) {
            Ok(None) => {}
            Ok(Some(Request::Paste)) => {
                self.paste = Some(Vec::new());
                if self.interactive {
                    writeln!(
                        out,
                        "{}",
                        self.style.system(
                            "pasting: the lines up to one holding only '.' are one message"
                        )
                    )
                    .map_err(out_err)?;
                }
            }
            Ok(Some(Request::Quit(reason))) => {
                self.queue.push_back(Outgoing::Quit(reason));
                self.input_done = true;
            }
            Ok(Some(
                req @ (Request::Say(_)
                | Request::SayIn { .. }
                | Request::Me(_)
                | Request::MeIn { .. }
                | Request::Msg { .. }
                | Request::Reply(_)),
            )) => self.queue.push_back(Outgoing::Message(req)),
            Ok(Some(req)) => self.queue.push_back(Outgoing::Command(req)),
            Err(ProtocolError::UnknownCommand { .. }) => {
                // A newer server may know it; the server's answer counts either way.
                self.queue.push_back(Outgoing::Raw(line.trim().to_string()));
            }
            Err(e) => self.refuse_locally(&e, out)?,
        }
        Ok(())
    }

    /// A collected paste: checked here as the server would, so a refusal is told at once.
    fn message_or_refusal<O: Write>(&mut self, req: Request, out: &mut O) -> Result<()> {
        if let Request::Say(text) = &req
            && let Err(e) = crate::proto::validate_text(text)
        {
            return self.refuse_locally(&e, out);
        }
        self.queue.push_back(Outgoing::Message(req));
        Ok(())
    }

    fn refuse_locally<O: Write>(&mut self, e: &ProtocolError, out: &mut O) -> Result<()> {
        self.refused += 1;
        writeln!(out, "{}", self.style.error(&printable(&e.to_string()))).map_err(out_err)
    }

    fn end_of_input(&mut self) {
        self.input_done = true;
        if let Some(paste) = self.paste.take()
            && paste.iter().any(|l| !l.trim().is_empty())
        {
            // Input ended inside a paste: send what was collected.
            self.queue
                .push_back(Outgoing::Message(Request::Say(paste.join("\n"))));
        }
    }

    /// Sends what may be sent now.
    fn pump(&mut self) -> Result<()> {
        if self.quit_sent.is_some() {
            return Ok(());
        }
        while self.in_flight.is_none() && self.retry_at.is_none() {
            let Some(item) = self.queue.pop_front() else {
                if self.input_done {
                    self.quit(None)?;
                }
                return Ok(());
            };
            let mut ping = None;
            match &item {
                Outgoing::Message(req) => {
                    self.link.send(req)?;
                    self.messages_sent += 1;
                }
                Outgoing::Command(req) => self.link.send(req)?,
                Outgoing::Raw(line) => self.link.send_command_line(line)?,
                Outgoing::Room(room) => self.link.send(&Request::Join(room.clone()))?,
                Outgoing::Quit(reason) => {
                    let reason = reason.clone();
                    return self.quit(reason);
                }
            }
            let gate = matches!(item, Outgoing::Room(_));
            if self.wait && matches!(item, Outgoing::Command(_) | Outgoing::Raw(_)) {
                let id = self.next_ping;
                self.next_ping += 1;
                self.link.ping(id)?;
                ping = Some(id);
            }
            if gate || self.wait {
                self.in_flight = Some(InFlight { item, ping });
            }
        }
        Ok(())
    }

    fn quit(&mut self, reason: Option<String>) -> Result<()> {
        self.quit_sent = Some(Instant::now());
        self.link.send(&Request::Quit(reason))
    }

    /// One server event: count it, then show it.
    fn event<O: Write>(&mut self, mut event: ServerMsg, out: &mut O) -> Result<()> {
        match &mut event {
            ServerMsg::Message(m) if !m.history && m.from == self.me => {
                self.acknowledged += 1;
                if matches!(
                    self.in_flight,
                    Some(InFlight {
                        item: Outgoing::Message(_),
                        ..
                    })
                ) {
                    self.in_flight = None;
                }
            }
            ServerMsg::Error {
                code,
                retry_after_ms,
                ..
            } => {
                let retry = (*code == ErrorCode::RateLimited)
                    .then_some(retry_after_ms.unwrap_or(200))
                    .filter(|_| self.wait);
                match (self.in_flight.take(), retry) {
                    (Some(flight), Some(ms)) if !matches!(flight.item, Outgoing::Room(_)) => {
                        // Paced: send it again once the server will take it; not shown.
                        if matches!(flight.item, Outgoing::Message(_)) {
                            self.messages_sent -= 1;
                        }
                        self.queue.push_front(flight.item);
                        self.retry_at = Some(Instant::now() + Duration::from_millis(ms));
                        return Ok(());
                    }
                    (None, Some(_)) => {
                        // The refusal of the ping after a command that went through.
                        return Ok(());
                    }
                    (Some(flight), _) => {
                        self.refused += 1;
                        if matches!(flight.item, Outgoing::Room(_)) {
                            // No line may go to another room than the one asked for.
                            self.queue.clear();
                            self.input_done = true;
                        }
                    }
                    (None, None) => self.refused += 1,
                }
            }
            ServerMsg::Pong { id: Some(id) } => {
                if self.in_flight.as_ref().and_then(|f| f.ping) == Some(*id) {
                    self.in_flight = None;
                }
                return Ok(());
            }
            ServerMsg::Joined { room, name, .. } if *name == self.me => {
                let room = room.clone();
                self.room_reached(&room);
            }
            ServerMsg::Switched { room } => {
                let room = room.clone();
                self.room_reached(&room);
            }
            ServerMsg::Nick { old, new, .. } if *old == self.me => self.me = new.clone(),
            ServerMsg::Bye { reason, .. } => self.bye = Some(reason.clone()),
            ServerMsg::Help { commands }
                if !commands.iter().any(|c| c.usage.starts_with("/paste")) =>
            {
                commands.push(HelpEntry {
                    usage: "/paste".into(),
                    description: "the lines up to one holding only '.' are one message".into(),
                });
            }
            _ => {}
        }
        if let Some(rendered) = render(&event, &self.me, &self.style) {
            out.write_all(rendered.as_bytes()).map_err(out_err)?;
            out.flush().map_err(out_err)?;
        }
        Ok(())
    }

    /// We joined, or switched to, `room`: the `--room` gate opens when it is the one asked.
    fn room_reached(&mut self, room: &str) {
        if let Some(InFlight {
            item: Outgoing::Room(wanted),
            ..
        }) = &self.in_flight
            && room_key(wanted) == room_key(room)
        {
            self.in_flight = None;
        }
    }

    /// The server closed the connection.
    fn ending(&self) -> Ending {
        let shutdown = Disconnect::ServerShutdown.told();
        match (&self.bye, self.quit_sent) {
            (Some(reason), None) if *reason == shutdown => Ending::Lost(reason.clone()),
            (Some(reason), None) => Ending::Removed(reason.clone()),
            (None, None) => Ending::Lost("the server closed the connection".into()),
            (None, Some(_)) => {
                Ending::Lost("the server closed the connection before saying goodbye".into())
            }
            (Some(_), Some(_)) => {
                let unacknowledged = self
                    .messages_sent
                    .saturating_sub(self.acknowledged + self.refused);
                if self.refused == 0 && unacknowledged == 0 {
                    Ending::Done
                } else {
                    Ending::Refused {
                        refused: self.refused,
                        unacknowledged,
                    }
                }
            }
        }
    }
}

fn read_input_line<I: BufRead>(input: &mut I) -> Result<Option<String>> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(line.trim_end_matches(['\r', '\n']).to_string())),
        Err(e) => Err(Error::io("cannot read input", e)),
    }
}

fn out_err(e: io::Error) -> Error {
    Error::io("cannot write output", e)
}
