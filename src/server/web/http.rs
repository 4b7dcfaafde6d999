//! HTTP/1.1 as far as the web port needs it: a request head, read within a bound and a
//! deadline and parsed by `httparse`; a response, with the security headers every page gets.
//! No request bodies: the page only reads, and chat goes over the WebSocket.

use std::io::{self, Write};
use std::time::Instant;

use crate::tls::{DeadlineReader, Transport};

/// The longest request head read (request line and headers): a browser's is under 2 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most headers a request may have.
const MAX_HEADERS: usize = 40;

/// What every response says about how the page may be used: scripts, styles and connections
/// only from this origin (no inline script), not framed, not sniffed, no referrer.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    ),
];

/// A request head, parsed.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// The target as sent (path and query).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Names in lower case, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of header `name` (lower case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Every line of header `name` (lower case), joined with `, ` as a list header's lines
    /// are (RFC 9110, 5.3); `None` when there is none, or one is not text.
    pub fn header_list(&self, name: &str) -> Option<String> {
        let values: Option<Vec<&str>> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).ok().map(str::trim))
            .collect();
        values.filter(|v| !v.is_empty()).map(|v| v.join(", "))
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        match self.minor {
            0 => connection.split(',').any(|t| t.trim() == "keep-alive"),
            _ => !connection.split(',').any(|t| t.trim() == "close"),
        }
    }

    /// Whether a body may follow: the web port takes none. Any `Transfer-Encoding`, and any
    /// `Content-Length` line but a lone `0` (two lines, or one that is not a number, as a
    /// proxy in front might read otherwise) count as one, and end the connection.
    pub fn has_body(&self) -> bool {
        let mut lengths = 0;
        for (name, value) in &self.headers {
            match name.as_str() {
                "transfer-encoding" => return true,
                "content-length" if value.trim_ascii() != b"0" => return true,
                "content-length" => lengths += 1,
                _ => {}
            }
        }
        lengths > 1
    }

    /// The head as an `http::Request`, for tungstenite's upgrade checks.
    pub fn to_request(&self) -> Option<http::Request<()>> {
        let mut req = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str())
            .version(if self.minor == 0 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            });
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_slice());
        }
        req.body(()).ok()
    }
}

/// Why no request head could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The head is longer than [`MAX_HEAD`] (or has too many headers): 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed(String),
    /// The deadline passed first: 408.
    TimedOut,
    /// The connection failed or closed in the middle.
    Io(io::Error),
}

/// Reads one request head into `buf` (which may already hold bytes read with the previous
/// request). Returns the head and its length in `buf`; `Ok(None)` when the peer closed before
/// sending anything.
pub fn read_head(
    transport: &Transport,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Option<(Head, usize)>, HeadError> {
    let mut reader = DeadlineReader::new(transport, Some(deadline));
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = Head {
                        method: req.method.unwrap_or("").to_string(),
                        target: req.path.unwrap_or("").to_string(),
                        minor: req.version.unwrap_or(1),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                            .collect(),
                    };
                    return Ok(Some((head, len)));
                }
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                    return Err(HeadError::TooLarge);
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                Err(e) => return Err(HeadError::Malformed(e.to_string())),
            }
        }
        let mut chunk = [0u8; 1024];
        let want = chunk.len().min(MAX_HEAD + 1 - buf.len().min(MAX_HEAD));
        match std::io::Read::read(&mut reader, &mut chunk[..want]) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::TimedOut);
            }
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// A response to send.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: std::borrow::Cow<'static, [u8]>,
}

impl Response {
    /// A response with a body of `content_type`.
    pub fn new(
        status: u16,
        content_type: &str,
        body: impl Into<std::borrow::Cow<'static, [u8]>>,
    ) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// A plain-text answer, for errors: what went wrong, in one line.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            format!("{text}\n").into_bytes(),
        )
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes of the response: status line, headers (the security headers included; HSTS
    /// over TLS), and the body unless `head_only`.
    pub fn encode(&self, keep_alive: bool, tls: bool, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024 + self.body.len());
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        for (name, value) in SECURITY_HEADERS {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if tls {
            out.extend_from_slice(b"Strict-Transport-Security: max-age=31536000\r\n");
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(
            out,
            "Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            self.body.len()
        );
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
        Head {
            method: req.method.unwrap().into(),
            target: req.path.unwrap().into(),
            minor: req.version.unwrap(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive());
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn a_body_is_noticed_and_the_path_has_no_query() {
        let h = head("POST /x?y=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert!(h.has_body());
        assert_eq!(h.path(), "/x");
        assert!(!head("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body());
        assert!(head("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").has_body());
        // Two lengths, even equal, or one that is not a number: a proxy may read them apart.
        assert!(
            head("GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n").has_body()
        );
        assert!(
            head("GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n").has_body()
        );
        assert!(head("GET / HTTP/1.1\r\nContent-Length: +0\r\n\r\n").has_body());
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let bytes = Response::text(404, "no such page").encode(true, true, false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        for needle in [
            "Content-Security-Policy: default-src 'none'; script-src 'self';",
            "frame-ancestors 'none'",
            "X-Content-Type-Options: nosniff",
            "Strict-Transport-Security: max-age=31536000",
            "Content-Length: 13\r\n",
            "Connection: keep-alive\r\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(text.ends_with("\r\n\r\nno such page\n"));
        let head_only = Response::text(200, "x").encode(false, false, true);
        let text = String::from_utf8(head_only).unwrap();
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        assert!(!text.contains("Strict-Transport-Security"));
    }
}
