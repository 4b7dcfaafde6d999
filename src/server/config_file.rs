//! `chat-server --config FILE`: a flat TOML file of flags, turned into command-line arguments.
//!
//! The keys are the long flags of the command without their dashes (`max-clients = 5000`;
//! `max_clients` is the same key), a switch takes `true` or `false`, a repeatable flag takes
//! an array. The file's settings become `--key=value` arguments placed *before* the command
//! line's own, so clap parses them with every flag's own parser and, as the command overrides
//! a flag given twice, a flag on the command line wins. A key whose environment variable is set
//! is left out, since clap reads a variable only for a flag that no argument gave: the order is
//! flag, then environment, then file, then default. Nothing but clap knows the flags, so a new
//! flag is a key at once and a wrong key is refused, with its line, before anything starts.

use std::ffi::{OsStr, OsString};
use std::ops::Range;
use std::path::Path;

use clap::builder::Resettable;
use clap::{Arg, ArgAction, Command};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Error, Result};

/// The long name of the flag that names the file.
pub const FLAG: &str = "config";

/// The arguments to parse: `args` (the program name first, as `std::env::args_os` gives them)
/// with the settings of the file named by `--config` (or its environment variable) inserted
/// after the program name. `cmd` is the command `args` are for; it must have a `--config`
/// flag. Without a file, `args` come back as they are; arguments clap would refuse are left
/// for clap's own parse to report.
pub fn args_with_file(
    cmd: &Command,
    args: impl IntoIterator<Item = OsString>,
) -> Result<Vec<OsString>> {
    let args: Vec<OsString> = args.into_iter().collect();
    let Some(path) = file_named(cmd, &args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::setting(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    let settings = file_args(cmd, &path, &text, |var| std::env::var_os(var).is_some())?;
    let mut all = Vec::with_capacity(args.len() + settings.len());
    all.extend(args.first().cloned());
    all.extend(settings);
    all.extend(args.into_iter().skip(1));
    Ok(all)
}

/// The arguments that say what `text` (the file at `path`) says, in the file's order; a key
/// whose environment variable `env_is_set` is left out.
pub fn file_args(
    cmd: &Command,
    path: &Path,
    text: &str,
    env_is_set: impl Fn(&OsStr) -> bool,
) -> Result<Vec<OsString>> {
    let at = |span: Range<usize>, problem: String| {
        let line = line_of(text, span.start);
        Error::setting(format!("{} line {line}: {problem}", path.display()))
    };
    let table = DeTable::parse(text).map_err(|e| {
        at(
            e.span().unwrap_or(0..0),
            format!("not valid TOML: {}", e.message().trim_end()),
        )
    })?;
    let mut entries: Vec<(&Spanned<_>, &Spanned<DeValue>)> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let keys = keys(cmd);
    let mut seen: Vec<(&Arg, Range<usize>)> = Vec::new();
    let mut out = Vec::new();
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let Some(arg) = keys
            .iter()
            .copied()
            .find(|a| a.get_long() == Some(&name.replace('_', "-")))
        else {
            return Err(at(
                key.span(),
                unknown(name, value.get_ref().is_table(), &keys),
            ));
        };
        let long = arg.get_long().unwrap_or_default();
        if let Some((_, first)) = seen.iter().find(|(a, _)| a.get_id() == arg.get_id()) {
            let line = line_of(text, first.start);
            return Err(at(
                key.span(),
                format!("{long} is set twice (line {line} and here)"),
            ));
        }
        seen.push((arg, key.span()));
        if arg.get_env().is_some_and(&env_is_set) {
            continue;
        }
        for v in
            values(arg, value).map_err(|problem| at(value.span(), format!("{long}: {problem}")))?
        {
            let one = match v {
                None => OsString::from(format!("--{long}")),
                Some(v) => {
                    check(arg, &v).map_err(|problem| at(value.span(), problem))?;
                    OsString::from(format!("--{long}={v}"))
                }
            };
            out.push(one);
        }
    }
    Ok(out)
}

/// The line (from 1) of the byte at `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// Where `--config` (or its environment variable) points, if anywhere.
fn file_named(cmd: &Command, args: &[OsString]) -> Option<std::path::PathBuf> {
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(FLAG))?;
    // A partial parse: a missing subcommand argument or a bad value elsewhere is clap's to
    // report in the real parse, with the file's settings in place.
    let matches = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?;
    let mut raw = matches.try_get_raw(arg.get_id().as_str()).ok()??;
    raw.next_back().map(Into::into)
}

/// The flags a file may set: every long flag of the command but `--config`, `--help` and
/// `--version` (subcommands' flags are not the command's).
fn keys(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| {
            // Hidden flags (`--completions`, `--man`) are one-off actions, not settings.
            !a.is_positional()
                && !a.is_hide_set()
                && a.get_long().is_some_and(|l| l != FLAG)
                && !matches!(
                    a.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                )
        })
        .collect()
}

