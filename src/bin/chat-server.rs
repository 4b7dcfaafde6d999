//! `chat-server`: binds the listener, prints `listening on ADDR` (then `web on URL` with
//! `--web`, `irc on ADDR` with `--irc`, `irc-tls on ADDR` with `--irc-tls`), and runs the
//! server until
//! SIGINT or SIGTERM; SIGHUP reloads users, bans and the TLS certificate.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use chatroom::{Config, Server};

/// A self-hosted chat server: one thread per client, every message kept in CSV.
#[derive(Parser, Debug)]
#[command(name = "chat-server", version, about, args_override_self = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Read settings from this TOML file: the flags' long names as keys (max-clients = 5000);
    /// a flag or an environment variable wins over it.
    #[arg(long = "config", env = "CHAT_CONFIG", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, env = "CHAT_BIND", default_value = "0.0.0.0:5555")]
    bind: String,
    /// Also serve the web client on this address (e.g. 0.0.0.0:8080): the page, and JSON over
    /// a WebSocket at /ws; HTTPS and WSS with --tls-cert. Off by default.
    #[arg(long, env = "CHAT_WEB", value_name = "ADDR")]
    web: Option<String>,
    /// Also speak IRC on this address (e.g. 0.0.0.0:6667), always plain TCP: IRC clients
    /// join the same rooms as channels. Off by default.
    #[arg(long, env = "CHAT_IRC", value_name = "ADDR")]
    irc: Option<String>,
    /// Also speak IRC over TLS on this address (e.g. 0.0.0.0:6697), with the certificate of
    /// --tls-cert/--tls-key (required); SASL PLAIN is offered there. Off by default.
    #[arg(long, env = "CHAT_IRC_TLS", value_name = "ADDR", requires = "tls_cert")]
    irc_tls: Option<String>,
    /// The shortest password `users add` and `users passwd` accept, in characters.
    #[arg(long, env = "CHAT_MIN_PASSWORD", default_value_t = 8, global = true)]
    min_password: usize,
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    extras: chatroom::cli::Extras,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage accounts in DATA_DIR/users.csv (the server need not be stopped).
    Users {
        #[command(subcommand)]
        action: chatroom::store::users::UsersCommand,
    },
    /// Manage DATA_DIR/bans.csv (a running server applies the change at its next connection).
    Bans {
        #[command(subcommand)]
        action: chatroom::store::bans::BansCommand,
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
    /// Print a shell completion script (bash, zsh, fish) to standard output.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: chatroom::cli::Shell,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // The file's settings become arguments before the command line's own, which win.
    let args = match chatroom::server::config_file::args_with_file(
        &Args::command(),
        std::env::args_os(),
    ) {
        Ok(args) => Args::parse_from(args),
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(exit) = args.extras.run(Args::command()) {
        return exit;
    }
    if let Some(Command::Completions { shell }) = args.command {
        let extras = chatroom::cli::Extras {
            completions: Some(shell),
            man: None,
        };
        return extras.run(Args::command()).unwrap_or(ExitCode::SUCCESS);
    }
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
        return report(chatroom::store::users::users_command(
            &args.config.data_dir,
            action,
            args.min_password,
            read_password,
        ));
    }
    if let Some(Command::Bans { action }) = &args.command {
        // Who did it, in the `by` column: the login of whoever ran the command.
        // Under `sudo -u chatroom`, the person who ran sudo.
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .or_else(|_| std::env::var("LOGNAME"));
        let by = format!("cli:{}", user.as_deref().unwrap_or("unknown"));
        return report(chatroom::store::bans::bans_command(
            &args.config.data_dir,
            action,
            &by,
        ));
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

/// Prints what a subcommand did (ending with a newline), or its error; the exit code.
fn report(outcome: chatroom::Result<String>) -> ExitCode {
    match outcome {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
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
    // First: a signal during start-up (a `systemctl reload` right after `start`) waits for the
    // handlers below instead of killing the process with its default action.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| chatroom::Error::io("cannot install signal handlers", e))?;
    let config = args.config;
    if let Some(file) = &args.config_file {
        log::info!("settings from {}", file.display());
    }
    // Each client costs a descriptor: allow as many as the hard limit does.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => log::info!("descriptor limit {n}"),
        Err(e) => log::warn!("cannot raise the descriptor limit: {e}"),
    }
    let listener = chatroom::server::bind(&args.bind)?;
    let local = listener
        .local_addr()
        .map_err(|e| chatroom::Error::io("cannot read the listener's address", e))?;
    let web = args
        .web
        .as_deref()
        .map(chatroom::server::bind)
        .transpose()?;
    let web_local = web
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(|e| chatroom::Error::io("cannot read the web listener's address", e))?;
    let irc = args
        .irc
        .as_deref()
        .map(chatroom::server::bind)
        .transpose()?;
    let irc_tls = args
        .irc_tls
        .as_deref()
        .map(chatroom::server::bind)
        .transpose()?;
    let address = |l: &Option<std::net::TcpListener>| {
        l.as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| chatroom::Error::io("cannot read an IRC listener's address", e))
    };
    let (irc_local, irc_tls_local) = (address(&irc)?, address(&irc_tls)?);
    let tls = config.tls.tls_cert.is_some();
    let private = config.login.private;
    let others = chatroom::server::Listeners { web, irc, irc_tls };
    let server = Server::with_listeners(listener, others, config)?;
    let handle = server.shutdown_handle();
    let reload = server.reload_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    // `systemctl reload`: users, bans and a renewed certificate, no restart.
                    log::info!("SIGHUP: reloading");
                    reload.reload();
                    continue;
                }
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
    // How the server listens goes to the log, before the first line of stdout, which stays
    // `listening on ADDR` alone (scripts and tests parse it).
    log::info!(
        "listening on {local}: tls {}, private mode {}",
        if tls { "on" } else { "off" },
        if private { "on" } else { "off" }
    );
    let mut stdout = std::io::stdout();
    // A closed stdout (a supervisor that does not read it) must not stop the server.
    let _ = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush());
    if let Some(web) = web_local {
        let scheme = if tls { "https" } else { "http" };
        log::info!("web client on {scheme}://{web}/");
        let _ = writeln!(stdout, "web on {scheme}://{web}/").and_then(|()| stdout.flush());
    }
    for (what, addr) in [("irc", irc_local), ("irc-tls", irc_tls_local)] {
        if let Some(addr) = addr {
            log::info!("{what} on {addr}");
            let _ = writeln!(stdout, "{what} on {addr}").and_then(|()| stdout.flush());
        }
    }
    server.run()
}
