//! `chat-server`: binds the listener, prints `listening on ADDR`, and runs the server until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Directory of messages.csv and data.csv (created if missing).
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Longest accepted line, in bytes.
    #[arg(long, env = "CHAT_MAX_LINE", default_value_t = 4096)]
    max_line: usize,
    /// Seconds a new connection has to give an acceptable name.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value_t = 30.0)]
    handshake_timeout: f64,
    /// KiB that may wait for one client before it counts as a slow consumer.
    #[arg(long, env = "CHAT_OUTBOX_KIB", default_value_t = 4096)]
    outbox_kib: usize,
    /// Rooms with more members than this get no join/leave notices.
    #[arg(long, env = "CHAT_NOTICE_LIMIT", default_value_t = 200)]
    notice_limit: usize,
    /// Messages of a room's history sent on joining it (0: none).
    #[arg(long, env = "CHAT_HISTORY", default_value_t = 50)]
    history: usize,
    /// Messages of history kept in memory per room (the most /history N shows).
    #[arg(long, env = "CHAT_HISTORY_KEEP", default_value_t = 200)]
    history_keep: usize,
    /// MiB of the end of messages.csv read at start-up to rebuild room history.
    #[arg(long, env = "CHAT_HISTORY_SCAN_MIB", default_value_t = 16)]
    history_scan_mib: u64,
    /// When messages reach the disk: always (fsync per message), batch (one fsync per batch,
    /// before delivery), never (left to the kernel).
    #[arg(long, env = "CHAT_FSYNC", value_enum, default_value_t = chatroom::store::Fsync::Batch)]
    fsync: chatroom::store::Fsync,
    /// Messages per second one client may send on average (0: no limit).
    #[arg(long, env = "CHAT_MSG_RATE", default_value_t = 5.0)]
    msg_rate: f64,
    /// Messages one client may send at once before the rate applies.
    #[arg(long, env = "CHAT_MSG_BURST", default_value_t = 20.0)]
    msg_burst: f64,
    /// Messages refused in a row for the rate after which a client is disconnected.
    #[arg(long, env = "CHAT_FLOOD_LIMIT", default_value_t = 50)]
    flood_limit: u32,
    /// Connections at once from one IP address (0: no limit). Loopback is exempt unless
    /// --limit-loopback.
    #[arg(long, env = "CHAT_MAX_PER_IP", default_value_t = 256)]
    max_per_ip: usize,
    /// New connections per minute from one IP address (0: no limit).
    #[arg(long, env = "CHAT_CONN_PER_MINUTE", default_value_t = 120)]
    conn_per_minute: usize,
    /// Apply the per-IP limits to loopback addresses too.
    #[arg(long, env = "CHAT_LIMIT_LOOPBACK")]
    limit_loopback: bool,
    /// Seconds of silence after which a JSON client is pinged.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 60.0)]
    ping_interval: f64,
    /// Seconds a pinged JSON client has to answer.
    #[arg(long, env = "CHAT_PING_TIMEOUT", default_value_t = 30.0)]
    ping_timeout: f64,
    /// Seconds of silence after which a human-mode client is dropped.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT", default_value_t = 3600.0)]
    idle_timeout: f64,
    /// Serve TLS with this PEM certificate chain (with --tls-key) instead of plain TCP.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Only accounts may connect (see `chat-server users`); otherwise unregistered names join
    /// as guests and registered names need their password.
    #[arg(long, env = "CHAT_PRIVATE")]
    private: bool,
    /// Seconds to wait after a first failed login; doubles with each failure, up to 30.
    #[arg(long, env = "CHAT_LOGIN_DELAY", default_value_t = 1.0)]
    login_delay: f64,
    /// Failed logins within 15 minutes (per name, and per address) that lock it out.
    #[arg(long, env = "CHAT_LOGIN_LOCKOUT", default_value_t = 10)]
    login_lockout: u32,
    /// Rooms one connection may be in at once.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CLIENT", default_value_t = 100)]
    max_rooms_per_client: usize,
    /// Rooms kept at once (with members, or empty with history); past it the longest-idle
    /// empty room is forgotten, or a new room refused.
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = 10_000)]
    max_rooms: usize,
    /// MiB of room history kept in memory across all rooms (the oldest go first; all stay in
    /// messages.csv).
    #[arg(long, env = "CHAT_HISTORY_MIB", default_value_t = 64)]
    history_mib: usize,
    /// MiB that may wait for all the connections of one address together (where per-address
    /// limits apply); past it, the client that falls behind is disconnected.
    #[arg(long, env = "CHAT_OUTBOX_PER_IP_MIB", default_value_t = 64)]
    outbox_per_ip_mib: usize,
    /// Password checks that may run at once (Argon2id: 19 MiB and tens of ms each).
    #[arg(long, env = "CHAT_PASSWORD_CHECKERS", default_value_t = 2)]
    password_checkers: usize,
    /// Most clients at once (default: what the kernel's limits allow; logged at start-up).
    #[arg(long, env = "CHAT_MAX_CLIENTS")]
    max_clients: Option<usize>,
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
        return match chatroom::store::users::users_command(&args.data_dir, action, read_password) {
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
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
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
            return Err(chatroom::Error::Config("the passwords differ".into()));
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
    if args.handshake_timeout.is_nan()
        || args.handshake_timeout <= 0.0
        || args.max_line == 0
        || args.outbox_kib == 0
    {
        return Err(chatroom::Error::Config(
            "--handshake-timeout, --max-line and --outbox-kib must be greater than 0".into(),
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(chatroom::tls::server_config(cert, key)?),
        _ => None,
    };
    let config = Config {
        tls,
        data_dir: args.data_dir,
        max_line: args.max_line,
        handshake_timeout: Duration::from_secs_f64(args.handshake_timeout),
        outbox_bytes: args.outbox_kib << 10,
        notice_limit: args.notice_limit,
        max_clients: args.max_clients,
        history: args.history,
        history_keep: args.history_keep,
        history_scan_bytes: args.history_scan_mib << 20,
        fsync: args.fsync,
        msg_rate: args.msg_rate,
        msg_burst: args.msg_burst,
        flood_limit: args.flood_limit,
        max_per_ip: args.max_per_ip,
        per_ip_per_minute: args.conn_per_minute,
        limit_loopback: args.limit_loopback,
        ping_interval: Duration::from_secs_f64(args.ping_interval),
        ping_timeout: Duration::from_secs_f64(args.ping_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        private: args.private,
        login_delay: Duration::from_secs_f64(args.login_delay.max(0.0)),
        login_lockout: args.login_lockout,
        max_rooms_per_client: args.max_rooms_per_client,
        max_rooms: args.max_rooms,
        history_bytes: args.history_mib << 20,
        password_checkers: args.password_checkers,
        outbox_per_ip_bytes: args.outbox_per_ip_mib << 20,
        ..Config::default()
    };
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
