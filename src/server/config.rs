//! How a server runs: one [`Config`] in sections, one `Default` per section, and
//! [`Config::validate`].
//!
//! `chat-server` derives its command line from these structs (each field is the flag of the
//! same name, each doc comment its help, each default taken from the section's `Default`), so
//! the defaults are written once, here. Every value a flag can take is either refused by the
//! parser (a duration that is not a number of seconds) or by `validate`, with a message that
//! names the flag: nothing is clamped in silence and nothing panics later.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::store::Fsync;

/// Everything a server needs to know; see the sections.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory of messages.csv and data.csv (created if missing).
    #[arg(long, env = "CHAT_DATA_DIR", default_value_os_t = Config::default().data_dir)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub connection: ConnectionConfig,
    #[command(flatten)]
    pub chat: ChatConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub login: LoginConfig,
    #[command(flatten)]
    pub tls: TlsConfig,
    #[command(flatten)]
    pub web: WebConfig,
    #[command(flatten)]
    pub cluster: ClusterConfig,
    /// How long [`Server::run`](super::Server::run) waits for connection threads after the
    /// broadcaster stops.
    #[arg(skip = Config::default().drain_timeout)]
    pub drain_timeout: Duration,
    /// Stack size of each connection's reader thread; the writer gets a quarter.
    #[arg(skip = Config::default().stack_size)]
    pub stack_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("data"),
            connection: ConnectionConfig::default(),
            chat: ChatConfig::default(),
            limits: LimitsConfig::default(),
            login: LoginConfig::default(),
            tls: TlsConfig::default(),
            web: WebConfig::default(),
            cluster: ClusterConfig::default(),
            drain_timeout: Duration::from_secs(5),
            stack_size: 256 * 1024,
        }
    }
}

/// One connection: its lines, its handshake, its silences.
#[derive(Debug, Clone, Args)]
pub struct ConnectionConfig {
    /// Longest accepted line, in bytes.
    #[arg(long, env = "CHAT_MAX_LINE", default_value_t = ConnectionConfig::default().max_line)]
    pub max_line: usize,
    /// Seconds a new connection has to finish its handshake (TLS, name, password).
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT",
          default_value_t = ConnectionConfig::default().handshake_timeout)]
    pub handshake_timeout: Seconds,
    /// Seconds of silence after which a JSON client is pinged.
    #[arg(long, env = "CHAT_PING_INTERVAL",
          default_value_t = ConnectionConfig::default().ping_interval)]
    pub ping_interval: Seconds,
    /// Seconds a pinged JSON client has to answer.
    #[arg(long, env = "CHAT_PING_TIMEOUT",
          default_value_t = ConnectionConfig::default().ping_timeout)]
    pub ping_timeout: Seconds,
    /// Seconds of silence after which a human-mode client is dropped.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT",
          default_value_t = ConnectionConfig::default().idle_timeout)]
    pub idle_timeout: Seconds,
    /// Most clients at once (default: what the kernel's limits allow; logged at start-up).
    #[arg(long, env = "CHAT_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
}

impl Default for ConnectionConfig {
    fn default() -> ConnectionConfig {
        ConnectionConfig {
            max_line: 4096,
            handshake_timeout: Seconds::from(Duration::from_secs(30)),
            ping_interval: Seconds::from(Duration::from_secs(60)),
            ping_timeout: Seconds::from(Duration::from_secs(30)),
            idle_timeout: Seconds::from(Duration::from_secs(3600)),
            max_clients: None,
        }
    }
}

impl ConnectionConfig {
    /// How long a writer may fail to send before it gives up: a client that reads nothing
    /// for this long would have missed a ping and its answer anyway.
    pub fn send_timeout(&self) -> Duration {
        (self.ping_interval.get() + self.ping_timeout.get()).max(Duration::from_secs(1))
    }
}

