//! Both logs: staging rows, and the flush that writes them before anything is delivered.

use super::*;

/// `data.csv`, whose every row is also an operational log line: stderr at `info`, target
/// `chatroom::ops`, so the journal (and fail2ban) see connects, logins, failed logins, kicks,
/// bans, mutes and every disconnect with its reason, as they are staged. The format is part of
/// the public interface (README, "The operational log"):
/// `EVENT conn=N ip=ADDR port=P name="NAME" detail="DETAIL"`, the strings quoted and escaped as
/// Rust does (`\"`, `\n`, `\u{1b}`), so a name cannot forge a field or a line.
pub(super) struct ConnectionLog<W: LogFile>(pub(super) CsvLog<W>);

impl<W: LogFile> ConnectionLog<W> {
    pub(super) fn stage(&mut self, row: &ConnRecord) {
        log::info!(target: "chatroom::ops", "{}", ops_line(row));
        self.0.stage(row);
    }

    pub(super) fn commit(&mut self) -> crate::Result<()> {
        self.0.commit()
    }

    pub(super) fn is_unsynced(&self) -> bool {
        self.0.is_unsynced()
    }

    pub(super) fn sync_now(&mut self) -> crate::Result<()> {
        self.0.sync_now()
    }
}

/// The operational log line of a `data.csv` row (see [`ConnectionLog`]).
pub(super) fn ops_line(row: &ConnRecord) -> String {
    let mut line = row.event.as_str().to_string();
    if let Some(conn) = row.conn {
        line.push_str(&format!(" conn={conn}"));
    }
    if !row.ip.is_empty() {
        line.push_str(&format!(" ip={}", row.ip));
    }
    if let Some(port) = row.port {
        line.push_str(&format!(" port={port}"));
    }
    line.push_str(&format!(" name={:?} detail={:?}", row.name, row.detail));
    line
}

