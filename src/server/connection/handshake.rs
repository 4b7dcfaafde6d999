//! The handshake: the greeting, TLS's first byte, names, passwords, and its one deadline.

use super::*;

/// What a line of the handshake says.
enum Named {
    Hello(Hello),
    /// `/quit` before a name.
    Quit,
    /// Not a name; the client was told why.
    Refused,
}

/// What came of asking for a name.
enum Attempt {
    Granted(Mode),
    /// Refused by the broadcaster (counts toward the flood limit); the client was told.
    Refused,
    /// Refused at the password; the client was asked again.
    Again,
    Ended(Disconnect),
}

/// The outcome of a login.
pub(super) enum Login {
    /// In, as a guest or to an account.
    Granted(Identity),
    /// Refused; the client was told and may try again.
    Refused,
    /// The connection ended (closed, or the handshake ran out of time).
    Ended(Disconnect),
}

impl Reader {
    /// Greets, and reads names until one is granted: `Ok(Ok(mode))`, or `Ok(Err(reason))` when
    /// the connection ended first. Its own frame, not inlined into `serve`: the stack's deepest
    /// point sets how much of each thread's stack stays resident.
    #[inline(never)]
    pub(super) fn handshake(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        deadline: Instant,
    ) -> io::Result<Result<Mode, Disconnect>> {
        // A WebSocket speaks JSON from its first message: no greeting line to skip.
        if !self.json_only {
            self.send_raw(proto::GREETING.as_bytes());
        }
        // Names refused so far: they count toward the flood limit like refused lines.
        let mut refused = 0u32;
        loop {
            if refused >= self.config.chat.flood_limit {
                return Ok(Err(self.flooded(self.first_mode())));
            }
            let line = match lines.read_line() {
                Ok(line) => line,
                Err(e) if is_timeout(&e) => return Ok(Err(self.handshake_timed_out())),
                Err(e) => return Err(e),
            };
            // users.csv may have changed since the last name: read it now, where the stack is
            // shallow (see `Directory::refresh`), and look names up without touching the file.
            self.auth.directory.refresh();
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::TooLong => {
                    let limit = self.config.connection.max_line;
                    self.refuse_name(self.first_mode(), &ProtocolError::LineTooLong { limit });
                    refused += 1;
                    continue;
                }
                Line::Eof | Line::EofMidLine => return Ok(Err(Disconnect::ClosedDuringHandshake)),
            };
            let hello = match self.read_hello(bytes) {
                Named::Hello(hello) => hello,
                Named::Quit => return Ok(Err(self.quit_before_name())),
                Named::Refused => {
                    refused += 1;
                    continue;
                }
            };
            // Looked up here, where the stack is shallow: a name's keys take a few hundred bytes
            // of stack, and under `ask` and `log_in` they made every reader touch a third page.
            let registered = self.auth.is_registered(&hello.name);
            match self.ask(lines, hello, registered, deadline)? {
                Attempt::Granted(mode) => return Ok(Ok(mode)),
                Attempt::Refused => refused += 1,
                Attempt::Again => {}
                Attempt::Ended(reason) => return Ok(Err(reason)),
            }
        }
    }

    /// Parses a line of the handshake as a name (or `/quit`). Out of line, like [`Self::ask`]:
    /// the handshake's own frame then stays small while it waits for lines, and the stack's
    /// deepest point sets how much of each thread's stack stays resident.
    #[inline(never)]
    fn read_hello(&self, bytes: &[u8]) -> Named {
        if matches!(
            utf8(bytes).map(proto::parse_command),
            Ok(Ok(Request::Quit(_)))
        ) {
            return Named::Quit;
        }
        let guess = if bytes.trim_ascii_start().starts_with(b"{") {
            Mode::Json
        } else {
            self.first_mode()
        };
        let parsed = utf8(bytes).and_then(proto::parse_hello);
        let parsed = match parsed {
            Ok(hello) if self.json_only && hello.mode != Mode::Json => {
                Err(ProtocolError::BadRequest {
                    detail: "this connection speaks JSON: send {\"type\":\"hello\",\"name\":...}"
                        .into(),
                })
            }
            other => other,
        };
        match parsed {
            Ok(hello) => Named::Hello(hello),
            Err(e) => {
                self.refuse_name(guess, &e);
                Named::Refused
            }
        }
    }

    /// Logs a parsed name in and asks the broadcaster for it.
    #[inline(never)]
    fn ask(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        hello: Hello,
        registered: bool,
        deadline: Instant,
    ) -> io::Result<Attempt> {
        let mode = hello.mode;
        // The hello (and the password in it) ends here, on this thread: the broadcaster
        // is told who the client is, never what it typed to prove it.
        let mut who = match self.log_in(lines, hello, registered, deadline)? {
            Login::Granted(who) => who,
            Login::Refused => {
                self.prompt_again(mode);
                return Ok(Attempt::Again);
            }
            Login::Ended(reason) => return Ok(Attempt::Ended(reason)),
        };
        if let Transport::Irc(irc) = &*self.transport {
            // The hub encodes this connection's channel messages as IRC lines; the reader
            // still reads JSON.
            who.mode = irc.codec();
        }
        let claimed = match self.claim(&who) {
            Some(keys) => keys,
            None => {
                self.prompt_again(mode);
                return Ok(Attempt::Refused);
            }
        };
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let hello_event = Event::Hello {
            conn: self.conn,
            who,
            reply: reply_tx,
        };
        if self.events.send(hello_event).is_err() {
            return Ok(Attempt::Ended(Disconnect::ServerStopping));
        }
        Ok(match reply_rx.recv() {
            Ok(true) => Attempt::Granted(mode),
            // The broadcaster has sent the reason; ask again.
            Ok(false) => {
                self.unclaim(&claimed);
                self.prompt_again(mode);
                Attempt::Refused
            }
            Err(_) => Attempt::Ended(Disconnect::ServerStopping),
        })
    }

    /// On a node of a cluster, claims the name for this connection before the broadcaster is
    /// asked: `None` (the client told why) when a client on another node holds it. Returns
    /// the keys claimed, to give back if the broadcaster refuses the name.
    #[inline(never)]
    fn claim(&self, who: &Identity) -> Option<Vec<String>> {
        let Some(claims) = &self.claims else {
            return Some(Vec::new());
        };
        let keys = proto::names::keys(&who.name);
        match claims.claim(&who.name, &keys, self.conn) {
            crate::server::cluster::Claim::Granted => Some(keys),
            crate::server::cluster::Claim::Elsewhere => {
                let msg = format!(
                    "{} is in use on another server of this cluster; choose another",
                    who.name
                );
                self.send(who.mode, &ServerMsg::failure(ErrorCode::NameTaken, msg));
                None
            }
        }
    }

    /// Gives back what [`Self::claim`] took, when the name was refused after all.
    #[cold]
    fn unclaim(&self, keys: &[String]) {
        if let Some(claims) = &self.claims {
            claims.release(keys, self.conn);
        }
    }

    /// Checks the password when there is one to check. A registered name (or any name on a
    /// private server) must give its password. In human mode, once the server has accounts,
    /// every name is asked (an empty answer joins as a guest): so a mistyped name never turns
    /// the password typed next into a chat line, and the prompt does not tell which names are
    /// registered. Each attempt counts against the throttle before it is checked; wrong
    /// passwords wait longer each time and are logged.
    #[inline(never)]
    pub(super) fn log_in(
        &self,
        lines: &mut LineReader<TransportReader<'_>>,
        hello: Hello,
        registered: bool,
        deadline: Instant,
    ) -> io::Result<Login> {
        let mode = hello.mode;
        let private = self.auth.private;
        let password = match mode {
            Mode::Json | Mode::Irc | Mode::IrcTime => match hello.password {
                Some(p) => p,
                None if registered || private => {
                    let msg = format!(
                        "{} needs a password: send {{\"type\":\"hello\",\"name\":...,\"password\":...}}",
                        hello.name
                    );
                    self.send(mode, &ServerMsg::failure(ErrorCode::PasswordRequired, msg));
                    return Ok(Login::Refused);
                }
                None => return Ok(Login::Granted(Identity::guest(mode, hello.name))),
            },
            Mode::Human => {
                if !private && !self.auth.directory.any() {
                    return Ok(Login::Granted(Identity::guest(mode, hello.name)));
                }
                let prompt = if private {
                    format!("Password for {}:\n", hello.name)
                } else {
                    format!("Password for {} (empty: join as a guest):\n", hello.name)
                };
                self.send_raw(prompt.as_bytes());
                match lines.read_line() {
                    Ok(Line::Complete(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                    Ok(Line::TooLong) => "\u{0}too long".to_string(),
                    Ok(Line::Eof | Line::EofMidLine) => {
                        return Ok(Login::Ended(Disconnect::ClosedDuringHandshake));
                    }
                    Err(e) if is_timeout(&e) => {
                        return Ok(Login::Ended(self.handshake_timed_out()));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if password.is_empty() && !registered && !private {
            return Ok(Login::Granted(Identity::guest(mode, hello.name)));
        }
        let ip = self.peer.ip();
        // Failures count against the account, however its name was spelt (`BOB`, `b0b`).
        let counted = self
            .auth
            .directory
            .cached(&hello.name)
            .map_or_else(|| hello.name.clone(), |a| a.name);
        let wait = match self.auth.throttle.attempt(ip, &counted) {
            Ok(wait) => wait,
            Err(left) => {
                // In data.csv and the operational log (fail2ban counts these too).
                let _ = self.events.send(Event::LoginFailed {
                    conn: self.conn,
                    name: hello.name.clone(),
                    why: "locked out: too many failed logins".into(),
                });
                let msg = format!(
                    "too many failed logins; try again in {} s",
                    left.as_secs() + 1
                );
                self.send(mode, &ServerMsg::failure(ErrorCode::LoginLocked, msg));
                return Ok(Login::Refused);
            }
        };
        match self.auth.check(&hello.name, &password, deadline) {
            Verdict::Granted(account) => {
                self.auth.throttle.succeeded(ip, &counted);
                let who = Identity::account(mode, account.name, account.role.into());
                return Ok(Login::Granted(who));
            }
            // Out of time: the attempt stays counted (it may have been checked).
            Verdict::TimedOut => return Ok(Login::Ended(self.handshake_timed_out())),
            Verdict::Busy => {
                self.auth.throttle.withdraw(ip, &counted);
                let msg = "the server is busy checking passwords; try again in a moment";
                self.send(mode, &ServerMsg::failure(ErrorCode::LoginBusy, msg.into()));
                return Ok(Login::Refused);
            }
            Verdict::Refused => {}
        }
        let _ = self.events.send(Event::LoginFailed {
            conn: self.conn,
            name: hello.name.clone(),
            why: "wrong password or no such account".into(),
        });
        std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
        let msg = "invalid name or password".to_string();
        self.send(mode, &ServerMsg::failure(ErrorCode::LoginFailed, msg));
        Ok(Login::Refused)
    }

    /// On a TLS port, a client that speaks plain text (`nc`, a client without `--tls`) gets a
    /// readable refusal instead of a TLS alert it cannot read. Peeks at the first byte: every
    /// TLS connection starts with a handshake record.
    #[cold]
    #[inline(never)]
    pub(super) fn refuse_plain_text(&self, deadline: Instant) -> io::Result<Option<Disconnect>> {
        let sock = self.transport.socket();
        let left = deadline.saturating_duration_since(Instant::now());
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let mut first = [0u8; 1];
        match sock.peek(&mut first) {
            Ok(0) => return Ok(Some(Disconnect::ClosedDuringHandshake)),
            Ok(_) if first[0] == crate::tls::TLS_HANDSHAKE => return Ok(None),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                // A plain client waiting for our greeting: tell it too.
            }
            Err(e) => return Err(e),
        }
        let _ = (&**sock).write_all(
            b"! this server speaks TLS: connect with chat-client --tls (or openssl s_client)\n",
        );
        let _ = sock.shutdown(Shutdown::Both);
        Ok(Some(Disconnect::PlainTextOnTls))
    }

    #[cold]
    #[inline(never)]
    pub(super) fn quit_before_name(&self) -> Disconnect {
        let bye = ServerMsg::Bye {
            ts: crate::store::now_timestamp(),
            reason: Disconnect::QuitDuringHandshake.told(),
        };
        self.send(self.first_mode(), &bye);
        Disconnect::QuitDuringHandshake
    }

    #[cold]
    #[inline(never)]
    pub(super) fn handshake_timed_out(&self) -> Disconnect {
        let secs = self.config.connection.handshake_timeout.get().as_secs_f64();
        let err = ServerMsg::failure(
            ErrorCode::HandshakeTimeout,
            format!("no name given within {secs} s; closing the connection"),
        );
        self.send(self.first_mode(), &err);
        Disconnect::HandshakeTimeout
    }

    #[cold]
    #[inline(never)]
    pub(super) fn refuse_name(&self, mode: Mode, err: &ProtocolError) {
        self.send(mode, &ServerMsg::error(err));
        self.prompt_again(mode);
    }

    /// The mode of what is sent before a name is granted: JSON on a WebSocket, else human.
    pub(super) fn first_mode(&self) -> Mode {
        if self.json_only {
            Mode::Json
        } else {
            Mode::Human
        }
    }

    pub(super) fn prompt_again(&self, mode: Mode) {
        if mode == Mode::Human {
            self.send_raw(proto::NAME_PROMPT.as_bytes());
        }
    }
}
