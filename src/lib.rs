//! chatroom: a self-hosted chat server with thread-per-client blocking I/O, a broadcaster
//! thread, and every connection and message kept in plain CSV files.
//!
//! The binaries (`chat-server`, `chat-client`, `chat-log`) are thin: they parse the command
//! line and call into this library.
//!
//! # Layout
//!
//! Imports flow one way: [`proto`] ← [`store`] ← [`server`], [`client`], [`viewer`], [`bench`].
//!
//! - [`proto`]: the wire contract: names, rooms, requests and their grammar, events, the human
//!   and JSON encodings, durations. No I/O, no clock, nothing else of the crate.
//! - [`store`]: everything on disk: `messages.csv` and `data.csv`, `users.csv`, `bans.csv`.
//! - [`server`]: the accept loop and [`Config`], admission, login, the connection threads,
//!   outboxes, and the hub (the broadcaster thread, the only appender of both logs).
//! - [`client`]: `chat-client`'s logic over any `BufRead`/`Write`; `client::tui`, its
//!   full-screen mode (ratatui), tested with ratatui's `TestBackend`.
//! - [`viewer`]: `chat-log`'s logic: rendering and following `messages.csv`.
//! - [`irc`]: IRC as a transport that translates to and from JSON lines (`--irc`).
//! - [`tls`]: rustls over a socket shared by a reader and a writer thread (server and client).
//! - [`term`]: terminal settings shared by the client and the viewer.
//! - [`cli`]: what every binary offers besides its work: shell completions and man pages.
//! - `bench` (with the `bench` feature): `chat-bench`'s load generator and workloads.
//! - [`attack`]: what a hostile member can do, as functions (for the tests and `chat-bench hostile`).
//! - [`error`]: the crate's error type.

#![forbid(unsafe_code)]

pub mod attack;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod client;
pub mod error;
pub mod irc;
pub mod proto;
pub mod server;
pub mod store;
pub mod term;
pub mod tls;
pub mod viewer;
pub mod ws;

pub use error::{Error, Result};
pub use server::{Config, Server, ShutdownHandle};
