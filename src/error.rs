//! The crate's one error type: what went wrong (its [`ErrorKind`]), in which file, and where
//! in it, as rust-csv's errors do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can stop a binary or a server start-up.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// The file it concerns, where there is one.
    path: Option<PathBuf>,
    /// Where in that file, where that is known.
    position: Option<Position>,
}

/// Where in a file an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The byte offset of the record (or line) at fault.
    pub byte: u64,
    /// Its line number (from 1), when it was counted.
    pub line: Option<u64>,
}

/// What went wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// An I/O operation failed; `doing` says which step (and usually which file or socket).
    Io { doing: String, source: io::Error },
    /// A CSV file could not be read or written.
    Csv { doing: String, source: csv::Error },
    /// A data file is not in its documented format.
    Corrupt(String),
    /// A setting (a flag, an environment variable, a file it names) makes no sense: a usage
    /// error, for which the binaries exit with code 2.
    Setting(String),
    /// An account cannot be added, changed or used as asked.
    Account(String),
    /// A certificate, key or TLS configuration cannot be used.
    Tls(String),
    /// The other side (a server that `chat-client` or `chat-bench` talks to) did not answer
    /// as the protocol says, or refused.
    Peer(String),
    /// Another chat-server holds the data directory.
    Busy(String),
}

impl Error {
    fn new(kind: ErrorKind) -> Error {
        Error {
            kind,
            path: None,
            position: None,
        }
    }

    /// An I/O error with the step or path it belongs to.
    pub fn io(doing: impl Into<String>, source: io::Error) -> Error {
        Error::new(ErrorKind::Io {
            doing: doing.into(),
            source,
        })
    }

    /// A CSV error with the step it belongs to; its position is the CSV reader's.
    pub fn csv(doing: impl Into<String>, source: csv::Error) -> Error {
        let position = source.position().map(|p| Position {
            byte: p.byte(),
            line: Some(p.line()),
        });
        Error {
            position,
            ..Error::new(ErrorKind::Csv {
                doing: doing.into(),
                source,
            })
        }
    }

    /// A file not in its format.
    pub fn corrupt(problem: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt(problem.into()))
    }

    /// A setting that makes no sense.
    pub fn setting(problem: impl Into<String>) -> Error {
        Error::new(ErrorKind::Setting(problem.into()))
    }

    /// An account operation that cannot be done.
    pub fn account(problem: impl Into<String>) -> Error {
        Error::new(ErrorKind::Account(problem.into()))
    }

    /// A TLS configuration that cannot be used.
    pub fn tls(problem: impl Into<String>) -> Error {
        Error::new(ErrorKind::Tls(problem.into()))
    }

    /// A peer that broke the protocol or refused.
    pub fn peer(problem: impl Into<String>) -> Error {
        Error::new(ErrorKind::Peer(problem.into()))
    }

    /// A data directory held by another server.
    pub fn busy(problem: impl Into<String>) -> Error {
        Error::new(ErrorKind::Busy(problem.into()))
    }

    /// The same error, about the file at `path`.
    pub fn in_file(mut self, path: &Path) -> Error {
        self.path = Some(path.to_path_buf());
        self
    }

    /// The same error, at byte `byte` of its file.
    pub fn at_byte(mut self, byte: u64) -> Error {
        self.position = Some(Position { byte, line: None });
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The file it concerns, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where in the file, if known.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// True for a usage error: a setting that makes no sense.
    pub fn is_setting(&self) -> bool {
        matches!(self.kind, ErrorKind::Setting(_))
    }

    /// True when the error is a broken pipe on output: a reader such as `head` went away,
    /// which is a normal way for a viewer to end.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(&self.kind, ErrorKind::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        // A CSV error says where itself.
        if let (Some(p), false) = (self.position, matches!(self.kind, ErrorKind::Csv { .. })) {
            match p.line {
                Some(line) => write!(f, "line {line} (byte {}): ", p.byte)?,
                None => write!(f, "byte {}: ", p.byte)?,
            }
        }
        match &self.kind {
            ErrorKind::Io { doing, source } => write!(f, "{doing}: {source}"),
            ErrorKind::Csv { doing, source } => write!(f, "{doing}: {source}"),
            ErrorKind::Corrupt(m)
            | ErrorKind::Setting(m)
            | ErrorKind::Account(m)
            | ErrorKind::Tls(m)
            | ErrorKind::Peer(m)
            | ErrorKind::Busy(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            ErrorKind::Csv { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// True for the errors that mean "the peer went away": normal life for a chat server.
pub fn is_hangup(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_says_what_where_and_in_which_file() {
        let e = Error::corrupt("the row is not valid UTF-8")
            .in_file(Path::new("data/messages.csv"))
            .at_byte(4096);
        assert!(matches!(e.kind(), ErrorKind::Corrupt(_)));
        assert_eq!(e.position().map(|p| p.byte), Some(4096));
        assert_eq!(
            e.to_string(),
            "data/messages.csv: byte 4096: the row is not valid UTF-8"
        );
        assert!(Error::setting("--max-line must be at least 1").is_setting());
        let io = Error::io("cannot open x", io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(io.is_broken_pipe() && io.path().is_none());
    }
}