/// What an unknown key gets told: the nearest key, when one is near.
fn unknown(name: &str, table: bool, keys: &[&Arg]) -> String {
    let wanted = name.replace('_', "-");
    let nearest = keys
        .iter()
        .filter_map(|a| a.get_long())
        .map(|l| (strsim::jaro(&wanted, l), l))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((score, long)) if score > 0.8 => {
            format!("unknown key \"{name}\"; did you mean \"{long}\"?")
        }
        _ if table => format!("unknown key \"{name}\" (the file is flat: no [sections])"),
        _ => format!(
            "unknown key \"{name}\" (the keys are chat-server's flags without their dashes, \
             see --help)"
        ),
    }
}

/// The values `value` gives the flag `arg`: `None` for a switch that is on, the text of each
/// value for a flag that takes one. Or what is wrong with its type.
fn values(arg: &Arg, value: &Spanned<DeValue>) -> std::result::Result<Vec<Option<String>>, String> {
    let switch = matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    );
    match value.get_ref() {
        DeValue::Boolean(on) if switch => Ok(if *on { vec![None] } else { vec![] }),
        _ if switch => Err(format!(
            "is a switch: true or false, not {}",
            kind(value.get_ref())
        )),
        DeValue::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items
            .iter()
            .map(|item| scalar(item.get_ref()).map(Some))
            .collect(),
        v => scalar(v).map(|s| vec![Some(s)]),
    }
}

/// The text of a string or a number, as it would be written on the command line.
fn scalar(value: &DeValue) -> std::result::Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|e| format!("{i}: {e}")),
        DeValue::Float(f) => Ok(f.as_str().to_string()),
        other => Err(format!("takes a string or a number, not {}", kind(other))),
    }
}

