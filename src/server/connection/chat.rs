//! After the handshake: lines into requests, `/paste`, pings and idle timeouts, floods, and
//! the lines a second a connection may send.

use super::*;

/// Lines a connection may send for each message `--msg-rate` allows: every line costs a
/// token of this budget, whatever it is, so even lines the broadcaster never charges (a
/// `pong`, a line of a paste, an IRC `PING` the IRC layer answers itself) cannot keep a core
/// busy. Past the budget the connection is read no faster than the budget refills: the reader
/// waits for the next token before it reads on, and TCP holds the rest back at the peer. A
/// connection kept waiting for every line for as long as a full burst takes to refill is
/// flooding, and is disconnected.
const LINES_PER_MESSAGE: f64 = 10.0;

/// The lines a connection may send at once: ten times `--msg-burst`, and never fewer than two
/// pastes of the most lines a message may have.
const MIN_LINE_BURST: f64 = 2.0 * proto::MAX_MESSAGE_LINES as f64;

/// The shortest time a connection may be held to its budget before it counts as flooding.
const MIN_THROTTLED: Duration = Duration::from_secs(1);

/// A token bucket of lines, refilled at [`LINES_PER_MESSAGE`] times `--msg-rate` a second.
/// `None` when the rate is off (`--msg-rate 0`).
pub(super) struct LineBudget {
    tokens: f64,
    refilled: Instant,
    rate: f64,
    burst: f64,
    /// Since when every line has had to wait for its token.
    throttled_since: Option<Instant>,
}

impl LineBudget {
    pub(super) fn new(config: &Config) -> Option<LineBudget> {
        let rate = config.chat.msg_rate * LINES_PER_MESSAGE;
        let burst = (config.chat.msg_burst * LINES_PER_MESSAGE).max(MIN_LINE_BURST);
        (rate > 0.0 && rate.is_finite()).then(|| LineBudget {
            tokens: burst,
            refilled: Instant::now(),
            rate,
            burst,
            throttled_since: None,
        })
    }

    /// Takes a line's token, waiting for it when there is none; false when the connection
    /// has waited for every line for longer than a full burst takes to refill (flooding).
    pub(super) fn admit(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.throttled_since = None;
            return true;
        }
        let since = *self.throttled_since.get_or_insert(now);
        let patience = Duration::from_secs_f64(self.burst / self.rate).max(MIN_THROTTLED);
        if now.duration_since(since) > patience {
            return false;
        }
        std::thread::sleep(Duration::from_secs_f64((1.0 - self.tokens) / self.rate));
        self.tokens = 0.0;
        self.refilled = Instant::now();
        true
    }
}

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
        let mut budget = LineBudget::new(&self.config);
        loop {
            let wanted = Some(match (mode, pinged) {
                (Mode::Human, _) => self.config.connection.idle_timeout.get(),
                (_, false) => self.config.connection.ping_interval.get(),
                (_, true) => self.config.connection.ping_timeout.get(),
            });
            if wanted != timeout {
                self.transport.socket().set_read_timeout(wanted)?;
                timeout = wanted;
            }
            let line = match lines.read_line() {
                Ok(line) => line,
                Err(e) if is_timeout(&e) => match (mode, pinged) {
                    (Mode::Human, _) => return Ok(self.silent(mode, Disconnect::Idle)),
                    (_, false) => {
                        ping_id += 1;
                        self.send(mode, &ServerMsg::Ping { id: ping_id });
                        pinged = true;
                        continue;
                    }
                    (_, true) => return Ok(self.silent(mode, Disconnect::NoPingAnswer)),
                },
                Err(e) => return Err(e),
            };
            pinged = false;
            // Every line waits for its token; a connection that keeps every line waiting is
            // flooding.
            if !matches!(line, Line::Eof | Line::EofMidLine)
                && budget.as_mut().is_some_and(|b| !b.admit())
            {
                return Ok(self.flooded(mode));
            }
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
