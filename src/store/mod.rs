//! The two CSV files under the data directory: `messages.csv` and `data.csv`.
//!
//! Their columns are a public interface (see the README). Writers are generic over `io::Write`
//! so unit tests use a `Vec<u8>`; the `csv` crate does all quoting. Records are staged in memory
//! and reach the file in one `write_all` per batch ([`CsvLog::commit`]), which is what lets the
//! broadcaster log a whole batch before delivering any of it.

pub mod bans;
mod records;
mod scan;
pub mod users;

pub use records::*;

pub use scan::{
    Prefix, Record, RecordSplitter, RecordsBackwards, agreed_records_end, complete_len,
    last_record, repair_tail,
};

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// Now, as RFC 3339 UTC with milliseconds: `2026-11-23T16:04:05.123Z`.
pub fn now_timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// When a log write reaches the disk, not just the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fsync {
    /// `fsync` after every message, before anyone sees it.
    Always,
    /// One `fsync` per batch (group commit), still before any message of the batch is seen.
    #[default]
    Batch,
    /// No `fsync`: the kernel writes when it likes. A crash of the server loses nothing (the
    /// kernel has the bytes); a crash of the machine may lose the last seconds.
    Never,
}

/// What a log needs from its file beyond `Write`; implemented for `File` and, for tests,
/// `Vec<u8>`.
pub trait LogFile: Write {
    /// Makes what was written durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes, removing a partial append.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl LogFile for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

impl LogFile for io::Cursor<Vec<u8>> {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.get_mut().truncate(len as usize);
        Ok(())
    }
}

impl LogFile for Vec<u8> {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        Vec::truncate(self, len as usize);
        Ok(())
    }
}

/// An append-only CSV log: records are staged with [`CsvLog::stage`] and reach the file
/// together with [`CsvLog::commit`].
pub struct CsvLog<W: LogFile> {
    /// Where committed bytes go: the file, or a `Vec<u8>` in tests.
    out: W,
    /// The file's length after the last successful commit: a failed append is cut back to it,
    /// so the file always ends with a complete record.
    len: u64,
    /// Whether `commit` syncs.
    sync: bool,
    /// Whether bytes committed without a sync are still to be synced ([`CsvLog::sync_now`]).
    unsynced: bool,
    /// Records staged since the last commit, already CSV-encoded.
    staged: Vec<u8>,
    /// Where the file lives, for error messages.
    path: PathBuf,
}

impl<W: LogFile> CsvLog<W> {
    /// A log appending to `out`, which holds `len` bytes; `path` only names it in errors.
    pub fn new(out: W, len: u64, path: PathBuf) -> CsvLog<W> {
        CsvLog {
            out,
            len,
            sync: false,
            unsynced: false,
            staged: Vec::with_capacity(64 * 1024),
            path,
        }
    }

    /// Makes every commit also `fsync`.
    pub fn syncing(mut self, sync: bool) -> CsvLog<W> {
        self.sync = sync;
        self
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

    /// Writes everything staged (and syncs, if syncing). On error the file is cut back to its
    /// length before this commit, nothing staged is kept, and the caller must treat every
    /// staged record as not logged. The next commit tries again: a disk that was full may have
    /// room by then.
    pub fn commit(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut res = self
            .out
            .write_all(&self.staged)
            .and_then(|()| self.out.flush());
        if res.is_ok() && self.sync {
            res = self.out.sync();
        }
        match res {
            Ok(()) => {
                self.len += self.staged.len() as u64;
                self.staged.clear();
                self.unsynced = !self.sync;
                Ok(())
            }
            Err(e) => {
                self.staged.clear();
                if let Err(cut) = self.out.truncate(self.len) {
                    log::error!(
                        "cannot cut {} back to {} bytes after a failed write: {cut}",
                        self.path.display(),
                        self.len
                    );
                }
                Err(Error::io(
                    format!("cannot append to {}", self.path.display()),
                    e,
                ))
            }
        }
    }

    /// True when committed bytes have not been synced since.
    pub fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Syncs what earlier commits wrote without syncing.
    pub fn sync_now(&mut self) -> Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.out
            .sync()
            .map_err(|e| Error::io(format!("cannot sync {}", self.path.display()), e))?;
        self.unsynced = false;
        Ok(())
    }

    /// The writer, for tests.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// Takes away what the group and others may do with `path` (an existing file or directory
/// made before the server made its files private, or by hand), with a warning saying so.
pub fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let private = mode & 0o700;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))
        .map_err(|e| Error::io(format!("cannot set the mode of {}", path.display()), e))?;
    log::warn!(
        "{}: was readable by others ({mode:o}); now {private:o}",
        path.display()
    );
    Ok(())
}

/// Creates `dir` and its missing parents readable by the owner only (0700), whatever the
/// umask. A directory that exists already is made private (see [`make_private`]).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return make_private(dir);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

