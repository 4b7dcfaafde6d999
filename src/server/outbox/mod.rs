//! A client's outbox: a queue of encoded messages with a bound on how many may wait, a fast
//! path that skips the queue, and a writer thread that exists only while the client is behind.
//!
//! A crossbeam `bounded` channel allocates every slot up front: 1,024 slots cost 24 KiB per
//! client even when empty, which is most of a connection's memory. This is an `unbounded`
//! channel (it allocates small blocks as messages arrive and frees them as they leave) plus an
//! atomic count of the bytes not yet written. The bound is in bytes, not messages, because
//! one push may carry a whole batch of messages: bytes are what a slow client costs. Each push
//! is charged its bytes plus [`PUSH_OVERHEAD`], what its allocation and queue slot cost, so a
//! client that never reads while the server queues it one short error line after another is
//! held to the same bound in memory as one that falls behind a busy room.
//!
//! How bytes leave depends on the transport. Over plain TCP, [`Outbox::send`] writes with
//! `MSG_DONTWAIT` itself when nothing is queued and nobody is writing, which never blocks,
//! and queues only what the socket did not take. IRC over plain TCP does the same for bytes
//! that are only the hub's IRC lines ([`Transport::direct`]: under the IRC send lock, with
//! what the socket did not take owed to the IRC stream). Waking one writer thread per recipient per
//! message is what limits a thread-per-client server, and most deliveries need no thread at
//! all this way; so an idle plain connection has no writer thread either. The first push to a
//! queue nobody drains starts one (the *drainer*), which writes what waits, coalesced, and
//! ends once the queue has stayed empty for [`WRITER_IDLE`]. Over TLS (a transport that must
//! encrypt the bytes) everything is pushed, and the drainer, once started, stays until the
//! connection ends. When the reader ends, it becomes the drainer itself if none runs, and
//! whoever drains when the last sender is gone closes the connection.
//!
//! **Invariant:** at most one drainer at a time (the `draining` flag is its token), and every
//! socket write happens under the `writing` lock, so bytes leave in the order they were sent.
//!
//! The broadcaster sees neither the socket nor the transport: only "send these bytes".

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, error};
use socket2::SockRef;

use crate::error::is_hangup;
use crate::tls::Transport;

/// Encoded bytes, shared by every recipient of the same event in the same codec.
pub type Bytes = Arc<[u8]>;

/// What one push costs beyond its bytes: the shared allocation's header and the allocator's
/// rounding, and the channel's slot.
pub const PUSH_OVERHEAD: usize = 64;

/// How long a plain connection's writer thread waits on an empty outbox before it ends.
pub const WRITER_IDLE: Duration = Duration::from_secs(2);

/// The most bytes a drainer gathers from the queue into one write.
const MAX_COALESCE: usize = 64 * 1024;

/// How long a closing connection keeps reading (and discarding) what the peer still sends, so
/// the kernel closes with FIN rather than RST and the peer gets our last line.
const LINGER: Duration = Duration::from_secs(2);

/// What `bytes` count against the bound.
pub fn charge(bytes: &[u8]) -> usize {
    bytes.len() + PUSH_OVERHEAD
}

/// Ends a connection whose client does not read. Not politely: a goodbye would wait behind
/// what it has not read, and a FIN behind a closed window may not reach it for minutes. The
/// socket is set to reset when it closes (`SO_LINGER` 0), and shut now, which ends the
/// connection's reader and writer, whose end closes it.
pub fn abandon(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Both);
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The bytes waiting would pass the limit: the client is not keeping up.
    Full,
    /// The connection is ending: its socket failed, or it has nobody to write for it.
    Closed,
}

/// What all the outboxes of one address may hold together: without it, one address may open
/// `--max-per-ip` connections that never read, each holding a full outbox.
#[derive(Clone)]
pub struct AddressBudget {
    /// Bytes queued for all of them (as [`charge`] counts).
    pub queued: Arc<AtomicUsize>,
    pub limit: usize,
}

/// Starts a thread that runs the given work: how the server gives a connection a writer
/// (its name, its stack, what it keeps alive while it runs).
pub type Spawner = Box<dyn Fn(Box<dyn FnOnce() + Send>) -> io::Result<()> + Send + Sync>;

