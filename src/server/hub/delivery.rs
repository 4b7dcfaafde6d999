//! Delivery: each event encoded once per mode and shared, the fast path, slow consumers.

use super::*;

impl<W: LogFile> Hub<W> {
    /// Queues a delivery that has no log row of its own.
    pub(super) fn push(&mut self, target: Target, msg: ServerMsg) {
        self.pending.push(Delivery {
            target,
            msg,
            logged_by: None,
        });
    }

    /// Sends to one client at once, outside the batch: only for answers that change nothing
    /// and are not logged (a refused name, a failed write). A client whose outbox is full is a
    /// slow consumer like any other: its socket is shut now and it is removed at the flush.
    pub(super) fn send_now(&mut self, conn: u64, mode: Mode, msg: &ServerMsg) {
        if let Some(client) = self.clients.get(&conn)
            && client.outbox.send(&Arc::from(proto::encode(msg, mode))) == Err(PushError::Full)
        {
            client.outbox.abandon();
            if !self.overflowed.contains(&conn) {
                self.overflowed.push(conn);
            }
        }
    }

    /// Hands every pending delivery to its recipients; returns the slow consumers.
    ///
    /// Consecutive deliveries to the same room form a segment. Each is encoded once per mode,
    /// and the segment is concatenated once per mode, so a member gets the whole segment in one
    /// send (or one outbox push). Only the few members for whom the segment differs (a sender
    /// whose own messages come back in another encoding, or not at all: human mode, IRC; the
    /// one a `RoomExcept` leaves out) get bytes of their own.
    pub(super) fn deliver(&mut self) -> Vec<u64> {
        let mut slow: Vec<u64> = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < pending.len() {
            let Some(room) = pending[i].target.room() else {
                let conns: &[u64] = match &pending[i].target {
                    Target::One(conn) => std::slice::from_ref(conn),
                    Target::Set(conns) => conns,
                    _ => unreachable!("room targets are handled below"),
                };
                let mut encoded: [Option<Bytes>; Mode::COUNT] = Default::default();
                for &conn in conns {
                    if let Some(c) = self.clients.get(&conn) {
                        let bytes = encoded[c.mode.index()].get_or_insert_with(|| {
                            Arc::from(proto::encode(&pending[i].msg, c.mode))
                        });
                        send(conn, c, bytes, &mut slow);
                    }
                }
                i += 1;
                continue;
            };
            let end = pending[i..]
                .iter()
                .position(|d| d.target.room() != Some(room))
                .map_or(pending.len(), |n| i + n);
            self.deliver_segment(room, &pending[i..end], &mut slow);
            i = end;
        }
        slow
    }

    /// Delivers a run of deliveries to one room; see [`Hub::deliver`].
    pub(super) fn deliver_segment(&self, key: &str, seg: &[Delivery], slow: &mut Vec<u64>) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        // Who gets something other than the whole segment.
        let mut special: Vec<u64> = Vec::new();
        for d in seg {
            let conn = match d.target {
                Target::Room {
                    sender: Some(s), ..
                } => match self.clients.get(&s) {
                    Some(c) if c.mode.own_messages() != Some(c.mode) => s,
                    _ => continue,
                },
                Target::RoomExcept { except, .. } => except,
                _ => continue,
            };
            if !special.contains(&conn) {
                special.push(conn);
            }
        }
        let mut parts = Encoded::new(seg);
        let mut whole: [Option<Bytes>; Mode::COUNT] = Default::default();
        let mut everyone: Vec<(u64, &Client)> = Vec::with_capacity(room.members.len());
        for &conn in &room.members {
            let Some(client) = self.clients.get(&conn) else {
                continue;
            };
            if slow.contains(&conn) {
                continue;
            }
            if special.contains(&conn) {
                let mut own = Vec::new();
                for (k, d) in seg.iter().enumerate() {
                    let mode = match d.target {
                        Target::Room {
                            sender: Some(s), ..
                        } if s == conn => client.mode.own_messages(),
                        Target::RoomExcept { except, .. } if except == conn => None,
                        Target::Room { .. } | Target::RoomExcept { .. } => Some(client.mode),
                        _ => None,
                    };
                    if let Some(mode) = mode {
                        own.extend_from_slice(parts.get(k, mode));
                    }
                }
                if !own.is_empty() {
                    send(conn, client, &Arc::from(own), slow);
                }
                continue;
            }
            whole[client.mode.index()].get_or_insert_with(|| {
                let mut all = Vec::new();
                for k in 0..seg.len() {
                    all.extend_from_slice(parts.get(k, client.mode));
                }
                Arc::from(all)
            });
            everyone.push((conn, client));
        }
        let send_all = |part: &[(u64, &Client)]| {
            let mut slow = Vec::new();
            for &(conn, client) in part {
                let bytes = whole[client.mode.index()].as_ref().expect("encoded above");
                send(conn, client, bytes, &mut slow);
            }
            slow
        };
        // A send costs microseconds (over loopback it includes the receiver's TCP work), so a
        // room of thousands is split across the cores; small rooms stay on this thread.
        let workers = (everyone.len() / PARALLEL_SEND_MIN).clamp(1, self.send_threads);
        if workers == 1 {
            slow.extend(send_all(&everyone));
            return;
        }
        let chunk = everyone.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let helpers: Vec<_> = everyone[chunk..]
                .chunks(chunk)
                .map(|part| scope.spawn(|| send_all(part)))
                .collect();
            slow.extend(send_all(&everyone[..chunk]));
            for h in helpers {
                slow.extend(h.join().expect("a send helper panicked"));
            }
        });
    }
}

/// Hands `bytes` to one client, noting it as slow if its outbox is full.
pub(super) fn send(conn: u64, client: &Client, bytes: &Bytes, slow: &mut Vec<u64>) {
    match client.outbox.send(bytes) {
        Ok(()) => {}
        Err(PushError::Full) => {
            if !slow.contains(&conn) {
                slow.push(conn);
            }
        }
        // The writer is gone; the connection thread reports the end.
        Err(PushError::Closed) => {}
    }
}

/// The encodings of a segment's deliveries, made on first need, once per mode.
pub(super) struct Encoded<'a> {
    seg: &'a [Delivery],
    /// Indexed by [`Mode::index`], then by position in the segment.
    bytes: [Vec<Option<Vec<u8>>>; Mode::COUNT],
}

impl<'a> Encoded<'a> {
    pub(super) fn new(seg: &'a [Delivery]) -> Encoded<'a> {
        Encoded {
            seg,
            bytes: std::array::from_fn(|_| vec![None; seg.len()]),
        }
    }

    pub(super) fn get(&mut self, k: usize, mode: Mode) -> &[u8] {
        self.bytes[mode.index()][k].get_or_insert_with(|| proto::encode(&self.seg[k].msg, mode))
    }
}
