//! Terminal concerns shared by `chat-client` and `chat-log`.

use std::io::IsTerminal;

/// Whether to colour output, from a `--color auto|always|never` setting: `auto` colours only a
/// terminal, and never when `NO_COLOR` is set (<https://no-color.org>).
pub fn color_enabled(setting: &str) -> bool {
    match setting {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}