/// Where an outbox's bytes go.
pub struct Sink {
    /// The connection, for log lines.
    pub conn: u64,
    pub transport: Arc<Transport>,
    /// Starts the writer thread when one is needed.
    pub spawn: Spawner,
    /// How long a plain connection's writer waits on an empty queue before it ends
    /// ([`WRITER_IDLE`]).
    pub idle: Duration,
}

/// State shared by every handle of one outbox.
struct Shared {
    rx: Receiver<Bytes>,
    /// Bytes pushed and not yet written: the drainer lowers it only after writing, so zero
    /// means nothing is queued *and* nothing is half-way to the socket.
    queued: AtomicUsize,
    /// The budget of the address this client connects from, if it has one.
    address: Option<AddressBudget>,
    /// Held by whoever writes to the socket (the drainer, or a sender's fast path), so bytes
    /// from the two never interleave.
    writing: Mutex<()>,
    /// Held while queueing, and by the fast path from its check to the queueing of what the
    /// socket did not take; never held across anything that waits (only a `MSG_DONTWAIT`
    /// send). Taken after `writing`, never before it.
    order: Mutex<()>,
    /// Where the bytes go; `None` for an outbox that only queues (the hub's tests read it).
    sink: Option<Sink>,
    /// Whether [`Outbox::send`] may write to the socket itself: bytes can need no more work
    /// (no encryption, no framing) on their way out. Plain TCP always; IRC for the lines the
    /// hub encoded as IRC ([`Transport::direct`] says which, each time).
    direct: bool,
    /// The drainer's token: set while a thread owns `rx` and writes what it takes.
    draining: AtomicBool,
    /// Set when the reader has ended: the drainer then stays until the last sender is gone,
    /// and closes the connection.
    ending: AtomicBool,
    /// Set when a write failed or no writer could be started: pushes are refused.
    dead: AtomicBool,
    /// Runs between a partial write and the queueing of its rest, for tests of that window.
    #[cfg(test)]
    after_partial: Mutex<Option<Box<dyn Fn() + Send>>>,
}

/// The sending side; cloned by the broadcaster and the connection's reader.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Bytes>,
    shared: Arc<Shared>,
    /// The most bytes that may wait.
    limit: usize,
}

/// An outbox for a connection: at most `limit` bytes wait (an empty outbox takes any one
/// push), within `address`'s budget shared with the other connections of the address.
pub fn outbox(sink: Sink, limit: usize, address: Option<AddressBudget>) -> Outbox {
    make(Some(sink), limit, address)
}

fn make(sink: Option<Sink>, limit: usize, address: Option<AddressBudget>) -> Outbox {
    let (tx, rx) = crossbeam_channel::unbounded();
    let direct = sink
        .as_ref()
        .is_some_and(|s| s.transport.may_write_direct());
    let shared = Arc::new(Shared {
        rx,
        queued: AtomicUsize::new(0),
        address,
        writing: Mutex::new(()),
        order: Mutex::new(()),
        sink,
        direct,
        draining: AtomicBool::new(false),
        ending: AtomicBool::new(false),
        dead: AtomicBool::new(false),
        #[cfg(test)]
        after_partial: Mutex::new(None),
    });
    Outbox { tx, shared, limit }
}

impl Outbox {
    /// Queues `bytes` unless the outbox is full or closed, and makes sure a drainer runs;
    /// never blocks. An empty outbox takes any push, however large, so one big batch alone
    /// never makes a client slow.
    pub fn push(&self, bytes: Bytes) -> Result<(), PushError> {
        {
            let _order = self.shared.order();
            self.enqueue(bytes)?;
        }
        self.shared.wake()
    }

    /// The bound's check and the queueing; called holding the `order` lock.
    fn enqueue(&self, bytes: Bytes) -> Result<(), PushError> {
        if self.shared.dead.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let queued = &self.shared.queued;
        let n = charge(&bytes);
        let before = queued.fetch_add(n, Ordering::AcqRel);
        if before > 0 && before + n > self.limit {
            queued.fetch_sub(n, Ordering::AcqRel);
            return Err(PushError::Full);
        }
        let address = self.shared.address.as_ref();
        if let Some(a) = address {
            let all = a.queued.fetch_add(n, Ordering::AcqRel);
            if all > 0 && all + n > a.limit {
                a.queued.fetch_sub(n, Ordering::AcqRel);
                queued.fetch_sub(n, Ordering::AcqRel);
                return Err(PushError::Full);
            }
        }
        // The receiver lives in `shared`, which this handle keeps alive: the send cannot fail.
        let _ = self.tx.send(bytes);
        Ok(())
    }

