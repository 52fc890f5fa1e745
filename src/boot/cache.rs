//! The generator's cache. Reading an archive's units means inflating it up to
//! them, which for a tar whose units come last is nearly the whole archive,
//! on the boot's critical path, and then `torcx apply` inflates it again. So
//! after a successful attach, `torcx apply` keeps what the generator needs
//! (the manifest, the unit files and links) in `BASEDIR/cache/generator/`,
//! keyed by the archive's identity (device, inode, size, mtime, ctime and a
//! hash of its first and last 4 KiB: see `FileId`) and the OS's (a hash of
//! its os-release: see `os_stamp`). A later
//! boot with the same archive reads a few KiB instead of the archive (and,
//! for squashfs, erofs and OCI bundles, instead of their whole index).

use crate::archive::stream::KnownDigest;
use crate::archive::{Archive, FileId};
use crate::model::config::Config;
use crate::sys::fsutil::atomic_write_unsynced;
use crate::tree::cached::Cached;
use crate::tree::lookups::Lookups;
use crate::tree::source::Mem;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// v2: the key has the archive's ctime (which no one sets at will), so an
/// entry also vouches that `torcx apply` checked this very file's index;
/// text files as text, checked when read back. v3: a mounted image's entry
/// has the lookups planning made in its tree. v4: a tar archive's entry has
/// its sha256 for the record. v5: the key has a hash of the file's first
/// and last 4 KiB (see `FileId`) and of the OS's os-release. Entries of
/// older kinds are read from the archive again and replaced.
const KIND: &str = "torcx-generator-cache-v5";
/// A cache entry is at most what the generator may read of an image, plus
/// room for its JSON.
const MAX_ENTRY: u64 = 2 * crate::tree::policy::MAX_MEM_TOTAL + (1 << 20);

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Key {
    archive: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    /// See `FileId::ends`.
    ends: u64,
    /// See [`os_stamp`].
    os: u64,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    kind: String,
    key: Key,
    mem: Cached,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lookups: Option<Lookups>,
    /// The archive's `sha256:HEX`, as apply computed it while unpacking the
    /// file the key names (a tar archive not verified against an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

fn path(cfg: &Config, a: &Archive) -> PathBuf {
    cfg.host(&cfg.base_dir.join("cache/generator").join(format!("{}.json", a.id)))
}

impl Key {
    /// The key of `archive` for the file identified as `f`, on the OS
    /// stamped `os`.
    fn of(archive: &Path, f: FileId, os: u64) -> Key {
        Key {
            os,
            archive: archive.to_path_buf(),
            dev: f.dev,
            ino: f.ino,
            size: f.size,
            mtime: f.mtime.0,
            mtime_nsec: f.mtime.1,
            ctime: f.ctime.0,
            ctime_nsec: f.ctime.1,
            ends: f.ends,
        }
    }

    /// The identity of the file the key names.
    fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
            size: self.size,
            mtime: (self.mtime, self.mtime_nsec),
            ctime: (self.ctime, self.ctime_nsec),
            ends: self.ends,
        }
    }
}

/// The key of `a` as its file is now. An OCI layout is a directory whose
/// blobs are named by their digests: its `index.json` says which image a
/// tag is, and is written in place by some tools (the directory's own
/// times then stay).
fn key(cfg: &Config, a: &Archive) -> Option<Key> {
    let file = match a.format {
        crate::archive::Format::OciLayout => a.host.join("index.json"),
        _ => a.host.clone(),
    };
    let (f, st) = crate::sys::fsutil::open_regular_stat_io(&file).ok()?;
    Some(Key::of(&a.path, FileId::of_open(&f, &st).ok()?, os_stamp(cfg)))
}

/// The first 8 bytes of the sha256 of `USR/lib/os-release` (0 without
/// one): every entry is of the OS it was made on. An OS update swaps the
/// vendor store whole, and an archive there may keep its device, inode,
/// size, times and even its ends (a reproducible build of an image whose
/// unit changed by a byte); the first boot after an update reads every
/// archive again.
fn os_stamp(cfg: &Config) -> u64 {
    use sha2::Digest;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<(PathBuf, u64)>> = Mutex::new(None);
    let path = cfg.host(&cfg.usr_dir.join("lib/os-release"));
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, v)) = seen.as_ref()
        && *p == path
    {
        return *v;
    }
    let v = match crate::sys::fsutil::read_bounded_io(&path, 64 << 10) {
        Ok(text) => u64::from_le_bytes(sha2::Sha256::digest(&text)[..8].try_into().expect("8 of 32 bytes")),
        Err(_) => 0,
    };
    *seen = Some((path, v));
    v
}

/// The cached units of `a`, if the archive is still the one they came from.
pub fn load(cfg: &Config, a: &Archive) -> Option<Mem> {
    load_keyed(cfg, a, true).map(|(m, _, _)| m)
}

