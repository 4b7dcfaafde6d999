//! `chat-log`: shows `messages.csv` as readable lines (or CSV, or JSON Lines), filtered, and
//! follows it with `--follow`; `connections` does the same for `data.csv`, `stats` counts.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use chatroom::store::bans::Target;
use chatroom::store::{CONNECTIONS_FILE, MESSAGES_FILE};
use chatroom::viewer::{
    self, ConnFilter, ConnOptions, Filter, Format, ShowOptions, StatsOptions, ViewOptions, Zone,
};

/// What `--help` says after the flags: how a script tells what happened.
const EXIT_STATUS: &str = "\
Times are shown in local time with their UTC offset (`TZ` sets the zone), or in UTC with --utc.
--since/--until without a zone, dates, today and yesterday are in that same zone.

Exit status, like grep: 0 when something matched (and was printed), 1 when nothing matched,
2 on an error (a bad flag, an empty --since/--until window, a file that cannot be read).
--follow runs until interrupted (the status is then the signal's: 130 in a shell after
Ctrl-C) or until its output is closed (0).";

/// Read, filter and follow the chat log.
#[derive(Parser, Debug)]
#[command(name = "chat-log", version, about, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `chat-log` is `chat-log messages` and takes its flags.
    #[command(flatten)]
    messages: MessagesArgs,
    /// Directory holding messages.csv and data.csv. Give it several times (or a comma-separated
    /// list) for the nodes of a cluster: `messages` and `stats` show their logs as one, in
    /// order of id, a message several nodes logged shown once.
    #[arg(
        long,
        env = "CHAT_DATA_DIR",
        default_value = "data",
        global = true,
        value_delimiter = ',',
        value_name = "DIR"
    )]
    data_dir: Vec<PathBuf>,
    /// Show times in UTC (and read --since/--until without a zone as UTC), not local time.
    #[arg(long, global = true)]
    utc: bool,
    /// `--completions SHELL`, `--man DIR` (hidden; shared by every binary).
    #[command(flatten)]
    extras: chatroom::cli::Extras,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The messages (the default).
    #[command(after_help = EXIT_STATUS)]
    Messages(MessagesArgs),
    /// Who connected from where, when, for how long, and why they left (data.csv).
    #[command(after_help = EXIT_STATUS)]
    Connections(ConnectionsArgs),
    /// Messages per room, per sender and per hour of day, with bars (filters apply).
    #[command(after_help = EXIT_STATUS)]
    Stats(StatsArgs),
}