/// The name of a TOML value's type, for an error.
fn kind(value: &DeValue) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Parses `value` with the flag's own parser, so that a value clap would refuse is refused
/// here, with its line. The flag alone: its `requires` and conflicts are the real parse's.
fn check(arg: &Arg, value: &str) -> std::result::Result<(), String> {
    let alone = arg
        .clone()
        .required(false)
        .requires(Resettable::Reset)
        .conflicts_with(Resettable::Reset)
        .overrides_with(Resettable::Reset)
        .required_unless_present(Resettable::Reset)
        .group(Resettable::Reset);
    let probe = Command::new("chat-server")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .color(clap::ColorChoice::Never)
        .arg(alone);
    let flag = format!("--{}={value}", arg.get_long().unwrap_or_default());
    probe.try_get_matches_from([flag]).map(drop).map_err(|e| {
        // clap's message without its "error: " and its pointer to --help, on one line.
        let text = e.render().to_string();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
            .map(|l| l.strip_prefix("error: ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::Config;

    /// `chat-server`'s shape: `--bind`, `--config` and the flattened [`Config`].
    #[derive(Parser, Debug)]
    #[command(args_override_self = true)]
    struct Cli {
        #[arg(long, env = "CHAT_BIND", default_value = "0.0.0.0:5555")]
        bind: String,
        #[arg(long = "config", env = "CHAT_CONFIG_TEST_UNSET")]
        config_file: Option<PathBuf>,
        #[command(flatten)]
        config: Config,
    }

    const PATH: &str = "/etc/chatroom/chat-server.toml";

    fn args(text: &str) -> std::result::Result<Vec<String>, String> {
        args_env(text, &[])
    }

    fn args_env(text: &str, set: &[&str]) -> std::result::Result<Vec<String>, String> {
        file_args(&Cli::command(), Path::new(PATH), text, |v| {
            set.iter().any(|s| OsStr::new(s) == v)
        })
        .map(|a| a.into_iter().map(|a| a.into_string().unwrap()).collect())
        .map_err(|e| {
            assert!(e.is_setting(), "{e}");
            e.to_string()
        })
    }

    /// The file's arguments, then the command line's, parsed as chat-server would.
    fn parse(text: &str, command_line: &[&str]) -> Cli {
        let mut all = vec!["chat-server".to_string()];
        all.extend(args(text).unwrap());
        all.extend(command_line.iter().map(|s| s.to_string()));
        Cli::try_parse_from(all).unwrap()
    }

    const FILE: &str = r#"
# A comment.
bind = "127.0.0.1:7000"
max-clients = 5000
data_dir = "/var/lib/chatroom"
fsync = "always"
msg-rate = 0.5
limit-loopback = true
private = false
login-delay = 2
"#;

    #[test]
    fn each_key_becomes_its_flag_in_the_file_order() {
        assert_eq!(
            args(FILE).unwrap(),
            [
                "--bind=127.0.0.1:7000",
                "--max-clients=5000",
                "--data-dir=/var/lib/chatroom",
                "--fsync=always",
                "--msg-rate=0.5",
                "--limit-loopback",
                "--login-delay=2",
            ]
        );
        assert_eq!(args("").unwrap(), Vec::<String>::new());
        assert_eq!(args("max-line = 0x10").unwrap(), ["--max-line=16"]);
    }

    #[test]
    fn values_from_the_file_take_effect_and_flags_win() {
        let cli = parse(FILE, &[]);
        assert_eq!(cli.bind, "127.0.0.1:7000");
        assert_eq!(cli.config.connection.max_clients, Some(5000));
        assert_eq!(cli.config.data_dir, Path::new("/var/lib/chatroom"));
        assert_eq!(cli.config.chat.fsync, crate::store::Fsync::Always);
        assert!(cli.config.limits.limit_loopback && !cli.config.login.private);
        let cli = parse(
            FILE,
            &["--max-clients", "7", "--bind=127.0.0.1:0", "--private"],
        );
        assert_eq!(cli.config.connection.max_clients, Some(7));
        assert_eq!(cli.bind, "127.0.0.1:0");
        assert!(cli.config.login.private);
        assert_eq!(cli.config.chat.msg_rate, 0.5);
    }

    #[test]
    fn a_key_whose_environment_variable_is_set_is_left_to_it() {
        let got = args_env("max-line = 10\nhistory = 3\n", &["CHAT_MAX_LINE"]).unwrap();
        assert_eq!(got, ["--history=3"]);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line_and_the_nearest_key() {
        let err = args("bind = \"127.0.0.1:0\"\n\n# max\nmax-client = 5\n").unwrap_err();
        assert_eq!(
            err,
            format!("{PATH} line 4: unknown key \"max-client\"; did you mean \"max-clients\"?")
        );
        for (text, line) in [
            ("config = \"other.toml\"", 1),
            ("help = true", 1),
            ("\nout = \"tls\"", 2),
            ("[server]\nbind = \"x\"", 1),
            ("\n\nserver.bind = \"x\"", 3),
            ("zzz = 1", 1),
        ] {
            let err = args(text).unwrap_err();
            assert!(
                err.starts_with(&format!("{PATH} line {line}: unknown key")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_syntax_error_is_refused_with_its_line() {
        for (text, line) in [
            ("bind = \"x\"\nmax-line 5\n", 2),
            ("bind = \"x\"\n\nmax-line = \n", 3),
            ("history = 1\nhistory = 2\n", 2),
            ("bind = \"unterminated\n", 1),
        ] {
            let err = args(text).unwrap_err();
            assert!(
                err.starts_with(&format!("{PATH} line {line}: not valid TOML: ")),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_with_its_line() {
        for (text, line, says) in [
            (
                "private = \"yes\"",
                1,
                "private: is a switch: true or false, not a string",
            ),
            (
                "\nmax-line = true",
                2,
                "max-line: takes a string or a number, not a boolean",
            ),
            (
                "max-line = [1, 2]",
                1,
                "max-line: takes a string or a number, not an array",
            ),
            (
                "max-line = \"many\"",
                1,
                "invalid value 'many' for '--max-line",
            ),
            ("max-line = -1", 1, "invalid value '-1' for '--max-line"),
            (
                "fsync = \"sometimes\"",
                1,
                "[possible values: always, batch, never]",
            ),
            ("ping-interval = -1.5", 1, "a number of seconds"),
            (
                "max-line = 1\nmax_line = 2",
                2,
                "max-line is set twice (line 1 and here)",
            ),
        ] {
            let err = args(text).unwrap_err();
            assert!(
                err.starts_with(&format!("{PATH} line {line}: ")) && err.contains(says),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_file_goes_before_the_command_line_and_none_changes_nothing() {
        let cmd = Cli::command();
        let plain: Vec<OsString> = ["chat-server", "--max-line", "9"].map(Into::into).to_vec();
        assert_eq!(args_with_file(&cmd, plain.clone()).unwrap(), plain);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "max-line = 100\nhistory = 3\n").unwrap();
        let given: Vec<OsString> = vec![
            "chat-server".into(),
            "--config".into(),
            file.clone().into(),
            "--max-line".into(),
            "9".into(),
        ];
        let all = args_with_file(&cmd, given.clone()).unwrap();
        assert_eq!(
            all[1..3],
            [OsString::from("--max-line=100"), "--history=3".into()]
        );
        assert_eq!(all[3..], given[1..]);
        let cli = Cli::try_parse_from(all).unwrap();
        assert_eq!(cli.config.connection.max_line, 9);
        assert_eq!(cli.config.chat.history, 3);

        let missing = dir.path().join("missing.toml");
        let err = args_with_file(
            &cmd,
            [
                "chat-server".into(),
                format!("--config={}", missing.display()).into(),
            ],
        )
        .unwrap_err();
        assert!(err.is_setting());
        assert!(
            err.to_string().starts_with("cannot read the config file"),
            "{err}"
        );
    }
}
