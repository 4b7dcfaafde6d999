//! IRC (`chat-server --irc ADDR`, `--irc-tls ADDR`) as a transport that translates, like
//! [`WsStream`](crate::ws::WsStream): the hub sees one more JSON client.
//!
//! Reading (the connection's reader thread, through [`DeadlineReader`]) takes IRC lines from
//! the transport underneath, at most 512 bytes each; registration, capabilities, SASL, PING and
//! the questions that need no server (MOTD, TOPIC, MODE queries) are answered here, and the
//! rest comes out as JSON request lines, which the reader parses as it parses any JSON
//! client's: the hello once NICK and USER (and `CAP END`) are in, then `say`, `msg`, `join`...
//! Writing (the connection's writer thread) takes whole JSON event lines and writes the IRC
//! lines for each. Both sides share one [`State`] (the nick, the channels, the requests whose
//! answers are still to come) and write to the socket under one send lock, so a reply the
//! reading side owes never lands inside a line the writing side sends.
//!
//! The hub encodes this connection in [`Mode::Irc`]: a channel message arrives already as its
//! IRC lines (the same bytes for every IRC member of the room), which pass through as they
//! are. Bytes that are only such lines may skip the writer thread: [`IrcStream::direct`] lets
//! the broadcaster write them to a plain socket itself, under the send lock, as it does for a
//! plain TCP client. What the socket did not take is owed: it goes out first, before any line
//! of either side.
//!
//! Lock order: the send lock, then the state; the state lock is never held while writing.

mod client;
mod commands;
#[cfg(test)]
mod direct_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod line_tests;
pub mod message;
mod server;
mod state;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::proto::{Mode, ServerMsg};
use crate::tls::{DeadlineReader, Transport};

pub use client::plain_credentials;
pub use commands::ban_target;
pub use state::Settings;
use state::State;

/// Bytes read from the transport at a time.
const READ_CHUNK: usize = 512;

/// The most the reading side's replies may wait behind a line the broadcaster wrote only part
/// of; a client that lets more pile up is not reading, and is cut off.
const MAX_AFTER_OWED: usize = 64 * 1024;

/// How long a line waits for the answer to a hello sent before it. The reader reads again
/// only once the hello was answered, and the answer is in the outbox by then: this is the
/// writer's delay, not the login's.
const HELLO_WAIT: Duration = Duration::from_secs(5);

/// An IRC connection over a plain or TLS transport.
pub struct IrcStream {
    /// The bytes underneath: plain TCP or TLS.
    inner: Transport,
    /// Only the reader thread reads.
    read: Mutex<ReadSide>,
    /// What both sides know.
    state: Mutex<State>,
    /// Signalled when the answer to a hello has been read (`hello_out` cleared).
    answered: Condvar,
    /// The send lock, and what is still to be sent around it.
    send: Mutex<Sending>,
    /// How long registration may wait for `CAP END` after the server granted the name (the
    /// handshake's deadline).
    register_by: Instant,
}

/// What the send lock guards besides the socket.
#[derive(Default)]
struct Sending {
    /// What the writer was given after its last `\n`.
    partial: Vec<u8>,
    /// Bytes of a line the broadcaster wrote only part of: the next this many bytes the writer
    /// is given are its rest, sent as they are before anything else.
    owed: usize,
    /// What the reading side had to send while a line was owed: sent right after its rest.
    after_owed: Vec<u8>,
}

struct ReadSide {
    /// Bytes read and not yet a whole line: at most one line's worth and a chunk.
    raw: Vec<u8>,
    /// The rest of a line too long to read is being thrown away, up to its `\n`.
    discarding: bool,
    /// JSON request lines for the reader; `ready[at..]` are still to be read.
    ready: Vec<u8>,
    at: usize,
    ended: bool,
}

enum Got {
    Line(Vec<u8>),
    TooLong,
    Nothing,
}

