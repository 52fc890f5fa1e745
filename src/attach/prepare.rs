//! The first step of every attach (runtime, boot and reattach): the image
//! unpacked or mounted into a tree, read, and planned; nothing placed yet.

use super::from::ImageFrom;
use super::plan::{CopyMode, Origin, Placement, plan};
use super::portable::{self, Sandbox};
use super::record::RecordOrigin;
use super::unpack;
use crate::fetch::trust;
use crate::model::config::{Config, Verify};
use crate::sys::crash;
use crate::tree::lookups::{Known, Lookups, Recording};
use crate::tree::source::{self, Tree};
use anyhow::Result;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `boot` (torcx apply) or `runtime`.
    pub origin: RecordOrigin,
    pub copy: CopyMode,
    pub portable: Option<Sandbox>,
    /// Refuse a unit that exists anywhere in systemd's search path (runtime
    /// attaches; at boot the generator's copies are expected there).
    pub check_host_units: bool,
    /// Override only the host-unit check.
    pub force: bool,
    /// For a squashfs or erofs image an earlier apply attached, this very
    /// file (the generator cache vouches: same device, inode, size, mtime
    /// and ctime), its manifest and units as read then: its index is not
    /// read again, nor its mounted tree walked for escaping links (that
    /// apply did both on the same bytes), nor those files read from the
    /// mounted tree.
    pub known: Option<std::sync::Arc<Vouched>>,
    /// For a tar archive an earlier apply unpacked, the sha256 it recorded
    /// and the file it hashed (the generator cache keeps both): a file with
    /// the same identity is not read again for its digest.
    pub known_digest: Option<crate::archive::stream::KnownDigest>,
    /// The host's unit directories as a caller that attaches several images
    /// looked at them once (`torcx apply`); `None`: looked at per image.
    pub unit_dirs: Option<std::sync::Arc<crate::sys::systemd::UnitDirs>>,
    /// The caller holds the lock and found no record of the image (`torcx
    /// apply` lists the records directory once): none is looked for.
    pub unrecorded: bool,
}

/// What the generator cache vouches for: the manifest and units of the file
/// `id` as an earlier apply read them, after it checked that file.
#[derive(Debug)]
pub struct Vouched {
    pub mem: source::Mem,
    pub id: crate::archive::FileId,
    /// What planning asked of the mounted tree then, and the answers.
    pub lookups: Option<Lookups>,
}

/// Unpacks (or binds) an image into its tree, reads it into a plan, and
/// refuses conflicts; nothing is placed yet. The tree is at `tree`.
pub(super) fn prepare(
    cfg: &Config,
    img: &ImageFrom,
    tree: &Path,
    final_tree: &Path,
    opts: &Options,
) -> Result<(unpack::Unpacked, Vec<Placement>)> {
    // With `verify: signed`, what a signed index lists the archive with.
    let want = match img {
        ImageFrom::Archive(a) => trust::requirement(cfg, &a.id, &a.path)?,
        ImageFrom::Dir { path, .. } if cfg.verify == Verify::Signed => {
            return Err(crate::model::failure::error(
                crate::model::failure::Kind::Signature,
                format!("{}: verify is signed, and an image directory has no hash to verify", path.display()),
            ));
        }
        ImageFrom::Dir { .. } => None,
    };
    let want = want.as_deref();
    let unpacked = match img {
        ImageFrom::Archive(a) if a.format.mounted() => {
            unpack::mount_image(cfg, a, tree, want, opts.known.as_ref().map(|v| v.id))?
        }
        ImageFrom::Archive(a) if a.format.is_oci() => unpack::unpack_oci(cfg, a, tree, want)?,
        ImageFrom::Archive(a) => unpack::unpack_archive(cfg, a, tree, want, opts.known_digest.as_ref())?,
        ImageFrom::Dir { path, .. } => unpack::bind_dir(cfg, path, tree)?,
    };
    let mut unpacked = unpacked;
    match plan_unpacked(cfg, img, tree, final_tree, opts, &mut unpacked) {
        Ok(plan) => Ok((unpacked, plan)),
        Err(e) => {
            unpack::give_back(&unpacked);
            Err(e)
        }
    }
}

/// The rest of [`prepare`], once the image's tree is there.
fn plan_unpacked(
    cfg: &Config,
    img: &ImageFrom,
    tree: &Path,
    final_tree: &Path,
    opts: &Options,
    unpacked: &mut unpack::Unpacked,
) -> Result<Vec<Placement>> {
    let tree_src = Tree::open(&cfg.host(tree))?;
    // The cached units only for the file they came from (checked as mounted).
    let known = opts.known.as_deref().filter(|_| unpacked.vouched).map(|v| Known {
        tree: &tree_src,
        known: &v.mem,
        lookups: v.lookups.as_ref(),
    });
    // A mounted image planned from its tree: what planning asked of it is
    // kept, for the cache (see `tree::lookups`).
    let recording = match (&known, img) {
        (None, ImageFrom::Archive(a)) if a.format.mounted() => Some(Recording::new(&tree_src)),
        _ => None,
    };
    let src: &dyn source::ImageSource = match (&known, &recording) {
        (Some(k), _) => k,
        (None, Some(r)) => r,
        (None, None) => &tree_src,
    };
    if opts.portable.is_some() {
        portable::check_image(src)?;
    }
    let (m, scanned) = crate::tree::scan::manifest_or_scan(src)?;
    if scanned {
        log::info!(
            "image {}: no {}; propagating what a scan of its standard directories found",
            img.id(),
            source::MANIFEST_PATH
        );
    }
    let o = Origin {
        id: img.id(),
        archive: img.path(),
        tree: final_tree.to_path_buf(),
        copy: opts.copy,
        portable: opts.portable,
    };
    let plan = plan(cfg, &o, src, &m, false)?;
    crash::point("planned")?;
    unpacked.lookups = recording.and_then(Recording::into_lookups);
    Ok(plan)
}
