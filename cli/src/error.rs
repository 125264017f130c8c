//! The one error type of the binary: a message, an optional hint, and the
//! exit code they come with.

use std::fmt::Display;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

/// How a command failed, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Something failed while running: exit 1.
    Runtime,
    /// The command line or the configuration is wrong: exit 2.
    Usage,
    /// Whoever reads stdout went away: exit quietly.
    BrokenPipe,
    /// Ctrl-C: exit 130, as shells report SIGINT.
    Interrupted,
}

/// A failed command: `sigil: <message>` on stderr, then the hint if any.
#[derive(Debug)]
pub(crate) struct Failure {
    kind: Kind,
    message: String,
    hint: Option<String>,
}

impl Failure {
    /// A failure while running (exit code 1).
    pub(crate) fn runtime(message: impl Display) -> Failure {
        Failure {
            kind: Kind::Runtime,
            message: message.to_string(),
            hint: None,
        }
    }

    /// A usage or configuration error (exit code 2).
    pub(crate) fn usage(message: impl Display) -> Failure {
        Failure {
            kind: Kind::Usage,
            message: message.to_string(),
            hint: None,
        }
    }

    /// Stdout was closed by its reader.
    pub(crate) fn broken_pipe() -> Failure {
        Failure {
            kind: Kind::BrokenPipe,
            message: String::new(),
            hint: None,
        }
    }

    /// Ctrl-C stopped the command (exit code 130).
    pub(crate) fn interrupted(message: impl Display) -> Failure {
        Failure {
            kind: Kind::Interrupted,
            message: message.to_string(),
            hint: None,
        }
    }

    /// An I/O error on a named file (or stdin/stdout), as a runtime failure.
    pub(crate) fn io(action: &str, path: &Path, err: &io::Error) -> Failure {
        Failure::runtime(format_args!(
            "cannot {action} {}: {}",
            path.display(),
            plain_io_error(err)
        ))
    }

    /// Adds a second line saying what to do.
    pub(crate) fn hint(mut self, hint: impl Display) -> Failure {
        self.hint = Some(hint.to_string());
        self
    }

    /// Prints the failure on stderr and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let code = match self.kind {
            Kind::BrokenPipe => return ExitCode::SUCCESS,
            Kind::Runtime => 1,
            Kind::Usage => 2,
            Kind::Interrupted => 130,
        };
        let mut stderr = io::stderr().lock();
        let _ = writeln!(stderr, "sigil: {}", self.message);
        if let Some(hint) = &self.hint {
            let _ = writeln!(stderr, "{hint}");
        }
        ExitCode::from(code)
    }
}

/// An I/O error without the "(os error N)" suffix, lower-cased like the rest
/// of our messages ("No such file or directory" → "no such file or directory").
pub(crate) fn plain_io_error(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
