//! The wire contract: names and room rules, requests and their grammar, the server's events,
//! one module per encoding (human lines, JSON Lines), durations, and the refusal type.
//!
//! No sockets, no files, no clocks, and nothing else of the crate: everything that decides
//! whether input is acceptable lives here so that the server, the clients and the tests agree
//! on one definition. One event model ([`ServerMsg`] from the server, [`Hello`] and
//! [`Request`] from a client) has two encodings: *human* lines, readable in `nc`, and *JSON
//! Lines* for programs; the IRC transport gets JSON with its channel messages already as IRC
//! lines (`irc`). The mode is chosen by the client's first line: a JSON object selects
//! JSON, anything else is a name.

pub mod duration;
mod error;
mod event;
mod hello;
mod human;
pub mod irc;
mod json;
pub mod names;
mod request;
mod room;
mod text;

pub use duration::parse_duration;
pub use error::ProtocolError;
pub use event::*;
pub use hello::*;
pub use names::{MAX_NAME_CHARS, key as name_key};
pub use request::*;
pub use room::*;
pub use text::*;

/// `1 message`, `2 messages`: a count with its noun, for whatever people read. `many` is the
/// plural (`1 match`, `2 matches`).
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Encodes `msg` for a client in `mode`, ending with `\n`.
pub fn encode(msg: &ServerMsg, mode: Mode) -> Vec<u8> {
    match mode {
        Mode::Json => json::encode_line(msg),
        Mode::Human => human::encode_human(msg).into_bytes(),
        Mode::Irc => irc::encode(msg, false),
        Mode::IrcTime => irc::encode(msg, true),
    }
}

#[cfg(test)]
mod tests;
