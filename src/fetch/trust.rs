//! Trust beyond the download: `populate` keeps each signed index it used
//! beside the archives (`STORE/.torcx-remotes/REMOTE/ID.json.asc`), and with
//! `verify: signed` an archive outside the vendor store is accepted only
//! when an index kept there, whose signature verifies against the keys its
//! remote lists now, lists the archive's hash under its name and reference.

use super::{remote, sig};
use crate::model::config::{Config, DEFAULT_REFERENCE, Verify};
use crate::model::names::ImageId;
use crate::model::remote::Digest;
use crate::store;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

pub const KEPT_DIR: &str = ".torcx-remotes";
/// The most indexes read from one store, so a full directory costs bounded time.
const MAX_KEPT: usize = 256;

/// One archive a signed index vouches for.
#[derive(Debug, Clone)]
pub struct Vouched {
    pub name: String,
    pub version: String,
    pub is_default: bool,
    pub digest: Digest,
    pub remote: String,
    pub index: PathBuf,
}

/// Every entry of every kept index that verified; and why the others did not.
#[derive(Debug, Default)]
pub struct Trusted {
    pub entries: Vec<Vouched>,
    pub problems: Vec<String>,
}

/// Keeps the index bytes in `store_host` for remote `name`, under a name
/// made of its hash, so an older index stays for the archives it listed.
pub fn keep_index(store_host: &Path, remote: &str, bytes: &[u8]) -> Result<PathBuf> {
    let id = &crate::sys::fsutil::sha256_hex(bytes)[..16];
    let p = store_host.join(KEPT_DIR).join(remote).join(format!("{id}.json.asc"));
    if !p.exists() {
        crate::sys::fsutil::atomic_write(&p, bytes, 0o644)?;
    }
    Ok(p)
}

/// Whether `logical` (an archive's path) is in the vendor store, which `/usr`
/// verification covers.
pub fn in_vendor_store(cfg: &Config, logical: &Path) -> bool {
    logical.parent() == Some(cfg.vendor_dir().join("store").as_path())
}

impl Trusted {
    /// Reads and verifies the kept indexes of every store but the vendor one.
    pub fn load(cfg: &Config) -> Trusted {
        let mut t = Trusted::default();
        let mut keys: std::collections::BTreeMap<String, Result<Vec<pgp::composed::SignedPublicKey>, String>> =
            Default::default();
        let vendor = cfg.vendor_dir().join("store");
        for dir in store::store_dirs(cfg) {
            if dir.logical == vendor {
                continue;
            }
            let Ok(remotes) = std::fs::read_dir(dir.host.join(KEPT_DIR)) else { continue };
            let mut files = vec![];
            for r in remotes.flatten() {
                let rname = r.file_name().to_string_lossy().into_owned();
                for f in std::fs::read_dir(r.path()).into_iter().flatten().flatten() {
                    if f.file_name().to_string_lossy().ends_with(".json.asc") {
                        files.push((rname.clone(), f.file_name().to_string_lossy().into_owned()));
                    }
                }
            }
            files.sort();
            if files.len() > MAX_KEPT {
                t.problems.push(format!(
                    "{}: over {MAX_KEPT} kept indexes; only the first are read",
                    dir.logical.join(KEPT_DIR).display()
                ));
                files.truncate(MAX_KEPT);
            }
            for (rname, file) in files {
                let logical = dir.logical.join(KEPT_DIR).join(&rname).join(&file);
                let r = keys
                    .entry(rname.clone())
                    .or_insert_with(|| remote::load_keys(cfg, &rname).map_err(|e| format!("{e:#}")));
                let res = (|| -> Result<()> {
                    let r = r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                    let bytes = crate::sys::fsutil::read_bounded(&cfg.host(&logical), sig::MAX_INDEX)?;
                    let (contents, _) = sig::open_index(&bytes, r, false)?;
                    for img in contents.images.iter().filter(|i| !i.name.is_empty()) {
                        for v in &img.versions {
                            let Ok(digest) = v.hash.parse::<Digest>() else { continue };
                            t.entries.push(Vouched {
                                name: img.name.clone(),
                                version: v.version.clone(),
                                is_default: v.version == img.default_version,
                                digest,
                                remote: rname.clone(),
                                index: logical.clone(),
                            });
                        }
                    }
                    Ok(())
                })();
                if let Err(e) = res {
                    t.problems.push(format!("index {}: {e:#}", logical.display()));
                }
            }
        }
        t
    }

    /// The hashes the indexes list for `id` (`com.coreos.cl`: the default version's).
    pub fn expected(&self, id: &ImageId) -> Vec<&Vouched> {
        self.entries
            .iter()
            .filter(|v| {
                v.name == id.name && (v.version == id.reference || id.reference == DEFAULT_REFERENCE && v.is_default)
            })
            .collect()
    }
}

/// What `apply` and `attach` require of an archive before unpacking it:
/// `None` when anything goes (`verify: none`, or the vendor store), else the
/// hashes it may have. No hash at all is an error naming the image.
pub fn requirement(cfg: &Config, id: &ImageId, logical: &Path) -> Result<Option<Vec<Digest>>> {
    if cfg.verify == Verify::None || in_vendor_store(cfg, logical) {
        return Ok(None);
    }
    static TRUSTED: std::sync::OnceLock<Trusted> = std::sync::OnceLock::new();
    let t = TRUSTED.get_or_init(|| Trusted::load(cfg));
    let list: Vec<Digest> = t.expected(id).into_iter().map(|v| v.digest.clone()).collect();
    if list.is_empty() {
        let why = if t.problems.is_empty() { String::new() } else { format!(" ({})", t.problems.join("; ")) };
        bail!("{}: verify is signed and no signed remote index lists image {id}{why}", logical.display());
    }
    Ok(Some(list))
}

/// Checks digests computed while unpacking against the requirement.
pub fn check(logical: &Path, id: &ImageId, want: &[Digest], got: &[Digest]) -> Result<()> {
    if want.iter().any(|w| got.contains(w)) {
        return Ok(());
    }
    let shown: Vec<String> =
        got.iter().filter(|g| want.iter().any(|w| w.algo == g.algo)).map(|g| g.to_string()).collect();
    bail!(
        "{}: hash mismatch for image {id}: the signed index lists {}, the archive is {}",
        logical.display(),
        want.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" or "),
        if shown.is_empty() { "unknown (not read to its end)".to_string() } else { shown.join(", ") }
    )
}
