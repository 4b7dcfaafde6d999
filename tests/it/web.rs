//! The web port (`--web`): its HTTP routes and headers, and JSON over a WebSocket (tungstenite as
//! the client) into the same rooms and logs as the chat port: a web user and a TCP user in one
//! room, origins, the limits of a message, a trusted proxy's address, bans, TLS, shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use chatroom::tls::{self, Transport};
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::support::{TIMEOUT, csv_rows, start_web};

/// One HTTP request on a fresh connection (`Connection: close`); the whole answer.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A stream tungstenite can own: a transport shared by `Arc` (plain or TLS).
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

/// A WebSocket client speaking the JSON protocol, with a read timeout.
struct Ws {
    ws: WebSocket<Shared>,
    seen: Vec<String>,
}

impl Ws {
    fn open(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        Ws::over(
            Transport::Plain(Arc::new(sock)),
            &format!("ws://{addr}/ws"),
            origin,
        )
    }

    fn over(
        transport: Transport,
        url: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().unwrap();
        if let Some(origin) = origin {
            req.headers_mut().insert("Origin", origin.parse().unwrap());
        }
        match tungstenite::client(req, Shared(Arc::new(transport))) {
            Ok((ws, _)) => Ok(Ws {
                ws,
                seen: Vec::new(),
            }),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
            Err(e) => panic!("handshake: {e}"),
        }
    }

    /// Opens a WebSocket and logs in as a guest.
    fn join(addr: SocketAddr, name: &str) -> Ws {
        let mut ws = Ws::open(addr, None).unwrap();
        ws.send(json!({"type": "hello", "name": name}));
        ws.next_of("welcome");
        ws.next_of("history_end");
        ws
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    /// The next message, JSON parsed; every frame must be exactly one JSON event.
    fn next(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    self.seen.push(t.to_string());
                    assert!(!t.as_str().contains('\n'), "one event per frame: {t:?}");
                    return serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {t:?}"));
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!(
                    "expected a text frame, got {other:?}; seen {:#?}",
                    self.seen
                ),
            }
        }
    }

    fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next();
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Reads until the server's close frame; returns it (code, reason).
    fn close_frame(&mut self) -> (CloseCode, String) {
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(frame))) => return (frame.code, frame.reason.to_string()),
                Ok(Message::Text(t)) => self.seen.push(t.to_string()),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}; seen {:#?}", self.seen),
            }
        }
    }
}

