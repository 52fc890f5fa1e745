//! Shared by the commands: the `{"kind", "value"}` JSON document or human
//! text, the one-line summary of an attachment, and the torcx lock.

use crate::attach::{self, Record};
use crate::model::config::Config;
use crate::sys::fsutil::Lock;
use anyhow::Result;
use serde_json::json;

pub(super) fn lock(cfg: &Config) -> Result<Lock> {
    let l = Lock::take(&cfg.host(&cfg.lock_path()))?;
    attach::sweep(cfg);
    Ok(l)
}

/// Text that came from an image or the file system, fit for a terminal
/// line: control characters (newlines, escapes) shown as `\xNN`.
pub(super) fn esc(s: impl std::fmt::Display) -> String {
    crate::sys::logger::escape_controls(&s.to_string()).into_owned()
}

pub(super) fn summary(r: &Record) -> String {
    let (u, b) = (r.units(), r.binaries());
    let (u, b): (Vec<String>, Vec<String>) = (u.iter().map(esc).collect(), b.iter().map(esc).collect());
    format!(
        "{} unit{} ({}), {} binar{} ({})",
        u.len(),
        if u.len() == 1 { "" } else { "s" },
        u.join(" "),
        b.len(),
        if b.len() == 1 { "y" } else { "ies" },
        b.join(" ")
    )
}

/// Prints a `{"kind", "value"}` document, or the human text.
pub(super) fn output(json: bool, kind: &str, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({"kind": kind, "value": value})).unwrap());
    } else {
        println!("{}", human());
    }
}
