//! The IRC door (`--irc`, `--irc-tls`): raw IRC over loopback to a real server, next to JSON
//! and human-mode clients in the same rooms.

mod chat;
mod commands;
mod direct;
mod hostile;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatroom::store::users::Role;
use chatroom::tls::Transport;

use crate::support::{TIMEOUT, csv_rows, start_irc, write_accounts};

/// A raw IRC client with read timeouts that prints its transcript when an expectation fails.
pub struct Irc {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
    pub transcript: Vec<String>,
    pub nick: String,
}

/// Reads and writes a TLS transport shared by the two halves.
struct Shared(Arc<Transport>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.0).flush()
    }
}

impl Irc {
    /// Connects over plain TCP; reads nothing yet.
    pub fn connect(addr: SocketAddr) -> Irc {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let reader: Box<dyn Read + Send> = Box::new(stream.try_clone().unwrap());
        Irc {
            reader: BufReader::new(reader),
            writer: Box::new(stream),
            transcript: Vec::new(),
            nick: String::new(),
        }
    }

    /// Connects over TLS, trusting the certificate in `ca`.
    pub fn connect_tls(addr: SocketAddr, ca: &Path) -> Irc {
        let config = chatroom::tls::client_config(Some(ca)).unwrap();
        let host = format!("localhost:{}", addr.port());
        let transport = Arc::new(chatroom::tls::connect(&host, config).expect("tls connect"));
        transport.socket().set_read_timeout(Some(TIMEOUT)).unwrap();
        transport.socket().set_write_timeout(Some(TIMEOUT)).unwrap();
        Irc {
            reader: BufReader::new(Box::new(Shared(transport.clone()))),
            writer: Box::new(Shared(transport)),
            transcript: Vec::new(),
            nick: String::new(),
        }
    }

    /// Registers as `nick` (NICK, USER) and reads up to the end of #lobby's member list.
    pub fn register(addr: SocketAddr, nick: &str) -> Irc {
        let mut c = Irc::connect(addr);
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :{nick} the tester"));
        c.until(&format!(" 001 {nick} "));
        c.until(&format!(" 366 {nick} #lobby "));
        c.nick = nick.to_string();
        c
    }

    /// Sends one line (`\r\n` is added).
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
        self.writer.flush().expect("flush");
    }

    /// The next line, without `\r\n`. Fails on timeout or end of stream.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => self.fail("the server closed the connection"),
            Ok(_) => {}
            Err(e) => self.fail(&format!("read failed: {e}")),
        }
        assert!(line.ends_with("\r\n"), "a line without CR LF: {line:?}");
        let line = line.trim_end_matches("\r\n").to_string();
        assert!(
            line.len() + 2 <= 512 || line.starts_with('@'),
            "too long: {line}"
        );
        self.transcript.push(line.clone());
        line
    }

    /// Reads lines until one contains `needle`; returns it.
    pub fn until(&mut self, needle: &str) -> String {
        loop {
            let line = self.line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Reads lines until the numeric `code`; returns it.
    pub fn numeric(&mut self, code: &str) -> String {
        loop {
            let line = self.line();
            if line.split(' ').nth(1) == Some(code) {
                return line;
            }
        }
    }

    /// Waits until the server has handled everything sent before (a WHOIS of oneself goes
    /// through the hub); returns the lines read meanwhile.
    pub fn settle(&mut self) -> Vec<String> {
        let nick = self.nick.clone();
        self.send(&format!("WHOIS {nick}"));
        let mut seen = Vec::new();
        loop {
            let line = self.line();
            if line.contains(&format!(" 311 {nick} {nick} ")) {
                self.until(&format!(" 318 {nick} {nick} "));
                return seen;
            }
            seen.push(line);
        }
    }

    /// Expects the server to close the connection; returns what came before the end.
    pub fn closed(&mut self) -> String {
        let mut rest = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "the server did not close");
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => self.fail(&format!("read failed while waiting for close: {e}")),
            }
        }
        String::from_utf8_lossy(&rest).into_owned()
    }

    pub fn fail(&self, why: &str) -> ! {
        panic!("{why}\ntranscript:\n{}", self.transcript.join("\n"))
    }
}

