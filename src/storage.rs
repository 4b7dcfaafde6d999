//! The two CSV files under the data directory: `messages.csv` and `data.csv`.
//!
//! Their columns are a public interface (see the README). Writers are generic over `io::Write`
//! so unit tests use a `Vec<u8>`; the `csv` crate does all quoting. Records are staged in memory
//! and reach the file in one `write_all` per batch ([`CsvLog::commit`]), which is what lets the
//! broadcaster log a whole batch before delivering any of it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The header of `messages.csv`.
pub const MESSAGES_HEADER: &str = "id,timestamp,room,sender,recipient,kind,text";
/// The header of `data.csv`.
pub const CONNECTIONS_HEADER: &str = "timestamp,event,conn,ip,port,thread,name,detail";
/// The file name of the message log inside the data directory.
pub const MESSAGES_FILE: &str = "messages.csv";
/// The file name of the connection log inside the data directory.
pub const CONNECTIONS_FILE: &str = "data.csv";

/// One row of `messages.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: u64,
    pub timestamp: String,
    pub room: String,
    pub sender: String,
    pub recipient: String,
    pub kind: String,
    pub text: String,
}

/// One row of `data.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnRecord {
    pub timestamp: String,
    pub event: String,
    /// Empty for server-wide events (`start`, `stop`).
    pub conn: Option<u64>,
    pub ip: String,
    pub port: Option<u16>,
    pub thread: String,
    pub name: String,
    pub detail: String,
}

/// Now, as RFC 3339 UTC with milliseconds: `2026-11-23T16:04:05.123Z`.
pub fn now_timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An append-only CSV log: records are staged with [`CsvLog::stage`] and reach the writer
/// together with [`CsvLog::commit`].
pub struct CsvLog<W: Write> {
    /// Where committed bytes go: the file, or a `Vec<u8>` in tests.
    out: W,
    /// Records staged since the last commit, already CSV-encoded.
    staged: Vec<u8>,
    /// Where the file lives, for error messages.
    path: PathBuf,
}

impl<W: Write> CsvLog<W> {
    /// A log writing to `out`; `path` only names it in errors.
    pub fn new(out: W, path: PathBuf) -> CsvLog<W> {
        CsvLog {
            out,
            staged: Vec::with_capacity(64 * 1024),
            path,
        }
    }

    /// Encodes `record` after the records already staged.
    pub fn stage<S: Serialize>(&mut self, record: &S) {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .buffer_capacity(1024)
            .from_writer(&mut self.staged);
        // Serializing our own flat records into memory cannot fail.
        w.serialize(record).expect("records serialize to csv");
        w.flush().expect("writing to memory cannot fail");
    }

    /// True when something is staged and not yet committed.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Writes everything staged and flushes. On error nothing staged is kept, and the caller
    /// must treat every staged record as not logged.
    pub fn commit(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let res = self
            .out
            .write_all(&self.staged)
            .and_then(|()| self.out.flush());
        self.staged.clear();
        res.map_err(|e| Error::io(format!("cannot append to {}", self.path.display()), e))
    }

    /// The writer, for tests.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// Opens a CSV log for appending, creating it with `header` when it is missing or empty.
pub fn open_log(path: &Path, header: &str) -> Result<File> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
        .len();
    if len == 0 {
        file.write_all(format!("{header}\n").as_bytes())
            .map_err(|e| Error::io(format!("cannot write the header of {}", path.display()), e))?;
    }
    Ok(file)
}

/// The last complete record of a CSV file, read from the end: the cost does not grow with
/// the file.
pub fn last_record<R: Read + Seek>(file: &mut R) -> io::Result<Option<csv::StringRecord>> {
    RecordsBackwards::new(file)?.next().transpose()
}

/// The records of a CSV file from the last to the first, read in chunks from the end.
///
/// Reading backwards from a record boundary of well-formed CSV, the parser is outside quotes;
/// every `"` toggles that state (an escaped `""` toggles twice). So a `\n` followed by an even
/// number of quotes up to the boundary is the previous boundary.
pub struct RecordsBackwards<R> {
    /// The file being read.
    file: R,
    /// The file offset of `buf[0]`.
    pos: u64,
    /// The file's length when reading began.
    end: u64,
    /// The bytes from `pos` up to the end of the records not yet parsed.
    buf: Vec<u8>,
    /// Records parsed and not yet returned, the next one last.
    ready: Vec<csv::StringRecord>,
}

