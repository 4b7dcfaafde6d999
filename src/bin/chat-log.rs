//! `chat-log`: shows `messages.csv` as readable lines, and follows it with `--follow`.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use chatroom::storage::MESSAGES_FILE;
use chatroom::viewer::{self, ViewOptions};

/// Read and follow the chat log.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory holding messages.csv.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Keep running and print rows as they are appended, like `tail -f`.
    #[arg(long, short)]
    follow: bool,
    /// Colours: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, env = "CHAT_COLOR", default_value = "auto", value_parser = ["auto", "always", "never"])]
    color: String,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let color = chatroom::term::color_enabled(&args.color);
    let path = args.data_dir.join(MESSAGES_FILE);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match viewer::show(&path, &mut out, ViewOptions { color }, args.follow) {
        Ok(()) => ExitCode::SUCCESS,
        // `chat-log | head`: the reader left; that is a normal end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-log: {e}");
            ExitCode::FAILURE
        }
    }
}