/// Base64 (RFC 4648), for SASL PLAIN.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = [0u8; 3];
        n[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from(n[0]) << 16 | u32::from(n[1]) << 8 | u32::from(n[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn irc_registration_without_cap_gets_the_welcome_and_the_lobby() {
    let (mut server, ports) = start_irc(false, |_| {});
    let mut c = Irc::connect(ports.plain);
    c.send("NICK ivy");
    c.send("USER ivy 0 * :Ivy");
    let codes: Vec<String> = (0..6)
        .map(|_| c.line().split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(codes, ["001", "002", "003", "004", "005", "422"]);
    let isupport = &c.transcript[4];
    for token in [
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=65",
        "CASEMAPPING=ascii",
        "PREFIX=(o)@",
        "NETWORK=chatroom",
    ] {
        assert!(isupport.contains(token), "{token} missing: {isupport}");
    }
    assert_eq!(c.line(), ":ivy!ivy@chatroom JOIN #lobby");
    assert_eq!(c.line(), ":chatroom 353 ivy = #lobby :ivy");
    assert_eq!(c.line(), ":chatroom 366 ivy #lobby :End of /NAMES list");
    c.send("QUIT :bye now");
    assert!(c.closed().contains("ERROR :Closing Link"));
    server.stop();
    // The connection is in data.csv, its connect row saying how it came.
    let rows = csv_rows(&server.read("data.csv"));
    assert!(
        rows.iter()
            .any(|r| r.contains(&"connect".to_string()) && r.contains(&"irc".to_string())),
        "{rows:?}"
    );
}

#[test]
fn irc_registration_waits_for_cap_end() {
    let (_server, ports) = start_irc(false, |_| {});
    let mut c = Irc::connect(ports.plain);
    c.send("CAP LS 302");
    assert_eq!(
        c.line(),
        ":chatroom CAP * LS :away-notify echo-message server-time"
    );
    c.send("NICK ivy");
    c.send("USER ivy 0 * :Ivy");
    c.send("CAP REQ :server-time sasl");
    assert_eq!(c.line(), ":chatroom CAP * NAK :server-time sasl");
    c.send("CAP REQ :server-time away-notify");
    assert_eq!(c.line(), ":chatroom CAP * ACK :server-time away-notify");
    // Nothing registers before CAP END: the next line is the answer to this PING.
    c.send("PING :before-end");
    assert_eq!(c.line(), ":chatroom PONG chatroom :before-end");
    c.send("CAP END");
    assert!(c.line().starts_with(":chatroom 001 ivy "));
    c.send("CAP LIST");
    c.until(":chatroom CAP ivy LIST :away-notify server-time");
}

#[test]
fn irc_pass_logs_in_to_an_account_and_a_wrong_one_is_464() {
    let (server, ports) = start_irc(false, |c| {
        c.login.login_delay = Duration::from_millis(1).into();
    });
    write_accounts(&server.dir, &[("bob", "password1", Role::Member)]);
    // A registered name without a password: 464, and registration goes on.
    let mut c = Irc::connect(ports.plain);
    c.send("NICK bob");
    c.send("USER bob 0 * :Bob");
    assert!(c.numeric("464").starts_with(":chatroom 464 * :"));
    c.send("PASS wrong-password");
    c.numeric("464");
    c.send("PASS password1");
    let logged_in = c.numeric("900");
    assert_eq!(
        logged_in,
        ":chatroom 900 bob bob!bob@chatroom bob :You are now logged in as bob"
    );
    assert!(c.line().starts_with(":chatroom 001 bob "));
    // The account's own spelling is the nick: BOB logs in as bob.
    let mut d = Irc::connect(ports.plain);
    d.send("PASS password1");
    d.send("NICK BOB");
    d.send("USER x 0 * :x");
    d.numeric("900");
    assert!(d.line().starts_with(":chatroom 001 bob "));
    // ...and took the name over from the first session.
    c.until("ERROR :Closing Link: you logged in from another connection");
}

#[test]
fn irc_on_a_private_server_needs_a_password() {
    let (server, ports) = start_irc(false, |c| {
        c.login.private = true;
        c.login.login_delay = Duration::from_millis(1).into();
    });
    write_accounts(&server.dir, &[("ann", "password1", Role::Member)]);
    let mut c = Irc::connect(ports.plain);
    c.send("NICK guest");
    c.send("USER g 0 * :G");
    c.numeric("464");
    c.send("NICK ann");
    c.numeric("464");
    c.send("PASS password1");
    assert!(c.numeric("001").starts_with(":chatroom 001 ann "));
}

#[test]
fn irc_sasl_plain_over_tls_and_refused_on_the_plain_port() {
    let (server, ports) = start_irc(true, |c| {
        c.login.login_delay = Duration::from_millis(1).into();
    });
    write_accounts(&server.dir, &[("bob", "password1", Role::Member)]);
    let (tls_addr, ca) = ports.tls.clone().unwrap();
    let mut c = Irc::connect_tls(tls_addr, &ca);
    c.send("CAP LS 302");
    assert!(
        c.line()
            .ends_with(":away-notify echo-message server-time sasl=PLAIN")
    );
    c.send("NICK whoever");
    c.send("USER b 0 * :B");
    c.send("CAP REQ :sasl");
    assert_eq!(c.line(), ":chatroom CAP * ACK :sasl");
    c.send("AUTHENTICATE PLAIN");
    assert_eq!(c.line(), "AUTHENTICATE +");
    c.send(&format!("AUTHENTICATE {}", base64(b"\0bob\0not-it")));
    assert!(c.numeric("904").contains("SASL authentication failed"));
    c.send("AUTHENTICATE PLAIN");
    assert_eq!(c.line(), "AUTHENTICATE +");
    c.send(&format!("AUTHENTICATE {}", base64(b"bob\0bob\0password1")));
    assert!(
        c.line()
            .starts_with(":chatroom 900 bob bob!bob@chatroom bob :")
    );
    assert_eq!(
        c.line(),
        ":chatroom 903 bob :SASL authentication successful"
    );
    c.send("CAP END");
    assert!(c.line().starts_with(":chatroom 001 bob "));
    c.until(":bob!bob@chatroom JOIN #lobby");

    // The plain port offers no SASL, and refuses AUTHENTICATE.
    let mut p = Irc::connect(ports.plain);
    p.send("CAP LS 302");
    assert!(!p.line().contains("sasl"));
    p.send("AUTHENTICATE PLAIN");
    assert!(p.numeric("904").contains("TLS"));
    // The plain IRC port stays plain though the server has a certificate.
    p.send("NICK pat");
    p.send("USER p 0 * :P");
    p.send("CAP END");
    p.numeric("001");
}

#[test]
fn the_binary_prints_where_irc_listens() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--irc",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let _child = Kill(child);
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        out.read_line(line).unwrap();
    }
    assert!(lines[0].starts_with("listening on 127.0.0.1:"), "{lines:?}");
    let addr: SocketAddr = lines[1]
        .trim()
        .strip_prefix("irc on ")
        .unwrap_or_else(|| panic!("second line {lines:?}"))
        .parse()
        .unwrap();
    let mut c = Irc::register(addr, "ivy");
    c.send("QUIT");
    c.closed();
}
