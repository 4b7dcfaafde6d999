//! Moderation: `/kick`, `/ban`, `/unban`, `/bans`, `/mute`, `/unmute`, `/op`, `/deop`.
//!
//! Only administrators may use them; anyone else gets a clear refusal. Every action is written
//! to `data.csv` (who did what to whom, when, why) and announced to the rooms of the person it
//! concerns.
//!
//! `bans.csv` may change under the server (`chat-server bans`, an editor, a reload on SIGHUP):
//! the broadcaster looks at it every [`BANS_CHECK_EVERY`] and before each moderation command,
//! and disconnects whoever a ban read from it covers. A `/ban` that covers the administrator's
//! own connection (their address, a network holding it, their name) needs `--yes`: one
//! `/ban 127.0.0.1` on a server run from its own machine locked everyone out.

use std::time::{Duration, Instant};

use super::{Hub, Target, conn_row};
use crate::proto::names;
use crate::proto::{ErrorCode, Request, ServerMsg, Standing, duration};
use crate::store::bans;
use crate::store::users::Role;
use crate::store::{self, ConnEvent, Disconnect, LogFile};

/// How often the broadcaster looks whether `bans.csv` changed (one `stat`), idle or not: a ban
/// added from the command line disconnects those it covers within this time. New connections
/// are refused at once: the accept loop looks at every accept.
pub(super) const BANS_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Up to this many others a `/ban` disconnects are named; beyond, they are counted.
const NAMED_AT_MOST: usize = 10;

impl<W: LogFile> Hub<W> {
    /// Applies `bans.csv` again if it is time to look (see [`BANS_CHECK_EVERY`]).
    pub(super) fn check_bans_when_due(&mut self) {
        let now = Instant::now();
        if now < self.bans_check_due {
            return;
        }
        self.bans_check_due = now + BANS_CHECK_EVERY;
        if self.apply_changed_bans() {
            self.flush();
        }
    }

    /// Reads `bans.csv` again if it changed on disk, and disconnects everyone connected that
    /// a ban read since the last time covers (by address, or by name). True when someone was.
    pub(super) fn apply_changed_bans(&mut self) -> bool {
        bans::refresh(&self.bans);
        let hit: Vec<(u64, String)> = {
            let bans = self.bans.read().unwrap_or_else(|p| p.into_inner());
            if bans.generation() == self.bans_seen {
                return false;
            }
            self.bans_seen = bans.generation();
            let mut hit: Vec<(u64, String)> = self
                .clients
                .iter()
                .filter_map(|(&id, c)| {
                    let ban = bans
                        .for_ip(c.peer.ip())
                        .or_else(|| c.name.as_deref().and_then(|n| bans.for_name(n)))?;
                    Some((id, ban.describe()))
                })
                .collect();
            hit.sort_unstable();
            hit
        };
        for (target, desc) in &hit {
            self.expel(*target, format!("banned {desc}"));
        }
        !hit.is_empty()
    }

