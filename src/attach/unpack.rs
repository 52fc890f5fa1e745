//! Turning an archive (or a directory) into the image's own read-only tree.

use crate::archive::digest::{pin, pin_id, reader_digests};
use crate::archive::stream::{self, KnownDigest};
use crate::archive::{Archive, Format};
use crate::fetch::trust;
use crate::model::config::Config;
use crate::model::remote::{Algo, Digest};
use crate::sys::crash;
use crate::sys::loopdev;
use crate::sys::mount;
use crate::tree::extract;
use crate::tree::policy::{Limits, Pool};
use anyhow::{Context, Result};
use std::os::fd::AsFd;
use std::path::Path;

/// What unpacking produced.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    pub bytes: u64,
    pub digest: Option<String>,
    /// The loop device a squashfs or erofs image is mounted from.
    pub loop_device: Option<std::path::PathBuf>,
    /// The file mounted is the one the generator cache vouched for (its
    /// checks skipped, its cached units good for it).
    pub vouched: bool,
    /// For a mounted image planned from its tree: what planning asked of
    /// it (kept in the generator cache for the next boots).
    pub lookups: Option<crate::tree::lookups::Lookups>,
    /// The identity of the file mounted, or of the tar archive unpacked
    /// when it was not verified (what the generator cache entry is keyed by).
    pub file: Option<crate::archive::FileId>,
    /// What the tree took of the limit for all images: given back
    /// ([`give_back`]) when the image fails after all and its tree goes.
    pub charged: u64,
}

/// Mounts a fresh tmpfs at `tree` (logical), unpacks `a` into it with the
/// confined extractor, and makes it read-only.
/// With `want` (`verify: signed`), the archive's hash, computed as it
/// unpacks, must be one of those; otherwise the unpack fails (and the caller
/// takes the tree down). Without, `known` is the digest an earlier apply
/// recorded, used if it is of the very file opened.
pub fn unpack_archive(
    cfg: &Config,
    a: &Archive,
    tree: &Path,
    want: Option<&[Digest]>,
    known: Option<&KnownDigest>,
) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    let opened = std::cell::Cell::new(None);
    let (stats, digest) = in_tmpfs(cfg, tree, |limits| {
        if want.is_some() {
            // Verified: hashed as it streams, the bytes unpacked are the bytes checked.
            let (mut stream, seen) = stream::open_tar_hashed(a, &algos(want))?;
            let stats = extract::extract(&mut stream, &host, limits)?;
            let digest = kept(&stats, limits, || {
                stream.finish()?;
                let got = seen.lock().unwrap_or_else(|e| e.into_inner()).digests.take().unwrap_or_default();
                recorded(a, want, &got)
            })?;
            Ok((stats, digest))
        } else {
            // Information for the record: hashed from the same open file, off
            // the inflating thread (or known for it).
            let (mut stream, digest, id) = stream::open_tar_digesting(a, known)?;
            opened.set(Some(id));
            let stats = extract::extract(&mut stream, &host, limits)?;
            let digest = kept(&stats, limits, || {
                stream.finish()?;
                crash::hold("unpacked");
                digest.join()
            })?;
            Ok((stats, digest))
        }
    })?;
    // The cache entry for this tree is keyed by the file it came from.
    read_only(&host, stats, digest).map(|u| Unpacked { file: opened.get(), ..u })
}

/// `then`, for a tree already unpacked with `stats`: failing, the tree is
/// removed, so what it took of the limit for all images is given back.
fn kept<T>(stats: &extract::Stats, limits: Limits, then: impl FnOnce() -> Result<T>) -> Result<T> {
    then().inspect_err(|_| limits.give_back(stats.bytes))
}

/// Makes the unpacked tree at `host` read-only.
fn read_only(host: &Path, stats: extract::Stats, digest: Option<String>) -> Result<Unpacked> {
    let u = Unpacked { bytes: stats.bytes, digest, charged: stats.bytes, ..Unpacked::default() };
    let res = crash::point("unpacked").and_then(|_| mount::remount_ro(host)).and_then(|_| crash::point("read-only"));
    match res {
        Ok(()) => Ok(u),
        Err(e) => {
            give_back(&u);
            Err(e)
        }
    }
}

/// Gives back what the tree of `u` took of the limit for all images: the
/// image failed after its unpack (a conflict, a bad manifest), and its tree
/// is removed; the images unpacked after it may use the room.
pub fn give_back(u: &Unpacked) {
    if u.charged > 0
        && let Some(pool) = POOL.get()
    {
        pool.give(u.charged);
    }
}

