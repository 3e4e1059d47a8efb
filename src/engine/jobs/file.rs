//! `file`: reads a regular file beneath the files root, up to a byte cap.
//!
//! The path is resolved by the kernel relative to a handle on the root (cap-std uses `openat2`
//! with `RESOLVE_BENEATH` where Linux has it), not checked as a string and then opened: absolute
//! paths, `..` escapes and symlinks that lead outside all fail inside the open itself, so there
//! is no window between a check and the use.

use cap_std::fs::OpenOptionsExt as _;
use std::io::Read;

use base64::Engine as _;
use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest, Sha256};

use super::Failure;
use crate::engine::spec::{FileEncoding, FileJob};
use crate::engine::task::{ErrorCode, FileOutput, TaskOutput};

pub async fn run(root: Option<&Dir>, job: &FileJob) -> Result<TaskOutput, Failure> {
    let Some(root) = root else {
        return Err(Failure::new(
            ErrorCode::NotFound,
            "the server has no files root",
        ));
    };
    let root = root
        .try_clone()
        .map_err(|e| Failure::new(ErrorCode::Io, e.to_string()))?;
    let path = job.path.clone();
    let max_bytes = job.max_bytes;
    let encoding = job.encoding;
    tokio::task::spawn_blocking(move || read(&root, &path, max_bytes, encoding))
        .await
        .map_err(|_| Failure::new(ErrorCode::Io, "the read was aborted"))?
}

fn read(
    root: &Dir,
    path: &str,
    max_bytes: u64,
    encoding: FileEncoding,
) -> Result<TaskOutput, Failure> {
    if path.contains('\0') {
        return Err(Failure::new(
            ErrorCode::Invalid,
            "the path contains a NUL byte",
        ));
    }
    let mut options = OpenOptions::new();
    // Non-blocking, so that opening a FIFO does not wait for a writer; no controlling tty.
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = root
        .open_with(path, &options)
        .map_err(|e| open_failure(&e))?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::new(ErrorCode::Io, e.to_string()))?;
    if !meta.is_file() {
        return Err(Failure::new(ErrorCode::Invalid, "not a regular file"));
    }
    let mut buf = Vec::with_capacity(meta.len().min(max_bytes) as usize);
    // One byte past the cap tells whether the file was longer.
    file.take(max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::new(ErrorCode::Io, e.to_string()))?;
    let truncated = buf.len() as u64 > max_bytes;
    buf.truncate(max_bytes as usize);
    let sha256 = hex(&Sha256::digest(&buf));
    let content = match encoding {
        FileEncoding::None => None,
        FileEncoding::Base64 => Some(base64::engine::general_purpose::STANDARD.encode(&buf)),
        FileEncoding::Utf8 => Some(match String::from_utf8(buf.clone()) {
            Ok(text) => text,
            // The cap cut a character in two: the text up to it is still text.
            Err(e) if truncated && e.utf8_error().error_len().is_none() => {
                String::from_utf8_lossy(&buf[..e.utf8_error().valid_up_to()]).into_owned()
            }
            Err(_) => {
                return Err(Failure::new(
                    ErrorCode::Invalid,
                    "the file is not valid UTF-8; ask for encoding \"base64\"",
                ));
            }
        }),
    };
    Ok(TaskOutput::File(FileOutput {
        bytes: buf.len() as u64,
        sha256,
        content,
        truncated,
    }))
}

/// Messages name the rule, never the server's own paths.
fn open_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | NotADirectory => Failure::new(ErrorCode::NotFound, "no such file"),
        PermissionDenied => Failure::new(
            ErrorCode::Forbidden,
            "the path leads outside the files root or is not readable",
        ),
        InvalidInput | InvalidFilename => Failure::new(ErrorCode::Invalid, "not a valid path"),
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            Failure::new(ErrorCode::Invalid, "too many levels of symbolic links")
        }
        _ if e.raw_os_error() == Some(libc::EXDEV) => Failure::new(
            ErrorCode::Forbidden,
            "the path leads outside the files root",
        ),
        _ => Failure::new(ErrorCode::Io, e.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
