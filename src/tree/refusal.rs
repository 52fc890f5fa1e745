//! The errors of the entry policy: one line naming the entry, of the kind
//! (`torcx status`) its cause is.

use crate::model::failure::{self, Kind as Cause};

/// An error about one archive entry; the caller adds the image and archive.
pub fn entry_err(path: &[u8], msg: impl std::fmt::Display) -> anyhow::Error {
    failure::error(Cause::Refused, format!("entry {}: {msg}", shown_path(path)))
}

/// An entry a system call failed on: the system error stays the source,
/// so its cause (a full disk, a damaged stream) is known.
pub fn entry_io<E: std::error::Error + Send + Sync + 'static>(path: &[u8], what: &str, err: E) -> anyhow::Error {
    let msg = if what.is_empty() {
        format!("entry {}", shown_path(path))
    } else {
        format!("entry {}: {what}", shown_path(path))
    };
    anyhow::Error::new(err).context(msg)
}

/// An entry past one of the limits: the same words, of kind `limit`.
pub fn limit_err(path: &[u8], msg: impl std::fmt::Display) -> anyhow::Error {
    failure::error(Cause::Limit, format!("entry {}: {msg}", shown_path(path)))
}

/// An entry the limit for all images refused (see `failure::shared_limit`).
pub fn shared_limit_err(path: &[u8], msg: impl std::fmt::Display) -> anyhow::Error {
    failure::shared_limit(format!("entry {}: {msg}", shown_path(path)))
}

/// An entry's path for a message: quoted, control characters escaped, and
/// a path longer than [`SHOWN_PATH`] bytes cut in the middle, with its
/// length, so one refusal stays one short line.
pub fn shown_path(path: &[u8]) -> String {
    if path.len() <= SHOWN_PATH {
        return format!("{:?}", String::from_utf8_lossy(path));
    }
    let (head, tail) = (&path[..SHOWN_PATH / 2], &path[path.len() - SHOWN_PATH / 4..]);
    format!(
        "{:?} ({} bytes)",
        format!("{}...{}", String::from_utf8_lossy(head), String::from_utf8_lossy(tail)),
        path.len()
    )
}

/// The longest entry path a message shows whole.
pub const SHOWN_PATH: usize = 256;
