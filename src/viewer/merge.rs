//! Several `messages.csv` as one: the nodes of a cluster each log every message the cluster
//! carried, under the same global id, so the same message is an identical row in several
//! files; while a node is cut off it logs its own clients' messages under ids the others may
//! also use for different ones.
//!
//! [`Merge`] reads every file forward at once (a k-way merge: one row ahead per file, so memory
//! is bounded by the number of files, never by their size) and hands over the rows in order of
//! id, then time, then the order the files were given. Within one file ids strictly increase,
//! so every row with id N comes before any file moves past N: a row identical in all seven
//! columns to one already handed over for the current id is a copy and is skipped, and rows
//! with the same id but different contents (an outage) are all handed over. Only the distinct
//! rows of the current id are kept (at most one per file).
//!
//! [`show_merged`] and [`stats_merged`] are [`show`] and [`stats`] over that merged view; with
//! one file they are exactly [`show`] and [`stats`].

use std::collections::VecDeque;
use std::path::PathBuf;

use super::*;

/// A row of the merged view.
pub(super) struct Merged<'a> {
    /// Its fields, as in the file (the id parses, and the row is a message).
    pub fields: &'a csv::ByteRecord,
    /// The line of its file it starts on (1-based).
    pub line: u64,
}

/// The next row of one file, with what orders it.
struct Head {
    id: u64,
    /// The timestamp parsed, when it parses (rows are ordered by time, not by how it is
    /// written); `None` sorts first, then by its bytes.
    at: Option<DateTime<Utc>>,
    fields: csv::ByteRecord,
    line: u64,
    source: usize,
}

impl Head {
    fn before(&self, other: &Head) -> bool {
        fn key(h: &Head) -> (u64, Option<DateTime<Utc>>, Option<&[u8]>, usize) {
            (h.id, h.at, h.fields.get(M::TIMESTAMP), h.source)
        }
        key(self) < key(other)
    }

    /// Identical in all seven columns (the ids are equal numbers: both are the current id).
    fn same_row(&self, other: &Head) -> bool {
        self.id == other.id
            && self.fields.len() == other.fields.len()
            && self.fields.iter().skip(1).eq(other.fields.iter().skip(1))
    }
}

/// One file read forward.
struct Source<R: Read> {
    name: String,
    rdr: csv::Reader<R>,
    head: Option<Head>,
    index: usize,
}

impl<R: Read> Source<R> {
    /// Reads the next message row into `head` (in `spare`, to reuse its buffers), or leaves it
    /// `None` at the end. The header is skipped; a row that is not a message is reported on
    /// stderr and skipped.
    fn advance(&mut self, mut fields: csv::ByteRecord) -> Result<()> {
        self.head = None;
        loop {
            let more = self
                .rdr
                .read_byte_record(&mut fields)
                .map_err(|e| Error::csv(format!("cannot read {}", self.name), e))?;
            if !more {
                return Ok(());
            }
            if is_header_fields(|i| fields.get(i)) {
                continue;
            }
            let line = fields.position().map_or(0, |p| p.line());
            let (id, at) = match fields.deserialize::<render::MessageView<'_>>(None) {
                Ok(m) => (
                    m.id,
                    DateTime::parse_from_rfc3339(m.timestamp)
                        .ok()
                        .map(|t| t.with_timezone(&Utc)),
                ),
                Err(e) => {
                    eprintln!(
                        "chat-log: skipping malformed row at line {line} of {}: {e}",
                        self.name
                    );
                    continue;
                }
            };
            self.head = Some(Head {
                id,
                at,
                fields,
                line,
                source: self.index,
            });
            return Ok(());
        }
    }
}

/// The rows of several files, merged (see the module's documentation).
pub(super) struct Merge<R: Read> {
    sources: Vec<Source<R>>,
    /// The distinct rows handed over for the current id (the last is the one just handed).
    seen: Vec<Head>,
    /// Records to reuse, so that merging a million rows allocates little.
    spare: Vec<csv::ByteRecord>,
    /// How many copies were skipped.
    pub duplicates: u64,
}

impl<R: Read> Merge<R> {
    /// Merges `files`, each a name for messages and its bytes (whole records only).
    pub fn new(files: impl IntoIterator<Item = (String, R)>) -> Result<Merge<R>> {
        let mut sources = Vec::new();
        for (index, (name, file)) in files.into_iter().enumerate() {
            let rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .buffer_capacity(64 * 1024)
                .from_reader(file);
            let mut source = Source {
                name,
                rdr,
                head: None,
                index,
            };
            source.advance(csv::ByteRecord::new())?;
            sources.push(source);
        }
        Ok(Merge {
            sources,
            seen: Vec::new(),
            spare: Vec::new(),
            duplicates: 0,
        })
    }

