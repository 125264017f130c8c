//! Writing results: stdout (a closed pipe ends the command quietly) and
//! secret key files (0600 from the start, never overwritten without --force).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::Failure;

/// Writes `text` to stdout and flushes it. A reader that went away (broken
/// pipe) ends the command quietly.
pub(crate) fn stdout(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|err| {
            if err.kind() == io::ErrorKind::BrokenPipe {
                Failure::broken_pipe()
            } else {
                Failure::io("write to", Path::new("stdout"), &err)
            }
        })
}

/// Writes a secret to a new file created with mode 0600, so the secret is
/// never readable by others, not even for a moment. An existing file is
/// refused unless `force`, in which case it is made 0600 before it is
/// truncated and written.
pub(crate) fn secret_file(path: &Path, secret: &[u8], force: bool) -> Result<(), Failure> {
    let mut file = open_private(path, force).map_err(|err| {
        if err.kind() == io::ErrorKind::AlreadyExists {
            Failure::runtime(format_args!(
                "{} already exists; not overwriting a key file",
                path.display()
            ))
            .hint("use --force to replace it (the old key is lost)")
        } else {
            Failure::io("create", path, &err)
        }
    })?;
    file.write_all(secret)
        .and_then(|()| file.sync_all())
        .map_err(|err| Failure::io("write", path, &err))
}

#[cfg(unix)]
fn open_private(path: &Path, force: bool) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        // Do not truncate yet: first make an existing file private.
        options.create(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(path)?;
    if force {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.set_len(0)?;
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path, force: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path)
}
