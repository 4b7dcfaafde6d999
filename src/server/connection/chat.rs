//! After the handshake: lines into requests, `/paste`, pings and idle timeouts, floods.

use super::*;

/// A paste in progress (human mode, `/paste` ... `.`).
pub(super) struct Paste {
    pub(super) text: String,
    pub(super) lines: usize,
    /// Set when the paste passed a limit: the rest is read and discarded up to the `.`.
    pub(super) refused: Option<ProtocolError>,
}

impl Reader {
    /// Reads requests until the connection ends; returns why it ended.
    #[inline(never)]
    pub(super) fn chat(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        mode: Mode,
    ) -> io::Result<Disconnect> {
        let mut paste: Option<Paste> = None;
        // Lines refused in a row; a good request starts the count again.
        let mut refused = 0u32;
        // When the server pinged this (JSON) client and is waiting for any line back.
        let mut pinged = false;
        let mut ping_id = 0u64;
        let mut timeout = None;
        loop {
            let wanted = Some(match (mode, pinged) {
                (Mode::Json | Mode::Irc | Mode::IrcTime, false) => {
                    self.config.connection.ping_interval.get()
                }
                (Mode::Json | Mode::Irc | Mode::IrcTime, true) => {
                    self.config.connection.ping_timeout.get()
                }
                (Mode::Human, _) => self.config.connection.idle_timeout.get(),
            });
            if wanted != timeout {
                self.transport.socket().set_read_timeout(wanted)?;
                timeout = wanted;
            }
            let line = match lines.read_line() {
                Ok(line) => line,
                Err(e) if is_timeout(&e) => match (mode, pinged) {
                    (Mode::Json | Mode::Irc | Mode::IrcTime, false) => {
                        ping_id += 1;
                        self.send(mode, &ServerMsg::Ping { id: ping_id });
                        pinged = true;
                        continue;
                    }
                    (Mode::Json | Mode::Irc | Mode::IrcTime, true) => {
                        return Ok(self.silent(mode, Disconnect::NoPingAnswer));
                    }
                    (Mode::Human, _) => return Ok(self.silent(mode, Disconnect::Idle)),
                },
                Err(e) => return Err(e),
            };
            pinged = false;
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::TooLong => {
                    let limit = self.config.connection.max_line;
                    let err = ProtocolError::LineTooLong { limit };
                    match &mut paste {
                        Some(p) => {
                            p.refused.get_or_insert(err);
                        }
                        None => {
                            self.send(mode, &ServerMsg::error(&err));
                            refused += 1;
                            if refused >= self.config.chat.flood_limit {
                                return Ok(self.flooded(mode));
                            }
                        }
                    }
                    continue;
                }
                Line::Eof => return Ok(Disconnect::Closed),
                Line::EofMidLine => return Ok(Disconnect::ClosedMidLine),
            };
            if let Some(p) = &mut paste {
                let Some(text) = self.paste_line(p, bytes) else {
                    continue;
                };
                paste = None;
                match text {
                    Ok(text) => {
                        refused = 0;
                        if !self.forward(Request::Say(text)) {
                            return Ok(Disconnect::ServerStopping);
                        }
                    }
                    Err(e) => {
                        self.send(mode, &ServerMsg::error(&e));
                        refused += 1;
                        if refused >= self.config.chat.flood_limit {
                            return Ok(self.flooded(mode));
                        }
                    }
                }
                continue;
            }
            let req = match utf8(bytes).and_then(|line| proto::parse_request(mode, line)) {
                Ok(Some(req)) => req,
                Ok(None) => continue,
                Err(e) => {
                    self.send(mode, &ServerMsg::error(&e));
                    refused += 1;
                    if refused >= self.config.chat.flood_limit {
                        return Ok(self.flooded(mode));
                    }
                    continue;
                }
            };
            // Only a request the broadcaster takes (and charges) starts the count again: a
            // `pong` or a `/paste` costs nothing.
            match req {
                Request::Pong => {}
                Request::Paste => {
                    let ts = crate::store::now_timestamp();
                    let text = format!(
                        "pasting: send the lines, then a line holding only '.' (at most {} bytes, {} lines)",
                        self.config.connection.max_line,
                        proto::MAX_MESSAGE_LINES
                    );
                    self.send(mode, &ServerMsg::System { ts, text });
                    paste = Some(Paste {
                        text: String::new(),
                        lines: 0,
                        refused: None,
                    });
                }
                Request::Quit(_) => {
                    self.forward(req);
                    return Ok(Disconnect::Quit(None));
                }
                req => {
                    refused = 0;
                    if !self.forward(req) {
                        return Ok(Disconnect::ServerStopping);
                    }
                }
            }
        }
    }

    /// Adds one line to a paste. `None` while the paste goes on; at its `.`, the text or why
    /// it was refused.
    pub(super) fn paste_line(
        &self,
        p: &mut Paste,
        bytes: &[u8],
    ) -> Option<Result<String, ProtocolError>> {
        if bytes == b"." {
            let done = std::mem::replace(
                p,
                Paste {
                    text: String::new(),
                    lines: 0,
                    refused: None,
                },
            );
            return Some(match done.refused {
                Some(e) => Err(e),
                None => proto::validate_text(&done.text).map(|()| done.text),
            });
        }
        if p.refused.is_some() {
            return None;
        }
        let line = match utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                p.refused = Some(e);
                return None;
            }
        };
        p.lines += 1;
        if p.lines > proto::MAX_MESSAGE_LINES {
            p.refused = Some(ProtocolError::TooManyLines { lines: p.lines });
        } else if p.text.len() + line.len() + 1 > self.config.connection.max_line {
            p.refused = Some(ProtocolError::LineTooLong {
                limit: self.config.connection.max_line,
            });
        } else {
            if p.lines > 1 {
                p.text.push('\n');
            }
            p.text.push_str(line);
        }
        None
    }

    /// Hands a request to the broadcaster; false when it is gone (the server is stopping).
    pub(super) fn forward(&self, req: Request) -> bool {
        self.events
            .send(Event::Request {
                conn: self.conn,
                req,
            })
            .is_ok()
    }

    /// Says goodbye to a client that sent nothing but refused lines; the reason for
    /// `data.csv`.
    #[cold]
    #[inline(never)]
    pub(super) fn flooded(&self, mode: Mode) -> Disconnect {
        let bye = ServerMsg::Bye {
            ts: crate::store::now_timestamp(),
            reason: format!(
                "disconnected for flooding ({} refused lines in a row); you may reconnect",
                self.config.chat.flood_limit
            ),
        };
        self.send(mode, &bye);
        Disconnect::Flooding
    }

    /// Says goodbye to a client that went silent; returns the reason for `data.csv`.
    #[cold]
    #[inline(never)]
    pub(super) fn silent(&self, mode: Mode, why: Disconnect) -> Disconnect {
        let bye = ServerMsg::Bye {
            ts: crate::store::now_timestamp(),
            reason: why.told(),
        };
        self.send(mode, &bye);
        why
    }
}