/// [`load`], with the entry's key and its lookups. Without `check_key` the
/// entry is not compared with the archive as it is now: the caller compares
/// its key with the file it opens.
fn load_keyed(cfg: &Config, a: &Archive, check_key: bool) -> Option<(Mem, Key, Option<Lookups>)> {
    // Sized from the file: one read, not a dozen growing ones (50 images
    // at every boot).
    let text = crate::sys::fsutil::read_bounded_io(&path(cfg, a), MAX_ENTRY).ok()?;
    let e: Entry = serde_json::from_slice(&text).ok()?;
    if e.kind != KIND
        || e.key.archive != a.path
        || e.key.os != os_stamp(cfg)
        || (check_key && Some(&e.key) != key(cfg, a).as_ref())
    {
        return None;
    }
    // Checked as the archive's own entries are: an entry that would not
    // pass is not used (the archive is read instead, and says why).
    match e.mem.into_mem() {
        Ok(m) => {
            let lookups = e.lookups.filter(|l| match l.check() {
                Ok(()) => true,
                Err(err) => {
                    log::info!("image {}: cached lookups not used: {err:#}", a.id);
                    false
                }
            });
            Some((m, e.key, lookups))
        }
        Err(err) => {
            log::info!("image {}: cache entry not used: {err:#}", a.id);
            None
        }
    }
}

/// The cached units of `a` and the identity of the file they came from,
/// for apply to mount that very file without checking it again (it holds
/// the file open and compares: see `attach::Vouched`).
pub fn load_vouched(cfg: &Config, a: &Archive) -> Option<crate::attach::Vouched> {
    // The file is compared when opened: looking at it here too is a stat
    // per image at every boot for nothing.
    let (mem, k, lookups) = load_keyed(cfg, a, false)?;
    Some(crate::attach::Vouched { mem, id: k.id(), lookups })
}

/// An entry's key and digest.
struct Head {
    key: Key,
    digest: Option<String>,
}

/// The head of `a`'s entry, if it is of this kind, for this archive path,
/// and would be used: an entry the generator refuses is neither kept
/// (it would be refused at every boot) nor trusted for a digest.
fn head(cfg: &Config, a: &Archive) -> Option<Head> {
    let t = crate::sys::fsutil::read_bounded_io(&path(cfg, a), MAX_ENTRY).ok()?;
    let e = serde_json::from_slice::<Entry>(&t)
        .ok()
        .filter(|e| e.kind == KIND && e.key.archive == a.path && e.key.os == os_stamp(cfg))?;
    let usable = e.lookups.as_ref().is_none_or(|l| l.check().is_ok()) && e.mem.into_mem().is_ok();
    usable.then_some(Head { key: e.key, digest: e.digest })
}

/// Whether the cache holds an entry for `a` as it is now (its content is
/// checked when the generator reads it, not here), with `digest` when one
/// is given.
pub fn is_current(cfg: &Config, a: &Archive, digest: Option<&str>) -> bool {
    head(cfg, a)
        .is_some_and(|h| Some(&h.key) == key(cfg, a).as_ref() && (digest.is_none() || h.digest.as_deref() == digest))
}

/// The digest an earlier apply recorded for `a`, and the identity of the
/// file it hashed: apply compares that with the file it opens (see
/// `stream::open_tar_digesting`). Anything but `sha256:` and 64 lowercase
/// hex digits is not used.
pub fn known_digest(cfg: &Config, a: &Archive) -> Option<KnownDigest> {
    let h = head(cfg, a)?;
    let digest = h.digest.filter(|d| {
        d.strip_prefix("sha256:")
            .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    })?;
    Some(KnownDigest { file: h.key.id(), digest })
}

/// Best effort: a boot without a cache is only slower.
/// `file`: the identity of the file the units were read from (from the
/// fstat of the file mounted or unpacked), else the archive's as it is now;
/// `digest`: the sha256 apply computed of that file, if any.
pub fn store(
    cfg: &Config,
    a: &Archive,
    mem: Mem,
    lookups: Option<Lookups>,
    file: Option<FileId>,
    digest: Option<String>,
) {
    let Some(key) = file.map(|f| Key::of(&a.path, f, os_stamp(cfg))).or_else(|| key(cfg, a)) else { return };
    let res = (|| -> Result<()> {
        let mem = Cached::of(&mem).ok_or_else(|| anyhow::anyhow!("a path that is not UTF-8"))?;
        let b = serde_json::to_vec(&Entry { kind: KIND.into(), key, mem, lookups, digest })?;
        atomic_write_unsynced(&path(cfg, a), &b, 0o644)
    })();
    if let Err(e) = res {
        log::info!("image {}: not caching its units for the generator: {e:#}", a.id);
    }
}
