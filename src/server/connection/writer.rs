//! The writer thread: drains the outbox, coalescing what waits into one write, then closes.

use super::*;

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
pub(super) fn close_politely(stream: &TcpStream) {
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
