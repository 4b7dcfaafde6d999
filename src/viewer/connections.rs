//! `chat-log connections`: who connected from where, for how long, and why they left.

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
        if self.since.is_some() || self.until.is_some() {
            let Ok(ts) = DateTime::parse_from_rfc3339(&rec.timestamp) else {
                return false;
            };
            let ts = ts.with_timezone(&Utc);
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        true
    }
}

/// `chat-log connections`: the rows of `data.csv` that pass the filter. In the table, a
/// `disconnect` says how long the connection lasted (from its `connect` row) and why it ended.
pub fn connections(
    path: &Path,
    out: &mut impl Write,
    filter: &ConnFilter,
    format: Format,
    opts: ViewOptions,
) -> Result<()> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file);
    let w = |out: &mut dyn Write, text: &str| {
        out.write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write output", e))
    };
    if format == Format::Csv {
        w(out, &format!("{}\n", crate::store::CONNECTIONS_HEADER))?;
    }
    // When each open connection started, to say how long it lasted.
    let mut started: std::collections::HashMap<u64, DateTime<Utc>> = Default::default();
    let paint = |code: &str, t: &str| {
        if opts.color {
            format!("\x1b[{code}m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    for row in rdr.deserialize::<ConnRecord>() {
        let rec = match row {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chat-log: skipping a malformed row: {e}");
                continue;
            }
        };
        let ts = DateTime::parse_from_rfc3339(&rec.timestamp).map(|t| t.with_timezone(&Utc));
        let lasted = match (rec.event.as_str(), rec.conn, &ts) {
            ("connect", Some(c), Ok(t)) => {
                started.insert(c, *t);
                None
            }
            ("disconnect", Some(c), Ok(t)) => started.remove(&c).map(|s| *t - s),
            _ => None,
        };
        if !filter.matches(&rec) {
            continue;
        }
        match format {
            Format::Jsonl => {
                let mut line = serde_json::to_string(&rec).expect("rows serialize");
                line.push('\n');
                w(out, &line)?;
            }
            Format::Csv => {
                let mut bytes = Vec::new();
                let rec = if opts.excel_safe {
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
                w(out, &String::from_utf8_lossy(&bytes))?;
            }
            Format::Table => {
                let when = rec.timestamp.replacen('T', " ", 1);
                let when = when.get(..19).unwrap_or(&when);
                let who = if rec.ip.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{}:{}",
                        rec.ip,
                        rec.port.map(|p| p.to_string()).unwrap_or_default()
                    )
                };
                let mut detail = printable(&rec.detail);
                if let Some(d) = lasted {
                    detail = format!(
                        "after {}: {detail}",
                        duration::display(d.to_std().unwrap_or_default())
                    );
                }
                let line = format!(
                    "{}  {:<12} {:>6}  {:<21}  {:<16} {}\n",
                    paint("2", when),
                    paint("36", rec.event.as_str()),
                    rec.conn.map(|c| c.to_string()).unwrap_or_default(),
                    who,
                    printable(&rec.name),
                    detail
                );
                w(out, &line)?;
            }
        }
    }
    out.flush().map_err(|e| Error::io("cannot write output", e))
}