impl ReadSide {
    /// The next whole line in `raw` (without `\r\n`), a line that was too long, or nothing yet.
    fn next(&mut self) -> Got {
        loop {
            let Some(end) = memchr::memchr(b'\n', &self.raw) else {
                if self.raw.len() > message::MAX_CONTENT + 1 {
                    self.raw.clear();
                    if !std::mem::replace(&mut self.discarding, true) {
                        return Got::TooLong;
                    }
                }
                return Got::Nothing;
            };
            let mut line: Vec<u8> = self.raw.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if line.len() > message::MAX_CONTENT {
                return Got::TooLong;
            }
            return Got::Line(line);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl IrcStream {
    /// A new connection; `register_by` is when its handshake must be over.
    pub fn new(inner: Transport, settings: Settings, register_by: Instant) -> IrcStream {
        IrcStream {
            inner,
            read: Mutex::new(ReadSide {
                raw: Vec::new(),
                discarding: false,
                ready: Vec::new(),
                at: 0,
                ended: false,
            }),
            state: Mutex::new(State::new(settings)),
            answered: Condvar::new(),
            send: Mutex::new(Sending::default()),
            register_by,
        }
    }

    /// The transport underneath.
    pub fn inner(&self) -> &Transport {
        &self.inner
    }

    /// The encoding the hub is to use for this connection, decided when its hello goes out:
    /// `server-time` cannot change after registration.
    pub fn codec(&self) -> Mode {
        Mode::irc(lock(&self.state).caps.server_time)
    }

    /// The send lock, if `bytes` may be written to the socket as they are now: they are only
    /// lines the hub encoded as IRC, the transport underneath is plain, nothing is owed or held
    /// half-way, and registration holds nothing back (nor has released it, still unwritten).
    /// `None` never waits: the bytes then go through the writer thread
    /// ([`IrcStream::write_lines`]).
    pub fn direct(&self, bytes: &[u8]) -> Option<DirectSend<'_>> {
        if !matches!(self.inner, Transport::Plain(_)) || !crate::proto::irc::pre_encoded(bytes) {
            return None;
        }
        let send = match self.send.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if send.owed > 0 || !send.partial.is_empty() {
            return None;
        }
        let st = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        // Held or released lines not yet written (the welcome burst after `CAP END`) go
        // first: the writer appends to them.
        if st.welcome.is_some() || st.closed || !st.registered || !st.out.is_empty() {
            return None;
        }
        Some(DirectSend { send })
    }

    /// Reads the next bytes of the JSON request stream, handling the IRC lines that make it.
    pub fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        let mut side = lock(&self.read);
        loop {
            if side.at < side.ready.len() {
                let n = buf.len().min(side.ready.len() - side.at);
                buf[..n].copy_from_slice(&side.ready[side.at..side.at + n]);
                side.at += n;
                if side.at == side.ready.len() {
                    side.ready.clear();
                    side.at = 0;
                }
                return Ok(n);
            }
            if side.ended {
                return Ok(0);
            }
            match side.next() {
                Got::Line(line) => {
                    let mut st = self.after_hello(deadline);
                    client::line(&mut st, &line, &mut side.ready);
                    drop(st);
                    self.flush_out(deadline)?;
                    continue;
                }
                Got::TooLong => {
                    let mut st = lock(&self.state);
                    st.numeric("417", ":Input line was too long (at most 512 bytes)");
                    drop(st);
                    state::refused(&mut side.ready);
                    self.flush_out(deadline)?;
                    continue;
                }
                Got::Nothing => {}
            }
            // Until registration is over (the welcome not yet read, or held for `CAP END`),
            // a read waits no later than its deadline, whatever the reader's own timeout.
            let registering = {
                let st = lock(&self.state);
                st.welcome.is_some() || (!st.registered && Instant::now() < self.register_by)
            };
            let got = if registering {
                self.read_holding(&mut side, deadline)
            } else {
                read_more(&self.inner, &mut side.raw, deadline)
            };
            match got {
                Ok(0) => side.ended = true,
                Ok(_) => {}
                Err(e)
                    if registering
                        && is_timeout(&e)
                        && Instant::now() >= self.register_by
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    // Registration waited for `CAP END` for as long as a handshake may last:
                    // it completes without it.
                    lock(&self.state).release();
                    self.flush_out(deadline)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The state, once the hello sent last (if any) has its answer: a line that follows a
    /// registration (JOIN, pipelined by a client after NICK and USER) is read as a
    /// registered client's.
    fn after_hello(&self, deadline: Option<Instant>) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        let until = Instant::now() + HELLO_WAIT;
        let until = deadline.map_or(until, |d| d.min(until));
        while st.hello_out {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .answered
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st
    }

    /// Reads while registration waits for `CAP END`: no later than the handshake's deadline,
    /// leaving the socket's own timeout (the reader's) as it was.
    fn read_holding(&self, side: &mut ReadSide, deadline: Option<Instant>) -> io::Result<usize> {
        let by = deadline.map_or(self.register_by, |d| d.min(self.register_by));
        let sock = self.inner.socket();
        let saved = sock.read_timeout()?;
        let got = read_more(&self.inner, &mut side.raw, Some(by));
        sock.set_read_timeout(saved)?;
        got
    }

    /// Sends what the state holds for the client, under the send lock; during the handshake,
    /// no later than its `deadline`. While a line the broadcaster began is owed, it waits
    /// behind that line's rest instead.
    fn flush_out(&self, deadline: Option<Instant>) -> io::Result<()> {
        let mut send = lock(&self.send);
        let out = std::mem::take(&mut lock(&self.state).out);
        if out.is_empty() {
            return Ok(());
        }
        if send.owed > 0 {
            if send.after_owed.len() + out.len() > MAX_AFTER_OWED {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client reads nothing of what it is sent",
                ));
            }
            send.after_owed.extend_from_slice(&out);
            return Ok(());
        }
        match deadline {
            None => (&self.inner).write_all(&out),
            Some(by) => {
                let sock = self.inner.socket();
                let saved = sock.write_timeout()?;
                let left = by.saturating_duration_since(Instant::now());
                sock.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
                let wrote = (&self.inner).write_all(&out);
                sock.set_write_timeout(saved)?;
                wrote
            }
        }
    }

    /// Takes encoded lines (JSON events and IRC lines the hub made, each ending with `\n`)
    /// and writes the IRC lines for each: a JSON event is translated, an IRC line passes
    /// through. The rest of a line the broadcaster wrote only part of goes first. A line cut
    /// between two writes is taken when its end comes.
    pub fn write_lines(&self, buf: &[u8]) -> io::Result<usize> {
        let mut send = lock(&self.send);
        let mut out = Vec::new();
        let mut rest = buf;
        if send.owed > 0 {
            let n = send.owed.min(rest.len());
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            send.owed -= n;
            if send.owed == 0 {
                out.append(&mut send.after_owed);
            }
        }
        send.partial.extend_from_slice(rest);
        {
            let mut st = lock(&self.state);
            let waiting = st.hello_out;
            let partial = &mut send.partial;
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &partial[start..]) {
                let line = &partial[start..start + end];
                start += end + 1;
                if line.first() == Some(&b'{') {
                    // An event this version does not know is skipped, as JSON clients skip it.
                    if let Ok(msg) = serde_json::from_slice::<ServerMsg>(line) {
                        server::event(&mut st, msg);
                    }
                } else {
                    server::raw(&mut st, line);
                }
            }
            partial.drain(..start);
            if st.welcome.is_some() && Instant::now() >= self.register_by {
                // A welcome that came after the handshake's deadline is not held.
                st.release();
            }
            if waiting && !st.hello_out {
                self.answered.notify_all();
            }
            out.append(&mut st.out);
        }
        if send.partial.capacity() > 64 * 1024 {
            send.partial.shrink_to(4096);
        }
        if !out.is_empty() {
            (&self.inner).write_all(&out)?;
        }
        Ok(buf.len())
    }

    /// The last bytes before the connection closes: `ERROR`, unless the server said goodbye.
    pub fn goodbye(&self) {
        let send = lock(&self.send);
        let mut st = lock(&self.state);
        if std::mem::replace(&mut st.closed, true) || send.owed > 0 {
            return;
        }
        drop(st);
        let _ = (&self.inner).write_all(b"ERROR :Closing Link: connection closed\r\n");
    }
}

/// The broadcaster's leave to write lines to an IRC connection's socket itself
/// ([`IrcStream::direct`]): it holds the send lock.
pub struct DirectSend<'a> {
    send: MutexGuard<'a, Sending>,
}

