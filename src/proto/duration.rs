//! Durations as people type and read them: `30s`, `10m`, `2h`, `7d`, `2w` in, `1m 30s` out.
//! One definition for bans, mutes and `chat-log` alike.

use std::time::Duration;

/// A duration such as `30s`, `10m`, `2h`, `7d`, `2w`; `None` for anything else, for zero,
/// and for a duration too long to count in seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(7 * 86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// `90 s` → "1m 30s", in whole seconds, with the two largest units that matter.
pub fn display(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, s) => format!("{m}m {s}s"),
        (0, h, m, _) => format!("{h}h {m}m"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("spam"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("0m"), None);
        assert_eq!(parse_duration("99999999999999999999w"), None);
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn displayed_with_the_two_largest_units() {
        let show = |s| display(Duration::from_secs(s));
        assert_eq!(show(0), "0s");
        assert_eq!(show(59), "59s");
        assert_eq!(show(600), "10m");
        assert_eq!(show(90), "1m 30s");
        assert_eq!(show(7260), "2h 1m");
        assert_eq!(show(90_000), "1d 1h");
    }
}
