//! The generator cache's form of what was read of an image (`Mem`):
//! compact (text files as text, the rare other file as hex, not JSON arrays
//! of numbers), and checked when it is read back against the same policy as
//! the archive it came from, so a cache entry never lets an image past a
//! limit or a rule its archive would hit (an entry written by an older
//! torcx, or edited by hand).

use crate::tree::policy::{self, MAX_ENTRIES, MAX_MEM_FILE, MAX_MEM_TOTAL};
use crate::tree::source::Mem;
use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Cached {
    files: Vec<File>,
    #[serde(default)]
    links: Vec<(String, String)>,
    #[serde(default)]
    dirs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

fn text(p: &Path) -> Option<String> {
    p.to_str().map(str::to_string)
}

impl Cached {
    /// `None` when a path is not UTF-8 (such an image is read from its
    /// archive at every boot instead).
    pub fn of(m: &Mem) -> Option<Cached> {
        let mut c = Cached::default();
        for (p, data) in m.files() {
            let (text, hex) = match std::str::from_utf8(data) {
                Ok(t) => (Some(t.to_string()), None),
                Err(_) => (None, Some(crate::sys::fsutil::hex(data))),
            };
            c.files.push(File { path: self::text(p)?, text, hex });
        }
        for (p, t) in m.links() {
            c.links.push((text(p)?, text(t)?));
        }
        for d in m.dirs() {
            c.dirs.push(text(d)?);
        }
        Some(c)
    }

    /// Back to a `Mem`, every path, link and size checked by the policy.
    pub fn into_mem(self) -> Result<Mem> {
        if self.files.len() + self.links.len() + self.dirs.len() > MAX_ENTRIES as usize {
            bail!("more than {MAX_ENTRIES} entries");
        }
        let rel = |p: &str| -> Result<PathBuf> {
            let comps = policy::components(p.as_bytes())?;
            let rel: PathBuf = comps.iter().collect();
            if rel.as_os_str() != p {
                bail!("{p:?}: not a plain relative path");
            }
            Ok(rel)
        };
        let mut m = Mem::default();
        let mut total = 0u64;
        for f in self.files {
            let data = match (f.text, f.hex) {
                (Some(t), None) => t.into_bytes(),
                (None, Some(h)) => unhex(&h).ok_or_else(|| anyhow!("{:?}: not hex", f.path))?,
                _ => bail!("{:?}: text or hex, one of them", f.path),
            };
            if data.len() as u64 > MAX_MEM_FILE {
                bail!("{:?}: {} bytes (at most {MAX_MEM_FILE})", f.path, data.len());
            }
            total += data.len() as u64;
            if total > MAX_MEM_TOTAL {
                bail!("files larger than {MAX_MEM_TOTAL} bytes in all");
            }
            m.insert_file(rel(&f.path)?, data);
        }
        for (p, t) in self.links {
            let r = rel(&p)?;
            policy::check_symlink(p.as_bytes(), r.components().count() - 1, t.as_bytes())?;
            m.insert_link(r, PathBuf::from(t));
        }
        for d in self.dirs {
            if !d.is_empty() {
                m.insert_dir(rel(&d)?);
            }
        }
        Ok(m)
    }
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::source::ImageSource;

    #[test]
    fn round_trip_and_checks() {
        let mut m = Mem::default();
        m.insert_file(PathBuf::from("lib/systemd/system/x.service"), b"[Service]\n".to_vec());
        m.insert_file(PathBuf::from("bin/blob"), vec![0xff, 0, 1]);
        m.insert_link(PathBuf::from("lib/systemd/system/y.service"), PathBuf::from("x.service"));
        m.insert_dir(PathBuf::from("lib/systemd/system"));
        let json = serde_json::to_string(&Cached::of(&m).unwrap()).unwrap();
        assert!(json.contains(r#""text":"[Service]\n""#) && json.contains(r#""hex":"ff0001""#), "{json}");
        let back: Cached = serde_json::from_str(&json).unwrap();
        let back = back.into_mem().unwrap();
        assert_eq!(back.read(Path::new("lib/systemd/system/y.service")).unwrap(), b"[Service]\n");

        let bad = |j: &str| format!("{:#}", serde_json::from_str::<Cached>(j).unwrap().into_mem().unwrap_err());
        assert!(bad(r#"{"files":[{"path":"../x","text":""}]}"#).contains("path traversal"));
        assert!(bad(r#"{"files":[{"path":"/etc/x","text":""}]}"#).contains("absolute path"));
        assert!(bad(r#"{"files":[],"links":[["l","/etc/passwd"]]}"#).contains("points outside the image"));
        let big = format!(r#"{{"files":[{{"path":"x","text":"{}"}}]}}"#, "a".repeat((MAX_MEM_FILE + 1) as usize));
        assert!(bad(&big).contains("bytes (at most"));
    }
}
