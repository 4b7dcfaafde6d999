//! What one IRC connection's two sides share: where registration stands, the capabilities
//! agreed, the channels joined, and which requests still wait for their answers.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::message::{self, SERVER};

/// The capabilities offered (`CAP LS`); `sasl` only on the TLS port.
pub const CAPS: &[&str] = &["away-notify", "echo-message", "server-time"];

/// The most mode changes one MODE line may make (`MODES` in ISUPPORT).
pub const MAX_MODES: usize = 4;

/// How many requests may wait for their answers; past this the oldest is forgotten, and
/// nothing is read in context until the order of answers is certain again (see [`Queue`]).
pub const MAX_PENDING: usize = 128;

/// Channels being joined (or left) at once beyond `--max-rooms-per-client`: past this a JOIN
/// (or PART) is refused until answers come.
pub const ROOMS_SLACK: usize = 8;

/// Lines answered here before registration (CAP, PING, NICK before USER...); past this each
/// such line is refused, and the handshake's flood limit ends a connection that goes on.
pub const MAX_LINES_BEFORE_WELCOME: u32 = 64;

/// The most a registration held until `CAP END` keeps (what the lobby said meanwhile);
/// beyond, registration completes without waiting.
pub const MAX_HELD: usize = 64 * 1024;

/// A marker the connection's reader refuses (`bad_request`, counted toward its flood limit):
/// sent for each IRC line refused here, so refused lines count as on the other doors. The
/// error that comes back names it and is not shown.
pub const REFUSED_MARKER: &str = "irc-refused";

/// What does not change during a connection.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The TLS port: SASL PLAIN is offered.
    pub tls: bool,
    /// `chatroom 0.1.0`.
    pub version: String,
    /// `--max-rooms-per-client`, for CHANLIMIT.
    pub max_rooms: usize,
}

/// The capabilities a client turned on.
#[derive(Debug, Default, Clone, Copy)]
pub struct Caps {
    pub away_notify: bool,
    pub echo_message: bool,
    pub server_time: bool,
    pub sasl: bool,
}

impl Caps {
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        match name {
            "away-notify" => self.away_notify = on,
            "echo-message" => self.echo_message = on,
            "server-time" => self.server_time = on,
            "sasl" => self.sasl = on,
            _ => return false,
        }
        true
    }

    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            ("away-notify", self.away_notify),
            ("echo-message", self.echo_message),
            ("server-time", self.server_time),
            ("sasl", self.sasl),
        ];
        all.into_iter().filter(|c| c.1).map(|c| c.0).collect()
    }
}

/// What a request was, for reading its answer: the numerics an error becomes, and what ends
/// a reply (`318` after WHOIS...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    /// PRIVMSG or NOTICE to a channel or a nick; answered by our own message coming back, or
    /// an error.
    Message {
        target: String,
    },
    Join {
        channel: String,
    },
    Part {
        channel: String,
    },
    Names {
        channel: String,
        answered: bool,
    },
    Who {
        mask: String,
    },
    Whois {
        name: String,
    },
    List {
        filter: Vec<String>,
        answered: bool,
    },
    Nick {
        name: String,
    },
    /// KICK, MODE, or a moderation command given as itself (MUTE...).
    Moderation {
        command: String,
        channel: Option<String>,
        target: String,
    },
    /// ISON or USERHOST: WHOIS of each name, answered together; `missing` counts the
    /// answers that were errors.
    Lookup {
        ison: bool,
        asked: Vec<String>,
        found: Vec<(String, bool)>,
        missing: usize,
    },
    /// AWAY (or back): answered by our own presence, or an error.
    Away,
    /// HELP.
    Help,
}

impl Ctx {
    /// Requests whose answer is one event, which comes without a `ping` after them.
    fn unbracketed(&self) -> bool {
        matches!(self, Ctx::Message { .. } | Ctx::Away)
    }

    /// Whether a success is always seen (marks the request answered): then a refusal for the
    /// rate before it is the request's own, not its ping's.
    fn answer_seen(&self) -> bool {
        matches!(
            self,
            Ctx::Part { .. }
                | Ctx::Names { .. }
                | Ctx::Who { .. }
                | Ctx::Whois { .. }
                | Ctx::List { .. }
                | Ctx::Lookup { .. }
        )
    }
}

/// A request that waits for its answer; `ping` is the id of the ping sent after it, whose pong
/// says that everything it caused has arrived. `answered`: its answer (or an error, `failed`)
/// has come, and a bracketed request waits only for its ping's.
#[derive(Debug)]
pub struct Pending {
    pub ping: Option<u64>,
    pub ctx: Ctx,
    pub answered: bool,
    pub failed: bool,
}

