//! A client's outbox: a queue of encoded messages with a bound on how many may wait, and a
//! fast path that skips the queue.
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
//! How bytes leave is chosen once, when the connection is spawned: [`direct`] outboxes (plain
//! TCP) let [`Outbox::send`] write with `MSG_DONTWAIT` itself when nothing is queued and the
//! writer is idle, which never blocks, and queue only what the socket did not take; waking one
//! writer thread per recipient per message is what limits a thread-per-client server, and most
//! deliveries need no wake-up at all this way. [`queued`] outboxes (TLS, and any transport that
//! must frame or encrypt the bytes) always go through the writer thread. The broadcaster sees
//! neither the socket nor the transport: only "send these bytes".

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, RecvError, Sender, TryRecvError};
use socket2::SockRef;

/// Encoded bytes, shared by every recipient of the same event in the same codec.
pub type Bytes = Arc<[u8]>;

/// What one push costs beyond its bytes: the shared allocation's header and the allocator's
/// rounding, and the channel's slot.
pub const PUSH_OVERHEAD: usize = 64;

/// What `bytes` count against the bound.
pub fn charge(bytes: &[u8]) -> usize {
    bytes.len() + PUSH_OVERHEAD
}

/// Ends a connection whose client does not read. Not politely: a goodbye would wait behind
/// what it has not read, and a FIN behind a closed window may not reach it for minutes. The
/// socket is set to reset when it closes (`SO_LINGER` 0), and shut now, which ends the
/// connection's reader and writer, whose end closes it.
pub fn abandon(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The bytes waiting would pass the limit: the client is not keeping up.
    Full,
    /// The writer is gone: the connection is ending.
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

/// State shared by every handle of one outbox.
struct Shared {
    /// Bytes pushed and not yet written: the writer lowers it only after writing, so zero
    /// means nothing is queued *and* nothing is half-way to the socket.
    queued: AtomicUsize,
    /// The budget of the address this client connects from, if it has one.
    address: Option<AddressBudget>,
    /// Held by whoever writes to the socket (the writer thread, or the broadcaster's fast
    /// path), so bytes from the two never interleave.
    writing: Mutex<()>,
    /// The connection's socket: for ending it, and (when `direct`) for the fast path.
    socket: Option<Arc<TcpStream>>,
    /// Whether [`Outbox::send`] may write to `socket` itself: the bytes need no more work
    /// (no encryption, no framing) on their way out.
    direct: bool,
}

/// The sending side; cloned by the broadcaster and the connection's reader.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Bytes>,
    shared: Arc<Shared>,
    /// The most bytes that may wait.
    limit: usize,
}

/// The receiving side, owned by the connection's writer thread.
pub struct OutboxReceiver {
    rx: Receiver<Bytes>,
    shared: Arc<Shared>,
}

/// An outbox whose bytes go to `socket` as they are (plain TCP): [`Outbox::send`] writes them
/// itself when it can do so without waiting. At most `limit` bytes wait (an empty outbox takes
/// any one push), within `address`'s budget shared with the other connections of the address.
pub fn direct(
    socket: Arc<TcpStream>,
    limit: usize,
    address: Option<AddressBudget>,
) -> (Outbox, OutboxReceiver) {
    make(Some(socket), true, limit, address)
}

/// An outbox whose bytes all go through the connection's writer thread (TLS, or a transport
/// that frames them); `socket`, when given, is what [`Outbox::abandon`] and
/// [`Outbox::shut_reading`] end.
pub fn queued(
    socket: Option<Arc<TcpStream>>,
    limit: usize,
    address: Option<AddressBudget>,
) -> (Outbox, OutboxReceiver) {
    make(socket, false, limit, address)
}

fn make(
    socket: Option<Arc<TcpStream>>,
    direct: bool,
    limit: usize,
    address: Option<AddressBudget>,
) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        address,
        writing: Mutex::new(()),
        socket,
        direct,
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
            limit,
        },
        OutboxReceiver { rx, shared },
    )
}

