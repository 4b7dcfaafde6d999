//! TLS: a whole session over TLS with a generated certificate, a plain client refused cleanly by
//! a TLS listener, and a client that does not trust the certificate.

use std::io::{BufRead, BufReader, Write};

use std::path::Path;
use std::sync::Arc;

use chatroom::tls::{self, Transport};
use serde_json::{Value, json};

use crate::support::{Client, TIMEOUT, csv_rows, start_with};

/// A JSON-mode client over TLS.
struct TlsClient {
    transport: Arc<Transport>,
    /// Bytes read and not yet split into lines (kept between calls).
    buf: Vec<u8>,
    transcript: Vec<String>,
}

impl TlsClient {
    fn connect(addr: std::net::SocketAddr, ca: &Path) -> TlsClient {
        let config = tls::client_config(Some(ca)).unwrap();
        let transport = tls::connect(&addr.to_string(), config).unwrap();
        transport.socket().set_read_timeout(Some(TIMEOUT)).unwrap();
        TlsClient {
            transport: Arc::new(transport),
            buf: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn send(&mut self, v: Value) {
        let mut line = v.to_string();
        line.push('\n');
        (&*self.transport).write_all(line.as_bytes()).unwrap();
    }

    fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let line = match self.buf.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let line: Vec<u8> = self.buf.drain(..=pos).collect();
                    String::from_utf8(line).unwrap()
                }
                None => {
                    let mut chunk = [0u8; 4096];
                    let n = match std::io::Read::read(&mut &*self.transport, &mut chunk) {
                        Ok(n) => n,
                        // A signal interrupted the read (EINTR): nothing was lost.
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => panic!("read failed: {e}\n{:#?}", self.transcript),
                    };
                    assert!(n > 0, "closed; transcript {:#?}", self.transcript);
                    self.buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            };
            self.transcript.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["type"] == kind
            {
                return v;
            }
        }
    }
}

fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tls::make_dev_cert(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
    dir
}

#[test]
fn a_whole_session_over_tls() {
    let certs = certs();
    let config = tls::server_config(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )
    .unwrap();
    let server = start_with(|c| c.tls.server = Some(config));
    let ca = certs.path().join("cert.pem");
    let mut a = TlsClient::connect(server.addr, &ca);
    a.send(json!({"type":"hello","name":"alice"}));
    a.next_of("history_end");
    let mut b = TlsClient::connect(server.addr, &ca);
    b.send(json!({"type":"hello","name":"bob"}));
    b.next_of("history_end");
    a.next_of("joined");
    // Many messages both ways: the reader and writer threads share one TLS session.
    for i in 0..200 {
        b.send(json!({"type":"say","text":format!("secret {i}, over TLS")}));
    }
    for i in 0..200 {
        assert_eq!(
            a.next_of("message")["text"],
            format!("secret {i}, over TLS")
        );
    }
    a.send(json!({"type":"say","text":"bye"}));
    // b gets its own 200 messages back first (a JSON sender's acknowledgements), then a's.
    for i in 0..200 {
        assert_eq!(
            b.next_of("message")["text"],
            format!("secret {i}, over TLS")
        );
    }
    assert_eq!(b.next_of("message")["text"], "bye");
    let rows = csv_rows(&server.read("messages.csv"));
    assert_eq!(rows.len(), 201);
}

#[test]
fn a_plain_client_is_refused_cleanly_by_a_tls_listener() {
    let certs = certs();
    let config = tls::server_config(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )
    .unwrap();
    let server = start_with(|c| c.tls.server = Some(config));
    // A plain client that speaks first (nc, a name)...
    let mut plain = Client::connect(server.addr);
    plain.send("alice");
    let said = plain.closed();
    assert_eq!(
        said,
        "! this server speaks TLS: connect with chat-client --tls (or openssl s_client)\n"
    );
    // ... and one that waits for a greeting both get the same readable line.
    let server2 = start_with(|c| {
        c.tls.server = Some(
            tls::server_config(
                &certs.path().join("cert.pem"),
                &certs.path().join("key.pem"),
            )
            .unwrap(),
        );
        c.connection.handshake_timeout = std::time::Duration::from_millis(300).into();
    });
    let mut waiting = Client::connect(server2.addr);
    assert!(waiting.closed().contains("this server speaks TLS"));
}