/// What to hash an archive with: what the index lists it with when it must
/// be verified (that digest is recorded then), else the sha256 records keep.
fn algos(want: Option<&[Digest]>) -> Vec<Algo> {
    match want {
        Some(w) => w.iter().map(|d| d.algo).collect(),
        None => vec![Algo::Sha256],
    }
}

/// Checks the digests against `want`, and returns the one to record as `ALGO:HEX`.
fn recorded(a: &Archive, want: Option<&[Digest]>, got: &[Digest]) -> Result<Option<String>> {
    if let Some(want) = want {
        trust::check(&a.path, &a.id, want, got)?;
    }
    let d = match want {
        Some(w) => got.iter().find(|g| w.contains(g)),
        None => got.iter().find(|d| d.algo == Algo::Sha256),
    };
    Ok(d.map(|d| format!("{}:{}", d.algo, d.hex)))
}

/// What all image trees unpacked by this process may take together: the
/// limit for all images, less what trees already mounted (by an earlier
/// apply or attach) hold. Each unpack charges its files to it as it goes.
/// A reattach (unpacking `.NAME.next`) does not count the tree of `NAME` it
/// replaces: both are there only until the switch.
static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();

fn pool(cfg: &Config, host: &Path) -> &'static Pool {
    POOL.get_or_init(|| {
        let under = cfg.host(&cfg.unpack_dir());
        let name = host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let replaced = match name.strip_prefix('.').and_then(|n| n.strip_suffix(".next")) {
            Some(n) => under.join(n),
            None => host.to_path_buf(),
        };
        let taken = mount::tmpfs_taken_below(&under, &replaced);
        Pool::new(cfg.unpack_total_limit.saturating_sub(taken), cfg.unpack_total_limit)
    })
}

/// Mounts a fresh tmpfs at `host` and has `fill` unpack into it.
/// An unpack the limit for all images refused while another image was
/// unpacking beside it is tried once more, alone, once the others are
/// done: it is refused only if it does not fit beside the trees kept (two
/// OCI images staging their blobs at once could each run short).
fn in_tmpfs<T>(cfg: &Config, tree: &Path, fill: impl Fn(Limits) -> Result<T>) -> Result<T> {
    let host = &cfg.host(tree);
    let pool = pool(cfg, host);
    let attempt = || mount_tmpfs(cfg, host, pool).and_then(|limits| crash::point("mounted").and_then(|_| fill(limits)));
    let refused = {
        let unpacking = pool.begin();
        match attempt() {
            Err(e) if crate::model::failure::is_shared_limit(&e) && unpacking.overlapped() => e,
            done => return done,
        }
    };
    log::info!("{}: {refused:#}; trying again alone, once the images unpacking beside it are done", tree.display());
    // What the refused attempt wrote goes with its tmpfs (its charges were given back).
    if mount::is_mountpoint(host) {
        mount::unmount_lazy(host)?;
    }
    let (_turn, _unpacking) = pool.alone();
    attempt()
}

/// Mounts the tmpfs for the tree at `host`, as large as the image's own
/// limit (or the limit for all images, if less); returns the limits to
/// unpack in. What the other images left of the limit for all images is
/// charged file by file (a tmpfs sized to what was left when it was
/// mounted would refuse with the image's limit named, or not at all once
/// the others gave back).
fn mount_tmpfs(cfg: &Config, host: &Path, pool: &'static Pool) -> Result<Limits> {
    if pool.left() < 1 << 20 {
        return Err(crate::model::failure::shared_limit(format!(
            "no room left to unpack: the other images' trees take the limit of {} bytes for all images (TORCX_UNPACK_TOTAL_LIMIT or unpack_total_limit in the config)",
            pool.total
        )));
    }
    let size = pool.total.min(cfg.unpack_limit);
    mount::mount_tmpfs(host, size)?;
    Ok(Limits { pool: Some(pool), ..Limits::unpack(size) })
}