/// A time window: shared by every subcommand.
#[derive(Args, Debug, Clone)]
struct Window {
    /// From this time: RFC 3339, a local time (2026-11-26T04:17), a date, today, yesterday,
    /// or 30m/2h/7d ago.
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

/// Which messages: `messages` and `stats`.
#[derive(Args, Debug, Clone)]
struct MessageFilter {
    /// Only this room (case-insensitive, `#` optional).
    #[arg(long)]
    room: Option<String>,
    /// Only messages from this name.
    #[arg(long)]
    from: Option<String>,
    /// Only direct messages to this name.
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    window: Window,
    /// Only messages whose text matches this regular expression.
    #[arg(long)]
    grep: Option<String>,
    /// Only direct messages.
    #[arg(long, conflicts_with = "no_dm")]
    dm: bool,
    /// No direct messages.
    #[arg(long)]
    no_dm: bool,
}

/// How rows are printed: `messages` and `connections`.
#[derive(Args, Debug, Clone)]
struct Output {
    /// Keep running and print rows as they are appended, like `tail -F`: starts from the last
    /// 10 matching rows (or --last N, or --since), and waits for a missing file.
    #[arg(long, short)]
    follow: bool,
    /// Only the last N matching rows (read from the end of the file).
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Output: table (readable), csv or jsonl (the file's columns, for other tools).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// With --format csv: prefix with ' every cell a spreadsheet would take for a formula
    /// (one starting with = + - @), for opening in Excel or LibreOffice. The log itself keeps
    /// exactly what was sent.
    #[arg(long)]
    excel_safe: bool,
    /// Colours: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, env = "CHAT_COLOR", default_value = "auto", value_parser = ["auto", "always", "never"])]
    color: String,
}

#[derive(Args, Debug, Clone)]
struct MessagesArgs {
    #[command(flatten)]
    filter: MessageFilter,
    #[command(flatten)]
    output: Output,
}

#[derive(Args, Debug, Clone)]
struct ConnectionsArgs {
    /// Only this name.
    #[arg(long)]
    name: Option<String>,
    /// Only this address or network (203.0.113.7, 203.0.113.0/24, 2001:db8::/32).
    #[arg(long, value_parser = network)]
    ip: Option<Target>,
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    output: Output,
}

#[derive(Args, Debug, Clone)]
struct StatsArgs {
    #[command(flatten)]
    filter: MessageFilter,
    /// Output: table (with bars), or the numbers alone as csv or jsonl (group,key,count).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `--ip`: an address or a network, never a name (which would match nothing).
fn network(s: &str) -> Result<Target, String> {
    match Target::parse(s) {
        Ok(t @ (Target::Ip(_) | Target::Cidr(..))) => Ok(t),
        _ => Err(format!(
            "{s:?} is not an address or a network (203.0.113.7, 203.0.113.0/24)"
        )),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `--data-dir a stats --data-dir b`: clap keeps only the values after the subcommand
    // (clap-rs/clap#1570); take them all from the command line, which clap has accepted.
    if cli.command.is_some() && matches.value_source("data_dir") == Some(ValueSource::CommandLine) {
        let given = data_dirs_given(std::env::args_os());
        if given.ends_with(&cli.data_dir) {
            cli.data_dir = given;
        }
    }
    if let Some(exit) = cli.extras.run(Cli::command()) {
        return exit;
    }
    // `chat-log --follow connections`: a flag of `messages` before another subcommand would
    // be ignored; refuse it, as clap refuses an unknown flag.
    if let Some(command) = &cli.command {
        let given = MessagesArgs::augment_args(clap::Command::new("messages"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .find(|id| matches.value_source(id) == Some(ValueSource::CommandLine));
        if let Some(id) = given {
            let sub = match command {
                Command::Messages(_) => "messages",
                Command::Connections(_) => "connections",
                Command::Stats(_) => "stats",
            };
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "--{} before `{sub}` is a flag of `messages`, which `{sub}` would ignore; \
                         a subcommand's flags go after it (see `chat-log {sub} --help`)",
                        id.replace('_', "-")
                    ),
                )
                .exit();
        }
    }
    // Several data directories (a cluster's nodes) make one merged view of the messages,
    // which cannot be followed as one file is; connection ids are each node's own.
    if cli.data_dir.len() > 1 {
        let refused = match &cli.command {
            Some(Command::Connections(_)) => Some("`connections`"),
            Some(Command::Messages(args)) if args.output.follow => Some("--follow"),
            None if cli.messages.output.follow => Some("--follow"),
            _ => None,
        };
        if let Some(what) = refused {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{what} takes one --data-dir, not {}; several are merged only by \
                         `messages` (without --follow) and `stats`",
                        cli.data_dir.len()
                    ),
                )
                .exit();
        }
    }
    match run(cli) {
        // Like grep: 0 when something matched, 1 when nothing did.
        Ok(0) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        // `chat-log | head`: the reader left; that is a normal end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-log: {e}");
            ExitCode::from(2)
        }
    }
}

/// Every `--data-dir` value in `args` (the program's name first), split at commas as clap
/// splits them, in order. Only for arguments clap has accepted: there, a token `--data-dir`
/// is that flag (clap takes no value that looks like a flag, and `chat-log` has no positional
/// argument that could follow `--`).
fn data_dirs_given(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<PathBuf> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut dirs = Vec::new();
    let mut args = args.skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_bytes() {
            b"--" => break,
            b"--data-dir" => match args.next() {
                Some(v) => v.into_vec(),
                None => break,
            },
            b => match b.strip_prefix(b"--data-dir=") {
                Some(v) => v.to_vec(),
                None => continue,
            },
        };
        dirs.extend(
            value
                .split(|&c| c == b',')
                .map(|d| PathBuf::from(std::ffi::OsStr::from_bytes(d))),
        );
    }
    dirs
}

