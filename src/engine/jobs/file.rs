//! `file`: reads a regular file beneath the files root (opened through
//! [`crate::guard::files`]), up to a byte cap.

use std::io::Read;

use base64::Engine as _;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

use super::Failure;
use crate::engine::spec::{FileEncoding, FileJob};
use crate::engine::task::{ErrorCode, FileOutput, TaskOutput};
use crate::guard::files::{self, OpenError};

pub async fn run(root: Result<&Dir, Failure>, job: &FileJob) -> Result<TaskOutput, Failure> {
    let root = root?
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
    let file = files::open(root, path).map_err(|e| match e {
        OpenError::Forbidden(why) => Failure::new(ErrorCode::Forbidden, why),
        OpenError::NotFound => Failure::new(ErrorCode::NotFound, "no such file"),
        OpenError::Invalid(why) => Failure::new(ErrorCode::Invalid, why),
        OpenError::Io(e) => Failure::new(ErrorCode::Io, e.to_string()),
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(len.min(max_bytes) as usize);
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
        FileEncoding::Utf8 => Some(match std::str::from_utf8(&buf) {
            Ok(text) => text.to_owned(),
            // The cap cut a character in two: the text up to it is still text.
            Err(e) if truncated && e.error_len().is_none() => {
                String::from_utf8_lossy(&buf[..e.valid_up_to()]).into_owned()
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