/// How long a `data.csv` row may wait for its sync with `--fsync batch`.
const CONNECTIONS_SYNC_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl<W: LogFile> Hub<W> {
    /// Writes a server-wide row (`start`, `stop`) to `data.csv` now.
    pub fn log_server_event(&mut self, event: ConnEvent, detail: &str) {
        self.connections.stage(&ConnRecord {
            timestamp: store::now_timestamp(),
            event,
            conn: None,
            ip: String::new(),
            port: None,
            thread: String::new(),
            name: String::new(),
            detail: detail.to_string(),
        });
        if let Err(e) = self.connections.commit() {
            error!("{e}");
        }
        // Rare (start, stop): synced now, so the last row before an exit is on disk.
        if self.config.chat.fsync != Fsync::Never
            && let Err(e) = self.connections.sync_now()
        {
            error!("{e}");
        }
    }

    /// Assigns the next id and stages the `messages.csv` row; returns the message as sent.
    /// `room` is empty for a direct message, `to` set only for one. With `--fsync always` the
    /// row is written and synced at once; if that fails the sender (`conn`) is told and `None`
    /// comes back: the message must not be delivered.
    pub(super) fn log_message(
        &mut self,
        conn: u64,
        room: &str,
        from: String,
        to: Option<String>,
        kind: Kind,
        text: String,
    ) -> Option<ChatMessage> {
        let id = self.next_id;
        self.next_id += 1;
        self.logged_id(id);
        let ts = store::now_timestamp();
        self.messages.stage(&MessageRecord {
            id,
            timestamp: ts.clone(),
            room: room.to_string(),
            sender: from.clone(),
            recipient: to.clone().unwrap_or_default(),
            kind,
            text: text.clone(),
        });
        if self.config.chat.fsync == Fsync::Always
            && let Err(e) = self.messages.commit()
        {
            error!("{e}; the message was not delivered");
            self.storage_failed(conn);
            return None;
        }
        Some(ChatMessage {
            id,
            ts,
            room: room.to_string(),
            from,
            to,
            kind,
            text,
            history: false,
        })
    }

    /// Tells `conn` its message could not be logged, so it was not delivered.
    pub(super) fn storage_failed(&mut self, conn: u64) {
        let err = ServerMsg::failure(
            ErrorCode::Storage,
            "the server could not save your message; it was not sent".to_string(),
        );
        if let Some(mode) = self.clients.get(&conn).map(|c| c.mode) {
            self.send_now(conn, mode, &err);
        }
    }

    /// Writes what is staged to both logs, then delivers what is pending. Clients found slow
    /// while delivering are disconnected, which may queue more (their `left` notices).
    pub(super) fn flush(&mut self) {
        loop {
            if let Err(e) = self.connections.commit() {
                error!("{e}");
            }
            self.sync_connections_when_due();
            match self.messages.commit() {
                Ok(()) => {
                    let keep = self.config.chat.history_keep;
                    for (key, msg) in std::mem::take(&mut self.pending_history) {
                        for emptied in self.budget.remember(&mut self.rooms, &key, msg, keep) {
                            self.drop_if_unused(&emptied);
                        }
                    }
                }
                Err(e) => {
                    error!("{e}; the messages of this batch were not delivered");
                    self.pending_history.clear();
                    self.refuse_unlogged_messages();
                }
            }
            if self.pending.is_empty() && self.overflowed.is_empty() {
                for (reply, granted) in self.replies.drain(..) {
                    // The connection thread may have gone; then nobody waits for the answer.
                    let _ = reply.send(granted);
                }
                return;
            }
            let started = std::time::Instant::now();
            let mut slow = self.deliver();
            for conn in std::mem::take(&mut self.overflowed) {
                if !slow.contains(&conn) {
                    slow.push(conn);
                }
            }
            let took = started.elapsed();
            if took > std::time::Duration::from_millis(5) {
                debug!("delivering a batch took {took:?}");
            }
            for conn in slow {
                if let Some(client) = self.clients.get(&conn) {
                    warn!(
                        "conn {conn} ({}) is a slow consumer: its outbox is full; disconnecting",
                        client.name.as_deref().unwrap_or("unnamed")
                    );
                    client.outbox.abandon();
                }
                // Removed without flushing: this loop is the flush.
                self.forget(conn, &Disconnect::SlowConsumer);
            }
        }
    }

    /// Syncs `data.csv` once its oldest unsynced row is a second old (`--fsync batch`; with
    /// `always` every commit syncs, with `never` nothing does), and says when the next is due.
    pub(super) fn sync_connections_when_due(&mut self) {
        if self.config.chat.fsync != Fsync::Batch || !self.connections.is_unsynced() {
            self.connections_sync_due = None;
            return;
        }
        let now = std::time::Instant::now();
        match self.connections_sync_due {
            Some(due) if due <= now => {
                if let Err(e) = self.connections.sync_now() {
                    error!("{e}");
                }
                self.connections_sync_due = None;
            }
            Some(_) => {}
            None => self.connections_sync_due = Some(now + CONNECTIONS_SYNC_DELAY),
        }
    }

    /// The log write failed: no message of this batch may be delivered. Each sender is told
    /// once; other deliveries (notices) go ahead.
    pub(super) fn refuse_unlogged_messages(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut told: Vec<u64> = Vec::new();
        for d in pending {
            match d.logged_by {
                Some(conn) => {
                    if !told.contains(&conn) {
                        told.push(conn);
                        self.storage_failed(conn);
                    }
                }
                None => self.pending.push(d),
            }
        }
    }
}

/// The `data.csv` row of one connection event.
pub(super) fn conn_row(conn: u64, client: &Client, event: ConnEvent, detail: &str) -> ConnRecord {
    ConnRecord {
        timestamp: store::now_timestamp(),
        event,
        conn: Some(conn),
        ip: client.peer.ip().to_string(),
        port: Some(client.peer.port()),
        thread: client.thread.clone(),
        name: client.name.clone().unwrap_or_default(),
        detail: detail.to_string(),
    }
}
