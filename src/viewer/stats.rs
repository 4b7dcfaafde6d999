//! `chat-log stats`: messages per room, per sender and per hour of day, with bars; or the
//! numbers alone as CSV or JSON Lines.

use super::*;

/// What `chat-log stats` counts, and how it shows the counts.
#[derive(Debug, Clone, Default)]
pub struct StatsOptions {
    pub filter: Filter,
    /// Table: bars, the top 20 senders. CSV and JSON Lines: `group,key,count` rows
    /// (`total`, `room`, `sender` (every one), `hour`), for other tools.
    pub format: Format,
    /// The zone of the hours of day.
    pub zone: Zone,
}

/// `chat-log stats`: messages per room, per sender and per hour of day for the rows that pass
/// the filter; returns how many messages matched.
pub fn stats(path: &Path, out: &mut impl Write, o: &StatsOptions) -> Result<u64> {
    let filter = &o.filter;
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file);
    let mut counts = Counts::new(o.zone);
    let mut rec = csv::ByteRecord::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| Error::csv(format!("cannot read {}", path.display()), e))?
    {
        if !filter.matches_row(&rec) {
            continue;
        }
        counts.add(&rec);
    }
    counts.write(out, o)
}

/// The counts of `chat-log stats`, row by row (one file, or several merged).
pub(super) struct Counts {
    clock: Clock,
    rooms: std::collections::HashMap<String, u64>,
    senders: std::collections::HashMap<String, u64>,
    hours: [u64; 24],
    total: u64,
}

impl Counts {
    pub fn new(zone: Zone) -> Counts {
        Counts {
            clock: Clock::new(zone),
            rooms: Default::default(),
            senders: Default::default(),
            hours: [0; 24],
            total: 0,
        }
    }

    /// Counts one row (already filtered).
    pub fn add(&mut self, rec: &csv::ByteRecord) {
        self.total += 1;
        let text = |i: usize| String::from_utf8_lossy(rec.get(i).unwrap_or(b"")).into_owned();
        let room = match rec.get(M::ROOM) {
            Some(b"") | None => "(direct)".to_string(),
            Some(_) => format!("#{}", text(M::ROOM).to_lowercase()),
        };
        *self.rooms.entry(room).or_default() += 1;
        *self.senders.entry(text(M::SENDER)).or_default() += 1;
        if let Some(h) = rec.get(M::TIMESTAMP).and_then(|t| self.clock.hour(t)) {
            self.hours[h as usize % 24] += 1;
        }
    }

    /// Writes the counts in `o.format`; returns how many messages were counted.
    pub fn write(self, out: &mut impl Write, o: &StatsOptions) -> Result<u64> {
        let Counts {
            rooms,
            senders,
            hours,
            total,
            ..
        } = self;
        if o.format != Format::Table {
            let mut rows = vec![("total", String::new(), total)];
            let mut sorted = |group: &'static str, map: std::collections::HashMap<String, u64>| {
                let mut v: Vec<_> = map.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                rows.extend(v.into_iter().map(|(k, n)| (group, k, n)));
            };
            sorted("room", rooms);
            sorted("sender", senders);
            rows.extend(
                hours
                    .iter()
                    .enumerate()
                    .map(|(h, &n)| ("hour", format!("{h:02}"), n)),
            );
            let mut text = Vec::new();
            if o.format == Format::Csv {
                let mut w = csv::Writer::from_writer(&mut text);
                w.write_record(["group", "key", "count"]).expect("memory");
                for (group, key, n) in &rows {
                    w.write_record([group, key.as_str(), &n.to_string()])
                        .expect("memory");
                }
                w.flush().expect("memory");
            } else {
                for (group, key, n) in &rows {
                    let line = serde_json::json!({ "group": group, "key": key, "count": n });
                    serde_json::to_writer(&mut text, &line).expect("values serialize");
                    text.push(b'\n');
                }
            }
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map_err(|e| Error::io("cannot write output", e))?;
            return Ok(total);
        }
        let mut text = format!("{total} message{}\n", if total == 1 { "" } else { "s" });
        let table = |title: &str, mut rows: Vec<(String, u64)>, limit: usize| {
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let max = rows.first().map_or(1, |r| r.1).max(1);
            let mut s = format!("\n{title}\n");
            for (name, n) in rows.into_iter().take(limit) {
                s.push_str(&format!(
                    "  {:<24} {:>9}  {}\n",
                    printable(&name),
                    n,
                    bar(n, max)
                ));
            }
            s
        };
        text.push_str(&table("per room", rooms.into_iter().collect(), 50));
        text.push_str(&table(
            "per sender (top 20)",
            senders.into_iter().collect(),
            20,
        ));
        let max = hours.iter().copied().max().unwrap_or(1).max(1);
        text.push_str(match o.zone {
            Zone::Utc => "\nper hour of day (UTC)\n",
            Zone::Local => "\nper hour of day (local time)\n",
        });
        for (h, n) in hours.iter().enumerate() {
            text.push_str(&format!("  {h:02}:00 {n:>9}  {}\n", bar(*n, max)));
        }
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("cannot write output", e))?;
        Ok(total)
    }
}

/// A bar of up to 40 blocks for `n` out of `max`.
pub(super) fn bar(n: u64, max: u64) -> String {
    let width = ((n as f64 / max as f64) * 40.0).round() as usize;
    "█".repeat(width.max(usize::from(n > 0)))
}
