//! Turning an archive (or a directory) into the image's own read-only tree.

use crate::archive;
use crate::config::Config;
use crate::crash;
use crate::extract::{self, Limits};
use crate::mount;
use crate::store::Archive;
use anyhow::{Context, Result};
use std::path::Path;

/// What unpacking produced.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    pub bytes: u64,
    pub digest: Option<String>,
}

/// Mounts a fresh tmpfs at `tree` (logical), unpacks `a` into it with the
/// confined extractor, and makes it read-only.
pub fn unpack_archive(cfg: &Config, a: &Archive, tree: &Path) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    mount::mount_tmpfs(&host, cfg.unpack_limit)?;
    crash::point("mounted")?;
    let digest = archive::digest_in_background(&a.host);
    let mut stream = archive::open_tar(a)?;
    let stats = extract::extract(&mut stream, &host, Limits { max_bytes: cfg.unpack_limit, max_entries: 1_000_000 })?;
    stream.finish()?;
    let digest = digest.join().ok().flatten();
    crash::point("unpacked")?;
    mount::remount_ro(&host)?;
    crash::point("read-only")?;
    Ok(Unpacked { bytes: stats.bytes, digest })
}

/// Binds an unpacked image directory read-only (and `nodev,nosuid`) at `tree`.
pub fn bind_dir(cfg: &Config, dir: &Path, tree: &Path) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    mount::bind_ro(dir, &host)?;
    crash::point("mounted")?;
    Ok(Unpacked::default())
}
