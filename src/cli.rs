//! What every binary offers besides its own work, written once: shell completions
//! (`--completions bash|zsh|fish`, via clap_complete) and man pages (`--man DIR`, via
//! clap_mangen, which `scripts/man.sh` runs to fill `man/`). Both flags are hidden: they are
//! for packagers and the README, not for everyday `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use clap_complete::Shell;

/// The flags each binary flattens into its own (`#[command(flatten)] extras: Extras`).
#[derive(clap::Args, Debug, Default)]
pub struct Extras {
    /// Print the completion script for this shell (bash, zsh, fish, elvish, powershell) and
    /// exit.
    #[arg(long, value_name = "SHELL", value_enum, hide = true)]
    pub completions: Option<Shell>,
    /// Write this program's man pages (one per subcommand too) into DIR and exit.
    #[arg(long, value_name = "DIR", hide = true)]
    pub man: Option<PathBuf>,
}

impl Extras {
    /// Does what a flag asked and says how to exit, or `None` when neither was given and the
    /// binary goes on with its own work. `cmd` is the binary's whole command
    /// (`Args::command()`).
    pub fn run(&self, cmd: clap::Command) -> Option<ExitCode> {
        let name = cmd.get_name().to_string();
        let outcome = if let Some(shell) = self.completions {
            let mut out = std::io::stdout().lock();
            print_completions(shell, cmd, &mut out)
        } else if let Some(dir) = &self.man {
            write_man_pages(cmd, dir)
        } else {
            return None;
        };
        Some(match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        })
    }
}

/// Writes the completion script of `cmd` for `shell`.
pub fn print_completions(
    shell: Shell,
    mut cmd: clap::Command,
    out: &mut dyn Write,
) -> crate::Result<()> {
    let name = cmd.get_name().to_string();
    // clap_complete writes without reporting errors; buffer, then write once and see.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|e| crate::Error::io("cannot write the completion script", e))
}

/// Writes `NAME.1` for `cmd` and `NAME-SUB.1` for each visible subcommand into `dir`
/// (created if missing).
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> crate::Result<()> {
    let io = |e| crate::Error::io(format!("cannot write man pages into {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    clap_mangen::generate_to(cmd, dir).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("demo")
            .version("1.0")
            .arg(
                clap::Arg::new("verbose")
                    .long("verbose")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(clap::Command::new("list").about("List things."))
    }

    #[test]
    fn completions_name_the_program_for_every_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            print_completions(shell, command(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("demo") && text.contains("verbose"),
                "{shell}: {text}"
            );
        }
    }

    #[test]
    fn man_pages_cover_the_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        write_man_pages(command(), &dir.path().join("man")).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/demo.1")).unwrap();
        assert!(page.contains(".TH demo"), "{page}");
        assert!(dir.path().join("man/demo-list.1").exists());
    }
}
