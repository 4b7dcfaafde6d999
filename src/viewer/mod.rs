//! `chat-log`'s logic: reading `messages.csv` as a stream of complete records, rendering them
//! as readable lines, and following the file as it grows.
//!
//! Where a record ends is [`crate::store`]'s to say ([`complete_len`], [`RecordSplitter`]), so a
//! half-written last row is held back until its end arrives rather than printed torn. Nothing
//! here loads the whole file: rows are parsed and printed one at a time.
//!
//! - [`show`]: the messages, `--last`, `--follow`; [`Filter`] says which.
//! - [`render_message`]: one row as a table line, CSV or JSON Lines; [`Printer`] writes a row
//!   the server wrote as its own bytes, and builds the others in buffers it reuses.
//! - `rows`: the file's records with their raw bytes, skipping unparsed those a literal
//!   `--grep` cannot match.
//! - [`connections`]: who connected from where, for how long, and why they left.
//! - [`stats`]: messages per room, sender and hour.
//! - [`show_merged`], [`stats_merged`]: the same over several nodes' `messages.csv` as one
//!   view, in order of id, a message several nodes logged shown once (`merge`).
//! - `time`: timestamps shown in local time or UTC ([`Zone`]).
//!
//! Each of [`show`], [`connections`] and [`stats`] returns how many rows matched, so that
//! `chat-log` can exit like `grep`: 0 when something matched, 1 when nothing did.

mod connections;
mod filter;
mod merge;
#[cfg(test)]
mod merge_tests;
mod render;
mod rows;
mod show;
mod stats;
#[cfg(test)]
mod tests;
mod time;

pub use connections::{ConnFilter, ConnOptions, connections};
use filter::same_name;
pub use filter::{Filter, parse_when};
pub use merge::{show_merged, stats_merged};
pub use render::{Printer, format_record, render_message, spreadsheet_safe};
use render::{is_header, is_header_fields};
pub use show::{FOLLOW_LAST, FOLLOW_POLL, show};
use show::{Records, follow};
pub use stats::{StatsOptions, stats};
use time::Clock;
pub use time::Zone;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proto::{self, Kind, duration, printable, push_printable};
use crate::store::message_column as M;
use crate::store::{
    ConnRecord, MESSAGES_HEADER, MessageRecord, Prefix, RecordSplitter, RecordsBackwards,
    complete_len,
};

/// How rows are shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewOptions {
    /// ANSI colours.
    pub color: bool,
    /// CSV for spreadsheets: a cell a spreadsheet would read as a formula is prefixed with
    /// `'` (see [`spreadsheet_safe`]). The log itself always keeps what was sent.
    pub excel_safe: bool,
    /// The zone a table shows times in (CSV and JSON Lines keep the file's UTC).
    pub zone: Zone,
}

/// What `chat-log` shows, and how.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    pub view: ViewOptions,
    pub format: Format,
    pub filter: Filter,
    /// Only the last N matching rows, found by reading from the end of the file.
    pub last: Option<usize>,
    /// Keep printing rows as they are appended; without `last` or a `since`, start from the
    /// last [`FOLLOW_LAST`] rows, like `tail -F`.
    pub follow: bool,
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned, coloured lines for people.
    #[default]
    Table,
    /// CSV with the file's own columns (and its header first).
    Csv,
    /// One JSON object per row, keyed by the file's column names.
    Jsonl,
}