    /// Sends `bytes` without ever blocking: written at once when the outbox is direct and
    /// idle, queued for the drainer otherwise (or for what the socket did not take).
    pub fn send(&self, bytes: &Bytes) -> Result<(), PushError> {
        if !self.shared.direct {
            return self.push(bytes.clone());
        }
        let queued_rest = {
            let Ok(_writing) = self.shared.writing.try_lock() else {
                return self.push(bytes.clone());
            };
            // Held from before the check to after the rest of a partial write is queued: a
            // push from another thread (the reader's ping, while the broadcaster writes) must
            // not land between the part written and the part queued.
            let _order = self.shared.order();
            let sink = self.shared.sink.as_ref().expect("direct");
            let permit = if self.shared.queued.load(Ordering::Acquire) == 0 {
                sink.transport.direct(bytes)
            } else {
                None
            };
            if let Some(mut permit) = permit {
                let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                let socket = sink.transport.socket();
                match SockRef::from(&**socket).send_with_flags(bytes, flags) {
                    Ok(n) if n == bytes.len() => return Ok(()),
                    Ok(n) => {
                        permit.owe(bytes.len() - n);
                        #[cfg(test)]
                        if let Some(hook) = &*self.shared.after_partial.lock().unwrap() {
                            hook();
                        }
                        if let Err(e) = self.enqueue(Arc::from(&bytes[n..])) {
                            // Half a line is out: the client must not take it for a whole one.
                            abandon(socket);
                            return Err(e);
                        }
                    }
                    // The socket is full (or the call was interrupted): queue it all.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        self.enqueue(bytes.clone())?
                    }
                    // A dead socket: the connection's reader reports the end.
                    Err(_) => return Err(PushError::Closed),
                }
                true
            } else {
                false
            }
        };
        if queued_rest {
            // Started once the locks are let go: the drainer takes `writing` first thing.
            self.shared.wake()
        } else {
            self.push(bytes.clone())
        }
    }

    /// Ends the connection's reading side, so its reader thread ends; what is queued is still
    /// sent, then the connection closes.
    pub fn shut_reading(&self) {
        if let Some(s) = self.shared.socket() {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    /// Ends the connection now, with a reset: see [`abandon`].
    pub fn abandon(&self) {
        if let Some(s) = self.shared.socket() {
            abandon(s);
        }
    }

    /// Whether a writer thread (or the closing reader) is draining the queue now.
    pub fn has_drainer(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// The reader is done: drops its handle and, if no writer thread is draining, drains on
    /// this thread until the last sender is gone, then closes the connection politely. A
    /// running writer does the same instead of ending when idle.
    pub fn finish(self) {
        let shared = self.shared.clone();
        drop(self);
        shared.ending.store(true, Ordering::SeqCst);
        if shared.sink.is_some() && !shared.draining.swap(true, Ordering::SeqCst) {
            shared.drain();
        }
    }
}

impl Shared {
    fn socket(&self) -> Option<&Arc<TcpStream>> {
        self.sink.as_ref().map(|s| s.transport.socket())
    }

    /// Called after a push: starts a writer thread unless a drainer runs already.
    fn wake(self: &Arc<Self>) -> Result<(), PushError> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        if self.draining.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let shared = self.clone();
        match (sink.spawn)(Box::new(move || shared.drain())) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Nobody can write for this client: end it, as the OS will give no thread.
                error!(
                    "conn {}: cannot start a writer thread: {e}; disconnecting",
                    sink.conn
                );
                self.dead.store(true, Ordering::Release);
                abandon(sink.transport.socket());
                Err(PushError::Closed)
            }
        }
    }

    /// The drainer's loop: writes what is queued, coalesced, until the queue has been empty
    /// for [`WRITER_IDLE`] (plain, while the reader runs), a write fails, or the last sender
    /// is gone (then closes the connection). Called holding the `draining` token.
    fn drain(&self) {
        let sink = self.sink.as_ref().expect("a drainer has a sink");
        // Allocated only when two or more messages are waiting at once; a lone message is
        // written straight from its shared bytes.
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let first = if self.direct && !self.ending.load(Ordering::SeqCst) {
                self.rx.recv_timeout(sink.idle)
            } else {
                self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            let first = match first {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    // Give the token back, then look again: a push that saw the token still
                    // held has queued before this store, so it is seen below.
                    self.draining.store(false, Ordering::SeqCst);
                    if self.rx.is_empty() && !self.ending.load(Ordering::SeqCst) {
                        debug!("conn {}: writer idle, ending", sink.conn);
                        return;
                    }
                    if self.draining.swap(true, Ordering::SeqCst) {
                        return; // Another drainer took over.
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    sink.transport.goodbye();
                    close_politely(sink.transport.socket());
                    return;
                }
            };
            if let Err(e) = self.write_batch(&sink.transport, first, &mut buf) {
                if is_hangup(&e) {
                    debug!("conn {}: peer went away while writing: {e}", sink.conn);
                } else {
                    debug!("conn {}: write failed: {e}", sink.conn);
                }
                self.dead.store(true, Ordering::Release);
                // Wake the reader so the broadcaster hears of the end.
                let _ = sink.transport.socket().shutdown(Shutdown::Both);
                return;
            }
        }
    }

    /// Writes `first` and whatever else waits (up to [`MAX_COALESCE`]) in one write.
    fn write_batch(
        &self,
        transport: &Transport,
        first: Bytes,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        // Hold the write lock from here, so a sender's fast path cannot slip a later message
        // onto the socket before these.
        let _writing = self.lock();
        let mut taken = charge(&first);
        let result = match self.rx.try_recv() {
            Err(_) => (&*transport).write_all(&first),
            Ok(second) => {
                taken += charge(&second);
                buf.clear();
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second);
                while buf.len() < MAX_COALESCE {
                    match self.rx.try_recv() {
                        Ok(more) => {
                            taken += charge(&more);
                            buf.extend_from_slice(&more);
                        }
                        Err(_) => break,
                    }
                }
                let r = (&*transport).write_all(buf);
                if buf.capacity() > 4 * MAX_COALESCE {
                    *buf = Vec::new();
                }
                r
            }
        };
        self.written(taken);
        result
    }

    /// The lock to hold while queueing.
    fn order(&self) -> MutexGuard<'_, ()> {
        self.order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lock to hold while writing to the socket.
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that taken messages are now written: `n` is the sum of their [`charge`].
    fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        if let Some(a) = &self.address {
            a.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Drop for Shared {
    /// The connection is over: what was still queued no longer counts against its address.
    fn drop(&mut self) {
        if let Some(a) = &self.address {
            let left = self.queued.swap(0, Ordering::AcqRel);
            a.queued.fetch_sub(left, Ordering::AcqRel);
        }
    }
}

/// The last sender is gone: the connection is over. Sends FIN, then reads what the peer still
/// sends for a moment, so unread input does not turn our close into a reset that could destroy
/// the last lines we wrote. Out of line so its buffer does not enlarge (and, with stack
/// probes, touch) the drainer's stack frame.
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

/// An outbox with no connection, and the handle that reads its queue: for tests of the
/// queue and of the hub.
#[cfg(test)]
pub fn detached(limit: usize, address: Option<AddressBudget>) -> (Outbox, OutboxReceiver) {
    let tx = make(None, limit, address);
    let rx = OutboxReceiver {
        shared: tx.shared.clone(),
    };
    (tx, rx)
}

/// Reads a detached outbox's queue, as a drainer would.
#[cfg(test)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

#[cfg(test)]
impl OutboxReceiver {
    pub fn recv(&self) -> Result<Bytes, crossbeam_channel::RecvError> {
        self.shared.rx.recv()
    }

    pub fn try_recv(&self) -> Result<Bytes, crossbeam_channel::TryRecvError> {
        self.shared.rx.try_recv()
    }

    pub fn written(&self, n: usize) {
        self.shared.written(n)
    }
}

#[cfg(test)]
mod tests;
