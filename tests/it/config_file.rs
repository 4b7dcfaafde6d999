//! `chat-server --config FILE` as an operator runs it: the file's values take effect, a flag or
//! an environment variable wins over them, and a bad file is a usage error that names its line.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{TIMEOUT, wait_timeout, wait_timeout_output};

const SERVER: &str = env!("CARGO_BIN_EXE_chat-server");

/// The variables that would win over the files of these tests, if the caller had them set.
const OVERRIDES: [&str; 5] = [
    "CHAT_BIND",
    "CHAT_DATA_DIR",
    "CHAT_HISTORY",
    "CHAT_MAX_LINE",
    "CHAT_CONFIG",
];

/// `chat-server` with `args`, the environment cleared of [`OVERRIDES`] and then given `env`.
fn server(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(SERVER);
    for var in OVERRIDES {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What became of a server start: the line it printed once listening, or its exit code and
/// stderr.
#[derive(Debug)]
enum Outcome {
    Listening(String),
    Refused(Option<i32>, String),
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut child = server(args, env).spawn().expect("spawn chat-server");
    let mut first = String::new();
    // The first line comes at once, or stdout closes as the process exits.
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    if first.starts_with("listening on ") {
        child.kill().unwrap();
        wait_timeout(child, TIMEOUT);
        return Outcome::Listening(first.trim().to_string());
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Outcome::Refused(wait_timeout(child, TIMEOUT).code(), stderr)
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("chat-server.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_config_file_sets_the_server_and_its_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write_config(
        dir.path(),
        &format!(
            "# Where and what.\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\nfsync = \"never\"\n",
            data.to_str().unwrap()
        ),
    );
    match start(&["--config", &file], &[]) {
        Outcome::Listening(line) => assert!(line.starts_with("listening on 127.0.0.1:"), "{line}"),
        refused => panic!("{refused:?}"),
    }
    assert!(data.join("messages.csv").exists(), "data-dir from the file");

    // `users` takes its data directory from the file too.
    let mut child = server(&["--config", &file, "users", "add", "alice"], &[])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long password\n")
        .unwrap();
    let (status, stdout, stderr) = wait_timeout_output(child);
    assert!(status.success(), "{stdout}{stderr}");
    let users = std::fs::read_to_string(data.join("users.csv")).unwrap();
    assert!(users.contains("alice"), "{users}");
}

/// `history = 300` is refused (it is more than `--history-keep`), which shows the file's value
/// was used; a flag or an environment variable that sets it back lets the server start.
#[test]
fn a_flag_or_an_environment_variable_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &format!(
            "bind = \"127.0.0.1:0\"\ndata-dir = {:?}\nhistory = 300\n",
            dir.path().to_str().unwrap()
        ),
    );
    match start(&["--config", &file], &[]) {
        Outcome::Refused(Some(2), stderr) => {
            assert!(stderr.contains("--history (300)"), "{stderr}")
        }
        other => panic!("the file's history was not used: {other:?}"),
    }
    for (args, env) in [
        (vec!["--config", &file, "--history", "10"], vec![]),
        (vec!["--history=10", "--config", &file], vec![]),
        (vec!["--config", &file], vec![("CHAT_HISTORY", "10")]),
        (
            vec![],
            vec![("CHAT_CONFIG", file.as_str()), ("CHAT_HISTORY", "10")],
        ),
    ] {
        let outcome = start(&args, &env);
        assert!(
            matches!(outcome, Outcome::Listening(_)),
            "{args:?} {env:?}: {outcome:?}"
        );
    }
}

#[test]
fn a_bad_config_file_is_a_usage_error_that_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        (
            "bind = \"127.0.0.1:0\"\n\n# The most.\nmax-client = 5000\n",
            "line 4: unknown key \"max-client\"; did you mean \"max-clients\"?",
        ),
        (
            "bind = \"127.0.0.1:0\"\nmax-line 5\n",
            "line 2: not valid TOML",
        ),
        (
            "\nmax-line = true\n",
            "line 2: max-line: takes a string or a number",
        ),
        (
            "private = 1\n",
            "line 1: private: is a switch: true or false",
        ),
        ("\n\nmax-line = \"long\"\n", "line 3: invalid value 'long'"),
    ] {
        let file = write_config(dir.path(), text);
        match start(&["--config", &file], &[]) {
            Outcome::Refused(Some(2), stderr) => {
                let first = stderr.lines().next().unwrap_or_default();
                assert_eq!(
                    first.split_once(" line ").map(|(before, _)| before),
                    Some(format!("chat-server: {file}").as_str()),
                    "{text:?}: {stderr}"
                );
                assert!(first.contains(says), "{text:?}: {stderr}");
                assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let missing = dir.path().join("missing.toml");
    match start(&["--config", missing.to_str().unwrap()], &[]) {
        Outcome::Refused(Some(2), stderr) => {
            assert!(stderr.contains("cannot read the config file"), "{stderr}")
        }
        other => panic!("{other:?}"),
    }
}

/// The example in `scripts/` is a file the server accepts as it is.
#[test]
fn the_example_config_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chat-server.toml");
    let data = dir.path().to_str().unwrap();
    match start(
        &[
            "--config",
            example,
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            data,
        ],
        &[],
    ) {
        Outcome::Listening(_) => {}
        refused => panic!("{refused:?}"),
    }
}
