//! Terminal concerns shared by `chat-client` and `chat-log`.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// Whether to colour output, from a `--color auto|always|never` setting: `auto` colours only a
/// terminal, and never when `NO_COLOR` is set to something (<https://no-color.org>).
pub fn color_enabled(setting: &str) -> bool {
    color_decision(
        setting,
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The decision of [`color_enabled`], without the process around it: `is_terminal` is
/// whether stdout is one, `no_color` the value of `NO_COLOR`. Per no-color.org, only a
/// non-empty value turns colour off: `NO_COLOR=` is as if it were unset.
pub fn color_decision(setting: &str, is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    match setting {
        "always" => true,
        "never" => false,
        _ => is_terminal && no_color.is_none_or(OsStr::is_empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_auto_off_only_when_it_has_a_value() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(color_decision("auto", true, None));
        assert!(
            color_decision("auto", true, empty),
            "NO_COLOR= keeps colour"
        );
        assert!(!color_decision("auto", true, set));
        assert!(!color_decision("auto", false, None), "not a terminal");
        assert!(!color_decision("auto", false, empty));
        // An explicit choice wins over the environment.
        assert!(color_decision("always", false, set));
        assert!(!color_decision("never", true, None));
    }
}