impl<R: Read + Seek> RecordsBackwards<R> {
    /// Starts at the end of `file`.
    pub fn new(mut file: R) -> io::Result<RecordsBackwards<R>> {
        let end = file.seek(SeekFrom::End(0))?;
        Ok(RecordsBackwards {
            file,
            pos: end,
            end,
            buf: Vec::new(),
            ready: Vec::new(),
        })
    }

    /// Bytes of the file read so far, counted from its end.
    pub fn scanned(&self) -> u64 {
        self.end - self.pos
    }

    /// Reads up to one more chunk before `pos` into the front of `buf`; returns its length.
    fn read_before(&mut self) -> io::Result<usize> {
        const CHUNK: u64 = 64 * 1024;
        let from = self.pos.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (self.pos - from) as usize];
        self.file.seek(SeekFrom::Start(from))?;
        self.file.read_exact(&mut chunk)?;
        let n = chunk.len();
        chunk.extend_from_slice(&self.buf);
        self.buf = chunk;
        self.pos = from;
        Ok(n)
    }

    fn next_record(&mut self) -> io::Result<Option<csv::StringRecord>> {
        if self.ready.is_empty() && !self.fill()? {
            return Ok(None);
        }
        Ok(self.ready.pop())
    }

    /// Parses the records at the end of `buf` into `ready`; false at the start of the file.
    ///
    /// The scan finds the *earliest* record boundary in `buf`, and everything after it is
    /// parsed forward by one CSV reader: a reader per record would rebuild the parser's tables
    /// every time (this was 11 µs per row).
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            // The last record ends at the end of `buf`, without its own terminator.
            while self.buf.last() == Some(&b'\n') || self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if self.buf.is_empty() {
                if self.pos == 0 {
                    return Ok(false);
                }
                self.read_before()?;
                continue;
            }
            let mut quotes = 0usize;
            let mut earliest = None;
            for i in (0..self.buf.len()).rev() {
                match self.buf[i] {
                    b'\n' if quotes.is_multiple_of(2) => earliest = Some(i + 1),
                    b'"' => quotes += 1,
                    _ => {}
                }
            }
            let start = match earliest {
                Some(start) => start,
                // The whole buffer is one record: the first of the file, or a long one.
                None if self.pos == 0 => 0,
                None => {
                    self.read_before()?;
                    continue;
                }
            };
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&self.buf[start..]);
            for rec in rdr.records() {
                self.ready
                    .push(rec.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?);
            }
            // Parsed in file order, popped from the end: the last record comes out first.
            self.buf.truncate(start);
            if !self.ready.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl<R: Read + Seek> Iterator for RecordsBackwards<R> {
    type Item = io::Result<csv::StringRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// The `id` of the last row of `messages.csv`, or 0 when it has no rows.
pub fn last_message_id(path: &Path) -> Result<u64> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let last = last_record(&mut file)
        .map_err(|e| Error::io(format!("cannot read the end of {}", path.display()), e))?;
    match last {
        None => Ok(0),
        Some(rec) if rec.get(0) == Some("id") => Ok(0),
        Some(rec) => rec.get(0).and_then(|s| s.parse().ok()).ok_or_else(|| {
            Error::Corrupt(format!(
                "the last row of {} does not start with a message id: {:?}",
                path.display(),
                rec
            ))
        }),
    }
}