impl Outbox {
    /// Queues `bytes` unless the outbox is full or closed; never blocks. An empty outbox takes
    /// any push, however large, so one big batch alone never makes a client slow.
    pub fn push(&self, bytes: Bytes) -> Result<(), PushError> {
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
        self.tx.send(bytes).map_err(|_| {
            queued.fetch_sub(n, Ordering::AcqRel);
            if let Some(a) = address {
                a.queued.fetch_sub(n, Ordering::AcqRel);
            }
            PushError::Closed
        })
    }

    /// Sends `bytes` without ever blocking: written at once when the outbox is direct and
    /// idle, queued for the writer thread otherwise (or for what the socket did not take).
    pub fn send(&self, bytes: &Bytes) -> Result<(), PushError> {
        let stream = match &self.shared.socket {
            Some(s) if self.shared.direct => s,
            _ => return self.push(bytes.clone()),
        };
        let Ok(_writing) = self.shared.writing.try_lock() else {
            return self.push(bytes.clone());
        };
        if self.shared.queued.load(Ordering::Acquire) != 0 {
            return self.push(bytes.clone());
        }
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        match SockRef::from(&**stream).send_with_flags(bytes, flags) {
            Ok(n) if n == bytes.len() => Ok(()),
            // The rest goes through the queue; we still hold the lock, so nothing can get
            // between the part written and the part queued.
            Ok(n) => self.push(Arc::from(&bytes[n..])),
            // The socket is full (or the call was interrupted): queue it all.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                self.push(bytes.clone())
            }
            // A dead socket: the connection's reader reports the end.
            Err(_) => Err(PushError::Closed),
        }
    }

    /// Ends the connection's reading side, so its reader thread ends; the writer still sends
    /// what is queued, then the connection closes.
    pub fn shut_reading(&self) {
        if let Some(s) = &self.shared.socket {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Ends the connection now, with a reset: see [`abandon`].
    pub fn abandon(&self) {
        if let Some(s) = &self.shared.socket {
            abandon(s);
        }
    }
}

impl OutboxReceiver {
    /// The next message, waiting for one; an error once every `Outbox` is dropped and the
    /// queue is empty. Call [`OutboxReceiver::written`] once it is on the socket.
    pub fn recv(&self) -> Result<Bytes, RecvError> {
        self.rx.recv()
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Result<Bytes, TryRecvError> {
        self.rx.try_recv()
    }

    /// The lock to hold while writing to the socket.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.shared
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that received messages are now written: `n` is the sum of their [`charge`].
    pub fn written(&self, n: usize) {
        self.shared.queued.fetch_sub(n, Ordering::AcqRel);
        if let Some(a) = &self.shared.address {
            a.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Drop for OutboxReceiver {
    /// The connection is over: what was still queued no longer counts against its address.
    fn drop(&mut self) {
        if let Some(a) = &self.shared.address {
            let left = self.shared.queued.swap(0, Ordering::AcqRel);
            a.queued.fetch_sub(left, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn the_bound_counts_waiting_messages() {
        let one = charge(b"a");
        let (tx, rx) = queued(None, 2 * one, None);
        assert_eq!(tx.push(b("a")), Ok(()));
        assert_eq!(tx.push(b("b")), Ok(()));
        assert_eq!(tx.push(b("c")), Err(PushError::Full));
        assert_eq!(&*rx.recv().unwrap(), b"a");
        // Taken but not yet written still counts.
        assert_eq!(tx.push(b("d")), Err(PushError::Full));
        rx.written(one);
        assert_eq!(tx.push(b("d")), Ok(()));
        assert_eq!(&*rx.try_recv().unwrap(), b"b");
        assert_eq!(&*rx.try_recv().unwrap(), b"d");
        rx.written(2 * one);
        assert!(rx.try_recv().is_err());
        // An empty outbox takes a push bigger than the limit; a second one is refused.
        assert_eq!(tx.push(b("a big batch")), Ok(()));
        assert_eq!(tx.push(b("x")), Err(PushError::Full));
    }

    #[test]
    fn closed_when_the_receiver_is_gone_and_empty_after_senders_go() {
        let (tx, rx) = queued(None, 4, None);
        tx.push(b("last")).unwrap();
        let tx2 = tx.clone();
        drop(tx);
        drop(tx2);
        assert_eq!(&*rx.recv().unwrap(), b"last");
        assert!(rx.recv().is_err());
        let (tx, rx) = queued(None, 4, None);
        drop(rx);
        assert_eq!(tx.push(b("x")), Err(PushError::Closed));
        // A refused push does not count against the bound.
        assert_eq!(tx.shared.queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_direct_outbox_writes_when_idle_and_queues_behind_a_backlog() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let server = Arc::new(listener.accept().unwrap().0);
        let (tx, rx) = direct(server.clone(), 1024, None);
        tx.send(&b("one\n")).unwrap();
        assert!(rx.try_recv().is_err(), "an idle outbox is bypassed");
        // With something queued, later deliveries queue behind it, in order.
        tx.push(b("two\n")).unwrap();
        tx.send(&b("three\n")).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"two\n");
        assert_eq!(&*rx.try_recv().unwrap(), b"three\n");
        // While the writer holds the lock, the broadcaster queues instead of writing.
        rx.written(charge(b"two\n") + charge(b"three\n"));
        let guard = rx.lock();
        tx.send(&b("four\n")).unwrap();
        drop(guard);
        assert_eq!(&*rx.try_recv().unwrap(), b"four\n");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = [0u8; 4];
        std::io::Read::read_exact(&mut &client, &mut got).unwrap();
        assert_eq!(&got, b"one\n");
    }
    /// A connected pair: (the server's side, the client's side), with read timeouts.
    fn sockets() -> (Arc<TcpStream>, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (Arc::new(server), client)
    }

    /// Runs `send` on another thread and fails if it blocks: the broadcaster must never
    /// wait for a client.
    fn send_without_blocking(
        tx: &Outbox,
        bytes: &Bytes,
        server: &Arc<TcpStream>,
    ) -> Result<(), PushError> {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let (tx, bytes) = (tx.clone(), bytes.clone());
        std::thread::spawn(move || {
            let _ = done_tx.send(tx.send(&bytes));
        });
        match done.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(result) => result,
            Err(_) => {
                // Unblock the stuck send so the thread can end, then fail.
                let _ = server.shutdown(std::net::Shutdown::Both);
                panic!("send blocked on a client that does not read");
            }
        }
    }

    #[test]
    fn a_partial_send_queues_exactly_the_rest() {
        let (server, client) = sockets();
        let big: Bytes = (0..16 * 1024 * 1024u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let (tx, rx) = direct(server.clone(), 64 * 1024 * 1024, None);
        send_without_blocking(&tx, &big, &server).unwrap();
        let rest = rx
            .try_recv()
            .expect("what the socket did not take is queued");
        assert!(!rest.is_empty() && rest.len() < big.len(), "{}", rest.len());
        assert_eq!(tx.shared.queued.load(Ordering::Acquire), charge(&rest));
        assert!(rx.try_recv().is_err());
        // The writer's share and the fast path's share make up the message, in order.
        let writer = std::thread::spawn(move || {
            let _lock = rx.lock();
            std::io::Write::write_all(&mut &*server, &rest).unwrap();
            rx.written(charge(&rest));
        });
        let mut got = vec![0u8; big.len()];
        std::io::Read::read_exact(&mut &client, &mut got).unwrap();
        writer.join().unwrap();
        assert!(got[..] == big[..], "the bytes differ");
    }

    #[test]
    fn a_full_socket_queues_the_whole_message() {
        let (server, _client) = sockets();
        // Fill the socket until it takes nothing more.
        let chunk = vec![b'f'; 64 * 1024];
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        while SockRef::from(&*server)
            .send_with_flags(&chunk, flags)
            .is_ok()
        {}
        let (tx, rx) = direct(server.clone(), 1024, None);
        send_without_blocking(&tx, &b("whole\n"), &server).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"whole\n");
        assert_eq!(tx.shared.queued.load(Ordering::Acquire), charge(b"whole\n"));
    }

    #[test]
    fn a_dead_socket_is_reported_closed_and_nothing_is_queued() {
        let (server, _client) = sockets();
        server.shutdown(std::net::Shutdown::Write).unwrap();
        let (tx, rx) = direct(server.clone(), 1024, None);
        assert_eq!(tx.send(&b("lost\n")), Err(PushError::Closed));
        assert!(rx.try_recv().is_err());
        assert_eq!(tx.shared.queued.load(Ordering::Acquire), 0);
    }

    /// Many small pushes cost more than their bytes: the bound counts what they hold.
    #[test]
    fn small_pushes_are_charged_their_overhead() {
        let (tx, _rx) = queued(None, 100 * (2 + PUSH_OVERHEAD), None);
        let mut n = 0;
        while tx.push(b("!\n")).is_ok() {
            n += 1;
        }
        assert_eq!(n, 100);
    }

    /// The connections of one address share a budget: past it, a push to any of them fails,
    /// and what a closed connection still held is given back.
    #[test]
    fn an_address_budget_bounds_all_its_outboxes() {
        let one = charge(b"x");
        let budget = AddressBudget {
            queued: Arc::new(AtomicUsize::new(0)),
            limit: 3 * one,
        };
        let (first, arx) = queued(None, 100 * one, Some(budget.clone()));
        let (second, brx) = queued(None, 100 * one, Some(budget.clone()));
        assert_eq!(first.push(b("x")), Ok(()));
        assert_eq!(first.push(b("x")), Ok(()));
        assert_eq!(second.push(b("x")), Ok(()));
        assert_eq!(
            second.push(b("x")),
            Err(PushError::Full),
            "the address is full"
        );
        arx.recv().unwrap();
        arx.written(one);
        assert_eq!(second.push(b("x")), Ok(()));
        assert_eq!(budget.queued.load(Ordering::Acquire), 3 * one);
        drop(arx);
        assert_eq!(
            budget.queued.load(Ordering::Acquire),
            2 * one,
            "a's last push given back"
        );
        drop(brx);
        assert_eq!(budget.queued.load(Ordering::Acquire), 0);
        drop((first, second));
    }

    #[test]
    fn a_queued_outbox_never_writes_itself_and_ends_its_socket() {
        let (server, mut client) = sockets();
        let (tx, rx) = queued(Some(server.clone()), 1024, None);
        tx.send(&b("via the writer\n")).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"via the writer\n");
        tx.abandon();
        let mut buf = [0u8; 8];
        // Nothing was written to the socket, and it was reset.
        assert!(std::io::Read::read(&mut client, &mut buf).map_or(true, |n| n == 0));
    }

    /// One push larger than the bound still fits an empty outbox (and an address budget with
    /// nothing queued): a big batch alone never makes a client slow. The next one waits for it
    /// to be written.
    #[test]
    fn an_empty_outbox_takes_one_push_of_any_size() {
        let big: Bytes = Arc::from(vec![b'x'; 1000]);
        let budget = AddressBudget {
            queued: Arc::new(AtomicUsize::new(0)),
            limit: 16,
        };
        for address in [None, Some(budget)] {
            let (tx, rx) = queued(None, 16, address);
            assert_eq!(tx.push(big.clone()), Ok(()));
            assert_eq!(tx.push(b("y")), Err(PushError::Full));
            let taken = rx.try_recv().unwrap();
            rx.written(charge(&taken));
            assert_eq!(tx.push(big.clone()), Ok(()));
        }
    }
}
