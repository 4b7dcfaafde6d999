//! `chat-client`: connects, asks for a name if none was given, and chats over the JSON mode.

use std::io::{self, IsTerminal};
use std::net::TcpStream;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use chatroom::client::{self, Ending, Options};

/// Chat from a terminal or a script (lines on stdin are sent; end of input leaves).
#[derive(Parser, Debug)]
#[command(name = "chat-client", version, about)]
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
    /// Server address: HOST[:PORT] or [IPv6][:PORT], a host name or an address (the port is
    /// 5555 when absent).
    #[arg(env = "CHAT_SERVER", default_value = "127.0.0.1:5555")]
    addr: String,
    #[command(flatten)]
    extras: chatroom::cli::Extras,
}

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
    };
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
            return ExitCode::FAILURE;
        }
    };
    let stdin = io::BufReader::new(io::stdin());
    let mut stdout = io::stdout();
    match client::run(transport, stdin, &mut stdout, &opts) {
        Ok(Ending::Quit) => ExitCode::SUCCESS,
        Ok(Ending::ServerClosed(why)) => {
            eprintln!("chat-client: disconnected: {why}");
            ExitCode::SUCCESS
        }
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-client: {e}");
            ExitCode::FAILURE
        }
    }
}