/// Mounts a squashfs or erofs image read-only, `nodev,nosuid`, at `tree`:
/// erofs straight from the file where the kernel can (Linux ≥ 6.12), else
/// both through a loop device that frees itself on unmount.
/// With `want`, the file is hashed first (the kernel reads a mounted image
/// lazily, so there is no unpacking to hash along with), and with
/// `vouched_for` its identity compared, through the open file that is then
/// read and mounted: a name replaced meanwhile changes nothing.
pub fn mount_image(
    cfg: &Config,
    a: &Archive,
    tree: &Path,
    want: Option<&[Digest]>,
    vouched_for: Option<crate::archive::FileId>,
) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    let fstype = a.format.name();
    let label = a.path.clone();
    let mut digest = None;
    // One open file, hashed or identified, read and mounted: a name
    // replaced meanwhile changes nothing, and the generator cache is keyed
    // by the identity of the file that was checked.
    let (file, pinned, opened) = pin_id(a).with_context(|| format!("reading {}", a.path.display()))?;
    if want.is_some() {
        let got =
            reader_digests(file.try_clone()?, &algos(want)).with_context(|| format!("reading {}", a.path.display()))?;
        digest = recorded(a, want, &got)?;
    }
    // Identified once read (a file changed while hashed is not the one
    // vouched for), or as opened.
    let now = match want {
        Some(_) => crate::archive::FileId::of_file(&file).ok(),
        None => Some(opened),
    };
    let checked_before = vouched_for.is_some() && vouched_for == now;
    let a = &pinned;
    // Apply refuses what the generator refuses: an image whose index the
    // entry policy, or the index reader's own limits, refuse (read the same
    // way, in a child with limits of its own).
    // Both checks run once per file: an apply that attached this very file
    // (same device, inode, size, mtime, ctime: see `Options::known`) made
    // them, and the same bytes give the same tree.
    if !checked_before {
        crate::tree::isolated::read_fsimage_units(a).with_context(|| format!("reading {}", a.path.display()))?;
    }
    // Nothing is unpacked, so nothing was checked on the way in: a symlink
    // out of the tree is refused as in a tar archive.
    if a.format == Format::Erofs && mount::mount_ro(&a.host, &host, fstype).is_ok() {
        crash::point("mounted")?;
        if !checked_before {
            extract::check_symlinks(&host)?;
        }
        return Ok(Unpacked { digest, vouched: checked_before, file: now, ..Unpacked::default() });
    }
    // The loop device reads the file already open (and checked).
    let (dev, _keep_until_mounted) = loopdev::attach(file.as_fd(), &label)?;
    mount::mount_ro(&dev, &host, fstype)
        .with_context(|| format!("mounting {} ({})", a.path.display(), dev.display()))?;
    crash::point("mounted")?;
    if !checked_before {
        extract::check_symlinks(&host)?;
    }
    Ok(Unpacked {
        bytes: 0,
        digest,
        loop_device: Some(dev),
        vouched: checked_before,
        file: now,
        lookups: None,
        charged: 0,
    })
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
/// The bundle is hashed on a thread of its own while its layers unpack (a
/// bundle is read more than once, by tag and by blob), all through one open
/// file.
pub fn unpack_oci(cfg: &Config, a: &Archive, tree: &Path, want: Option<&[Digest]>) -> Result<Unpacked> {
    let host = cfg.host(tree);
    std::fs::create_dir_all(&host).with_context(|| format!("creating {}", tree.display()))?;
    let (stats, digest) = in_tmpfs(cfg, tree, |limits| {
        if a.format == Format::OciLayout {
            // A layout directory is read blob by blob, each checked against its
            // digest: with `want`, the tag's digests are checked before any layer.
            let listed = std::cell::RefCell::new(None);
            let check = |r: &crate::archive::oci::Resolved| {
                if let Some(w) = want {
                    *listed.borrow_mut() = Some(trust::check_layout(&a.path, &a.id, w, &r.path)?);
                }
                Ok(())
            };
            let stats = crate::tree::oci::unpack_checked(&a.host, &a.id.reference, &host, limits, &check)?;
            return Ok((stats, listed.into_inner().map(|d| format!("{}:{}", d.algo, d.hex))));
        }
        let (file, pinned) = pin(a).with_context(|| format!("reading {}", a.path.display()))?;
        let (reader, algos) = (file.try_clone()?, algos(want));
        let hashing = std::thread::spawn(move || reader_digests(reader, &algos));
        let stats = crate::tree::oci::unpack(&pinned.host, &a.id.reference, &host, limits)?;
        drop(file);
        let got = hashing.join().ok().and_then(|r| r.ok()).unwrap_or_default();
        let digest = kept(&stats, limits, || recorded(a, want, &got))?;
        Ok((stats, digest))
    })?;
    read_only(&host, stats, digest)
}