impl DirectSend<'_> {
    /// The socket took only part of the bytes: the last `n` are owed, and are the next bytes
    /// the writer is given.
    pub fn owe(&mut self, n: usize) {
        self.send.owed = n;
    }
}

/// Reads once from `inner` into the spare end of `raw`.
fn read_more(inner: &Transport, raw: &mut Vec<u8>, deadline: Option<Instant>) -> io::Result<usize> {
    let len = raw.len();
    raw.resize(len + READ_CHUNK, 0);
    let got = DeadlineReader::new(inner, deadline).read(&mut raw[len..]);
    raw.truncate(len + *got.as_ref().unwrap_or(&0));
    got
}

#[cfg(test)]
mod read_side_tests {
    use super::message::MAX_LINE;
    #[test]
    fn the_read_side_splits_lines_and_refuses_long_ones_once() {
        let mut side = super::ReadSide {
            raw: Vec::new(),
            discarding: false,
            ready: Vec::new(),
            at: 0,
            ended: false,
        };
        let line = |got: super::Got| match got {
            super::Got::Line(l) => String::from_utf8(l).unwrap(),
            super::Got::TooLong => "<too long>".into(),
            super::Got::Nothing => "<nothing>".into(),
        };
        side.raw.extend_from_slice(b"NICK a\r\nUSER a 0 * :A\nPI");
        assert_eq!(line(side.next()), "NICK a");
        assert_eq!(line(side.next()), "USER a 0 * :A");
        assert_eq!(line(side.next()), "<nothing>");
        side.raw.extend_from_slice(b"NG\r\n");
        assert_eq!(line(side.next()), "PING");
        // 510 bytes of content is a line; 511 is not.
        side.raw.extend_from_slice(&[b'x'; 510]);
        side.raw.extend_from_slice(b"\r\n");
        assert_eq!(line(side.next()).len(), 510);
        side.raw.extend_from_slice(&[b'x'; 511]);
        side.raw.extend_from_slice(b"\r\n");
        assert_eq!(line(side.next()), "<too long>");
        // A line without its end yet: refused once, the rest thrown away up to the end.
        let mut refusals = 0;
        for _ in 0..3 {
            side.raw.extend_from_slice(&[b'y'; 600]);
            if line(side.next()) == "<too long>" {
                refusals += 1;
            }
            assert!(side.raw.len() <= MAX_LINE);
        }
        assert_eq!(refusals, 1);
        side.raw.extend_from_slice(b"yyy\r\nQUIT\r\n");
        assert_eq!(line(side.next()), "QUIT");
    }
}
