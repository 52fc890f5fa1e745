//! Turning an archive (or a directory) into the image's own read-only tree.

use crate::archive::stream;
use crate::archive::{Archive, Format};
use crate::model::config::Config;
use crate::sys::crash;
use crate::sys::loopdev;
use crate::sys::mount;
use crate::tree::extract;
use crate::tree::policy::Limits;
use anyhow::{Context, Result};
use std::path::Path;

/// What unpacking produced.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    pub bytes: u64,
    pub digest: Option<String>,
    /// The loop device a squashfs or erofs image is mounted from.
    pub loop_device: Option<std::path::PathBuf>,
}

/// Mounts a fresh tmpfs at `tree` (logical), unpacks `a` into it with the
/// confined extractor, and makes it read-only.
pub fn unpack_archive(cfg: &Config, a: &Archive, tree: &Path) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    mount::mount_tmpfs(&host, cfg.unpack_limit)?;
    crash::point("mounted")?;
    let digest = stream::digest_in_background(&a.host);
    let mut stream = stream::open_tar(a)?;
    let stats = extract::extract(&mut stream, &host, Limits::unpack(cfg.unpack_limit))?;
    stream.finish()?;
    let digest = digest.join().ok().flatten();
    crash::point("unpacked")?;
    mount::remount_ro(&host)?;
    crash::point("read-only")?;
    Ok(Unpacked { bytes: stats.bytes, digest, loop_device: None })
}

/// Mounts a squashfs or erofs image read-only, `nodev,nosuid`, at `tree`:
/// erofs straight from the file where the kernel can (Linux ≥ 6.12), else
/// both through a loop device that frees itself on unmount.
pub fn mount_image(cfg: &Config, a: &Archive, tree: &Path) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    let fstype = a.format.name();
    // Nothing is unpacked, so nothing was checked on the way in: a symlink
    // out of the tree is refused as in a tar archive.
    if a.format == Format::Erofs && mount::mount_ro(&a.host, &host, fstype).is_ok() {
        crash::point("mounted")?;
        extract::check_symlinks(&host)?;
        return Ok(Unpacked::default());
    }
    let (dev, _keep_until_mounted) = loopdev::attach(&a.host)?;
    mount::mount_ro(&dev, &host, fstype)
        .with_context(|| format!("mounting {} ({})", a.path.display(), dev.display()))?;
    crash::point("mounted")?;
    extract::check_symlinks(&host)?;
    Ok(Unpacked { bytes: 0, digest: None, loop_device: Some(dev) })
}

/// Binds an unpacked image directory read-only (and `nodev,nosuid`) at `tree`.
pub fn bind_dir(cfg: &Config, dir: &Path, tree: &Path) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    mount::bind_ro(dir, &host)?;
    crash::point("mounted")?;
    extract::check_symlinks(&host)?;
    Ok(Unpacked::default())
}

/// Mounts a fresh tmpfs at `tree` and applies the layers of the OCI bundle's
/// tag `a.id.reference` into it, then makes it read-only.
pub fn unpack_oci(cfg: &Config, a: &Archive, tree: &Path) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    mount::mount_tmpfs(&host, cfg.unpack_limit)?;
    crash::point("mounted")?;
    let digest = stream::digest_in_background(&a.host);
    let stats = crate::tree::oci::unpack(&a.host, &a.id.reference, &host, Limits::unpack(cfg.unpack_limit))?;
    let digest = digest.join().ok().flatten();
    crash::point("unpacked")?;
    mount::remount_ro(&host)?;
    crash::point("read-only")?;
    Ok(Unpacked { bytes: stats.bytes, digest, loop_device: None })
}