/// The largest connection id in `data.csv`: the `conn` of the last row that has one. Rows
/// without a connection (`start`, `stop`) are skipped by reading further back.
pub fn last_conn_id(path: &Path) -> Result<u64> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let rows = RecordsBackwards::new(file)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    for row in rows {
        let row = row.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if let Some(conn) = row.get(2).and_then(|s| s.parse::<u64>().ok()) {
            return Ok(conn);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn record(id: u64, text: &str) -> MessageRecord {
        MessageRecord {
            id,
            timestamp: "2026-11-23T16:04:05.123Z".into(),
            room: "lobby".into(),
            sender: "alice".into(),
            recipient: String::new(),
            kind: "message".into(),
            text: text.into(),
        }
    }

    #[test]
    fn staged_records_reach_the_writer_only_on_commit() {
        let mut log = CsvLog::new(Vec::new(), PathBuf::from("mem"));
        log.stage(&record(1, "a, \"quoted\"\nsecond line"));
        assert!(log.get_ref().is_empty());
        assert!(log.has_staged());
        log.commit().unwrap();
        assert!(!log.has_staged());
        let text = String::from_utf8(log.get_ref().clone()).unwrap();
        assert_eq!(
            text,
            "1,2026-11-23T16:04:05.123Z,lobby,alice,,message,\"a, \"\"quoted\"\"\nsecond line\"\n"
        );
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let back: MessageRecord = rdr.deserialize().next().unwrap().unwrap();
        assert_eq!(back, record(1, "a, \"quoted\"\nsecond line"));
    }

    #[test]
    fn last_record_handles_quoted_newlines() {
        let mut log = CsvLog::new(Vec::new(), PathBuf::from("mem"));
        log.stage(&record(1, "first"));
        log.stage(&record(2, "tricky\n3,fake,row\n\"\"\nend"));
        log.commit().unwrap();
        let mut cur = Cursor::new(log.get_ref().clone());
        let last = last_record(&mut cur).unwrap().unwrap();
        assert_eq!(&last[0], "2");
        assert_eq!(&last[6], "tricky\n3,fake,row\n\"\"\nend");
    }

    #[test]
    fn last_record_across_chunks() {
        let mut log = CsvLog::new(Vec::new(), PathBuf::from("mem"));
        for i in 1..=5 {
            log.stage(&record(i, &"x\"y\n".repeat(20_000)));
        }
        log.commit().unwrap();
        let mut cur = Cursor::new(log.get_ref().clone());
        let last = last_record(&mut cur).unwrap().unwrap();
        assert_eq!(&last[0], "5");
        assert_eq!(last[6].len(), 80_000);
    }

    #[test]
    fn last_record_of_header_only_and_empty() {
        let mut cur = Cursor::new(format!("{MESSAGES_HEADER}\n").into_bytes());
        let last = last_record(&mut cur).unwrap().unwrap();
        assert_eq!(&last[0], "id");
        assert!(last_record(&mut Cursor::new(Vec::new())).unwrap().is_none());
    }

    #[test]
    fn records_backwards_returns_every_record_in_reverse() {
        let mut log = CsvLog::new(Vec::new(), PathBuf::from("mem"));
        let texts: Vec<String> = (0..500)
            .map(|i| format!("m{i}\n\"q\",{}", "z".repeat(i * 7)))
            .collect();
        for (i, t) in texts.iter().enumerate() {
            log.stage(&record(i as u64, t));
        }
        log.commit().unwrap();
        let mut bytes = format!("{MESSAGES_HEADER}\n").into_bytes();
        bytes.extend_from_slice(log.get_ref());
        let all: Vec<_> = RecordsBackwards::new(Cursor::new(bytes))
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(all.len(), 501);
        assert_eq!(&all[500][0], "id");
        for (k, rec) in all[..500].iter().enumerate() {
            let i = 499 - k;
            assert_eq!(&rec[0], i.to_string().as_str());
            assert_eq!(&rec[6], texts[i].as_str());
        }
    }

    #[test]
    fn open_log_writes_header_once_and_ids_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        drop(open_log(&path, MESSAGES_HEADER).unwrap());
        assert_eq!(last_message_id(&path).unwrap(), 0);
        let mut log = CsvLog::new(open_log(&path, MESSAGES_HEADER).unwrap(), path.clone());
        log.stage(&record(41, "x"));
        log.stage(&record(42, "y"));
        log.commit().unwrap();
        drop(log);
        drop(open_log(&path, MESSAGES_HEADER).unwrap());
        assert_eq!(last_message_id(&path).unwrap(), 42);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("id,timestamp").count(), 1);
    }
}
