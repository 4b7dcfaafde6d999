//! WebSocket (tungstenite, blocking) over a [`Transport`], for a connection read by one thread
//! and written by another, like [`TlsStream`](crate::tls::TlsStream).
//!
//! To the rest of the server a WebSocket is a byte stream of lines: reading returns each text
//! message followed by `\n`, so the connection's reader parses it with the same `LineReader`
//! and the same JSON grammar as a TCP client's; writing takes whole encoded lines (JSON events)
//! and sends each as one text message. tungstenite does the framing: two
//! [`WebSocketContext`]s, one per direction, write their frames into a buffer, which is sent
//! whole under the send lock, so a pong the reader owes and an event the writer sends never
//! interleave on the socket.

use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::proto::{self, ProtocolError, ServerMsg};
use crate::tls::{DeadlineReader, Transport};

/// Bytes tungstenite reads from the socket at a time (its buffer is allocated up front: an
/// idle connection keeps it).
const READ_CHUNK: usize = 512;

/// A WebSocket over a plain or TLS transport.
pub struct WsStream {
    /// The bytes under the frames: plain TCP or TLS, never another WebSocket.
    inner: Transport,
    read: Mutex<ReadSide>,
    /// The send lock: held from framing until the frames are on the socket.
    write: Mutex<WriteSide>,
    /// A close frame has been sent (by either side's context): no data frame may follow.
    closed: AtomicBool,
    /// The longest line the server accepts: a message up to twice this is read and refused
    /// as a line (the connection goes on); a longer one closes the connection (1009).
    max_line: usize,
}

struct ReadSide {
    ctx: WebSocketContext,
    /// The current message and its `\n`; `message[at..]` is still to be read.
    message: Vec<u8>,
    at: usize,
    /// The peer closed (or the protocol failed): reads return end of file.
    ended: bool,
}

struct WriteSide {
    ctx: WebSocketContext,
    /// What was written after the last `\n`: the start of a line still to come.
    partial: Vec<u8>,
    /// Frames made and not yet sent.
    out: Vec<u8>,
}

/// The stream tungstenite works on. The reading side reads from the transport and sends what
/// it owes (a pong, the answer to a close) at once, under the send lock; the writing side reads
/// nothing and frames into a buffer that it sends whole. tungstenite hands a stream whole
/// frames in each write, so frames from the two sides never interleave.
struct Io<'a> {
    from: Option<(&'a Transport, Option<Instant>)>,
    to: Out<'a>,
}

