//! `chat-log`: shows `messages.csv` as readable lines (or CSV, or JSON Lines), filtered, and
//! follows it with `--follow`.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use chatroom::store::MESSAGES_FILE;
use chatroom::viewer::{self, Filter, Format, ShowOptions, ViewOptions};

/// Read, filter and follow the chat log.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory holding messages.csv.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data", global = true)]
    data_dir: PathBuf,
    /// Keep running and print rows as they are appended, like `tail -F`.
    #[arg(long, short)]
    follow: bool,
    /// Only this room (case-insensitive, `#` optional).
    #[arg(long, global = true)]
    room: Option<String>,
    /// Only messages from this name.
    #[arg(long, global = true)]
    from: Option<String>,
    /// Only direct messages to this name.
    #[arg(long, global = true)]
    to: Option<String>,
    /// From this time: RFC 3339, a date, today, yesterday, or 30m/2h/7d ago.
    #[arg(long, global = true)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, global = true)]
    until: Option<String>,
    /// Only messages whose text matches this regular expression.
    #[arg(long, global = true)]
    grep: Option<String>,
    /// Only the last N matching messages (read from the end of the file).
    #[arg(long)]
    last: Option<usize>,
    /// Only direct messages.
    #[arg(long, conflicts_with = "no_dm")]
    dm: bool,
    /// No direct messages.
    #[arg(long)]
    no_dm: bool,
    /// Output: table (readable), csv or jsonl (the file's columns, for other tools).
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
    /// With --format csv: prefix with ' every cell a spreadsheet would take for a formula
    /// (one starting with = + - @), for opening in Excel or LibreOffice. The log itself keeps
    /// exactly what was sent.
    #[arg(long, global = true)]
    excel_safe: bool,
    /// Colours: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, env = "CHAT_COLOR", default_value = "auto", value_parser = ["auto", "always", "never"], global = true)]
    color: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The messages (the default).
    Messages,
    /// Who connected from where, when, for how long, and why they left (data.csv).
    Connections {
        /// Only this name.
        #[arg(long)]
        name: Option<String>,
        /// Only this address or network (203.0.113.0/24).
        #[arg(long)]
        ip: Option<String>,
    },
    /// Messages per room, per sender and per hour of day, with bars (filters apply).
    Stats,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // `chat-log | head`: the reader left; that is a normal end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-log: {e}");
            // A flag that makes no sense is a usage error, like clap's own.
            ExitCode::from(if e.is_setting() { 2 } else { 1 })
        }
    }
}

fn run(args: Args) -> chatroom::Result<()> {
    let now = chrono::Utc::now();
    let when = |s: &Option<String>| {
        s.as_deref()
            .map(|s| viewer::parse_when(s, now))
            .transpose()
            .map_err(chatroom::Error::setting)
    };
    let grep = args
        .grep
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| chatroom::Error::setting(format!("--grep: {e}")))?;
    let filter = Filter {
        room: args.room.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        since: when(&args.since)?,
        until: when(&args.until)?,
        grep,
        dm: match (args.dm, args.no_dm) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    };
    let color = args.format == Format::Table && chatroom::term::color_enabled(&args.color);
    if args.excel_safe && args.format != Format::Csv {
        return Err(chatroom::Error::setting(
            "--excel-safe applies to --format csv",
        ));
    }
    let view = ViewOptions {
        color,
        excel_safe: args.excel_safe,
    };
    // One large buffer: a million matching rows are a few hundred writes, not thousands.
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    match &args.command {
        Some(Command::Connections { name, ip }) => {
            let ip = ip
                .as_deref()
                .map(chatroom::store::bans::Target::parse)
                .transpose()
                .map_err(|e| chatroom::Error::setting(format!("--ip: {e}")))?;
            let conn_filter = viewer::ConnFilter {
                name: name.clone(),
                ip,
                since: filter.since,
                until: filter.until,
            };
            let path = args.data_dir.join(chatroom::store::CONNECTIONS_FILE);
            return viewer::connections(&path, &mut out, &conn_filter, args.format, view);
        }
        Some(Command::Stats) => {
            let path = args.data_dir.join(MESSAGES_FILE);
            return viewer::stats(&path, &mut out, &filter);
        }
        Some(Command::Messages) | None => {}
    }
    let options = ShowOptions {
        view,
        format: args.format,
        filter,
        last: args.last,
        follow: args.follow,
    };
    let path = args.data_dir.join(MESSAGES_FILE);
    viewer::show(&path, &mut out, &options)
}
