//! Times as people read them: the file keeps UTC (RFC 3339); `chat-log` shows local time with
//! its offset (`2026-11-26 14:20:42 +09:00`), or UTC with `--utc` (`2026-11-26 05:20:42 UTC`).
//!
//! The zone is `chrono::Local`, which honours `TZ`. Converting is a time-zone lookup, so a
//! [`Clock`] remembers the last minute it converted: a log is in time order, and a million rows
//! cost a few thousand conversions.

use chrono::{Local, NaiveDateTime, Offset, Timelike};

use super::*;

/// Which zone times are shown in (and zoneless `--since`/`--until` are read in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// UTC, as the file holds it; shown with `UTC` after the time. The library's default,
    /// since it does not depend on the machine.
    #[default]
    Utc,
    /// The machine's zone (`TZ`, else `/etc/localtime`); shown with its offset.
    Local,
}

impl Zone {
    /// A UTC time in this zone: the wall-clock time and how to name the zone (`UTC`, `+09:00`).
    fn convert(self, t: DateTime<Utc>) -> (NaiveDateTime, String, i32) {
        match self {
            Zone::Utc => (t.naive_utc(), "UTC".to_string(), 0),
            Zone::Local => {
                let local = t.with_timezone(&Local);
                let offset = local.offset().fix();
                (
                    local.naive_local(),
                    offset.to_string(),
                    offset.local_minus_utc(),
                )
            }
        }
    }
}

/// Shows the file's timestamps in a zone, remembering the last minute converted.
#[derive(Debug, Clone, Default)]
pub(super) struct Clock {
    zone: Zone,
    /// The UTC minute last converted, as the file writes it (`2026-11-26T05:20`)...
    minute: String,
    /// ... that minute in `zone` (`2026-11-26 14:20`) ...
    shown: String,
    /// ... its hour there, for the statistics ...
    hour: u32,
    /// ... and the zone's name (`+09:00`).
    name: String,
}

impl Clock {
    pub fn new(zone: Zone) -> Clock {
        Clock {
            zone,
            ..Clock::default()
        }
    }

    /// Appends `ts` (a timestamp of the file) as `2026-11-26 14:20:42 +09:00`. Something that
    /// is not a time is shown as it is, cut after 19 characters (escaped by the caller's rules:
    /// it is only ever ASCII digits and punctuation when it passes here).
    pub fn push(&mut self, out: &mut String, ts: &str) {
        if let Some(seconds) = self.lookup(ts) {
            out.push_str(&self.shown);
            out.push(':');
            out.push_str(seconds);
            out.push(' ');
            out.push_str(&self.name);
            return;
        }
        match DateTime::parse_from_rfc3339(ts) {
            Ok(t) => {
                let (naive, name, _) = self.zone.convert(t.with_timezone(&Utc));
                out.push_str(&naive.format("%Y-%m-%d %H:%M:%S").to_string());
                out.push(' ');
                out.push_str(&name);
            }
            Err(_) => {
                let at = out.len();
                push_printable(out, ts);
                if let Some(cut) = out[at..].char_indices().nth(19).map(|(i, _)| at + i) {
                    out.truncate(cut);
                }
            }
        }
    }

    /// The hour of day of `ts` in the zone, if it is a time.
    pub fn hour(&mut self, ts: &[u8]) -> Option<u32> {
        let ts = std::str::from_utf8(ts).ok()?;
        if self.lookup(ts).is_some() {
            return Some(self.hour);
        }
        let t = DateTime::parse_from_rfc3339(ts).ok()?;
        Some(self.zone.convert(t.with_timezone(&Utc)).0.hour())
    }

    /// The seconds of `ts` when its minute is the remembered one (converted now if `ts` is a
    /// plain UTC time, `2026-11-26T05:20:42.123Z`); `None` for any other form.
    fn lookup<'t>(&mut self, ts: &'t str) -> Option<&'t str> {
        let b = ts.as_bytes();
        let plain = b.len() >= 20
            && b[10] == b'T'
            && b[16] == b':'
            && b[17..19].iter().all(u8::is_ascii_digit)
            && ts.ends_with('Z');
        if !plain {
            return None;
        }
        let (minute, seconds) = (&ts[..16], &ts[17..19]);
        if self.minute != minute {
            let t = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
            let (naive, name, offset) = self.zone.convert(t);
            // An offset with seconds (old local mean times) moves the seconds too.
            if offset % 60 != 0 {
                return None;
            }
            self.minute.clear();
            self.minute.push_str(minute);
            self.shown = naive.format("%Y-%m-%d %H:%M").to_string();
            self.hour = naive.hour();
            self.name = name;
        }
        Some(seconds)
    }
}
