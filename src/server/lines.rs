//! Reading lines with a hard length limit, over any `BufRead`.
//!
//! `BufRead::read_line` grows its buffer until it sees a newline, so a peer that sends a
//! gigabyte without one costs a gigabyte. [`LineReader`] keeps at most `limit` bytes: the rest
//! of an over-long line is read and thrown away, and the caller is told the line was too long.

use std::io::{self, BufRead};

/// One result of [`LineReader::read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line, without its `\n` or `\r\n`.
    Complete(&'a [u8]),
    /// A line longer than the limit ended; its bytes were discarded.
    TooLong,
    /// The peer closed the connection at a line boundary.
    Eof,
    /// The peer closed the connection in the middle of a line; the partial line is dropped.
    EofMidLine,
}

/// A line reader that never holds more than `limit` bytes of one line.
pub struct LineReader<R> {
    /// The source; its own buffer bounds each read.
    inner: R,
    /// The line being assembled; never longer than `limit`.
    line: Vec<u8>,
    /// The longest accepted line, in bytes, not counting the line ending.
    limit: usize,
    /// True while the rest of an over-long line is being skipped.
    discarding: bool,
    /// True when `line` holds a line already returned: the next call starts a new one. A call
    /// that ends in an error (a read timeout) leaves the partial line for the next call.
    returned: bool,
}

impl<R: BufRead> LineReader<R> {
    /// A reader of lines of at most `limit` bytes.
    pub fn new(inner: R, limit: usize) -> LineReader<R> {
        LineReader {
            inner,
            line: Vec::new(),
            limit,
            discarding: false,
            returned: false,
        }
    }

    /// The source, to change how it reads (a deadline) between lines.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next line. A read timeout surfaces as an `io::Error` (`WouldBlock` or `TimedOut`);
    /// the partial line is kept, so reading again after a timeout loses nothing.
    pub fn read_line(&mut self) -> io::Result<Line<'_>> {
        if std::mem::take(&mut self.returned) {
            self.line.clear();
        }
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                let partial = !self.line.is_empty() || self.discarding;
                self.discarding = false;
                self.returned = true;
                return Ok(if partial { Line::EofMidLine } else { Line::Eof });
            }
            let (take, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if !self.discarding {
                // Allow one byte over the limit for the '\r' of a "\r\n" ending.
                if self.line.len() + take > self.limit + 1 {
                    self.discarding = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(&buf[..take]);
                }
            }
            self.inner.consume(if found { take + 1 } else { take });
            if found {
                self.returned = true;
                if std::mem::take(&mut self.discarding) {
                    return Ok(Line::TooLong);
                }
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                if self.line.len() > self.limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(&self.line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<String> {
        // A tiny buffer makes lines cross many `fill_buf` calls.
        let mut r = LineReader::new(BufReader::with_capacity(3, input), limit);
        let mut out = Vec::new();
        loop {
            match r.read_line().unwrap() {
                Line::Complete(l) => out.push(String::from_utf8_lossy(l).into_owned()),
                Line::TooLong => out.push("<too long>".into()),
                Line::Eof => break,
                Line::EofMidLine => {
                    out.push("<eof mid-line>".into());
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn splits_on_lf_and_crlf() {
        assert_eq!(lines(b"a\nbc\r\n\nd\n", 10), ["a", "bc", "", "d"]);
    }

    #[test]
    fn limit_is_exact() {
        assert_eq!(
            lines(b"12345\n123456\n12345\r\n", 5),
            ["12345", "<too long>", "12345"]
        );
    }

    #[test]
    fn over_long_line_is_skipped_and_reading_goes_on() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nnext\n");
        assert_eq!(lines(&input, 100), ["<too long>", "next"]);
    }

    #[test]
    fn eof_mid_line_is_reported() {
        assert_eq!(lines(b"ok\npartial", 100), ["ok", "<eof mid-line>"]);
        assert_eq!(lines(&[b'y'; 500], 100), ["<eof mid-line>"]);
    }

    /// A read error (a timeout) in the middle of a line loses nothing.
    #[test]
    fn a_timeout_mid_line_keeps_the_partial_line() {
        struct Stutter(Vec<Result<&'static [u8], io::ErrorKind>>);
        impl Read for Stutter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.pop() {
                    None => Ok(0),
                    Some(Ok(b)) => {
                        buf[..b.len()].copy_from_slice(b);
                        Ok(b.len())
                    }
                    Some(Err(kind)) => Err(kind.into()),
                }
            }
        }
        let parts = vec![
            Ok(&b"lo\n"[..]),
            Err(io::ErrorKind::WouldBlock),
            Ok(&b"hel"[..]),
        ];
        let mut r = LineReader::new(BufReader::new(Stutter(parts)), 100);
        assert_eq!(r.read_line().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(r.read_line().unwrap(), Line::Complete(b"hello"));
        assert_eq!(r.read_line().unwrap(), Line::Eof);
    }

    /// A read interrupted by a signal (EINTR) is retried, not reported.
    #[test]
    fn an_interrupted_read_is_retried() {
        struct Interrupting(Vec<Option<&'static [u8]>>);
        impl Read for Interrupting {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.pop() {
                    None => Ok(0),
                    Some(Some(b)) => {
                        buf[..b.len()].copy_from_slice(b);
                        Ok(b.len())
                    }
                    Some(None) => Err(io::ErrorKind::Interrupted.into()),
                }
            }
        }
        let parts = vec![Some(&b"ld\n"[..]), None, Some(&b"wor"[..]), None];
        let mut r = LineReader::new(BufReader::new(Interrupting(parts)), 100);
        assert_eq!(r.read_line().unwrap(), Line::Complete(b"world"));
        assert_eq!(r.read_line().unwrap(), Line::Eof);
    }

    /// A gigabyte-scale line costs no more memory than the limit.
    #[test]
    fn memory_is_bounded_by_the_limit() {
        let endless = io::repeat(b'z').take(50 * 1024 * 1024);
        // A source buffer much larger than the limit: no chunk of it is kept whole.
        let source = BufReader::with_capacity(64 * 1024, endless.chain(&b"\nok\n"[..]));
        let mut r = LineReader::new(source, 100);
        assert_eq!(r.read_line().unwrap(), Line::TooLong);
        assert!(
            r.line.capacity() <= 2 * 101,
            "capacity {}",
            r.line.capacity()
        );
        assert_eq!(r.read_line().unwrap(), Line::Complete(b"ok"));
    }
}
