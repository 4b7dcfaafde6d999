//! The load generator's parsing helpers.

use super::*;
use crate::bench::suite::fmt_num;

#[test]
fn tracker_counts_gaps_duplicates_and_latency() {
    let mut t = Tracker::new(1, 2);
    let line = |s: u64, q: u64, ns: u64| {
        format!(
            r#"{{"type":"message","id":1,"ts":"x","room":"lobby","from":"s","text":"B {s} {q} {ns} xxx"}}"#
        )
    };
    t.line(0, line(0, 0, 1_000_000).as_bytes(), 3_000_000);
    t.line(0, line(0, 2, 1_000_000).as_bytes(), 3_000_000);
    t.line(0, line(0, 2, 1_000_000).as_bytes(), 3_000_000);
    t.line(0, line(1, 0, 1_000_000).as_bytes(), 2_000_000);
    t.line(0, br#"{"type":"joined"}"#, 0);
    t.line(
        0,
        line(0, 9, 1).replace('}', r#","history":true}"#).as_bytes(),
        2,
    );
    assert_eq!(t.deliveries, 3);
    assert_eq!(t.gaps, 1);
    assert_eq!(t.duplicated, 1);
    assert_eq!(t.hist.len(), 3);
    assert!((t.hist.max() as f64 - 2_000_000.0).abs() < 5_000.0);
}

#[test]
fn summary_reports_median_min_max() {
    let mut s = Summary::default();
    for v in [3.0, 1.0, 2.0] {
        s.add("x", v);
    }
    assert!(s.markdown().contains("| x | 2.00 | 1.00 | 3.00 |"));
    assert_eq!(fmt_num(1234567.0), "1,234,567");
}

/// The send floor measures real sends: a positive, finite time per send.
#[test]
fn the_send_floor_is_a_real_time_per_send() {
    let us = send_floor_us(20, 100, 3).unwrap();
    assert!(us.is_finite() && us > 0.0 && us < 10_000.0, "{us}");
}
