//! One connection's thread, the reader: it runs the handshake and turns lines into
//! [`Event`]s for the broadcaster. What the client is sent leaves through its outbox, which
//! has a writer thread of its own only while the client is behind (see
//! [`crate::server::outbox`]).
//!
//! The reader answers malformed lines straight into the outbox (and closes a connection that
//! sends nothing else); every request goes through the broadcaster, which charges it against
//! the client's rate. When the reader ends, it hands the outbox over with
//! [`Outbox::finish`], which closes the connection once the broadcaster is done with it.

mod chat;
mod handshake;

use std::cell::Cell;
use std::io::{self, BufReader, Write};
use std::net::Shutdown;
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
use crate::server::outbox::{Outbox, PushError};
use crate::store::Disconnect;
use crate::tls::{DeadlineReader, Transport, TransportReader};

/// The reader's buffer. Chat lines are short; a small buffer keeps an idle connection small
/// (a longer line simply takes several reads; `LineReader` bounds the line itself).
const READ_BUFFER: usize = 512;

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
    /// When the handshake began (the accept, or the request that upgraded to a WebSocket):
    /// its deadline counts from here.
    pub started: Instant,
    /// Name claims in the cluster, when this node is one of several.
    pub claims: Option<Arc<crate::server::cluster::Claims>>,
    /// A WebSocket: JSON only, from the first message, and no greeting line.
    pub json_only: bool,
    /// Set when an answer did not fit in the outbox: the client does not read what it asks
    /// for, so the connection is ended as a slow consumer.
    pub overflowed: Cell<bool>,
}

impl Reader {
    /// Serves the connection until it ends, then tells the broadcaster why. The caller then
    /// hands the outbox over with [`Outbox::finish`].
    pub fn run(&self) {
        let reason = match self.serve() {
            _ if self.overflowed.get() => Disconnect::SlowConsumer,
            Ok(reason) => reason,
            Err(e) if is_hangup(&e) => Disconnect::Reset,
            Err(e) => Disconnect::ReadError(e.to_string()),
        };
        self.gone(reason);
    }

    /// Tells the broadcaster the connection ended. Out of line: the event is built in this
    /// frame, not in `run`'s, which stays on the stack under the whole handshake.
    #[inline(never)]
    fn gone(&self, reason: Disconnect) {
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
        let deadline = self.started + self.config.connection.handshake_timeout.get();
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

    fn send(&self, mode: Mode, msg: &ServerMsg) {
        self.send_raw(&proto::encode(msg, mode));
    }

    /// Sends bytes through this connection's outbox. A full outbox means the client does not
    /// read what it asks for: like any slow consumer it is disconnected (the socket is shut,
    /// so the next read ends the connection), and nothing more is queued.
    fn send_raw(&self, bytes: &[u8]) {
        if self.overflowed.get() {
            return;
        }
        if self.outbox.send(&Arc::from(bytes)) == Err(PushError::Full) {
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