/// Rooms, their history, the log, and how fast one client may talk.
#[derive(Debug, Clone, Args)]
pub struct ChatConfig {
    /// Rooms with more members than this get no join/leave notices.
    #[arg(long, env = "CHAT_NOTICE_LIMIT", default_value_t = ChatConfig::default().notice_limit)]
    pub notice_limit: usize,
    /// Messages of a room's history sent on joining it (0: none).
    #[arg(long, env = "CHAT_HISTORY", default_value_t = ChatConfig::default().history)]
    pub history: usize,
    /// Messages of history kept in memory per room (the most /history N shows).
    #[arg(long, env = "CHAT_HISTORY_KEEP", default_value_t = ChatConfig::default().history_keep)]
    pub history_keep: usize,
    /// MiB of the end of messages.csv read at start-up to rebuild room history.
    #[arg(long, env = "CHAT_HISTORY_SCAN_MIB",
          default_value_t = ChatConfig::default().history_scan_mib)]
    pub history_scan_mib: u64,
    /// MiB of room history kept in memory across all rooms (the oldest go first; all stay in
    /// messages.csv).
    #[arg(long, env = "CHAT_HISTORY_MIB", default_value_t = ChatConfig::default().history_mib)]
    pub history_mib: usize,
    /// When messages reach the disk: always (fsync per message), batch (one fsync per batch,
    /// before delivery), never (left to the kernel).
    #[arg(long, env = "CHAT_FSYNC", value_enum, default_value_t = ChatConfig::default().fsync)]
    pub fsync: Fsync,
    /// Messages per second one client may send on average (0: no limit).
    #[arg(long, env = "CHAT_MSG_RATE", default_value_t = ChatConfig::default().msg_rate)]
    pub msg_rate: f64,
    /// Messages one client may send at once before the rate applies.
    #[arg(long, env = "CHAT_MSG_BURST", default_value_t = ChatConfig::default().msg_burst)]
    pub msg_burst: f64,
    /// Lines refused in a row (for the rate, or as invalid) after which a client is
    /// disconnected.
    #[arg(long, env = "CHAT_FLOOD_LIMIT", default_value_t = ChatConfig::default().flood_limit)]
    pub flood_limit: u32,
    /// Rooms one connection may be in at once.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CLIENT",
          default_value_t = ChatConfig::default().max_rooms_per_client)]
    pub max_rooms_per_client: usize,
    /// Rooms kept at once (with members, or empty with history); past it the longest-idle
    /// empty room is forgotten, or a new room refused.
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = ChatConfig::default().max_rooms)]
    pub max_rooms: usize,
}

impl Default for ChatConfig {
    fn default() -> ChatConfig {
        ChatConfig {
            notice_limit: 200,
            history: 50,
            history_keep: 200,
            history_scan_mib: 16,
            history_mib: 64,
            fsync: Fsync::Batch,
            msg_rate: 5.0,
            msg_burst: 20.0,
            flood_limit: 50,
            max_rooms_per_client: 100,
            max_rooms: 10_000,
        }
    }
}

/// Who may connect, how often, and how much may wait for them.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Connections at once from one IP address (0: no limit). Loopback is exempt unless
    /// --limit-loopback.
    #[arg(long, env = "CHAT_MAX_PER_IP", default_value_t = LimitsConfig::default().max_per_ip)]
    pub max_per_ip: usize,
    /// New connections per minute from one IP address (0: no limit).
    #[arg(long, env = "CHAT_CONN_PER_MINUTE",
          default_value_t = LimitsConfig::default().conn_per_minute)]
    pub conn_per_minute: usize,
    /// Apply the per-IP limits to loopback addresses too.
    #[arg(long, env = "CHAT_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,
    /// KiB that may wait for one client before it counts as a slow consumer.
    #[arg(long, env = "CHAT_OUTBOX_KIB", default_value_t = LimitsConfig::default().outbox_kib)]
    pub outbox_kib: usize,
    /// MiB that may wait for all the connections of one address together (where per-address
    /// limits apply); past it, the client that falls behind is disconnected.
    #[arg(long, env = "CHAT_OUTBOX_PER_IP_MIB",
          default_value_t = LimitsConfig::default().outbox_per_ip_mib)]
    pub outbox_per_ip_mib: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_per_ip: 256,
            conn_per_minute: 120,
            limit_loopback: false,
            outbox_kib: 4096,
            outbox_per_ip_mib: 64,
        }
    }
}

impl LimitsConfig {
    /// [`outbox_kib`](Self::outbox_kib) in bytes.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox_kib.saturating_mul(1 << 10)
    }
}

/// Accounts and logging in.
#[derive(Debug, Clone, Args)]
pub struct LoginConfig {
    /// Only accounts may connect (see `chat-server users`); otherwise unregistered names join
    /// as guests and registered names need their password.
    #[arg(long, env = "CHAT_PRIVATE")]
    pub private: bool,
    /// Seconds to wait after a first failed login; doubles with each failure, up to 30.
    #[arg(long, env = "CHAT_LOGIN_DELAY", default_value_t = LoginConfig::default().login_delay)]
    pub login_delay: Seconds,
    /// Failed logins within 15 minutes (per name, and per address) that lock it out.
    #[arg(long, env = "CHAT_LOGIN_LOCKOUT",
          default_value_t = LoginConfig::default().login_lockout)]
    pub login_lockout: u32,
    /// Password checks that may run at once (Argon2id: 19 MiB and tens of ms each).
    #[arg(long, env = "CHAT_PASSWORD_CHECKERS",
          default_value_t = LoginConfig::default().password_checkers)]
    pub password_checkers: usize,
}