/// Checks that `dir` exists, for a command that reads or changes what is in it but must not
/// create it (`users list` under a mistyped `--data-dir` is an error, not an empty list), and
/// makes it private like [`create_private_dir`].
pub fn existing_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => make_private(dir),
        Ok(_) => Err(Error::account(format!(
            "{} is not a directory",
            dir.display()
        ))),
        Err(e) => Err(Error::io(
            format!("cannot open the data directory {}", dir.display()),
            e,
        )),
    }
}

/// Creates (or truncates) `path` for writing, readable by the owner only (0600), whatever the
/// umask: the data directory holds password hashes and private conversations.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Opens (creating it if missing, 0600) a CSV log for appending, checks its header and cuts off
/// a torn last record; returns the file and its length.
///
/// The header is the file's public interface: a file that does not start with it (a hand edit
/// that removed it, another program's file) is refused with a clear error, since appending to
/// it would make readers take its first row for the header. A header that lost its newline
/// (or was cut short while being written, before any row) is completed.
pub fn open_log(path: &Path, header: &str) -> Result<(File, u64)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let stat = |file: &File| {
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))
    };
    let len = stat(&file)?;
    if len == 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", path.display()), e))?;
    } else {
        make_private(path)?;
    }
    let line = format!("{header}\n");
    let mut start = vec![0u8; (len as usize).min(line.len() + 1)];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut start))
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let whole =
        start.starts_with(line.as_bytes()) || start.starts_with(format!("{header}\r\n").as_bytes());
    if !whole {
        if (len as usize) < line.len() && line.as_bytes().starts_with(&start) {
            // Empty, or the header alone cut short: write it whole.
            if len > 0 {
                log::warn!(
                    "{}: the header line was incomplete; completed it",
                    path.display()
                );
            }
            file.set_len(0)
                .and_then(|()| file.write_all(line.as_bytes()))
                .map_err(|e| {
                    Error::io(format!("cannot write the header of {}", path.display()), e)
                })?;
            return Ok((file, line.len() as u64));
        }
        return Err(Error::corrupt(format!(
            "does not start with its header line ({header}): was it edited, or is it another program's file? Put that line back at the top, or move the file away to start a new log"
        ))
        .in_file(path));
    }
    let fields = header.split(',').count();
    let cut = repair_tail(&mut file, fields)
        .map_err(|e| Error::io(format!("cannot check the end of {}", path.display()), e))?;
    if let Some(cut) = cut {
        log::warn!(
            "{}: the last record was incomplete (a crash or a full disk while writing); cut off {cut} bytes",
            path.display()
        );
    }
    let len = stat(&file)?;
    Ok((file, len))
}

