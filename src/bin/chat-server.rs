//! `chat-server`: binds the listener, prints `listening on ADDR`, and runs the server until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use chatroom::{Config, Server};

/// A self-hosted chat server: one thread per client, every message kept in CSV.
#[derive(Parser, Debug)]
#[command(version, about, args_override_self = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, env = "CHAT_BIND", default_value = "0.0.0.0:5555")]
    bind: String,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage accounts in DATA_DIR/users.csv (the server need not be stopped).
    Users {
        #[command(subcommand)]
        action: chatroom::store::users::UsersCommand,
    },
    /// Write a self-signed certificate (cert.pem, key.pem) for testing; not for production.
    GenCert {
        /// Where to write cert.pem and key.pem.
        #[arg(long, default_value = "tls")]
        out: PathBuf,
        /// Host names or addresses the certificate is for.
        #[arg(default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Some(Command::GenCert { out, names }) = &args.command {
        return match chatroom::tls::make_dev_cert(out, names) {
            Ok(()) => {
                println!(
                    "wrote {0}/cert.pem and {0}/key.pem for {1}",
                    out.display(),
                    names.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chat-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Users { action }) = &args.command {
        return match chatroom::store::users::users_command(
            &args.config.data_dir,
            action,
            read_password,
        ) {
            Ok(out) => {
                print!("{out}");
                if !out.ends_with('\n') {
                    println!();
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chat-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // A value the parser cannot judge alone is checked before anything starts, and is a
    // usage error like the parser's own (exit code 2).
    if let Err(e) = args.config.validate() {
        eprintln!("chat-server: {e}");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e}");
            ExitCode::from(if e.is_setting() { 2 } else { 1 })
        }
    }
}

/// A password: from the terminal without echo (asked twice), or one line of stdin in scripts.
fn read_password(name: &str) -> chatroom::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let io = |e| chatroom::Error::io("cannot read the password", e);
        let first = rpassword::prompt_password(format!("password for {name}: ")).map_err(io)?;
        let again = rpassword::prompt_password("again: ").map_err(io)?;
        if first != again {
            return Err(chatroom::Error::account("the passwords differ"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| chatroom::Error::io("cannot read the password from stdin", e))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn run(args: Args) -> chatroom::Result<()> {
    let config = args.config;
    // Each client costs a descriptor: allow as many as the hard limit does.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => log::info!("descriptor limit {n}"),
        Err(e) => log::warn!("cannot raise the descriptor limit: {e}"),
    }
    let listener = chatroom::server::bind(&args.bind)?;
    let local = listener
        .local_addr()
        .map_err(|e| chatroom::Error::io("cannot read the listener's address", e))?;
    let server = Server::new(listener, config)?;
    let handle = server.shutdown_handle();
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| chatroom::Error::io("cannot install signal handlers", e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    log::warn!("second signal {signal}: exiting now");
                    std::process::exit(130);
                }
                log::info!("signal {signal}: stopping");
                handle.shutdown();
            }
        })
        .map_err(|e| chatroom::Error::io("cannot start the signal thread", e))?;
    let mut stdout = std::io::stdout();
    // A closed stdout (a supervisor that does not read it) must not stop the server.
    let _ = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush());
    server.run()
}