impl Pending {
    /// Whether every answer owed has come (a lookup owes one per name).
    fn done(&self) -> bool {
        match &self.ctx {
            Ctx::Lookup {
                asked,
                found,
                missing,
                ..
            } => found.len() + missing >= asked.len(),
            _ => self.answered,
        }
    }
}

/// The requests waiting for their answers, oldest first: answers come in the order requests
/// were sent, and a request followed by a ping is over at its pong. When that order is not
/// certain (a refusal for the rate may answer a request or the ping after it; a request
/// forgotten past [`MAX_PENDING`] may still be answered), the queue is in doubt: nothing is
/// read in context until a pong shows that everything before it has come.
#[derive(Debug, Default)]
pub struct Queue {
    items: VecDeque<Pending>,
    /// In doubt until a pong with at least this id.
    doubt: Option<u64>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn in_doubt(&self) -> bool {
        self.doubt.is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.items.iter()
    }

    /// The oldest request still waiting, unless the order is in doubt.
    pub fn front(&self) -> Option<&Pending> {
        self.items.front().filter(|_| self.doubt.is_none())
    }

    /// The request an answer (a `whois`, the `rooms`) belongs to, unless in doubt; it is now
    /// answered.
    pub fn front_mut(&mut self) -> Option<&mut Pending> {
        let front = self.peek_mut()?;
        front.answered = true;
        Some(front)
    }

    /// The oldest request still waiting, unless in doubt, without answering it.
    pub fn peek_mut(&mut self) -> Option<&mut Pending> {
        self.items.front_mut().filter(|_| self.doubt.is_none())
    }

    /// The oldest request has its answer: one answered by that alone is over; one followed by
    /// a ping waits for its pong. Nothing happens in doubt.
    pub fn pop_front(&mut self) -> Option<Pending> {
        let bracketed = self.front_mut()?.ping.is_some();
        (!bracketed).then(|| self.items.pop_front()).flatten()
    }

    /// Reads everything from now on without context until a pong of `ping` or later.
    fn doubt_until(&mut self, ping: u64) {
        self.doubt = Some(self.doubt.map_or(ping, |d| d.max(ping)));
    }

    /// The requests a pong of `id` ends: every one sent before that ping.
    pub fn through(&mut self, id: u64) -> Vec<Pending> {
        if self.doubt.is_some_and(|d| id >= d) {
            self.doubt = None;
        }
        let before = |p: &Pending| p.ping.is_some_and(|p| p <= id);
        let last = self.items.iter().rposition(before);
        last.map_or_else(Vec::new, |last| self.items.drain(..=last).collect())
    }
}

/// A `welcome` held until `CAP END`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub name: String,
}

/// The state of a SASL exchange.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Sasl {
    #[default]
    Idle,
    /// `AUTHENTICATE PLAIN` was answered with `+`: the payload so far.
    Payload(String),
}

/// Everything both sides of one connection know.
#[derive(Debug)]
pub struct State {
    pub settings: Settings,
    /// The nick: the one asked for until the server grants one, then the server's.
    pub nick: Option<String>,
    /// The client sent NICK (after SASL the nick is the account's, whatever it sent).
    pub nick_given: bool,
    pub user: bool,
    pub pass: Option<String>,
    /// `CAP LS` or `CAP REQ` was sent and `CAP END` not yet: registration waits.
    pub negotiating: bool,
    pub caps: Caps,
    pub sasl: Sasl,
    /// Something changed (NICK, PASS, CAP END...) since the last hello: worth another.
    pub ready: bool,
    /// A hello waits for its answer.
    pub hello_out: bool,
    /// The hello waiting (or granted) came from SASL.
    pub via_sasl: bool,
    /// The server welcomed this connection.
    pub registered: bool,
    /// The welcome, while registration waits for `CAP END` (or, after SASL, NICK and USER);
    /// what arrives meanwhile is held.
    pub welcome: Option<Welcome>,
    pub held: Vec<u8>,
    /// The channels joined, as the server names them (without `#`).
    pub channels: Vec<String>,
    /// Channels being joined (a JOIN sent, its answer not all back yet), by key.
    pub joining: Vec<String>,
    /// Channels being left (a PART sent, its `left` not back yet), by key.
    pub parting: Vec<String>,
    /// A channel just joined whose member list (353/366) is still owed.
    pub names_due: Option<String>,
    /// The last nick a QUIT was sent for: a user leaving several shared rooms is one QUIT.
    pub last_quit: Option<String>,
    pub pending: Queue,
    pub next_ping: u64,
    /// Lines answered here before registration, for [`MAX_LINES_BEFORE_WELCOME`].
    pub lines_before_welcome: u32,
    /// ERROR was sent: the connection is ending.
    pub closed: bool,
    /// Lines for the client, in order, not yet sent.
    pub out: Vec<u8>,
}

