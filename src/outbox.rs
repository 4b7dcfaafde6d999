//! A client's outbox: a queue of encoded messages with a bound on how many may wait.
//!
//! A crossbeam `bounded` channel allocates every slot up front: 1,024 slots cost 24 KiB per
//! client even when empty, which is most of a connection's memory. This is an `unbounded`
//! channel (it allocates small blocks as messages arrive and frees them as they leave) plus an
//! atomic count of queued messages that enforces the same bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, RecvError, Sender, TryRecvError};

use crate::hub::Bytes;

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// `limit` messages are already waiting: the client is not keeping up.
    Full,
    /// The writer is gone: the connection is ending.
    Closed,
}

/// The sending side; cloned by the broadcaster and the connection's reader.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Bytes>,
    /// Messages pushed and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// The most messages that may wait.
    limit: usize,
}

/// The receiving side, owned by the connection's writer thread.
pub struct OutboxReceiver {
    rx: Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A new outbox holding at most `limit` messages.
pub fn outbox(limit: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: queued.clone(),
            limit,
        },
        OutboxReceiver { rx, queued },
    )
}

impl Outbox {
    /// Queues `bytes` unless the outbox is full or closed; never blocks.
    pub fn push(&self, bytes: Bytes) -> Result<(), PushError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(PushError::Full);
        }
        self.tx.send(bytes).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            PushError::Closed
        })
    }
}

impl OutboxReceiver {
    /// The next message, waiting for one; an error once every `Outbox` is dropped and the
    /// queue is empty.
    pub fn recv(&self) -> Result<Bytes, RecvError> {
        let b = self.rx.recv()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(b)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Result<Bytes, TryRecvError> {
        let b = self.rx.try_recv()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(b)
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
        let (tx, rx) = outbox(2);
        assert_eq!(tx.push(b("a")), Ok(()));
        assert_eq!(tx.push(b("b")), Ok(()));
        assert_eq!(tx.push(b("c")), Err(PushError::Full));
        assert_eq!(&*rx.recv().unwrap(), b"a");
        assert_eq!(tx.push(b("d")), Ok(()));
        assert_eq!(&*rx.try_recv().unwrap(), b"b");
        assert_eq!(&*rx.try_recv().unwrap(), b"d");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn closed_when_the_receiver_is_gone_and_empty_after_senders_go() {
        let (tx, rx) = outbox(4);
        tx.push(b("last")).unwrap();
        let tx2 = tx.clone();
        drop(tx);
        drop(tx2);
        assert_eq!(&*rx.recv().unwrap(), b"last");
        assert!(rx.recv().is_err());
        let (tx, rx) = outbox(4);
        drop(rx);
        assert_eq!(tx.push(b("x")), Err(PushError::Closed));
        // A refused push does not count against the bound.
        assert_eq!(tx.queued.load(Ordering::Acquire), 0);
    }
}
