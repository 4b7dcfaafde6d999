//! `chat-client`: connects, asks for a name if none was given, and chats over the JSON mode.
//! The line mode (`--plain`, and whenever stdin or stdout is not a terminal) is
//! `chatroom::client::plain`; its exit statuses are `chatroom::client::exit`.

use std::io::{self, IsTerminal};
use std::net::TcpStream;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use chatroom::client::{self, Options, exit};

/// Chat from a terminal or a script (lines on stdin are sent; end of input leaves).
#[derive(Parser, Debug)]
#[command(name = "chat-client", version, about, after_help = EXIT_STATUS)]
struct Args {
    /// Your name (asked for when absent).
    #[arg(long, short, env = "CHAT_NAME")]
    name: Option<String>,
    /// Colours: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, env = "CHAT_COLOR", default_value = "auto", value_parser = ["auto", "always", "never"])]
    color: String,
    /// The password of a registered name (better in the environment than on the command
    /// line; asked for when needed otherwise: without echo on a terminal, else the next line
    /// of stdin).
    #[arg(long, env = "CHAT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Connect over TLS, checking the server's certificate.
    #[arg(long, env = "CHAT_TLS")]
    tls: bool,
    /// A PEM file of certificates to trust besides the usual public ones (a self-signed or
    /// private CA); implies --tls.
    #[arg(long, env = "CHAT_CA")]
    ca: Option<std::path::PathBuf>,
    /// Join ROOM (creating it if new) and post there: no line is sent before the join
    /// succeeded.
    #[arg(long, env = "CHAT_ROOM", value_name = "ROOM")]
    room: Option<String>,
    /// Pace lines to the server's rate limit (wait and resend after a refusal) instead of
    /// losing them.
    #[arg(long)]
    wait: bool,
    /// Line mode: one line per message or event, no full-screen interface (the default when
    /// stdin or stdout is not a terminal).
    #[arg(long)]
    plain: bool,
    /// Server address: HOST[:PORT] or [IPv6][:PORT], a host name or an address (the port is
    /// 5555 when absent).
    #[arg(env = "CHAT_SERVER", default_value = "127.0.0.1:5555")]
    addr: String,
    #[command(flatten)]
    extras: chatroom::cli::Extras,
}

/// The exit statuses, shown by `--help` (and kept in the README).
const EXIT_STATUS: &str = "\
Exit status (line mode):
  0  every line was delivered (acknowledged by the server) and the session ended normally
  1  the session could not start: cannot connect, TLS, an I/O error
  2  usage error
  3  some lines were refused (rate limit, too long, muted, unknown command...) or never
     acknowledged
  4  removed by the server: kicked, banned, disconnected for flooding, logged in elsewhere
  5  the login was refused: wrong or missing password, name refused
  6  the connection was lost: closed without a goodbye, the server shut down, no answer";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Some(exit) = args.extras.run(Args::command()) {
        return exit;
    }
    let addr = client::server_address(&args.addr);
    let color = chatroom::term::color_enabled(&args.color);
    let opts = Options {
        name: args.name,
        color,
        interactive: io::stdin().is_terminal(),
        password: args.password,
        erase_typed: io::stdin().is_terminal() && io::stdout().is_terminal(),
        room: args.room,
        wait: args.wait,
    };
    let plain = args.plain || !io::stdin().is_terminal() || !io::stdout().is_terminal();
    if !plain {
        return full_screen(&addr, args.tls, args.ca.as_deref(), &opts);
    }
    let transport = if args.tls || args.ca.is_some() {
        chatroom::tls::client_config(args.ca.as_deref())
            .and_then(|config| chatroom::tls::connect(&addr, config))
    } else {
        TcpStream::connect(&addr)
            .map(|s| chatroom::tls::Transport::Plain(std::sync::Arc::new(s)))
            .map_err(|e| chatroom::Error::io(format!("cannot connect to {addr}"), e))
    };
    let transport = match transport {
        Ok(t) => std::sync::Arc::new(t),
        Err(e) => {
            eprintln!("chat-client: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let stdin = io::BufReader::new(io::stdin());
    let mut stdout = io::stdout();
    match client::plain::run(transport, stdin, &mut stdout, &opts) {
        Ok(ending) => {
            if let Some(why) = ending.describe() {
                eprintln!("chat-client: {why}");
            }
            ExitCode::from(ending.exit_code())
        }
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-client: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// The full-screen mode (`chatroom::client::tui`): its connector opens a new transport for
/// each reconnect, with the TLS settings loaded once.
fn full_screen(addr: &str, tls: bool, ca: Option<&std::path::Path>, opts: &Options) -> ExitCode {
    use chatroom::client::tui::{self, Ending, TuiOptions};
    let tls = if tls || ca.is_some() {
        match chatroom::tls::client_config(ca) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("chat-client: {e}");
                return ExitCode::from(exit::FAILURE);
            }
        }
    } else {
        None
    };
    let target = addr.to_string();
    let connect: tui::Connector = std::sync::Arc::new(move || match &tls {
        Some(config) => chatroom::tls::connect(&target, config.clone()),
        None => TcpStream::connect(&target)
            .map(|s| chatroom::tls::Transport::Plain(std::sync::Arc::new(s)))
            .map_err(|e| chatroom::Error::io(format!("cannot connect to {target}"), e)),
    });
    let tui_opts = TuiOptions {
        name: opts.name.clone(),
        password: opts.password.clone(),
        server: addr.to_string(),
        room: opts.room.clone(),
    };
    match tui::run(connect, tui_opts) {
        Ok(Ending::Quit) => ExitCode::SUCCESS,
        Ok(Ending::Refused(why)) => {
            eprintln!("chat-client: the server refused the login: {why}");
            ExitCode::from(exit::LOGIN)
        }
        Ok(Ending::Lost(why)) => {
            eprintln!("chat-client: disconnected: {why}");
            ExitCode::from(exit::REMOVED)
        }
        Err(e) => {
            eprintln!("chat-client: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
