//! chatroom: a self-hosted chat server with thread-per-client blocking I/O, a broadcaster
//! thread, and every connection and message kept in plain CSV files.
//!
//! The binaries (`chat-server`, `chat-client`, `chat-log`) are thin: they parse the command
//! line and call into this library.
//!
//! # Layout
//!
//! - [`accounts`]: `users.csv`, Argon2id password hashes, the failed-login throttle.
//! - [`bans`]: `bans.csv`: bans by name, address or network, with expiry.
//! - [`protocol`]: the wire format as pure functions: parsing client lines, encoding server
//!   events in human or JSON mode, and the rules for names and message text. No I/O.
//! - [`lines`]: a line reader with a hard length limit, over any `BufRead`.
//! - [`names`]: what a name may be, and when two names are the same (confusable skeletons).
//! - [`storage`]: the CSV formats of `messages.csv` and `data.csv`, staged writes, and reading
//!   records backwards from the end of a file.
//! - [`hub`]: the broadcaster thread; owns membership and is the only appender of both logs.
//! - [`rooms`]: rooms, their members and in-memory history tails rebuilt from the log's end.
//! - [`connection`]: one connection's reader and writer threads.
//! - [`outbox`]: a client's bounded queue of encoded messages.
//! - [`server`]: the accept loop, [`Config`], start-up and shutdown.
//! - [`limits`]: admission: total, per-IP and per-IP-per-minute connection caps.
//! - [`client`]: `chat-client`'s logic over any `BufRead`/`Write`.
//! - [`viewer`]: `chat-log`'s logic: rendering and following `messages.csv`.
//! - [`tls`]: rustls over a socket shared by a reader and a writer thread.
//! - [`term`]: terminal settings shared by the client and the viewer.
//! - [`bench`]: `chat-bench`'s load generator and workloads.
//! - [`attack`]: what a hostile member can do, as functions (for the tests and `chat-bench hostile`).
//! - [`error`]: the crate's error type.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod attack;
pub mod bans;
pub mod bench;
pub mod client;
pub mod connection;
pub mod error;
pub mod hub;
pub mod limits;
pub mod lines;
pub mod outbox;
pub mod proto;
pub mod rooms;
pub mod server;
pub mod storage;
pub mod term;
pub mod tls;
pub mod viewer;

pub use error::{Error, Result};
pub use server::{Config, Server, ShutdownHandle};
