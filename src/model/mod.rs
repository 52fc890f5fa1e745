//! Stage 0, the vocabulary: names, the JSON documents (profiles, image
//! manifests, records' envelopes), the configuration and its paths, and
//! what a unit name is. Pure data and parsing: nothing here mounts or
//! writes.

pub mod config;
pub mod failure;
pub mod manifest;
pub mod names;
pub mod remote;
pub mod units;

/// A string from a document or a file name, quoted for a message, and cut
/// past 64 characters with its length: a message never echoes it whole.
pub fn quoted(s: &str) -> String {
    if s.chars().count() <= 64 {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(48).collect();
    format!("{:?} ({} bytes)", format!("{head}..."), s.len())
}

/// A parser's error (serde echoes unknown fields and values whole), cut
/// past 512 bytes with its length.
pub fn parse_error(e: impl std::fmt::Display) -> anyhow::Error {
    let s = e.to_string();
    if s.len() <= 512 {
        return anyhow::anyhow!(s);
    }
    let mut end = 400;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    anyhow::anyhow!("{}... ({} bytes)", &s[..end], s.len())
}

/// A small enum stored as a fixed string in records and JSON output: the
/// serde names and [`std::fmt::Display`] are the same string.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;
