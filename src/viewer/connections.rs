//! `chat-log connections`: who connected from where, for how long, and why they left.

use std::collections::HashMap;

use crate::store::ConnEvent;

use super::*;

/// Which rows of `data.csv` to show.
#[derive(Debug, Default, Clone)]
pub struct ConnFilter {
    /// The client's name (case-insensitive).
    pub name: Option<String>,
    /// An address or a network (`203.0.113.0/24`).
    pub ip: Option<crate::store::bans::Target>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// What `chat-log connections` shows, and how.
#[derive(Debug, Clone, Default)]
pub struct ConnOptions {
    pub view: ViewOptions,
    pub format: Format,
    pub filter: ConnFilter,
    /// Only the last N matching rows, found by reading from the end of the file.
    pub last: Option<usize>,
    /// Keep printing rows as they are appended (from the last [`FOLLOW_LAST`] without `last`
    /// or a `since`).
    pub follow: bool,
}

/// How far back `--last` and `--follow` look, past the rows they show, for the `connect` rows
/// that say how long the shown connections lasted: past it, a duration is left out rather
/// than the whole file read.
const LASTED_SCAN: u64 = 16 << 20;

impl ConnFilter {
    pub fn matches(&self, rec: &ConnRecord) -> bool {
        if let Some(n) = &self.name
            && !same_name(&rec.name, n)
        {
            return false;
        }
        if let Some(t) = &self.ip
            && !rec.ip.parse().is_ok_and(|ip| t.covers(ip))
        {
            return false;
        }
        if !super::filter::in_window(self.since, self.until, &rec.timestamp) {
            return false;
        }
        true
    }
}

/// `chat-log connections`: the rows of `data.csv` that pass the filter; returns how many. In
/// the table, a `disconnect` says how long the connection lasted (from its `connect` row) and
/// why it ended. With `last` or `follow` the file is read from its end.
pub fn connections(path: &Path, out: &mut impl Write, o: &ConnOptions) -> Result<u64> {
    let mut p = ConnPrinter {
        out,
        o,
        clock: Clock::new(o.view.zone),
        started: HashMap::new(),
        printed: 0,
    };
    let opened = File::open(path);
    if o.format == Format::Csv && (opened.is_ok() || o.follow) {
        p.emit(&format!("{}\n", crate::store::CONNECTIONS_HEADER))?;
    }
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if o.follow && e.kind() == io::ErrorKind::NotFound => {
            Records::flush(&mut p)?;
            follow(path, None, 0, &mut p)?;
            return Ok(p.printed);
        }
        Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
    };
    let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
    let complete =
        complete_len(&mut file, crate::store::connection_column::COUNT).map_err(read_err)?;
    let last = o
        .last
        .or((o.follow && o.filter.since.is_none()).then_some(FOLLOW_LAST));
    match last {
        Some(n) => p.last(&mut file, complete, n).map_err(read_err)?,
        None => {
            file.seek(SeekFrom::Start(0)).map_err(read_err)?;
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(true)
                .buffer_capacity(256 * 1024)
                .from_reader(io::Read::take(&mut file, complete));
            for row in rdr.deserialize::<ConnRecord>() {
                match row {
                    Ok(rec) => p.row(rec, None)?,
                    Err(e) => eprintln!("chat-log: skipping a malformed row: {e}"),
                }
            }
        }
    }
    Records::flush(&mut p)?;
    if o.follow {
        follow(path, Some(file), complete, &mut p)?;
    }
    Ok(p.printed)
}

/// Prints the rows of `data.csv`, remembering when each open connection started.
struct ConnPrinter<'a, W: Write> {
    out: &'a mut W,
    o: &'a ConnOptions,
    clock: Clock,
    /// When each open connection started, to say how long it lasted; emptied at each `start`
    /// row (connection numbers start again), so it holds at most the connections open at once.
    started: HashMap<u64, DateTime<Utc>>,
    printed: u64,
}

