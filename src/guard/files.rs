//! Opens files beneath the files root only.
//!
//! The path is resolved by the kernel relative to a handle on the root (cap-std uses `openat2`
//! with `RESOLVE_BENEATH` where Linux has it, and checks each step itself elsewhere), not checked
//! as a string and then opened: absolute paths, `..` escapes and symlinks that lead outside all
//! fail inside the open itself, so there is no window between a check and the use. Only
//! regular files are returned, and opening never blocks (a FIFO without a writer, a device).

use std::io;

use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt as _};

/// Why a path was not opened. Messages never name the server's own paths.
#[derive(Debug)]
pub enum OpenError {
    /// Outside the root (absolute, `..`, a symlink leading out) or not readable.
    Forbidden(&'static str),
    NotFound,
    /// Not something a job can read: not a regular file, a NUL byte, a name too long.
    Invalid(&'static str),
    Io(io::Error),
}

/// Opens `path` beneath `root`, read-only, if it is a regular file.
pub fn open(root: &Dir, path: &str) -> Result<File, OpenError> {
    if path.contains('\0') {
        return Err(OpenError::Invalid("the path contains a NUL byte"));
    }
    if path.is_empty() {
        return Err(OpenError::Invalid("the path is empty"));
    }
    let mut options = OpenOptions::new();
    // Non-blocking, so that opening a FIFO does not wait for a writer; no controlling tty.
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = root.open_with(path, &options).map_err(|e| refusal(&e))?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::Invalid("not a regular file"));
    }
    Ok(file)
}

fn refusal(e: &io::Error) -> OpenError {
    use io::ErrorKind::*;
    match e.kind() {
        NotFound | NotADirectory => OpenError::NotFound,
        PermissionDenied => {
            OpenError::Forbidden("the path leads outside the files root or is not readable")
        }
        InvalidInput | InvalidFilename => OpenError::Invalid("not a valid path"),
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            OpenError::Invalid("too many levels of symbolic links")
        }
        _ if e.raw_os_error() == Some(libc::EXDEV) => {
            OpenError::Forbidden("the path leads outside the files root")
        }
        _ if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            OpenError::Invalid("the path is too long")
        }
        _ => OpenError::Io(io::Error::new(e.kind(), e.to_string())),
    }
}