impl State {
    pub fn new(settings: Settings) -> State {
        State {
            settings,
            nick: None,
            nick_given: false,
            user: false,
            pass: None,
            negotiating: false,
            caps: Caps::default(),
            sasl: Sasl::Idle,
            ready: false,
            hello_out: false,
            via_sasl: false,
            registered: false,
            welcome: None,
            held: Vec::new(),
            channels: Vec::new(),
            joining: Vec::new(),
            parting: Vec::new(),
            names_due: None,
            last_quit: None,
            pending: Queue::default(),
            next_ping: 1,
            lines_before_welcome: 0,
            closed: false,
            out: Vec::new(),
        }
    }

    /// The target of numerics: the nick once the server granted one, `*` before.
    pub fn me(&self) -> String {
        match &self.nick {
            Some(nick) if self.registered => nick.clone(),
            _ => "*".to_string(),
        }
    }

    /// Where lines for the client go now: held while registration waits for `CAP END`.
    pub fn sink(&mut self) -> &mut Vec<u8> {
        if self.welcome.is_some() {
            &mut self.held
        } else {
            &mut self.out
        }
    }

    pub fn numeric(&mut self, code: &str, rest: &str) {
        let me = self.me();
        message::numeric(&mut self.out, code, &me, rest);
    }

    pub fn notice(&mut self, text: &str) {
        let me = self.me();
        message::notice(&mut self.out, &me, text);
    }

    /// Whether `room` (with or without `#`) is a channel this client is in and not leaving.
    pub fn in_channel(&self, room: &str) -> bool {
        let key = crate::proto::room_key(room);
        !self.parting.contains(&key)
            && self
                .channels
                .iter()
                .any(|c| crate::proto::room_key(c) == key)
    }

    /// Whether IRC's registration is complete on the client's side: NICK, USER, and the end
    /// of capability negotiation. A login by SASL is granted before them; its welcome waits.
    pub fn ready_for_burst(&self) -> bool {
        !self.negotiating && self.user && self.nick_given
    }

    /// Sends the held welcome once the client's registration is complete.
    pub fn release_when_ready(&mut self) {
        if self.ready_for_burst() {
            self.release();
        }
    }

    /// Sends the welcome burst (001-005 and 422) and what was held for it.
    pub fn release(&mut self) {
        let Some(welcome) = self.welcome.take() else {
            return;
        };
        let mut burst = Vec::new();
        welcome_burst(&mut burst, &welcome.name, &self.settings);
        self.out.append(&mut burst);
        let held = std::mem::take(&mut self.held);
        self.out.extend_from_slice(&held);
    }

    /// The oldest request still waiting (`None` when the order of answers is in doubt).
    pub fn front(&self) -> Option<&Ctx> {
        self.pending.front().map(|p| &p.ctx)
    }

    /// Marks the oldest request answered when `answers` says this answer is its own.
    pub fn answered_if(&mut self, answers: impl Fn(&Ctx) -> bool) {
        if let Some(p) = self.pending.peek_mut()
            && answers(&p.ctx)
        {
            p.answered = true;
        }
    }

    /// What an error answers: the context it is read with (`None`: shown as it is), and the
    /// requests it ends, for [`State::settle`] and their last numerics.
    pub fn blame(&mut self, rate_limited: bool) -> (Option<Ctx>, Vec<Pending>) {
        let mut ended = Vec::new();
        if self.pending.in_doubt() {
            return (None, ended);
        }
        let Some(front) = self.pending.items.front_mut() else {
            return (None, ended);
        };
        if front.done() {
            if rate_limited {
                // Answered already: the ping after it was refused, and no pong will come.
                ended.extend(self.pending.items.pop_front());
                return (None, ended);
            }
            // A ping is refused only for the rate: this is the request's own.
            return (Some(front.ctx.clone()), ended);
        }
        let ctx = front.ctx.clone();
        match &mut front.ctx {
            Ctx::Lookup { missing, .. } => *missing += 1,
            _ => front.answered = true,
        }
        front.failed = true;
        match front.ping {
            None => ended.extend(self.pending.items.pop_front()),
            Some(ping) if rate_limited && !ctx.answer_seen() => {
                // Its success may have gone unseen: this may be its ping's refusal. Over now,
                // and in doubt until a pong shows which.
                ended.extend(self.pending.items.pop_front());
                self.pending.doubt_until(ping);
                return (None, ended);
            }
            Some(_) => {}
        }
        (Some(ctx), ended)
    }