enum Out<'a> {
    Buffer(&'a mut Vec<u8>),
    Socket(&'a WsStream),
}

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.from {
            Some((transport, deadline)) => DeadlineReader::new(transport, deadline).read(buf),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.to {
            Out::Buffer(out) => out.extend_from_slice(buf),
            Out::Socket(ws) => ws.send_frames(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WsStream {
    /// The server side of a connection whose upgrade was just answered; `leftover` is what
    /// the peer sent after its request, already read.
    pub fn server(inner: Transport, leftover: Vec<u8>, max_line: usize) -> WsStream {
        // A message up to twice the line limit is read whole and refused as a line; past that
        // tungstenite refuses it before holding it.
        let limit = max_line.saturating_mul(2).max(1024);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            .write_buffer_size(0)
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        WsStream {
            inner,
            read: Mutex::new(ReadSide {
                ctx: WebSocketContext::from_partially_read(leftover, Role::Server, Some(config)),
                message: Vec::new(),
                at: 0,
                ended: false,
            }),
            write: Mutex::new(WriteSide {
                ctx: WebSocketContext::new(Role::Server, Some(config)),
                partial: Vec::new(),
                out: Vec::new(),
            }),
            closed: AtomicBool::new(false),
            max_line,
        }
    }

    /// The transport under the frames.
    pub fn inner(&self) -> &Transport {
        &self.inner
    }

    /// Reads the next bytes of the line stream: each text message, then `\n`. Pings are
    /// answered and a close is answered and read as the end of the stream.
    pub fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        let mut side = self.read.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if side.at < side.message.len() {
                let n = buf.len().min(side.message.len() - side.at);
                buf[..n].copy_from_slice(&side.message[side.at..side.at + n]);
                side.at += n;
                return Ok(n);
            }
            if side.ended {
                return Ok(0);
            }
            let mut io = Io {
                from: Some((&self.inner, deadline)),
                to: Out::Socket(self),
            };
            let got = side.ctx.read(&mut io);
            if matches!(got, Ok(Message::Close(_))) {
                // Answer the close now (tungstenite queued the answer), unless we sent ours.
                if !self.closed.swap(true, Ordering::SeqCst) {
                    let _ = side.ctx.flush(&mut io);
                }
            }
            let bytes: &[u8] = match &got {
                Ok(Message::Text(text)) => text.as_bytes(),
                // Read as a line too: the line's own checks refuse what is not UTF-8.
                Ok(Message::Binary(data)) => data,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(_)) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    side.ended = true;
                    return Ok(0);
                }
                // A read deadline (the ping interval, the handshake's): nothing was lost, and
                // the stream goes on.
                Err(WsError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(e.kind(), e.to_string()));
                }
                Err(e) => {
                    side.ended = true;
                    return Err(self.refuse(e));
                }
            };
            side.message.clear();
            side.message.extend_from_slice(bytes);
            side.message.push(b'\n');
            side.at = 0;
            if side.message.capacity() > 4 * self.max_line.max(1024) {
                side.message.shrink_to(self.max_line);
            }
        }
    }

    /// A read failed: tells the peer why when the protocol allows it (an error event and a
    /// close frame with the matching code), and returns the error that ends the connection.
    #[cold]
    fn refuse(&self, e: &WsError) -> io::Error {
        let (code, reason) = match e {
            WsError::Io(e) => return io::Error::new(e.kind(), e.to_string()),
            // The peer went away without a close frame: a hangup like any other.
            WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
                return io::ErrorKind::ConnectionReset.into();
            }
            WsError::Capacity(_) => {
                let limit = self.max_line;
                let msg = ServerMsg::error(&ProtocolError::LineTooLong { limit });
                let _ = self.write_lines(&proto::encode(&msg, proto::Mode::Json));
                (
                    CloseCode::Size,
                    format!("message longer than {limit} bytes"),
                )
            }
            WsError::Utf8(_) => (CloseCode::Invalid, "text that is not UTF-8".to_string()),
            other => (CloseCode::Protocol, other.to_string()),
        };
        self.close(code, &reason);
        io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {reason}"))
    }

    /// Takes encoded lines (JSON events, each ending with `\n`) and sends each as one text
    /// message; a line cut between two writes is sent when its end comes.
    pub fn write_lines(&self, buf: &[u8]) -> io::Result<usize> {
        let mut side = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let WriteSide {
            ctx, partial, out, ..
        } = &mut *side;
        if self.closed.load(Ordering::SeqCst) {
            // After a close frame no message may follow; the connection is ending.
            return Ok(buf.len());
        }
        partial.extend_from_slice(buf);
        out.clear();
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &partial[start..]) {
            let line = &partial[start..start + end];
            start += end + 1;
            let text = String::from_utf8_lossy(line).into_owned();
            ctx.write(
                &mut Io {
                    from: None,
                    to: Out::Buffer(out),
                },
                Message::text(text),
            )
            .map_err(to_io)?;
        }
        partial.drain(..start);
        ctx.flush(&mut Io {
            from: None,
            to: Out::Buffer(out),
        })
        .map_err(to_io)?;
        (&self.inner).write_all(out)?;
        if out.capacity() > 64 * 1024 {
            *out = Vec::new();
        }
        Ok(buf.len())
    }

    /// Sends a close frame (once): the last thing a connection's writer does before closing
    /// the socket, so a browser sees a clean close with a code.
    pub fn close(&self, code: CloseCode, reason: &str) {
        let mut side = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let WriteSide { ctx, out, .. } = &mut *side;
        out.clear();
        let frame = CloseFrame {
            code,
            reason: reason.to_string().into(),
        };
        let sent = ctx
            .close(
                &mut Io {
                    from: None,
                    to: Out::Buffer(out),
                },
                Some(frame),
            )
            .and_then(|()| {
                ctx.flush(&mut Io {
                    from: None,
                    to: Out::Buffer(out),
                })
            });
        if sent.is_ok() {
            let _ = (&self.inner).write_all(out);
        }
    }

    /// Sends frames the reading side made, under the send lock.
    fn send_frames(&self, frames: &[u8]) -> io::Result<()> {
        let _side = self.write.lock().unwrap_or_else(|p| p.into_inner());
        (&self.inner).write_all(frames)
    }
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}