#[test]
fn a_client_refuses_a_certificate_it_does_not_trust() {
    let certs = certs();
    let config = tls::server_config(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )
    .unwrap();
    let server = start_with(|c| c.tls.server = Some(config));
    let client = tls::client_config(None).unwrap();
    let transport = tls::connect(&server.addr.to_string(), client).unwrap();
    transport.socket().set_read_timeout(Some(TIMEOUT)).unwrap();
    let err = (&transport)
        .write_all(b"{\"type\":\"hello\",\"name\":\"x\"}\n")
        .and_then(|()| {
            let mut line = String::new();
            BufReader::new(&transport)
                .read_line(&mut line)
                .map(|_| line)
        })
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn chat_client_speaks_tls_with_a_private_ca() {
    let certs = certs();
    let config = tls::server_config(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )
    .unwrap();
    let server = start_with(|c| c.tls.server = Some(config));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-client"))
        .args(["--name", "tlsuser", "--ca"])
        .arg(certs.path().join("cert.pem"))
        .arg(server.addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through TLS\n")
        .unwrap();
    let (status, stdout, stderr) = crate::support::wait_timeout_output(child);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("#lobby tlsuser: hello through TLS"),
        "{stdout}"
    );
    let rows = csv_rows(&server.read("messages.csv"));
    assert_eq!(rows[0][6], "hello through TLS");
}

/// SIGHUP reloads a renewed certificate: new connections get the new one, and a client
/// connected with the old one stays connected and keeps chatting.
#[test]
fn sighup_reloads_a_renewed_certificate_while_clients_stay() {
    let dir = tempfile::tempdir().unwrap();
    let live = tempfile::tempdir().unwrap();
    let (old, new) = (certs(), certs());
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(old.path().join(f), live.path().join(f)).unwrap();
    }
    let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    let server = crate::support::ServerProcess::start_logged(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &dir.path().join("stderr.log"),
    );
    let mut before = TlsClient::connect(server.addr, &old.path().join("cert.pem"));
    before.send(json!({"type":"hello","name":"before"}));
    before.next_of("history_end");
    // Renewal: the files are replaced (as certbot's deploy hook would), then SIGHUP.
    for f in ["cert.pem", "key.pem"] {
        let tmp = live.path().join(format!("{f}.new"));
        std::fs::copy(new.path().join(f), &tmp).unwrap();
        std::fs::rename(&tmp, live.path().join(f)).unwrap();
    }
    server.signal("HUP");
    // A client that trusts only the new certificate gets in once the reload is done.
    let new_ca = new.path().join("cert.pem");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut after = loop {
        let config = tls::client_config(Some(&new_ca)).unwrap();
        let transport = tls::connect(&server.addr.to_string(), config).unwrap();
        transport.socket().set_read_timeout(Some(TIMEOUT)).unwrap();
        let hello = (&transport).write_all(b"{\"type\":\"hello\",\"name\":\"after\"}\n");
        // The first read fails with a certificate error while the old certificate is served.
        let mut chunk = [0u8; 4096];
        let first = hello.and_then(|()| std::io::Read::read(&mut &transport, &mut chunk));
        if let Ok(n @ 1..) = first {
            let mut c = TlsClient {
                transport: Arc::new(transport),
                buf: chunk[..n].to_vec(),
                transcript: Vec::new(),
            };
            c.next_of("history_end");
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served\n{}",
            server.log()
        );
    };
    // The old session goes on.
    before.send(json!({"type":"say","text":"still here"}));
    assert_eq!(after.next_of("message")["text"], "still here");
    assert!(!server.log().contains("ERROR"), "{}", server.log());
}
