//! The load generator's connections: non-blocking JSON-mode clients multiplexed with mio.

use super::*;

/// A benchmark connection.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// Bytes read but not yet split into lines.
    pub(super) rbuf: Vec<u8>,
    /// Bytes to send when the socket accepts them.
    pub(super) wbuf: Vec<u8>,
    pub(super) welcomed: bool,
    /// For receivers, their index in the delivery-tracking table.
    pub(super) receiver: Option<usize>,
    /// Set when the server closed the connection.
    pub(super) closed: bool,
}

impl Conn {
    /// Starts a non-blocking connect; the hello goes out once the socket is writable.
    pub(super) fn connect(addr: SocketAddr, name: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .map_err(|e| Error::io(format!("cannot connect to {addr}"), e))?;
        Ok(Conn::connect_from(stream, name))
    }

    /// A connection over `stream` with its hello queued.
    pub(super) fn connect_from(stream: TcpStream, name: &str) -> Conn {
        let _ = stream.set_nodelay(true);
        let mut wbuf = Vec::with_capacity(64);
        wbuf.extend_from_slice(b"{\"type\":\"hello\",\"name\":\"");
        wbuf.extend_from_slice(name.as_bytes());
        wbuf.extend_from_slice(b"\"}\n");
        Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            wbuf,
            welcomed: false,
            receiver: None,
            closed: false,
        }
    }

    /// Writes what it can of `wbuf`.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads everything available and hands each complete line to `line`.
    pub(super) fn read_lines(&mut self, mut line: impl FnMut(&[u8], &mut bool)) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut start = 0;
        while let Some(pos) = self.rbuf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            line(&self.rbuf[start..end], &mut self.welcomed);
            start = end + 1;
        }
        self.rbuf.drain(..start);
        Ok(())
    }
}

/// Where a receiver is in each sender's sequence, and what it measured.
pub(super) struct Tracker {
    /// `next[receiver * width + sender % width]`: the sequence number expected next.
    pub(super) next: Vec<u64>,
    /// How many senders each receiver hears: all of them in one room, a room's size in many.
    pub(super) width: usize,
    pub(super) hist: Histogram<u64>,
    pub(super) deliveries: u64,
    pub(super) duplicated: u64,
    pub(super) gaps: u64,
    /// Deliveries whose send time is before this are not recorded in the histogram (warm-up).
    pub(super) record_after_ns: u64,
}

impl Tracker {
    pub(super) fn new(receivers: usize, width: usize) -> Tracker {
        Tracker {
            next: vec![0; receivers * width],
            width,
            hist: Histogram::new_with_bounds(1_000, 120_000_000_000, 3).expect("valid bounds"),
            deliveries: 0,
            duplicated: 0,
            gaps: 0,
            record_after_ns: 0,
        }
    }

