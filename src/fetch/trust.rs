//! Trust beyond the download: `populate` keeps each signed index it used
//! beside the archives (`STORE/.torcx-remotes/REMOTE/ID.json.asc`), and with
//! `verify: signed` an archive outside the vendor store is accepted only
//! when an index kept there, whose signature verifies against the keys its
//! remote lists now, lists the archive's hash under its name and reference.

use super::{remote, sig};
use crate::model::config::{Config, DEFAULT_REFERENCE, Verify};
use crate::model::failure::{self, Kind};
use crate::model::names::ImageId;
use crate::model::remote::Digest;
use crate::store;
use anyhow::{Context, Result, bail};
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
    /// When the index was signed (seconds since the epoch).
    pub signed_at: u64,
}

/// Every entry of every kept index that verified; and why the others did not.
#[derive(Debug, Default)]
pub struct Trusted {
    pub entries: Vec<Vouched>,
    pub problems: Vec<String>,
    /// More indexes were kept than are read: the newest of a remote may be
    /// among those left out (a store writer can add old ones), so no
    /// default version is trusted.
    pub truncated: bool,
}

/// Keeps the index bytes in `store_host` for remote `name`, under a name
/// made of its hash, so an older index stays for the archives it listed.
pub fn keep_index(store_host: &Path, remote: &str, bytes: &[u8]) -> Result<PathBuf> {
    let id = &crate::sys::fsutil::sha256_hex(bytes)[..16];
    // Real directories only: a symlink planted there would send the index elsewhere.
    let dir = store_host.join(KEPT_DIR).join(remote);
    // Downloads run in parallel: another one may create them first.
    for d in [store_host.join(KEPT_DIR), dir.clone()] {
        match std::fs::create_dir(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("creating {}", d.display()));
            }
            _ => {}
        }
        if !std::fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            bail!("{}: not a directory", d.display());
        }
    }
    let p = dir.join(format!("{id}.json.asc"));
    if std::fs::symlink_metadata(&p).is_err() {
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
        let trusted_keys = remote::load_trusted_keys(cfg);
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
                    let name = f.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".json.asc") {
                        let mtime = f.metadata().ok().and_then(|m| m.modified().ok());
                        files.push((std::cmp::Reverse(mtime), rname.clone(), name));
                    }
                }
            }
            // The newest first: past the limit, the oldest are left out.
            files.sort();
            if files.len() > MAX_KEPT {
                t.problems.push(format!(
                    "{}: over {MAX_KEPT} kept indexes; only the newest are read, and none vouches for com.coreos.cl (pin versions, or remove old indexes)",
                    dir.logical.join(KEPT_DIR).display()
                ));
                files.truncate(MAX_KEPT);
                t.truncated = true;
            }
            for (_, rname, file) in files {
                let logical = dir.logical.join(KEPT_DIR).join(&rname).join(&file);
                let r = keys.entry(rname.clone()).or_insert_with(|| trusted_keys(&rname).map_err(|e| format!("{e:#}")));
                let res = (|| -> Result<()> {
                    let r = r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                    let bytes = crate::sys::fsutil::read_bounded(&cfg.host(&logical), sig::MAX_INDEX)?;
                    let (contents, trust) = sig::open_index(&bytes, r, false)?;
                    let signed_at = match trust {
                        sig::Trust::Signed { at } => at,
                        sig::Trust::Unsigned => 0,
                    };
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
                                signed_at,
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

    /// The hashes the indexes list for `id`. A pinned version may come from
    /// any index that lists it; `com.coreos.cl` only from the newest index of
    /// each remote (by its signature), so an older signed index cannot move
    /// the default back to an older version.
    pub fn expected(&self, id: &ImageId) -> Vec<&Vouched> {
        if id.reference != DEFAULT_REFERENCE {
            return self.entries.iter().filter(|v| v.name == id.name && v.version == id.reference).collect();
        }
        if self.truncated {
            return vec![];
        }
        let mut newest: std::collections::BTreeMap<&str, u64> = Default::default();
        for v in &self.entries {
            let n = newest.entry(&v.remote).or_default();
            *n = (*n).max(v.signed_at);
        }
        self.entries
            .iter()
            .filter(|v| v.name == id.name && v.is_default && newest.get(v.remote.as_str()) == Some(&v.signed_at))
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
        return Err(failure::error(
            Kind::Signature,
            format!("{}: verify is signed and no signed remote index lists image {id}{why}", logical.display()),
        ));
    }
    Ok(Some(list))
}

/// Checks digests computed while unpacking against the requirement.
pub fn check(logical: &Path, id: &ImageId, want: &[Digest], got: &[Digest]) -> Result<()> {
    check_as(logical, id, want, got, "the archive is").map(|_| ())
}

/// Checks an OCI layout's tag (`NAME.torcx.oci`, from a registry) against
/// the requirement: the index may list the digest of the manifest the tag
/// names, or of the image index it names (then the manifest picked from
/// it). Those digests were checked against the blobs as they were read;
/// the layers are checked against the manifest as they are read.
/// Returns the digest listed.
pub fn check_layout(logical: &Path, id: &ImageId, want: &[Digest], path: &[String]) -> Result<Digest> {
    let got: Vec<Digest> = path
        .iter()
        .filter_map(|d| d.strip_prefix("sha256:"))
        .map(|hex| Digest { algo: crate::model::remote::Algo::Sha256, hex: hex.to_string() })
        .collect();
    check_as(logical, id, want, &got, &format!("the layout's tag {} is", crate::model::quoted(&id.reference)))
}

fn check_as(logical: &Path, id: &ImageId, want: &[Digest], got: &[Digest], is: &str) -> Result<Digest> {
    if let Some(w) = want.iter().find(|w| got.contains(w)) {
        return Ok(w.clone());
    }
    let shown: Vec<String> =
        got.iter().filter(|g| want.iter().any(|w| w.algo == g.algo)).map(|g| g.to_string()).collect();
    Err(failure::error(
        Kind::Signature,
        format!(
            "{}: hash mismatch for image {id}: the signed index lists {}, {is} {}",
            logical.display(),
            want.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" or "),
            if shown.is_empty() { "unknown (not read to its end)".to_string() } else { shown.join(" or ") }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(remote: &str, version: &str, is_default: bool, signed_at: u64, hex: char) -> Vouched {
        Vouched {
            name: "a".into(),
            version: version.into(),
            is_default,
            digest: Digest { algo: crate::model::remote::Algo::Sha512, hex: hex.to_string().repeat(128) },
            remote: remote.into(),
            index: PathBuf::from(format!("/s/.torcx-remotes/{remote}/{signed_at}.json.asc")),
            signed_at,
        }
    }

    #[test]
    fn the_default_comes_only_from_the_newest_index_of_each_remote() {
        // Found by the attack on issue 10: an older signed index moved the
        // default back to a version with known holes.
        let t = Trusted {
            entries: vec![v("r", "1", true, 100, '1'), v("r", "1", false, 200, '1'), v("r", "2", true, 200, '2')],
            problems: vec![],
            truncated: false,
        };
        let id = |r: &str| ImageId::new("a", r).unwrap();
        let got: Vec<&str> = t.expected(&id(DEFAULT_REFERENCE)).iter().map(|v| v.version.as_str()).collect();
        assert_eq!(got, ["2"]);
        // A pinned version: any index that lists it.
        assert_eq!(t.expected(&id("1")).len(), 2);
        assert!(t.expected(&id("3")).is_empty());
        // Found by the attack on issue 11: old indexes copied in until the
        // newest is no longer read. Then no default is trusted at all.
        let flooded = Trusted { truncated: true, ..t };
        assert!(flooded.expected(&id(DEFAULT_REFERENCE)).is_empty());
        assert_eq!(flooded.expected(&id("2")).len(), 1);
    }
}