    /// What a request over (and out of the queue) leaves behind: the channel no longer being
    /// joined or left, unless another request for it waits.
    pub fn settle(&mut self, p: &Pending) {
        match &p.ctx {
            Ctx::Join { channel } | Ctx::Part { channel } => {
                let key = crate::proto::room_key(channel);
                let join = matches!(p.ctx, Ctx::Join { .. });
                if !self.waits_for(&key, join) {
                    let list = if join {
                        &mut self.joining
                    } else {
                        &mut self.parting
                    };
                    list.retain(|j| *j != key);
                }
            }
            _ => {}
        }
    }

    /// Whether a JOIN (or a PART) of this channel is waiting for its answer.
    pub fn waits_for(&self, key: &str, join: bool) -> bool {
        self.pending.iter().any(|p| match &p.ctx {
            Ctx::Join { channel } if join => crate::proto::room_key(channel) == key,
            Ctx::Part { channel } if !join => crate::proto::room_key(channel) == key,
            _ => false,
        })
    }
}

/// Appends one JSON request line for the connection's reader.
pub fn emit(json: &mut Vec<u8>, v: &Value) {
    json.extend_from_slice(v.to_string().as_bytes());
    json.push(b'\n');
}

/// Sends a request, remembering what it was. Requests that need their answer read in context
/// are followed by a `ping` (answered by the server after everything the request caused).
pub fn request(st: &mut State, json: &mut Vec<u8>, v: &Value, ctx: Ctx) {
    emit(json, v);
    // In doubt, every request brings a ping, whose pong ends the doubt.
    if ctx.unbracketed() && !st.pending.in_doubt() {
        remember(st, None, ctx);
    } else {
        bracket(st, json, ctx);
    }
}

/// Sends the `ping` that ends a request's answer, and remembers the request.
pub fn bracket(st: &mut State, json: &mut Vec<u8>, ctx: Ctx) {
    let id = st.next_ping;
    st.next_ping += 1;
    emit(json, &json!({"type": "ping", "id": id}));
    remember(st, Some(id), ctx);
}

/// Remembers a request. Past [`MAX_PENDING`], the oldest is forgotten (its channel no longer
/// being joined or left); its answers may still come, so the queue is in doubt until a pong
/// sent after it.
fn remember(st: &mut State, ping: Option<u64>, ctx: Ctx) {
    if st.pending.len() >= MAX_PENDING
        && let Some(old) = st.pending.items.pop_front()
    {
        st.settle(&old);
        let after = old.ping.or(ping).unwrap_or(st.next_ping);
        st.pending.doubt_until(after);
    }
    st.pending.items.push_back(Pending {
        ping,
        ctx,
        answered: false,
        failed: false,
    });
}

/// A line refused here: the reader is told (it counts toward the flood limit).
pub fn refused(json: &mut Vec<u8>) {
    emit(json, &json!({"type": REFUSED_MARKER, "name": "-"}));
}

/// 001 to 005 and 422, to `nick`.
pub fn welcome_burst(out: &mut Vec<u8>, nick: &str, settings: &Settings) {
    let version = settings.version.replace(' ', "-");
    let door = ":This server is chatroom's IRC door: rooms are channels, names are nicks";
    let lines = [
        (
            "001",
            format!(":Welcome to the chatroom IRC network, {nick}"),
        ),
        (
            "002",
            format!(":Your host is {SERVER}, running version {version}"),
        ),
        ("003", door.into()),
        ("004", format!("{SERVER} {version} o bo bo")),
        ("005", isupport(settings)),
        ("422", ":MOTD File is missing".into()),
    ];
    for (code, rest) in lines {
        message::numeric(out, code, nick, &rest);
    }
}

/// The ISUPPORT tokens (005): what the server's rules are, in IRC's words.
pub fn isupport(settings: &Settings) -> String {
    let room_chars = crate::proto::MAX_ROOM_CHARS + 1;
    let nick_chars = crate::proto::MAX_NAME_CHARS;
    let reason = crate::proto::MAX_REASON_CHARS;
    let rooms = settings.max_rooms;
    format!(
        "AWAYLEN={reason} CASEMAPPING=ascii CHANLIMIT=#:{rooms} CHANMODES=b,,, \
         CHANNELLEN={room_chars} CHANTYPES=# KICKLEN={reason} MAXTARGETS=4 MODES={MAX_MODES} \
         NETWORK=chatroom NICKLEN={nick_chars} PREFIX=(o)@ SAFELIST UTF8ONLY \
         :are supported by this server"
    )
}
