//! The web port (`chat-server --web ADDR`): the page, served from the binary, and JSON over a
//! WebSocket into the same rooms and logs as the chat port.
//!
//! A front door in the usual shape: the accept loop admits the connection (the same limits and
//! bans as the chat port) and gives it a thread. That thread reads HTTP requests (keep-alive,
//! bounded in number and in idle time) and answers them; a request for `/ws` is checked (its
//! origin, its upgrade headers) and answered with `101`, and from then on the same thread is
//! the connection's reader: the transport becomes a [`WsStream`] (messages read and written
//! as lines) and the codec is JSON, so the hub sees one more JSON client.

pub mod http;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, warn};

use self::http::{Head, HeadError, Response};
use super::accept::{Alive, Arrival, Front, run_reader};
use super::hub::Event;
use super::limits::{Refusal, Ticket};
use crate::proto::{MAX_MESSAGE_LINES, RoomInfo, ServerMsg};
use crate::tls::Transport;
use crate::ws::WsStream;

/// Requests one connection may make before it is closed (a browser opens another).
const MAX_REQUESTS: usize = 100;

/// How long a kept-alive connection may wait for its next request.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);

/// How often a connection waiting for a request looks whether the server is stopping.
const STOP_CHECK: Duration = Duration::from_millis(250);

/// How long the room list on `/api/info` is reused: however often it is asked for, the
/// broadcaster is asked at most once in this time.
const ROOMS_FRESH: Duration = Duration::from_secs(2);

/// The page and its files, built into the binary.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// The web port's shared state.
#[derive(Default)]
pub struct Web {
    /// The room list and when it was asked for; the lock also makes concurrent requests wait
    /// for one answer instead of each asking the broadcaster.
    rooms: Mutex<Option<(Instant, Vec<RoomInfo>, usize)>>,
}

/// The bytes that refuse a connection on the web port: an HTTP error with the reason.
pub fn refusal(refusal: &Refusal) -> Vec<u8> {
    let status = match refusal {
        Refusal::Banned { .. } => 403,
        _ => 503,
    };
    Response::text(status, &refusal.reason())
        .with("Retry-After", "60")
        .encode(false, false, false)
}

/// Whether `s` is an origin as browsers send it: `scheme://host[:port]`, nothing after.
pub fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && !rest.contains(char::is_whitespace)
}

/// Serves one connection of the web port until it closes, or becomes a WebSocket.
pub fn serve(
    front: &Arc<Front>,
    conn: u64,
    peer: SocketAddr,
    transport: Transport,
    live: &Arc<Ticket>,
    alive: &Alive,
) {
    let tls = transport.is_tls();
    let mut buf = Vec::new();
    for served in 0..MAX_REQUESTS {
        let wait = if served == 0 {
            front.config.connection.handshake_timeout.get()
        } else {
            KEEP_ALIVE_IDLE
        };
        let started = Instant::now();
        let (head, len) = match read_request(front, &transport, &mut buf, wait) {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(e) => {
                let answer = match e {
                    HeadError::TooLarge => Response::text(431, "the request head is too large"),
                    HeadError::Malformed(why) => Response::text(400, &format!("not HTTP: {why}")),
                    // A kept-alive connection that goes quiet just closes.
                    HeadError::TimedOut if served > 0 => break,
                    HeadError::TimedOut => Response::text(408, "no request in time"),
                    HeadError::Io(e) => {
                        debug!("conn {conn}: web request failed: {e}");
                        break;
                    }
                };
                send(&transport, &answer, false, tls, false);
                break;
            }
        };
        if head.path() == "/ws" {
            buf.drain(..len);
            let door = Arrival {
                conn,
                peer,
                started,
                live,
                alive,
            };
            return upgrade(front, &door, transport, &head, buf);
        }
        buf.drain(..len);
        let keep = head.keep_alive()
            && !head.has_body()
            && served + 1 < MAX_REQUESTS
            && !front.stopping.load(std::sync::atomic::Ordering::SeqCst);
        let answer = answer(front, &head);
        debug!(
            "conn {conn}: {} {} {}",
            head.method,
            head.path(),
            answer.status
        );
        if !send(&transport, &answer, keep, tls, head.method == "HEAD") || !keep {
            break;
        }
    }
    transport.goodbye();
    let _ = transport.socket().shutdown(std::net::Shutdown::Write);
}