/// The `id` of the last row of `messages.csv`, or 0 when it has no rows.
pub fn last_message_id(path: &Path) -> Result<u64> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let last = last_record(&mut file)
        .map_err(|e| Error::io(format!("cannot read the end of {}", path.display()), e))?;
    match last {
        None => Ok(0),
        Some(rec) if rec.get(message_column::ID) == Some("id") => Ok(0),
        Some(rec) => rec
            .get(message_column::ID)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "the last row does not start with a message id: {:?}",
                    rec.fields
                ))
                .in_file(path)
                .at_byte(rec.offset)
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
        if let Some(conn) = row
            .get(connection_column::CONN)
            .and_then(|s| s.parse::<u64>().ok())
        {
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
            kind: crate::proto::Kind::Message,
            text: text.into(),
        }
    }

    #[test]
    fn staged_records_reach_the_writer_only_on_commit() {
        let mut log = CsvLog::new(Vec::new(), 0, PathBuf::from("mem"));
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
        let mut log = CsvLog::new(Vec::new(), 0, PathBuf::from("mem"));
        log.stage(&record(1, "first"));
        log.stage(&record(2, "tricky\n3,fake,row\n\"\"\nend"));
        log.commit().unwrap();
        let mut cur = Cursor::new(log.get_ref().clone());
        let last = last_record(&mut cur).unwrap().unwrap().strings().unwrap();
        assert_eq!(&last[0], "2");
        assert_eq!(&last[6], "tricky\n3,fake,row\n\"\"\nend");
    }

    #[test]
    fn last_record_across_chunks() {
        let mut log = CsvLog::new(Vec::new(), 0, PathBuf::from("mem"));
        for i in 1..=5 {
            log.stage(&record(i, &"x\"y\n".repeat(20_000)));
        }
        log.commit().unwrap();
        let mut cur = Cursor::new(log.get_ref().clone());
        let last = last_record(&mut cur).unwrap().unwrap().strings().unwrap();
        assert_eq!(&last[0], "5");
        assert_eq!(last[6].len(), 80_000);
    }

    #[test]
    fn last_record_of_header_only_and_empty() {
        let mut cur = Cursor::new(format!("{MESSAGES_HEADER}\n").into_bytes());
        let last = last_record(&mut cur).unwrap().unwrap().strings().unwrap();
        assert_eq!(&last[0], "id");
        assert!(last_record(&mut Cursor::new(Vec::new())).unwrap().is_none());
    }

    #[test]
    fn records_backwards_returns_every_record_in_reverse() {
        let mut log = CsvLog::new(Vec::new(), 0, PathBuf::from("mem"));
        let texts: Vec<String> = (0..500)
            .map(|i| format!("m{i}\n\"q\",{}", "z".repeat(i * 7)))
            .collect();
        for (i, t) in texts.iter().enumerate() {
            log.stage(&record(i as u64, t));
        }
        log.commit().unwrap();
        let mut bytes = format!("{MESSAGES_HEADER}\n").into_bytes();
        bytes.extend_from_slice(log.get_ref());
        let all: Vec<csv::StringRecord> = RecordsBackwards::new(Cursor::new(bytes))
            .unwrap()
            .map(|r| r.unwrap().strings().unwrap())
            .collect();
        assert_eq!(all.len(), 501);
        assert_eq!(&all[500][0], "id");
        for (k, rec) in all[..500].iter().enumerate() {
            let i = 499 - k;
            assert_eq!(&rec[0], i.to_string().as_str());
            assert_eq!(&rec[6], texts[i].as_str());
        }
    }

    /// Every way a write can be torn is cut back to the last whole record; whole files and
    /// malformed records before the end are left alone.
    #[test]
    fn torn_tails_are_cut_and_nothing_else() {
        let mut log = CsvLog::new(Vec::new(), 0, PathBuf::from("mem"));
        log.stage(&record(1, "one"));
        log.stage(&record(2, "two, \"quoted\"\nacross lines"));
        log.commit().unwrap();
        let mut good = format!("{MESSAGES_HEADER}\n").into_bytes();
        good.extend_from_slice(log.get_ref());
        let mut third = CsvLog::new(Vec::new(), 0, PathBuf::from("mem"));
        third.stage(&record(3, "three\nwith \"a\" newline"));
        third.commit().unwrap();
        let third = third.get_ref().clone();
        // Cut the third record at every byte: each must be cut off entirely.
        for cut in 1..third.len() {
            let mut bytes = good.clone();
            bytes.extend_from_slice(&third[..cut]);
            let mut f = Cursor::new(bytes);
            let removed = repair_tail(&mut f, 7).unwrap();
            assert_eq!(removed, Some(cut as u64), "cut at {cut}");
            assert_eq!(f.get_ref(), &good, "cut at {cut}");
        }
        let mut whole = good.clone();
        whole.extend_from_slice(&third);
        let mut f = Cursor::new(whole.clone());
        assert_eq!(repair_tail(&mut f, 7).unwrap(), None);
        assert_eq!(f.get_ref(), &whole);
        // A hand-edited short row in the middle stays; only the torn end goes.
        let mut edited = good.clone();
        edited.extend_from_slice(b"oops,a hand edit\n");
        edited.extend_from_slice(&third);
        edited.extend_from_slice(b"4,2026-11-23T16:04:05.123Z,lobby,al");
        let mut f = Cursor::new(edited.clone());
        assert_eq!(repair_tail(&mut f, 7).unwrap(), Some(35));
        assert_eq!(f.get_ref().len(), edited.len() - 35);
    }

    #[test]
    fn a_failed_commit_is_cut_back_and_the_next_one_succeeds() {
        /// A file that takes `room` more bytes, then fails like a full disk.
        struct Full {
            data: Vec<u8>,
            room: usize,
        }
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.room == 0 {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
                }
                let n = buf.len().min(self.room);
                self.room -= n;
                self.data.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl LogFile for Full {
            fn sync(&mut self) -> io::Result<()> {
                Ok(())
            }
            fn truncate(&mut self, len: u64) -> io::Result<()> {
                self.data.truncate(len as usize);
                Ok(())
            }
        }
        let mut log = CsvLog::new(
            Full {
                data: Vec::new(),
                room: 70,
            },
            0,
            PathBuf::from("full"),
        );
        log.stage(&record(1, "fits"));
        log.commit().unwrap();
        let after_first = log.get_ref().data.clone();
        log.stage(&record(2, "does not fit in what is left of the disk"));
        let err = log.commit().unwrap_err().to_string();
        assert!(err.contains("cannot append to full"), "{err}");
        assert_eq!(
            log.get_ref().data,
            after_first,
            "the partial write was cut back"
        );
        // Space comes back: the next commit works and the file is whole.
        log.out.room = 1000;
        log.stage(&record(3, "after"));
        log.commit().unwrap();
        let text = String::from_utf8(log.get_ref().data.clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("1,") && text.contains("\n3,"));
    }

    #[test]
    fn open_log_writes_header_once_and_ids_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        drop(open_log(&path, MESSAGES_HEADER).unwrap());
        assert_eq!(last_message_id(&path).unwrap(), 0);
        let (file, len) = open_log(&path, MESSAGES_HEADER).unwrap();
        let mut log = CsvLog::new(file, len, path.clone());
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