impl Default for LoginConfig {
    fn default() -> LoginConfig {
        LoginConfig {
            private: false,
            login_delay: Seconds::from(Duration::from_secs(1)),
            login_lockout: 10,
            password_checkers: 2,
        }
    }
}

/// TLS: the certificate files, and the configuration made from them.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsConfig {
    /// Serve TLS with this PEM certificate chain (with --tls-key) instead of plain TCP.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The rustls configuration: set directly, or loaded from the files by
    /// [`Server::new`](super::Server::new).
    #[arg(skip)]
    pub server: Option<Arc<rustls::ServerConfig>>,
}

impl TlsConfig {
    /// The rustls configuration, loading the files the first time; `None` for plain TCP.
    pub fn load(&mut self) -> Result<Option<Arc<rustls::ServerConfig>>> {
        if self.server.is_none()
            && let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key)
        {
            self.server = Some(crate::tls::server_config(cert, key)?);
        }
        Ok(self.server.clone())
    }
}

/// The web port (`--web`): who may open a WebSocket, and whom to believe about addresses.
#[derive(Debug, Clone, Default, Args)]
pub struct WebConfig {
    /// Another origin whose pages may open the WebSocket (e.g. https://chat.example.org);
    /// repeat for several. The page's own origin is always allowed.
    #[arg(long = "web-origin", env = "CHAT_WEB_ORIGIN", value_delimiter = ',')]
    pub web_origins: Vec<String>,
    /// The web port is behind a reverse proxy: take the client's address from the last
    /// X-Forwarded-For entry (for data.csv, bans, mutes and the login throttle).
    #[arg(long, env = "CHAT_TRUST_PROXY")]
    pub trust_proxy: bool,
}

/// Several nodes sharing rooms through Redis (`--redis`); one node alone without it.
#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// Share rooms with the other nodes of a cluster through this Redis server
    /// (redis://HOST:PORT[/DB]). Off by default: one node, CSV files only.
    #[arg(long, env = "CHAT_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// This node's name in the cluster, unique among its nodes (default: the host's name and
    /// the chat port).
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds a node's claims on its clients' names (and its member list) last without being
    /// renewed: how long a dead node's names stay taken.
    #[arg(long, env = "CHAT_REDIS_LEASE",
          default_value_t = ClusterConfig::default().redis_lease)]
    pub redis_lease: Seconds,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            redis: None,
            node_id: None,
            redis_lease: Seconds::from(Duration::from_secs(15)),
        }
    }
}

