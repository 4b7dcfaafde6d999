//! Which messages to show: room, sender, recipient, time, text.

use super::*;

/// Which messages to show; every set field must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Room name, compared case-insensitively without the `#`.
    pub room: Option<String>,
    /// Sender name, case-insensitive.
    pub from: Option<String>,
    /// Recipient of a direct message, case-insensitive.
    pub to: Option<String>,
    /// At or after this time (RFC 3339 strings compare in time order at equal precision; parsed
    /// values are compared here).
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// A regular expression the text must match.
    pub grep: Option<Regex>,
    /// Only direct messages (`Some(true)`), or none (`Some(false)`).
    pub dm: Option<bool>,
}

/// Case-insensitive equality without allocating for ASCII (names are mostly ASCII).
pub(super) fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        crate::proto::names::fold(a) == crate::proto::names::fold(b)
    }
}

impl Filter {
    /// Whether the raw row `rec` (the columns of `messages.csv`) passes every condition,
    /// without building a [`MessageRecord`] or even checking UTF-8 of the fields it does not
    /// look at: this is the per-row cost of `chat-log`.
    pub fn matches_row(&self, rec: &csv::ByteRecord) -> bool {
        self.matches_fields(|i| rec.get(i))
    }

    /// [`Filter::matches_row`] on a row's fields however they are held: `get(i)` is field
    /// `i`, if the row has it.
    pub(super) fn matches_fields<'a>(&self, get: impl Fn(usize) -> Option<&'a [u8]>) -> bool {
        let field = |i: usize| get(i).unwrap_or(b"");
        let same = |a: &[u8], b: &str| {
            a.eq_ignore_ascii_case(b.as_bytes())
                || (!a.is_ascii() && std::str::from_utf8(a).is_ok_and(|a| same_name(a, b)))
        };
        if let Some(room) = &self.room
            && !same(field(M::ROOM), proto::room_display(room))
        {
            return false;
        }
        if let Some(from) = &self.from
            && !same(field(M::SENDER), from)
        {
            return false;
        }
        if let Some(to) = &self.to
            && !same(field(M::RECIPIENT), to)
        {
            return false;
        }
        if let Some(dm) = self.dm
            && dm != (field(M::KIND) == b"direct")
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(ts) = std::str::from_utf8(field(M::TIMESTAMP))
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            else {
                return false;
            };
            let ts = ts.with_timezone(&Utc);
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        if let Some(re) = &self.grep
            && !std::str::from_utf8(field(M::TEXT)).is_ok_and(|t| re.is_match(t))
        {
            return false;
        }
        true
    }

    /// The text every matching row holds as it is in the file, when `--grep` is a plain
    /// literal: without regex syntax (so it matches as a substring) and without a quote (which
    /// the file doubles). A chunk of the file without it has no row to show.
    pub fn literal(&self) -> Option<&str> {
        let pattern = self.grep.as_ref()?.as_str();
        let plain =
            !pattern.is_empty() && !pattern.contains('"') && regex::escape(pattern) == pattern;
        plain.then_some(pattern)
    }

    /// Whether `rec` passes every condition.
    pub fn matches(&self, rec: &MessageRecord) -> bool {
        let same = |a: &str, b: &str| crate::proto::names::fold(a) == crate::proto::names::fold(b);
        if let Some(room) = &self.room
            && proto::room_key(&rec.room) != proto::room_key(room)
        {
            return false;
        }
        if let Some(from) = &self.from
            && !same(&rec.sender, from)
        {
            return false;
        }
        if let Some(to) = &self.to
            && !same(&rec.recipient, to)
        {
            return false;
        }
        if let Some(dm) = self.dm
            && dm != (rec.kind == Kind::Direct)
        {
            return false;
        }
        if !super::filter::in_window(self.since, self.until, &rec.timestamp) {
            return false;
        }
        if let Some(re) = &self.grep
            && !re.is_match(&rec.text)
        {
            return false;
        }
        true
    }
}

/// A point in time for `--since`/`--until`: RFC 3339 (`2026-11-23T16:00:00Z`), a date and
/// time without a zone (`2026-11-23T16:00:00`, `2026-11-23 16:00`), a date (`2026-11-23`,
/// its midnight), `today`, `yesterday`, or a duration back from `now` (`30m`, `2h`, `7d`).
/// A time without a zone, a date, `today` and `yesterday` are in `now`'s zone: pass
/// `chrono::Local::now()` for local time, `Utc::now()` for UTC.
pub fn parse_when<Tz: chrono::TimeZone>(
    s: &str,
    now: DateTime<Tz>,
) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let tz = now.timezone();
    let at = |naive: chrono::NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            // In a gap (the clock turned forward): the first time after it.
            .or_else(|| {
                tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{s:?} is not a time in this zone"))
    };
    let midnight = |d: chrono::NaiveDate| at(d.and_time(chrono::NaiveTime::MIN));
    let today = now.date_naive();
    match s {
        "today" => return midnight(today),
        "yesterday" => {
            return today
                .pred_opt()
                .ok_or_else(|| s.to_string())
                .and_then(midnight);
        }
        _ => {}
    }
    for form in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, form) {
            return at(t);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return midnight(d);
    }
    if let Some(d) = crate::proto::parse_duration(s) {
        let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
        return Ok(now.with_timezone(&Utc) - d);
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-23T16:00:00Z), a local time (2026-11-23T16:00), a date (2026-11-23), today, yesterday, or 30m/2h/7d ago"
    ))
}

/// Whether a row's `timestamp` lies in `[since, until)`; with either bound set, a row whose
/// time cannot be read is outside.
pub(super) fn in_window(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    timestamp: &str,
) -> bool {
    if since.is_none() && until.is_none() {
        return true;
    }
    let Ok(ts) = DateTime::parse_from_rfc3339(timestamp) else {
        return false;
    };
    let ts = ts.with_timezone(&Utc);
    since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts < u)
}