    /// Accounts one line received by `receiver` at `now_ns`.
    pub(super) fn line(&mut self, receiver: usize, line: &[u8], now_ns: u64) {
        const MARK: &[u8] = b"\"text\":\"B ";
        // Messages sent again as history (to a client joining after an earlier run on the
        // same server) are not deliveries of this run; the flag is the last field.
        if line.ends_with(b",\"history\":true}") {
            return;
        }
        let Some(at) = find(line, MARK) else {
            return;
        };
        let mut fields = line[at + MARK.len()..].split(|&b| b == b' ');
        let (Some(s), Some(q), Some(t)) = (fields.next(), fields.next(), fields.next()) else {
            return;
        };
        let (Some(sender), Some(seq), Some(sent_ns)) = (num(s), num(q), num(t)) else {
            return;
        };
        let slot = &mut self.next[receiver * self.width + sender as usize % self.width];
        if seq < *slot {
            self.duplicated += 1;
            return;
        }
        if seq > *slot {
            self.gaps += seq - *slot;
        }
        *slot = seq + 1;
        self.deliveries += 1;
        if sent_ns >= self.record_after_ns {
            self.hist
                .saturating_record(now_ns.saturating_sub(sent_ns).max(1_000));
        }
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn num(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

pub(super) fn is_welcome(line: &[u8]) -> bool {
    line.starts_with(b"{\"type\":\"welcome\"")
}

pub(super) fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"{\"type\":\"error\"")
}

/// Connects `count` clients named `prefix0..` with non-blocking connects (at most
/// `MAX_INFLIGHT` not yet welcomed at a time, like a crowd logging in), and polls until every
/// one is welcomed. Returns them registered with `poll` under tokens `first_token..`.
pub(super) fn connect_all(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    poll: &mut Poll,
    first_token: usize,
    deadline: Instant,
) -> Result<Vec<Conn>> {
    const MAX_INFLIGHT: usize = 1000;
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    let mut events = Events::with_capacity(1024);
    let mut welcomed = 0;
    let mut refused = None;
    while welcomed < count {
        while conns.len() < count && conns.len() - welcomed < MAX_INFLIGHT {
            let i = conns.len();
            let mut c = Conn::connect(addr, &format!("{prefix}{i}"))?;
            poll.registry()
                .register(
                    &mut c.stream,
                    Token(first_token + i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| Error::io("cannot register a socket", e))?;
            conns.push(c);
        }
        if Instant::now() > deadline {
            return Err(Error::peer(format!(
                "{} of {count} clients were not welcomed in time",
                count - welcomed
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            let i = ev.token().0 - first_token;
            let Some(c) = conns.get_mut(i) else { continue };
            if ev.is_writable() && !c.wbuf.is_empty() {
                match c.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => {
                        return Err(Error::io(format!("cannot connect to {addr}"), e));
                    }
                }
                c.flush().map_err(|e| Error::io("cannot send hello", e))?;
            }
            if !ev.is_readable() {
                continue;
            }
            let was = c.welcomed;
            c.read_lines(|line, welcomed| {
                if is_welcome(line) {
                    *welcomed = true;
                } else if is_error(line) {
                    refused = Some(String::from_utf8_lossy(line).into_owned());
                }
            })
            .map_err(|e| Error::io("read failed while joining", e))?;
            if !was && c.welcomed {
                welcomed += 1;
            }
            if let Some(r) = refused.take() {
                return Err(Error::peer(format!("a client was refused: {r}")));
            }
        }
    }
    // From here on only reading matters: stop the writable wake-ups.
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .reregister(&mut c.stream, Token(first_token + i), Interest::READABLE)
            .map_err(|e| Error::io("cannot register a socket", e))?;
    }
    Ok(conns)
}

/// Reads and discards whatever arrives on `conns` for `for_how_long`.
pub(super) fn drain(poll: &mut Poll, conns: &mut [Conn], for_how_long: Duration) -> Result<()> {
    let until = Instant::now() + for_how_long;
    let mut events = Events::with_capacity(4096);
    while Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
        for ev in events.iter() {
            conns[ev.token().0]
                .read_lines(|_, _| {})
                .map_err(|e| Error::io("read failed", e))?;
        }
    }
    Ok(())
}

/// Reads until a `history_end` arrives; returns how many history messages came before it.
pub(super) fn until_history_end(poll: &mut Poll, c: &mut Conn) -> Result<(usize, bool)> {
    let mut events = Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut count = 0;
    let mut done = false;
    loop {
        c.read_lines(|line, _| {
            if done {
                return;
            }
            if line.starts_with(b"{\"type\":\"history_end\"") {
                done = true;
            } else if find(line, b"\"history\":true").is_some() {
                count += 1;
            }
        })
        .map_err(|e| Error::io("read failed", e))?;
        if done {
            return Ok((count, true));
        }
        if Instant::now() > deadline {
            return Err(Error::peer("no history_end within 10 s"));
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .map_err(|e| Error::io("poll failed", e))?;
    }
}