impl Config {
    /// Checks every value, with an error that names the flag: the checks the parser cannot make.
    pub fn validate(&self) -> Result<()> {
        let c = &self.connection;
        positive("--max-line", c.max_line)?;
        for (flag, d) in [
            ("--handshake-timeout", c.handshake_timeout),
            ("--ping-interval", c.ping_interval),
            ("--ping-timeout", c.ping_timeout),
            ("--idle-timeout", c.idle_timeout),
        ] {
            if d.get().is_zero() {
                return Err(invalid(flag, "must be more than 0 seconds"));
            }
        }
        if c.max_clients == Some(0) {
            return Err(invalid("--max-clients", "must be at least 1"));
        }
        let chat = &self.chat;
        positive("--flood-limit", chat.flood_limit as usize)?;
        positive("--max-rooms-per-client", chat.max_rooms_per_client)?;
        positive("--max-rooms", chat.max_rooms)?;
        if chat.history > chat.history_keep {
            return Err(invalid(
                "--history",
                &format!(
                    "({}) cannot be more than --history-keep ({})",
                    chat.history, chat.history_keep
                ),
            ));
        }
        if !(chat.msg_rate.is_finite() && chat.msg_rate >= 0.0) {
            return Err(invalid(
                "--msg-rate",
                "must be a number of messages per second, 0 or more",
            ));
        }
        if !(chat.msg_burst.is_finite() && chat.msg_burst >= 1.0) {
            return Err(invalid("--msg-burst", "must be a number, 1 or more"));
        }
        positive("--outbox-kib", self.limits.outbox_kib)?;
        positive("--login-lockout", self.login.login_lockout as usize)?;
        positive("--password-checkers", self.login.password_checkers)?;
        if self.cluster.redis_lease.get() < Duration::from_secs(1) {
            return Err(invalid("--redis-lease", "must be at least 1 second"));
        }
        if let Some(node) = &self.cluster.node_id
            && (node.is_empty() || node.contains(['/', ' ', '\n']) || node.len() > 64)
        {
            return Err(invalid(
                "--node-id",
                "must be 1 to 64 characters, without spaces or /",
            ));
        }
        for origin in &self.web.web_origins {
            if !crate::server::web::is_origin(origin) {
                return Err(invalid(
                    "--web-origin",
                    &format!(
                        "{origin:?} is not an origin: scheme://host[:port], such as https://chat.example.org"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn positive(flag: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(invalid(flag, "must be at least 1"));
    }
    Ok(())
}

fn invalid(flag: &str, problem: &str) -> Error {
    Error::setting(format!("{flag} {problem}"))
}

/// A duration given as a number of seconds (`30`, `0.5`): never negative, never infinite,
/// at most a year, so every later sum and deadline can be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(Duration);

/// The longest duration any flag takes: a year.
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

impl Seconds {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for Seconds {
    fn from(d: Duration) -> Seconds {
        Seconds(d)
    }
}

impl FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Seconds, String> {
        match s.trim().parse::<f64>() {
            Ok(n) if (0.0..=MAX_SECONDS).contains(&n) => Ok(Seconds(Duration::from_secs_f64(n))),
            _ => Err(format!(
                "a number of seconds from 0 to {MAX_SECONDS} is expected, such as 30 or 0.5"
            )),
        }
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> std::result::Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("chat-server").chain(args.iter().copied()))
            .map_err(|e| e.kind().to_string())?;
        cli.config.validate().map_err(|e| e.to_string())?;
        Ok(cli.config)
    }

    #[test]
    fn the_command_line_defaults_are_the_defaults() {
        let parsed = parse(&[]).unwrap();
        let d = Config::default();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
        assert!(d.validate().is_ok());
    }

    #[test]
    fn durations_are_seconds_that_can_be_added() {
        assert_eq!("0.5".parse(), Ok(Seconds(Duration::from_millis(500))));
        assert_eq!("30".parse(), Ok(Seconds(Duration::from_secs(30))));
        for bad in ["-1", "inf", "NaN", "1e20", "", "ten", "31536001"] {
            assert!(bad.parse::<Seconds>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5");
        assert_eq!(Seconds(Duration::from_secs(30)).to_string(), "30");
    }

    #[test]
    fn every_bad_value_is_refused_with_its_flag() {
        for (args, flag) in [
            (&["--ping-interval=-1"][..], "invalid value"),
            (&["--handshake-timeout", "inf"], "invalid value"),
            (&["--ping-interval", "0"], "--ping-interval"),
            (&["--ping-timeout", "0"], "--ping-timeout"),
            (&["--idle-timeout", "0"], "--idle-timeout"),
            (&["--handshake-timeout", "0"], "--handshake-timeout"),
            (&["--max-line", "0"], "--max-line"),
            (&["--outbox-kib", "0"], "--outbox-kib"),
            (&["--flood-limit", "0"], "--flood-limit"),
            (&["--max-rooms", "0"], "--max-rooms"),
            (&["--max-rooms-per-client", "0"], "--max-rooms-per-client"),
            (&["--login-lockout", "0"], "--login-lockout"),
            (&["--password-checkers", "0"], "--password-checkers"),
            (&["--max-clients", "0"], "--max-clients"),
            (&["--history", "300"], "--history-keep"),
            (&["--msg-rate", "inf"], "--msg-rate"),
            (&["--msg-rate=-1"], "--msg-rate"),
            (&["--msg-burst", "0"], "--msg-burst"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?} was accepted"));
            assert!(err.contains(flag), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: not one line: {err}");
        }
    }

    #[test]
    fn good_values_pass() {
        let c = parse(&[
            "--ping-interval",
            "0.5",
            "--msg-rate",
            "0",
            "--history",
            "0",
            "--login-delay",
            "0",
        ])
        .unwrap();
        assert_eq!(c.connection.ping_interval.get(), Duration::from_millis(500));
        assert_eq!(
            c.connection.send_timeout(),
            Duration::from_secs(30) + Duration::from_millis(500)
        );
    }
}
