//! `chat-log stats`: messages per room, per sender and per hour of day, with bars.

use super::*;

/// `chat-log stats`: messages per room, per sender and per hour of day (UTC) for the rows that
/// pass the filter, with bars.
pub fn stats(path: &Path, out: &mut impl Write, filter: &Filter) -> Result<()> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file);
    let mut rooms: std::collections::HashMap<String, u64> = Default::default();
    let mut senders: std::collections::HashMap<String, u64> = Default::default();
    let mut hours = [0u64; 24];
    let mut total = 0u64;
    let mut rec = csv::ByteRecord::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| Error::csv(format!("cannot read {}", path.display()), e))?
    {
        if !filter.matches_row(&rec) {
            continue;
        }
        total += 1;
        let text = |i: usize| String::from_utf8_lossy(rec.get(i).unwrap_or(b"")).into_owned();
        let room = match rec.get(M::ROOM) {
            Some(b"") | None => "(direct)".to_string(),
            Some(_) => format!("#{}", text(M::ROOM).to_lowercase()),
        };
        *rooms.entry(room).or_default() += 1;
        *senders.entry(text(M::SENDER)).or_default() += 1;
        if let Some(h) = rec
            .get(M::TIMESTAMP)
            .and_then(|t| t.get(11..13))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.parse::<usize>().ok())
            && h < 24
        {
            hours[h] += 1;
        }
    }
    let mut text = format!("{total} messages\n");
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
    text.push_str("\nper hour of day (UTC)\n");
    for (h, n) in hours.iter().enumerate() {
        text.push_str(&format!("  {h:02}:00 {n:>9}  {}\n", bar(*n, max)));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write output", e))
}

/// A bar of up to 40 blocks for `n` out of `max`.
pub(super) fn bar(n: u64, max: u64) -> String {
    let width = ((n as f64 / max as f64) * 40.0).round() as usize;
    "█".repeat(width.max(usize::from(n > 0)))
}