#[test]
fn the_page_and_its_files_are_served_with_security_headers() {
    let (_server, web) = start_web(|_| {});
    let page = get(web, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    for header in [
        "Content-Security-Policy: default-src 'none'; script-src 'self';",
        "frame-ancestors 'none'",
        "X-Content-Type-Options: nosniff",
        "Referrer-Policy: no-referrer",
    ] {
        assert!(page.contains(header), "{header} missing:\n{page}");
    }
    assert!(body(&page).contains("<html"), "{page}");
    // No inline script: the CSP would block it.
    assert!(
        !body(&page).contains("<script>"),
        "inline script in the page"
    );
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = get(web, path);
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
        assert!(r.contains(&format!("Content-Type: {kind}")), "{path}: {r}");
    }
    let missing = get(web, "/../../etc/passwd");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = http(
        web,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert!(post.starts_with("HTTP/1.1 413"), "{post}");
    let delete = http(
        web,
        "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(delete.starts_with("HTTP/1.1 405"), "{delete}");
    assert!(delete.contains("Allow: GET, HEAD"), "{delete}");
    let head = http(
        web,
        "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body(&head), "", "HEAD has no body");
}

#[test]
fn a_kept_alive_connection_serves_several_requests_and_revalidates() {
    let (_server, web) = start_web(|_| {});
    let etag = get(web, "/app.js")
        .lines()
        .find_map(|l| l.strip_prefix("ETag: ").map(str::to_string))
        .expect("an ETag");
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Two requests in one write (pipelined), the second conditional and closing.
    let two = format!(
        "GET /api/info HTTP/1.1\r\nHost: x\r\n\r\nGET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(two.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("}HTTP/1.1 304 Not Modified\r\n"), "{out}");
}

#[test]
fn bad_requests_get_a_status_and_a_close() {
    let (_server, web) = start_web(|_| {});
    let garbage = http(web, "\x16\x03\x01hello\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = s.write_all(huge.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let plain = get(web, "/ws");
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_time() {
    let (_server, web) = start_web(|c| {
        c.connection.handshake_timeout = std::time::Duration::from_millis(300).into()
    });
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = std::time::Instant::now();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // An upgraded socket that never says hello is bounded by the same time.
    let mut ws = Ws::open(web, None).unwrap();
    let err = ws.next();
    assert_eq!(err["code"], "handshake_timeout", "{err}");
}

#[test]
fn info_lists_the_rooms_in_use_and_the_login_the_page_needs() {
    let (server, web) = start_web(|_| {});
    let mut alice = server.json("alice");
    alice.send_json(json!({"type": "join", "room": "ops"}));
    alice.next_of("history_end");
    let info: Value = serde_json::from_str(body(&get(web, "/api/info"))).unwrap();
    assert_eq!(info["login"], "none");
    assert_eq!(info["max_line"], 4096);
    let rooms: Vec<&str> = info["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rooms, ["lobby", "ops"], "{info}");
}

#[test]
fn a_private_server_shows_no_rooms_before_a_login_and_asks_a_password() {
    let (server, web) = start_web(|c| c.login.private = true);
    crate::support::write_accounts(
        &server.dir,
        &[(
            "alice",
            "correct horse",
            chatroom::store::users::Role::Member,
        )],
    );
    let info: Value = serde_json::from_str(body(&get(web, "/api/info"))).unwrap();
    assert_eq!(info["login"], "required");
    assert_eq!(info["rooms"], json!([]));
    let mut ws = Ws::open(web, None).unwrap();
    ws.send(json!({"type": "hello", "name": "alice"}));
    assert_eq!(ws.next_of("error")["code"], "password_required");
    ws.send(json!({"type": "hello", "name": "alice", "password": "wrong one!"}));
    assert_eq!(ws.next_of("error")["code"], "login_failed");
    ws.send(json!({"type": "hello", "name": "alice", "password": "correct horse"}));
    let welcome = ws.next_of("welcome");
    assert_eq!(welcome["role"], "member", "{welcome}");
}

#[test]
fn a_web_user_and_a_tcp_user_chat_in_one_room_and_one_log() {
    let (mut server, web) = start_web(|_| {});
    let mut tcp = server.json("tcpuser");
    let mut browser = Ws::join(web, "webuser");
    assert_eq!(tcp.next_of("joined")["name"], "webuser");
    browser.send(json!({"type": "say", "text": "hello from the browser\nsecond line"}));
    let got = tcp.next_of("message");
    assert_eq!(got["from"], "webuser");
    assert_eq!(got["text"], "hello from the browser\nsecond line");
    // The web client's own message comes back as its acknowledgement, with the same id.
    let echo = browser.next_of("message");
    assert_eq!(echo["id"], got["id"]);
    tcp.send_json(json!({"type": "say", "text": "<img src=x onerror=alert(1)>"}));
    let back = browser.next_of("message");
    assert_eq!(back["from"], "tcpuser");
    assert_eq!(back["text"], "<img src=x onerror=alert(1)>");
    browser.send(json!({"type": "me", "text": "waves"}));
    let action = loop {
        let m = tcp.next_of("message");
        if m["from"] == "webuser" {
            break m;
        }
    };
    assert_eq!(action["kind"], "action");
    browser.send(json!({"type": "msg", "to": "tcpuser", "text": "psst"}));
    let dm = tcp.next_of("message");
    assert_eq!(
        (dm["kind"].as_str(), dm["to"].as_str()),
        (Some("direct"), Some("tcpuser"))
    );
    server.stop();
    let rows = csv_rows(&server.read("messages.csv"));
    let texts: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    assert!(
        texts.contains(&"hello from the browser\nsecond line"),
        "{rows:?}"
    );
    assert!(texts.contains(&"<img src=x onerror=alert(1)>"), "{rows:?}");
    let conns = csv_rows(&server.read("data.csv"));
    assert!(
        conns
            .iter()
            .any(|r| r.contains(&"webuser".to_string()) && r[3] == "127.0.0.1"),
        "the web client has its rows in data.csv: {conns:?}"
    );
}

#[test]
fn an_upgrade_from_another_origin_is_refused_unless_allowed() {
    let (_server, web) = start_web(|c| c.web.web_origins = vec!["https://chat.example.org".into()]);
    match Ws::open(web, Some("https://evil.example")) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let text =
                String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[])).into_owned();
            assert!(text.contains("--web-origin"), "{text}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a foreign origin opened the WebSocket"),
    }
    let own = format!("http://{web}");
    assert!(Ws::open(web, Some(&own)).is_ok());
    assert!(Ws::open(web, Some("https://chat.example.org")).is_ok());
}

#[test]
fn a_websocket_speaks_json_and_says_why_a_message_is_refused() {
    let (_server, web) = start_web(|c| c.connection.max_line = 1000);
    let mut ws = Ws::open(web, None).unwrap();
    // No greeting line: the first frame the client gets is an answer.
    ws.ws.send(Message::text("alice")).unwrap();
    let err = ws.next();
    assert_eq!(err["code"], "bad_request", "{err}");
    ws.send(json!({"type": "hello", "name": "alice"}));
    ws.next_of("history_end");
    ws.send(json!({"type": "say", "text": "a\u{1b}[2J"}));
    assert_eq!(ws.next_of("error")["code"], "control_char");
    // Over the line limit but within twice it: refused as a line; the connection goes on.
    ws.send(json!({"type": "say", "text": "x".repeat(1500)}));
    assert_eq!(ws.next_of("error")["code"], "line_too_long");
    ws.send(json!({"type": "say", "text": "still here"}));
    assert_eq!(ws.next_of("message")["text"], "still here");
    // Far over it: told why, then closed with 1009.
    ws.send(json!({"type": "say", "text": "x".repeat(5000)}));
    assert_eq!(ws.next_of("error")["code"], "line_too_long");
    let (code, reason) = ws.close_frame();
    assert_eq!(code, CloseCode::Size);
    assert!(reason.contains("1000 bytes"), "{reason}");
}

#[test]
fn pings_are_answered_and_a_close_is_returned() {
    let (_server, web) = start_web(|_| {});
    let mut ws = Ws::join(web, "pinger");
    ws.ws
        .send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    loop {
        match ws.ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there");
                break;
            }
            _ => continue,
        }
    }
    ws.ws.close(None).unwrap();
    loop {
        match ws.ws.read() {
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_server_shutdown_says_bye_and_closes_cleanly() {
    let (mut server, web) = start_web(|_| {});
    let mut ws = Ws::join(web, "leaver");
    server.stop();
    assert!(ws.next_of("bye")["reason"].as_str().is_some());
    let (code, _) = ws.close_frame();
    assert_eq!(code, CloseCode::Normal);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_is_logged_and_banned() {
    let (mut server, web) = start_web(|c| c.web.trust_proxy = true);
    // The handshake's outcome: the socket, or the HTTP status it was refused with.
    let forwarded = |ip: &str| -> Result<Ws, u16> {
        use tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{web}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            "X-Forwarded-For",
            format!("10.9.9.9, {ip}").parse().unwrap(),
        );
        let sock = TcpStream::connect(web).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        match tungstenite::client(req, Shared(Arc::new(Transport::Plain(Arc::new(sock))))) {
            Ok((ws, _)) => Ok(Ws {
                ws,
                seen: Vec::new(),
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                Err(r.status().as_u16())
            }
            Err(e) => panic!("{e}"),
        }
    };
    let mut ws = forwarded("203.0.113.7").unwrap();
    ws.send(json!({"type": "hello", "name": "proxied"}));
    ws.next_of("welcome");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--data-dir")
        .arg(&server.dir)
        .args(["bans", "add", "203.0.113.7"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    // The running server reads bans.csv again and ends the banned connection.
    ws.next_of("bye");
    assert_eq!(forwarded("203.0.113.7").err(), Some(403));
    server.stop();
    let conns = csv_rows(&server.read("data.csv"));
    assert!(
        conns
            .iter()
            .any(|r| r[3] == "203.0.113.7" && r.contains(&"proxied".to_string())),
        "{conns:?}"
    );
}

#[test]
fn with_tls_the_web_port_serves_https_and_wss() {
    let certs = tempfile::tempdir().unwrap();
    tls::make_dev_cert(certs.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let (_server, web) = start_web(|c| {
        c.tls.tls_cert = Some(cert.clone());
        c.tls.tls_key = Some(key.clone());
    });
    let connect = || {
        let config = tls::client_config(Some(&cert)).unwrap();
        let t = tls::connect(&web.to_string(), config).unwrap();
        t.socket().set_read_timeout(Some(TIMEOUT)).unwrap();
        t
    };
    let t = connect();
    (&t).write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = Vec::new();
    let _ = (&t).read_to_end(&mut page);
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Strict-Transport-Security"), "{page}");
    let url = format!("wss://{web}/ws");
    let origin = format!("https://{web}");
    let mut ws = Ws::over(connect(), &url, Some(&origin)).unwrap();
    ws.send(json!({"type": "hello", "name": "secure"}));
    assert_eq!(ws.next_of("welcome")["name"], "secure");
    ws.send(json!({"type": "say", "text": "over wss"}));
    assert_eq!(ws.next_of("message")["text"], "over wss");
}

#[test]
fn idle_websockets_cost_bounded_memory_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ServerProcess::start(dir.path(), &["--web", "127.0.0.1:0"]);
    let web = server.web.expect("a web port");
    let threads = || server.threads();
    let (rss0, threads0) = (server.rss_kib(), threads());
    const N: usize = 300;
    let mut clients: Vec<Ws> = (0..N).map(|i| Ws::join(web, &format!("idle{i}"))).collect();
    // Everyone is in: one more says something and all of them get it.
    let mut last = Ws::join(web, "speaker");
    last.send(json!({"type": "say", "text": "hello, all"}));
    for c in &mut clients {
        assert_eq!(c.next_of("message")["text"], "hello, all");
    }
    let per_conn = (server.rss_kib() - rss0) / N as u64;
    let per_conn_threads = (threads() - threads0) as f64 / N as f64;
    println!("idle WebSocket: {per_conn} KiB of RSS and {per_conn_threads:.2} threads each");
    // Measured: 68-70 KiB (two threads, as TLS has: a WebSocket's bytes are framed by its
    // writer; tungstenite's buffers; the HTTP request's frames on the reader's stack).
    assert!(per_conn <= 96, "{per_conn} KiB per idle WebSocket");
    assert!(
        per_conn_threads <= 2.01,
        "{per_conn_threads} threads per WebSocket"
    );
}

#[test]
fn a_quiet_websocket_is_pinged_and_stays_when_it_answers() {
    let (_server, web) = start_web(|c| {
        c.connection.ping_interval = std::time::Duration::from_millis(300).into();
        c.connection.ping_timeout = std::time::Duration::from_millis(600).into();
    });
    let mut ws = Ws::join(web, "quiet");
    for _ in 0..3 {
        let ping = ws.next_of("ping");
        ws.send(json!({"type": "pong", "id": ping["id"]}));
    }
    ws.send(json!({"type": "say", "text": "still here after three pings"}));
    assert_eq!(
        ws.next_of("message")["text"],
        "still here after three pings"
    );
    // Silent after a ping: dropped with a reason, then a clean close.
    ws.next_of("ping");
    let bye = ws.next_of("bye");
    assert!(bye["reason"].as_str().unwrap().contains("ping"), "{bye}");
    assert_eq!(ws.close_frame().0, CloseCode::Normal);
}