/// Reads the next request head within `wait`, in slices, so that a kept-alive connection of
/// the page ends soon after a shutdown instead of holding the server's exit for its idle time.
fn read_request(
    front: &Front,
    transport: &Transport,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> Result<Option<(Head, usize)>, HeadError> {
    let end = Instant::now() + wait;
    loop {
        let slice = (Instant::now() + STOP_CHECK).min(end);
        match http::read_head(transport, buf, slice) {
            Err(HeadError::TimedOut)
                if Instant::now() < end
                    && !front.stopping.load(std::sync::atomic::Ordering::SeqCst) => {}
            other => return other,
        }
    }
}

/// Writes a response; false if the connection failed.
fn send(transport: &Transport, answer: &Response, keep: bool, tls: bool, head_only: bool) -> bool {
    use std::io::Write;
    let mut t = transport;
    t.write_all(&answer.encode(keep, tls, head_only)).is_ok()
}

/// The answer to a request for anything but the WebSocket.
fn answer(front: &Front, head: &Head) -> Response {
    if head.has_body() {
        return Response::text(413, "this server takes no request bodies");
    }
    if head.method != "GET" && head.method != "HEAD" {
        return Response::text(405, "only GET and HEAD").with("Allow", "GET, HEAD");
    }
    let path = match head.path() {
        "/index.html" => "/",
        path => path,
    };
    if path == "/api/info" {
        return Response::new(200, "application/json", info(front))
            .with("Cache-Control", "no-store");
    }
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return Response::text(404, "no such page");
    };
    let etag = etag(asset.body);
    if head.header("if-none-match") == Some(etag.as_str()) {
        return Response::new(304, asset.content_type, &[][..]).with("ETag", etag);
    }
    Response::new(200, asset.content_type, asset.body)
        .with("ETag", etag)
        .with("Cache-Control", "no-cache")
}

