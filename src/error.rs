//! The crate's one error type: what went wrong, with which file or peer.

use std::fmt;
use std::io;

/// A `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can stop a binary or a server start-up.
#[derive(Debug)]
pub enum Error {
    /// An I/O operation failed; `context` says which file, socket or step.
    Io { context: String, source: io::Error },
    /// A data file is not in the documented format.
    Corrupt(String),
    /// A CSV file could not be read.
    Csv { context: String, source: csv::Error },
    /// The command line or configuration makes no sense.
    Config(String),
}

impl Error {
    /// An I/O error with the step or path it belongs to.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the error is a broken pipe on output: a reader such as `head` went away,
    /// which is a normal way for a viewer to end.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Corrupt(msg) => write!(f, "{msg}"),
            Error::Csv { context, source } => write!(f, "{context}: {source}"),
            Error::Config(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Csv { source, .. } => Some(source),
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