impl<W: Write> ConnPrinter<'_, W> {
    /// The last `n` matching rows of the first `len` bytes of `file`, with how long each
    /// disconnected connection lasted when its `connect` row is near enough.
    fn last(&mut self, file: &mut File, len: u64, n: usize) -> io::Result<()> {
        let mut found: Vec<(ConnRecord, Option<chrono::Duration>)> = Vec::new();
        // Shown `disconnect`s whose `connect` is still to be found (further back): conn -> index.
        let mut waiting: HashMap<u64, usize> = HashMap::new();
        let mut back = RecordsBackwards::new(Prefix { file, len })?;
        loop {
            if found.len() >= n && (waiting.is_empty() || back.scanned() > LASTED_SCAN) {
                break;
            }
            let Some(rec) = back.next() else { break };
            let rec = match rec?.fields.deserialize::<ConnRecord>(None) {
                Ok(rec) => rec,
                // The header, or a malformed row.
                Err(_) => continue,
            };
            let ts = timestamp(&rec);
            match (&rec.event, rec.conn) {
                (ConnEvent::Connect, Some(c)) => {
                    if let (Some(i), Some(t)) = (waiting.remove(&c), ts) {
                        found[i].1 = timestamp(&found[i].0).map(|end| end - t);
                    }
                }
                // Numbers start again before this: nothing further back is ours.
                (ConnEvent::Start, _) => waiting.clear(),
                _ => {}
            }
            if found.len() < n && self.o.filter.matches(&rec) {
                if let (ConnEvent::Disconnect, Some(c)) = (&rec.event, rec.conn) {
                    waiting.insert(c, found.len());
                }
                found.push((rec, None));
            }
        }
        for (rec, lasted) in found.into_iter().rev() {
            self.row(rec, lasted)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    /// Notes `rec`'s start or end, and prints it if it matches (`lasted`, when known already).
    fn row(&mut self, rec: ConnRecord, lasted: Option<chrono::Duration>) -> Result<()> {
        let ts = timestamp(&rec);
        let lasted = match (&rec.event, rec.conn, ts) {
            (ConnEvent::Start, _, _) => {
                self.started.clear();
                lasted
            }
            (ConnEvent::Connect, Some(c), Some(t)) => {
                self.started.insert(c, t);
                lasted
            }
            (ConnEvent::Disconnect, Some(c), Some(t)) => {
                lasted.or(self.started.remove(&c).map(|s| t - s))
            }
            _ => lasted,
        };
        if !self.o.filter.matches(&rec) {
            return Ok(());
        }
        let line = match self.o.format {
            Format::Jsonl => {
                let mut line = serde_json::to_string(&rec).expect("rows serialize");
                line.push('\n');
                line
            }
            Format::Csv => {
                let mut bytes = Vec::new();
                let rec = if self.o.view.excel_safe {
                    ConnRecord {
                        name: spreadsheet_safe(&rec.name).into_owned(),
                        detail: spreadsheet_safe(&rec.detail).into_owned(),
                        ..rec
                    }
                } else {
                    rec
                };
                {
                    let mut cw = csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(&mut bytes);
                    cw.serialize(&rec).expect("rows serialize");
                    cw.flush().expect("memory");
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Format::Table => self.table_line(&rec, lasted),
        };
        self.emit(&line)?;
        self.printed += 1;
        Ok(())
    }

    /// `2026-11-23 10:00:01 +09:00  connect           1  [::1]:57944  alice  member`: each
    /// column padded on the characters it shows, then coloured, so colours do not move them.
    fn table_line(&mut self, rec: &ConnRecord, lasted: Option<chrono::Duration>) -> String {
        let color = self.o.view.color;
        let paint = |code: &str, t: String| {
            if color {
                format!("\x1b[{code}m{t}\x1b[0m")
            } else {
                t
            }
        };
        let pad = |t: String, width: usize| {
            let n = t.chars().count();
            t + &" ".repeat(width.saturating_sub(n))
        };
        let mut when = String::new();
        self.clock.push(&mut when, &rec.timestamp);
        let who = match (rec.ip.as_str(), rec.port) {
            ("", _) => String::new(),
            (ip, Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
            (ip, Some(port)) => format!("{ip}:{port}"),
            (ip, None) => ip.to_string(),
        };
        let mut detail = printable(&rec.detail);
        if let Some(d) = lasted {
            detail = format!(
                "after {}: {detail}",
                duration::display(d.to_std().unwrap_or_default())
            );
        }
        let conn = rec.conn.map(|c| c.to_string()).unwrap_or_default();
        format!(
            "{}  {} {:>6}  {}  {} {}\n",
            paint("2", when),
            paint("36", pad(printable(rec.event.as_str()), 12)),
            conn,
            pad(printable(&who), 21),
            pad(printable(&rec.name), 16),
            detail
        )
    }

    fn emit(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write output", e))
    }
}

impl<W: Write> Records for ConnPrinter<'_, W> {
    fn record(&mut self, raw: &[u8], line: u64) -> Result<()> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(raw);
        let mut rec = csv::StringRecord::new();
        if !rdr.read_record(&mut rec).unwrap_or(false) || rec.get(0) == Some("timestamp") {
            return Ok(());
        }
        match rec.deserialize::<ConnRecord>(None) {
            Ok(rec) => self.row(rec, None),
            Err(e) => {
                eprintln!("chat-log: skipping malformed row at line {line}: {e}");
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write output", e))
    }
}

/// The row's time, if it has one.
fn timestamp(rec: &ConnRecord) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&rec.timestamp)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
