//! The full-screen client's connection: the JSON handshake, a reader thread that turns lines
//! into [`NetEvent`]s on a channel, and reconnecting with backoff when the server goes away.
//!
//! A thin layer of its own, so the UI thread never blocks on the socket: it only polls the
//! channel between terminal events, and sends requests through [`Link::send`], one whole line
//! per write (the reader thread's `pong`s are whole lines too, which TCP keeps whole).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::proto::{ErrorCode, ServerMsg};
use crate::tls::Transport;

/// Opens a new transport to the server (plain TCP or TLS): called again on each reconnect.
pub type Connector = Arc<dyn Fn() -> Result<Transport> + Send + Sync>;

/// The first wait before reconnecting; it doubles with each failed attempt, up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the network side tells the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// A (re)connection was welcomed under `name`; `server` is the server's name and version.
    /// `room` is where the server put us (the lobby).
    Up {
        name: String,
        server: String,
        room: String,
    },
    /// One event from the server (never a `ping`: the reader answers those itself).
    Msg(ServerMsg),
    /// The connection is lost; the next attempt is in `retry_in`.
    Down {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// The connection is lost for good (a kick, a refused login): no more attempts.
    Gone(String),
}

/// Who we are, to log in again after a reconnect.
#[derive(Debug, Clone)]
pub struct Login {
    pub name: String,
    pub password: Option<String>,
}

/// A welcomed connection whose reader has not started yet.
pub struct Session {
    transport: Arc<Transport>,
    /// Holds whatever arrived after the `welcome` in the same read.
    reader: BufReader<ReadHalf>,
    pub name: String,
    pub server: String,
    /// The room the welcome put us in.
    pub room: String,
}

/// The UI's handle on whichever connection is current.
#[derive(Clone)]
pub struct Link {
    current: Arc<Mutex<Option<Arc<Transport>>>>,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// Sends one request; false when there is no connection or the write failed.
    pub fn send(&self, request: &Value) -> bool {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match current {
            Some(t) => write_line(&t, request).is_ok(),
            None => false,
        }
    }

    /// Stops reconnecting and closes the connection.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.socket().shutdown(Shutdown::Both);
        }
    }
}

/// Sends `hello` on a fresh transport and reads until the server welcomes or refuses it.
pub fn handshake(
    transport: Transport,
    login: &Login,
) -> Result<std::result::Result<Session, (ErrorCode, String)>> {
    let transport = Arc::new(transport);
    let mut hello = json!({"type": "hello", "name": login.name});
    if let Some(p) = &login.password {
        hello["password"] = json!(p);
    }
    write_line(&transport, &hello)?;
    let mut reader = BufReader::new(ReadHalf(transport.clone()));
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
            Ok(ServerMsg::Welcome {
                name, server, room, ..
            }) => {
                return Ok(Ok(Session {
                    transport,
                    reader,
                    name,
                    server,
                    room,
                }));
            }
            Ok(ServerMsg::Error { code, message, .. }) => return Ok(Err((code, message))),
            _ => {}
        }
    }
}

/// Starts the network thread on a welcomed `session`: it forwards events to `events`, and
/// when the connection ends for a reason worth retrying, connects again with backoff.
pub fn spawn(
    connect: Connector,
    login: Login,
    session: Session,
    events: Sender<NetEvent>,
) -> Result<Link> {
    let link = Link {
        current: Arc::new(Mutex::new(None)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let inner = link.clone();
    thread::Builder::new()
        .name("net".into())
        .spawn(move || network(connect, login, session, events, inner))
        .map_err(|e| Error::io("cannot start the network thread", e))?;
    Ok(link)
}

fn network(
    connect: Connector,
    mut login: Login,
    first: Session,
    events: Sender<NetEvent>,
    link: Link,
) {
    let mut session = Some(first);
    let mut attempt = 0u32;
    let mut lost = String::new();
    loop {
        if let Some(s) = session.take() {
            attempt = 0;
            login.name = s.name.clone();
            *link.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.transport.clone());
            let reason = pump(s, &events);
            link.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if link.stop.load(Ordering::SeqCst) {
                return;
            }
            match reason {
                Some(reason) if !worth_retrying(&reason) => {
                    let _ = events.send(NetEvent::Gone(reason));
                    return;
                }
                Some(reason) => lost = reason,
                None => lost = "the connection was lost".into(),
            }
        }
        attempt += 1;
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (attempt - 1).min(6))
            .min(MAX_BACKOFF);
        let down = NetEvent::Down {
            reason: lost.clone(),
            attempt,
            retry_in: delay,
        };
        if events.send(down).is_err() {
            return;
        }
        // Wait in small steps, so quitting does not wait for the whole backoff.
        let mut waited = Duration::ZERO;
        while waited < delay {
            if link.stop.load(Ordering::SeqCst) {
                return;
            }
            let step = Duration::from_millis(50);
            thread::sleep(step);
            waited += step;
        }
        match connect().and_then(|t| handshake(t, &login)) {
            Ok(Ok(s)) => {
                let up = NetEvent::Up {
                    name: s.name.clone(),
                    server: s.server.clone(),
                    room: s.room.clone(),
                };
                // The link is set before the UI hears of it, so its rejoins can be sent.
                *link.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.transport.clone());
                if events.send(up).is_err() {
                    return;
                }
                session = Some(s);
            }
            Ok(Err((code, message))) => {
                if matches!(
                    code,
                    ErrorCode::LoginFailed | ErrorCode::Banned | ErrorCode::PasswordRequired
                ) {
                    let _ = events.send(NetEvent::Gone(message));
                    return;
                }
            }
            Err(e) => log::debug!("reconnect: {e}"),
        }
    }
}

/// Reads events until the connection ends; the `bye` reason, if the server gave one.
fn pump(mut s: Session, events: &Sender<NetEvent>) -> Option<String> {
    let mut bye = None;
    let mut line = String::new();
    loop {
        line.clear();
        match s.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return bye,
            Ok(_) => {}
        }
        // An event this version does not know (a newer server's) is skipped.
        let Ok(event) = serde_json::from_str::<ServerMsg>(&line) else {
            continue;
        };
        match &event {
            ServerMsg::Ping { id } => {
                let _ = write_line(&s.transport, &json!({"type": "pong", "id": id}));
                continue;
            }
            ServerMsg::Bye { reason, .. } => bye = Some(reason.clone()),
            _ => {}
        }
        if events.send(NetEvent::Msg(event)).is_err() {
            return bye;
        }
    }
}

/// Whether a `bye` reason is one to reconnect after: the server going down is; being kicked,
/// banned or replaced by another login of ours is not.
fn worth_retrying(reason: &str) -> bool {
    reason.contains("shutting down") || reason.contains("restart")
}

fn write_line(transport: &Transport, request: &Value) -> Result<()> {
    let mut bytes = serde_json::to_vec(request).expect("json values serialize");
    bytes.push(b'\n');
    let mut w: &Transport = transport;
    w.write_all(&bytes)
        .map_err(|e| Error::io("cannot send to the server", e))
}

/// The reading side of a shared transport, owned, so a `BufReader` can outlive the handshake.
struct ReadHalf(Arc<Transport>);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_going_down_is_worth_reconnecting_after() {
        assert!(worth_retrying("the server is shutting down"));
        assert!(!worth_retrying("you were kicked by boss"));
        assert!(!worth_retrying(
            "you logged in from another connection (127.0.0.1:5); this session is closed"
        ));
    }
}