/// Runs the subcommand; returns how many rows matched.
fn run(cli: Cli) -> chatroom::Result<u64> {
    let zone = if cli.utc { Zone::Utc } else { Zone::Local };
    // One large buffer: a million matching rows are a few hundred writes, not thousands.
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    match cli.command.unwrap_or(Command::Messages(cli.messages)) {
        Command::Messages(args) => {
            let o = &args.output;
            let options = ShowOptions {
                view: view(o, zone)?,
                format: o.format,
                filter: message_filter(&args.filter, zone)?,
                last: o.last,
                follow: o.follow,
            };
            viewer::show_merged(&files(&cli.data_dir, MESSAGES_FILE), &mut out, &options)
        }
        Command::Connections(args) => {
            let o = &args.output;
            let (since, until) = window(&args.window, zone)?;
            let options = ConnOptions {
                view: view(o, zone)?,
                format: o.format,
                filter: ConnFilter {
                    name: args.name,
                    ip: args.ip,
                    since,
                    until,
                },
                last: o.last,
                follow: o.follow,
            };
            let [dir] = cli.data_dir.as_slice() else {
                unreachable!("checked in main")
            };
            viewer::connections(&dir.join(CONNECTIONS_FILE), &mut out, &options)
        }
        Command::Stats(args) => {
            let options = StatsOptions {
                filter: message_filter(&args.filter, zone)?,
                format: args.format,
                zone,
            };
            viewer::stats_merged(&files(&cli.data_dir, MESSAGES_FILE), &mut out, &options)
        }
    }
}

/// The file `name` in each data directory.
fn files(dirs: &[PathBuf], name: &str) -> Vec<PathBuf> {
    dirs.iter().map(|d| d.join(name)).collect()
}

fn view(o: &Output, zone: Zone) -> chatroom::Result<ViewOptions> {
    if o.excel_safe && o.format != Format::Csv {
        return Err(chatroom::Error::setting(
            "--excel-safe applies to --format csv",
        ));
    }
    Ok(ViewOptions {
        color: o.format == Format::Table && chatroom::term::color_enabled(&o.color),
        excel_safe: o.excel_safe,
        zone,
    })
}

type Time = chrono::DateTime<chrono::Utc>;

/// `--since` and `--until`, read in `zone`; an empty window is an error, not silence.
fn window(w: &Window, zone: Zone) -> chatroom::Result<(Option<Time>, Option<Time>)> {
    let when = |flag: &str, s: &Option<String>| {
        s.as_deref()
            .map(|s| match zone {
                Zone::Local => viewer::parse_when(s, chrono::Local::now()),
                Zone::Utc => viewer::parse_when(s, chrono::Utc::now()),
            })
            .transpose()
            .map_err(|e| chatroom::Error::setting(format!("{flag}: {e}")))
    };
    let (since, until) = (when("--since", &w.since)?, when("--until", &w.until)?);
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(chatroom::Error::setting(format!(
            "--since {} is not before --until {} ({} and {} UTC): nothing can match",
            w.since.as_deref().unwrap_or_default(),
            w.until.as_deref().unwrap_or_default(),
            s.format("%Y-%m-%d %H:%M:%S"),
            u.format("%Y-%m-%d %H:%M:%S"),
        )));
    }
    Ok((since, until))
}

fn message_filter(f: &MessageFilter, zone: Zone) -> chatroom::Result<Filter> {
    let grep = f
        .grep
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| chatroom::Error::setting(format!("--grep: {e}")))?;
    let (since, until) = window(&f.window, zone)?;
    Ok(Filter {
        room: f.room.clone(),
        from: f.from.clone(),
        to: f.to.clone(),
        since,
        until,
        grep,
        dm: match (f.dm, f.no_dm) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    })
}