/// A validator for a built-in file: FNV-1a of its bytes.
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// `/api/info`: what the start page needs before a WebSocket is open.
fn info(front: &Front) -> Vec<u8> {
    let auth = &front.auth;
    let login = if auth.private {
        "required"
    } else if auth.directory.any() {
        "optional"
    } else {
        "none"
    };
    // A private server shows nothing of itself before a login.
    let (rooms, more) = if auth.private {
        (Vec::new(), 0)
    } else {
        rooms(front)
    };
    let config = &front.config;
    let body = serde_json::json!({
        "server": format!("chatroom {}", env!("CARGO_PKG_VERSION")),
        "login": login,
        "rooms": rooms,
        "more": more,
        "max_line": config.connection.max_line,
        "max_lines": MAX_MESSAGE_LINES,
        "history": config.chat.history,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The rooms in use (the most populous [`crate::proto::MAX_ROOMS_LISTED`]), asked of the
/// broadcaster at most once per [`ROOMS_FRESH`].
fn rooms(front: &Front) -> (Vec<RoomInfo>, usize) {
    let Some(web) = &front.web else {
        return (Vec::new(), 0);
    };
    let mut cached = web.rooms.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, rooms, more)) = &*cached
        && at.elapsed() < ROOMS_FRESH
    {
        return (rooms.clone(), *more);
    }
    let (reply, answer) = crossbeam_channel::bounded(1);
    if front.events.send(Event::RoomList { reply }).is_err() {
        return (Vec::new(), 0);
    }
    match answer.recv_timeout(Duration::from_secs(2)) {
        Ok(ServerMsg::Rooms { rooms, more }) => {
            *cached = Some((Instant::now(), rooms.clone(), more));
            (rooms, more)
        }
        _ => (Vec::new(), 0),
    }
}

/// Answers a request for `/ws`: checks it, switches to WebSocket, and reads the connection
/// as a JSON client's until it ends.
fn upgrade(
    front: &Arc<Front>,
    door: &Arrival<'_>,
    transport: Transport,
    head: &Head,
    leftover: Vec<u8>,
) {
    let (conn, peer) = (door.conn, door.peer);
    let tls = transport.is_tls();
    let refuse = |answer: Response| {
        debug!("conn {conn}: upgrade refused: {}", answer.status);
        send(&transport, &answer, false, tls, false);
        let _ = transport.socket().shutdown(std::net::Shutdown::Write);
    };
    let accepted = head
        .to_request()
        .ok_or_else(|| "a request that cannot be read".to_string())
        .and_then(|req| {
            tungstenite::handshake::server::create_response(&req).map_err(|e| e.to_string())
        });
    let response = match accepted {
        Ok(response) => response,
        Err(why) => {
            return refuse(
                Response::text(426, &format!("this is a WebSocket endpoint: {why}"))
                    .with("Upgrade", "websocket"),
            );
        }
    };
    if let Err(origin) = origin_allowed(head, tls, &front.config.web.web_origins) {
        warn!("conn {conn}: WebSocket from {peer} refused: origin {origin:?} not allowed");
        return refuse(Response::text(
            403,
            &format!("origin {origin} may not open this WebSocket (see --web-origin)"),
        ));
    }
    let client = match client_address(head, peer, front.config.web.trust_proxy) {
        Ok(client) => client,
        Err(why) => return refuse(Response::text(400, &why)),
    };
    if client.ip() != peer.ip()
        && let Some(ban) = front.banned(client.ip())
    {
        let why = Refusal::Banned { ban }.reason();
        return refuse(Response::text(403, &why));
    }
    let mut switching = Vec::new();
    if tungstenite::handshake::server::write_response(&mut switching, &response).is_err() {
        return refuse(Response::text(400, "cannot answer this upgrade"));
    }
    if !send_raw(&transport, &switching) {
        return;
    }
    let max_line = front.config.connection.max_line;
    let ws = WsStream::server(transport, leftover, max_line);
    let transport = Arc::new(Transport::WebSocket(Box::new(ws)));
    let via = if client == peer {
        "websocket".to_string()
    } else {
        format!("websocket, forwarded by {peer}")
    };
    let arrival = Arrival {
        peer: client,
        ..*door
    };
    let reader = front.reader(&arrival, transport, Some(via));
    if let Some(reader) = reader {
        run_reader(reader);
    }
}

fn send_raw(transport: &Transport, bytes: &[u8]) -> bool {
    use std::io::Write;
    let mut t = transport;
    t.write_all(bytes).is_ok()
}

/// Checks the `Origin` of an upgrade: the page's own origin (the `Host` it was asked under),
/// or one given with `--web-origin`. A request without an `Origin` comes from a program, not
/// from a page a browser was made to open, and is let through. Returns the refused origin.
fn origin_allowed(head: &Head, tls: bool, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = head.header("origin") else {
        return Ok(());
    };
    let scheme = if tls { "https" } else { "http" };
    let own = head
        .header("host")
        .map(|host| normal_origin(&format!("{scheme}://{host}")));
    let origin_n = normal_origin(origin);
    if own.as_deref() == Some(origin_n.as_str())
        || allowed.iter().any(|a| normal_origin(a) == origin_n)
    {
        Ok(())
    } else {
        Err(origin.to_string())
    }
}

/// An origin in lower case, without a trailing `/` or its scheme's default port.
fn normal_origin(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if o.starts_with(scheme)
            && let Some(bare) = o.strip_suffix(port)
        {
            return bare.to_string();
        }
    }
    o
}

/// The client's address: the peer's, or behind a trusted proxy the last `X-Forwarded-For`
/// entry (the one the proxy added; earlier ones are the client's own word). Its port is not
/// known then, and is 0.
fn client_address(head: &Head, peer: SocketAddr, trust_proxy: bool) -> Result<SocketAddr, String> {
    if !trust_proxy {
        return Ok(peer);
    }
    // Every X-Forwarded-For line, in order: a proxy may append a line of its own (HAProxy)
    // after the one the client wrote.
    let Some(forwarded) = head.header_list("x-forwarded-for") else {
        return Ok(peer);
    };
    let last = forwarded.rsplit(',').next().unwrap_or("").trim();
    let ip = last
        .parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|s| s.ip()))
        .map_err(|_| format!("X-Forwarded-For {last:?} is not an address"))?;
    Ok(SocketAddr::new(ip.to_canonical(), 0))
}

#[cfg(test)]
mod tests;