    /// Handles a moderation request from `conn`.
    pub(super) fn moderate(&mut self, conn: u64, req: Request) {
        // What the command sees (`/bans`) and changes (`/ban`) is the file as it is now; a ban
        // added there since may also end this very connection.
        self.apply_changed_bans();
        let Some(actor) = self.clients.get(&conn) else {
            return;
        };
        let by = actor.name.clone().unwrap_or_default();
        if self.standing(conn) != Standing::Admin {
            let what = match &req {
                Request::Kick { .. } => "/kick",
                Request::Ban { .. } => "/ban",
                Request::Unban(_) => "/unban",
                Request::Bans => "/bans",
                Request::Mute { .. } => "/mute",
                Request::Unmute(_) => "/unmute",
                Request::Op(_) => "/op",
                _ => "/deop",
            };
            return self.fail(
                conn,
                ErrorCode::NotAllowed,
                format!("only administrators may use {what}"),
            );
        }
        match req {
            Request::Kick { name, reason } => {
                let Some(target) = self.conn_of(&name) else {
                    return self.no_user(conn, &name);
                };
                if target == conn {
                    return self.fail(
                        conn,
                        ErrorCode::BadRequest,
                        "you cannot kick yourself; use /quit to leave".to_string(),
                    );
                }
                let why = with_reason(&format!("kicked by {by}"), &reason);
                self.record(conn, ConnEvent::Kick, &format!("{name}: {reason}"));
                self.expel(target, why);
            }
            Request::Ban {
                target,
                duration,
                reason,
                confirmed,
            } => {
                let parsed = match bans::Target::parse(&target) {
                    Ok(t) => t,
                    Err(e) => return self.fail(conn, ErrorCode::BadRequest, e),
                };
                let mut hit: Vec<u64> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| match &parsed {
                        bans::Target::Name(n) => {
                            c.name.as_deref().is_some_and(|cn| names::same(cn, n))
                        }
                        other => other.covers(c.peer.ip()),
                    })
                    .map(|(&id, _)| id)
                    .collect();
                hit.sort_unstable();
                let own = self.own_connection(conn, &parsed);
                let others = self.others(&hit, conn);
                if let Some(own) = own.as_deref()
                    && !confirmed
                {
                    let and = others
                        .as_deref()
                        .map_or(String::new(), |o| format!(" and {o}"));
                    return self.fail(
                        conn,
                        ErrorCode::ConfirmationNeeded,
                        format!(
                            "not banned: {target} {own}, so the ban would disconnect you{and} and keep you out; send it again with --yes to ban anyway"
                        ),
                    );
                }
                let added = self
                    .bans
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(&parsed, duration, &by, &reason);
                let ban = match added {
                    Ok(ban) => ban,
                    Err(e) => return self.fail(conn, ErrorCode::Storage, format!("{e}")),
                };
                let desc = ban.describe();
                self.record(conn, ConnEvent::Ban, &format!("{target} {desc}"));
                self.publish_control(|node| crate::server::cluster::Control::Ban {
                    node,
                    target: target.clone(),
                    secs: duration.map(|d| d.as_secs()),
                    by: by.clone(),
                    reason: reason.clone(),
                });
                let whom = match (own.is_some(), others) {
                    (true, Some(o)) => format!("; disconnecting you and {o}"),
                    (true, None) => "; disconnecting you".to_string(),
                    (false, Some(o)) => format!("; disconnecting {o}"),
                    (false, None) => String::new(),
                };
                // Told first: the administrator may be among those it disconnects.
                self.tell(conn, format!("banned {target} {desc}{whom}"));
                hit.retain(|&c| c != conn);
                if own.is_some() {
                    hit.push(conn);
                }
                for target in hit {
                    self.expel(target, format!("banned by {by} {desc}"));
                }
            }
            Request::Unban(target) => {
                let removed = self
                    .bans
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&target);
                match removed {
                    Ok(0) => self.fail(
                        conn,
                        ErrorCode::BadRequest,
                        format!("{target} is not banned"),
                    ),
                    Ok(n) => {
                        self.record(conn, ConnEvent::Unban, &target);
                        self.publish_control(|node| crate::server::cluster::Control::Unban {
                            node,
                            target: target.clone(),
                        });
                        let bans = if n == 1 { "ban" } else { "bans" };
                        self.tell(conn, format!("lifted {n} {bans} on {target}"));
                    }
                    Err(e) => self.fail(conn, ErrorCode::Storage, format!("{e}")),
                }
            }
            Request::Bans => {
                let list: Vec<String> = self
                    .bans
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .active()
                    .iter()
                    .map(|b| format!("{} ({}) {}, by {}", b.target, b.kind, b.describe(), b.by))
                    .collect();
                let text = if list.is_empty() {
                    "no bans".to_string()
                } else {
                    let bans = if list.len() == 1 { "ban" } else { "bans" };
                    format!("{} {bans}: {}", list.len(), list.join("; "))
                };
                self.tell(conn, text);
            }
            Request::Mute {
                name,
                duration,
                reason,
            } => {
                let here = self.conn_of(&name).is_some();
                if !here && self.remote_name(&name).is_none() {
                    return self.no_user(conn, &name);
                }
                let how =
                    duration.map_or(String::new(), |d| format!(" for {}", duration::display(d)));
                // The detail reads like /kick's: `NAME[ for DURATION]: REASON`.
                self.record(
                    conn,
                    ConnEvent::Mute,
                    &with_reason(&format!("{name}{how}"), &reason),
                );
                if here {
                    self.mute_here(&name, duration, &by, &reason);
                } else {
                    // Connected to another node of the cluster: that node mutes.
                    self.publish_control(|node| crate::server::cluster::Control::Mute {
                        node,
                        name: name.clone(),
                        secs: duration.map(|d| d.as_secs()),
                        by: by.clone(),
                        reason: reason.clone(),
                    });
                    self.tell(conn, format!("muted {name} (on another server){how}"));
                }
            }
            Request::Unmute(name) => {
                if !self.unmute_here(&name, &by) {
                    if self.remote_name(&name).is_none() {
                        return self.fail(
                            conn,
                            ErrorCode::BadRequest,
                            format!("{name} is not muted"),
                        );
                    }
                    self.publish_control(|node| crate::server::cluster::Control::Unmute {
                        node,
                        name: name.clone(),
                        by: by.clone(),
                    });
                }
                self.record(conn, ConnEvent::Unmute, &name);
                if self.conn_of(&name).is_none() {
                    self.tell(conn, format!("unmuted {name}"));
                }
            }
            Request::Op(name) => self.set_role(conn, &name, Role::Admin),
            Request::Deop(name) => self.set_role(conn, &name, Role::Member),
            _ => {}
        }
    }

    /// Mutes `name`, connected here, and tells its rooms (a `/mute` here, or one another node
    /// of the cluster passed on).
    pub(super) fn mute_here(
        &mut self,
        name: &str,
        duration: Option<std::time::Duration>,
        by: &str,
        reason: &str,
    ) {
        let Some(target) = self.conn_of(name) else {
            return;
        };
        let Some(key) = self.mute_key(target) else {
            return;
        };
        let until = duration.map(|d| Instant::now() + d);
        self.mutes.insert(key, (until, name.to_string()));
        let how = duration.map_or(String::new(), |d| format!(" for {}", duration::display(d)));
        self.announce(
            target,
            with_reason(&format!("{name} was muted by {by}{how}"), reason),
        );
    }

    /// Lifts the mute on `name` kept here; false if there was none.
    pub(super) fn unmute_here(&mut self, name: &str, by: &str) -> bool {
        let key = match self.conn_of(name).and_then(|c| self.mute_key(c)) {
            Some(key) => Some(key),
            None => self
                .mutes
                .iter()
                .find(|(_, (_, muted))| crate::proto::names::same(muted, name))
                .map(|(k, _)| k.clone()),
        };
        if key.and_then(|k| self.mutes.remove(&k)).is_none() {
            return false;
        }
        if let Some(target) = self.conn_of(name) {
            self.announce(target, format!("{name} was unmuted by {by}"));
        }
        true
    }

    /// How a ban on `target` would cover `conn` itself ("covers your address 127.0.0.1"), if
    /// it would: its address, a network holding it, its name or its account's.
    fn own_connection(&self, conn: u64, target: &bans::Target) -> Option<String> {
        let me = self.clients.get(&conn)?;
        match target {
            bans::Target::Name(n) => {
                let mine = [me.name.as_deref(), me.account.as_deref()];
                mine.into_iter()
                    .flatten()
                    .any(|m| names::same(m, n))
                    .then(|| "is your own name".to_string())
            }
            net => net
                .covers(me.peer.ip())
                .then(|| format!("covers your address {}", me.peer.ip())),
        }
    }

    /// Who else of `hit` a ban disconnects, in words: their names (or how many, when many),
    /// and the connections not named yet; `None` when nobody else.
    fn others(&self, hit: &[u64], me: u64) -> Option<String> {
        let mut named: Vec<&str> = Vec::new();
        let mut unnamed = 0;
        for c in hit.iter().filter(|&&c| c != me) {
            match self.clients.get(c).and_then(|c| c.name.as_deref()) {
                Some(name) => named.push(name),
                None => unnamed += 1,
            }
        }
        let mut parts = Vec::new();
        match named.len() {
            0 => {}
            n if n > NAMED_AT_MOST => parts.push(format!("{n} others")),
            _ => {
                named.sort_unstable();
                parts.push(named.join(", "));
            }
        }
        match unnamed {
            0 => {}
            1 => parts.push("1 connection not yet named".to_string()),
            n => parts.push(format!("{n} connections not yet named")),
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }

    /// `/op` and `/deop`: change an account's role in `users.csv`. What its connections may
    /// do follows at once (roles are looked up by account, never by name).
    pub(super) fn set_role(&mut self, conn: u64, name: &str, role: Role) {
        let by = self
            .clients
            .get(&conn)
            .and_then(|c| c.name.clone())
            .unwrap_or_default();
        if let Err(e) = self.auth.directory.set_role(name, role) {
            return self.fail(conn, ErrorCode::NoSuchAccount, format!("{e}"));
        }
        let (event, word) = match role {
            Role::Admin => (ConnEvent::Op, "an administrator"),
            Role::Member => (ConnEvent::Deop, "a member"),
        };
        self.record(conn, event, name);
        let sessions: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.account
                    .as_deref()
                    .is_some_and(|a| crate::proto::names::same(a, name))
            })
            .map(|(&id, _)| id)
            .collect();
        if sessions.is_empty() {
            return self.tell(conn, format!("{name} is now {word}"));
        }
        for target in sessions {
            self.announce(target, format!("{name} is now {word} (by {by})"));
        }
    }

    /// How `conn` is muted now ("you are muted for 9m more"), if it is; an expired mute is
    /// lifted here.
    pub(super) fn muted(&mut self, conn: u64) -> Option<String> {
        let key = self.mute_key(conn)?;
        match &self.mutes.get(&key)?.0 {
            Some(until) if *until <= Instant::now() => {
                self.mutes.remove(&key);
                None
            }
            Some(until) => {
                // Rounded up: "10m", not "9m 59s", just after a 10-minute mute.
                let left =
                    until.saturating_duration_since(Instant::now()) + Duration::from_millis(999);
                Some(format!(
                    "you are muted for {} more",
                    duration::display(left)
                ))
            }
            None => Some("you are muted".to_string()),
        }
    }

    /// What a mute of `conn` holds: its account, or for a guest its address.
    fn mute_key(&self, conn: u64) -> Option<super::MuteKey> {
        let client = self.clients.get(&conn)?;
        Some(match &client.account {
            Some(account) => super::MuteKey::Account(crate::proto::names::key(account)),
            None => super::MuteKey::Address(crate::server::limits::address_key(client.peer.ip())),
        })
    }

    /// True (and the sender told) when `conn` is muted now.
    pub(super) fn is_muted(&mut self, conn: u64) -> bool {
        let Some(how) = self.muted(conn) else {
            return false;
        };
        self.fail(
            conn,
            ErrorCode::Muted,
            format!("{how}; this message was not sent"),
        );
        true
    }

    /// Tells the rooms of `target` (and the actor, who is in its audience or told directly)
    /// what happened, then disconnects it with the same words.
    pub(super) fn expel(&mut self, target: u64, why: String) {
        let name = self
            .clients
            .get(&target)
            .and_then(|c| c.name.clone())
            .unwrap_or_default();
        let mut audience = self.audience(target);
        audience.retain(|&c| c != target);
        let ts = store::now_timestamp();
        let text = format!("{name} was {why}");
        self.push(Target::Set(audience), ServerMsg::System { ts, text });
        let reason = Disconnect::Expelled(why);
        let bye = ServerMsg::Bye {
            ts: store::now_timestamp(),
            reason: reason.told(),
        };
        self.remove(target, &reason, Some(bye));
    }

    /// Tells `target` and everyone sharing a room with it.
    fn announce(&mut self, target: u64, text: String) {
        let audience = self.audience(target);
        let ts = store::now_timestamp();
        self.push(Target::Set(audience), ServerMsg::System { ts, text });
    }

    /// A system line to one client.
    fn tell(&mut self, conn: u64, text: String) {
        let ts = store::now_timestamp();
        self.push(Target::One(conn), ServerMsg::System { ts, text });
    }

    /// A `data.csv` row for an action by `conn`.
    fn record(&mut self, conn: u64, event: ConnEvent, detail: &str) {
        if let Some(c) = self.clients.get(&conn) {
            let row = conn_row(conn, c, event, detail);
            self.connections.stage(&row);
        }
    }

    fn conn_of(&self, name: &str) -> Option<u64> {
        self.names.get(name).copied()
    }
}

fn with_reason(what: &str, reason: &str) -> String {
    if reason.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {reason}")
    }
}