    /// The next row of the merged view, or `None` when every file has ended.
    pub fn next_row(&mut self) -> Result<Option<Merged<'_>>> {
        loop {
            // A linear scan: a cluster has a handful of nodes.
            let mut first: Option<usize> = None;
            for (i, s) in self.sources.iter().enumerate() {
                if let Some(h) = &s.head
                    && first
                        .is_none_or(|f| h.before(self.sources[f].head.as_ref().expect("a head")))
                {
                    first = Some(i);
                }
            }
            let Some(i) = first else {
                return Ok(None);
            };
            let head = self.sources[i].head.take().expect("a head");
            let spare = self.spare.pop().unwrap_or_default();
            self.sources[i].advance(spare)?;
            if self.seen.first().is_some_and(|s| s.id != head.id) {
                self.spare.extend(self.seen.drain(..).map(|h| h.fields));
            }
            if self.seen.iter().any(|s| s.same_row(&head)) {
                self.duplicates += 1;
                self.spare.push(head.fields);
                continue;
            }
            self.seen.push(head);
            let h = self.seen.last().expect("just pushed");
            return Ok(Some(Merged {
                fields: &h.fields,
                line: h.line,
            }));
        }
    }
}

/// Opens `messages.csv` files for [`Merge`]: each seen up to its last whole row (a torn last
/// row is reported and left out, as [`show`] does).
fn open_all(paths: &[PathBuf]) -> Result<Vec<(String, io::Take<File>)>> {
    let fields = MESSAGES_HEADER.split(',').count();
    paths
        .iter()
        .map(|path| {
            let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
            let mut file = File::open(path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let len = file.metadata().map_err(read_err)?.len();
            let complete = complete_len(&mut file, fields).map_err(read_err)?;
            if complete < len {
                eprintln!(
                    "chat-log: the last {} bytes of {} are an unfinished row; not shown",
                    len - complete,
                    path.display()
                );
            }
            file.seek(SeekFrom::Start(0)).map_err(read_err)?;
            Ok((path.display().to_string(), file.take(complete)))
        })
        .collect()
}

/// Why a view that reads one file at a time cannot take several.
fn one_file_only(what: &str, paths: &[PathBuf]) -> Error {
    Error::setting(format!(
        "{what} reads one data directory, not {} (give a single --data-dir)",
        paths.len()
    ))
}

/// [`show`] over several `messages.csv` (one per node of a cluster) as one merged view: every
/// filter, format and `--last N` (the last N of the merged view, kept in a ring of N rows)
/// apply to it. With one path, this is [`show`]. `--follow` takes one file: with several, it
/// is refused ([`Error::setting`]).
pub fn show_merged(paths: &[PathBuf], out: &mut impl Write, o: &ShowOptions) -> Result<u64> {
    match paths {
        [] => return Err(Error::setting("no data directory given")),
        [one] => return show(one, out, o),
        _ if o.follow => return Err(one_file_only("--follow", paths)),
        _ => {}
    }
    let files = open_all(paths)?;
    let mut printer = Printer::new(out, o.view, o.format, o.filter.clone());
    if o.format == Format::Csv {
        printer
            .out
            .write_all(format!("{MESSAGES_HEADER}\n").as_bytes())
            .map_err(|e| Error::io("cannot write output", e))?;
    }
    let mut merge = Merge::new(files)?;
    match o.last {
        Some(n) => {
            // The last `n` matching rows: a ring of them, as the merge goes forward.
            let mut ring: VecDeque<(csv::ByteRecord, u64)> = VecDeque::with_capacity(n.min(4096));
            while let Some(row) = merge.next_row()? {
                if n == 0 || !o.filter.matches_row(row.fields) {
                    continue;
                }
                let mut kept = if ring.len() == n {
                    ring.pop_front().expect("n > 0").0
                } else {
                    csv::ByteRecord::new()
                };
                kept.clone_from(row.fields);
                ring.push_back((kept, row.line));
            }
            for (fields, line) in &ring {
                printer.decoded(fields, *line)?;
            }
        }
        None => {
            while let Some(row) = merge.next_row()? {
                if o.filter.matches_row(row.fields) {
                    printer.decoded(row.fields, row.line)?;
                }
            }
        }
    }
    printer.flush()?;
    Ok(printer.printed)
}

/// [`stats`] over several `messages.csv` merged as [`show_merged`] merges them: a message
/// several nodes logged counts once. With one path, this is [`stats`].
pub fn stats_merged(paths: &[PathBuf], out: &mut impl Write, o: &StatsOptions) -> Result<u64> {
    match paths {
        [] => return Err(Error::setting("no data directory given")),
        [one] => return stats(one, out, o),
        _ => {}
    }
    let mut merge = Merge::new(open_all(paths)?)?;
    let mut counts = stats::Counts::new(o.zone);
    while let Some(row) = merge.next_row()? {
        if o.filter.matches_row(row.fields) {
            counts.add(row.fields);
        }
    }
    counts.write(out, o)
}
