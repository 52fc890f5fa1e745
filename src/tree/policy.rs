//! The one entry policy: what an archive entry may be, whichever reader
//! meets it (the confined extractor, the generator's tar and OCI readers,
//! `image inspect`, `image pack`), and the limits they all stop at. Readers
//! keep their own mechanics (writing files, building a `Mem`); every accept
//! or refuse, and every number, comes from here, so an archive apply
//! refuses is refused by the generator too, with the same words.

use anyhow::{Result, anyhow};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Entries of one image (all layers of an OCI image together), for an unpack
/// and for the readers that read into memory alike. A real image has
/// thousands; a million is far beyond any, yet stops a stream of empty
/// headers long before its inode and time cost matter.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// The largest single file read into memory (a manifest, a unit, a drop-in).
/// These are text of a few kilobytes; a larger file is not a unit and is left
/// unread (the generator then sees a file it cannot read).
pub const MAX_MEM_FILE: u64 = 1 << 20;

/// All bytes read into memory for one image. The generator runs before most
/// of the boot, one image at a time, so this bounds its memory. 16 MiB, not
/// the 8 MiB the tar reader had: the OCI reader counts every layer's copy of
/// a unit (a later layer replacing it still costs its bytes), and thousands
/// of units with drop-ins fit either way, while 16 MiB is still nothing next
/// to what the boot has.
pub const MAX_MEM_TOTAL: u64 = 16 << 20;

/// How far a reader may go with one image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For an unpack: bytes of file data, each file rounded up to a page as
    /// tmpfs stores it. For a reader into memory: bytes read, in all.
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Limits {
    /// What the readers into memory (the generator's) may read.
    pub const MEM: Limits = Limits { max_bytes: MAX_MEM_TOTAL, max_entries: MAX_ENTRIES };

    /// An unpack bounded by `max_bytes` (`unpack_limit` in the config).
    pub fn unpack(max_bytes: u64) -> Limits {
        Limits { max_bytes, max_entries: MAX_ENTRIES }
    }
}

/// An error about one archive entry; the caller adds the image and archive.
pub fn entry_err(path: &[u8], msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("entry {:?}: {msg}", String::from_utf8_lossy(path))
}

/// Splits a tar path into plain components. `..` and absolute names are
/// refused (not clamped, as upstream did): such an archive is hostile or broken.
pub fn components(raw: &[u8]) -> Result<Vec<&OsStr>> {
    if raw.first() == Some(&b'/') {
        return Err(entry_err(raw, "absolute path refused"));
    }
    let mut out = vec![];
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(entry_err(raw, "path traversal ('..') refused")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// A symlink may only point inside the image: relative, and never climbing
/// above the root from where it stands (`depth` directories below it).
pub fn check_symlink(raw: &[u8], depth: usize, target: &[u8]) -> Result<()> {
    let t = String::from_utf8_lossy(target);
    if target.is_empty() {
        return Err(entry_err(raw, "symlink with an empty target"));
    }
    if target.first() == Some(&b'/') {
        return Err(entry_err(raw, format!("symlink to absolute path {t:?} points outside the image")));
    }
    let mut d = depth as i64;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                d -= 1;
                if d < 0 {
                    return Err(entry_err(raw, format!("symlink to {t:?} points outside the image")));
                }
            }
            _ => d += 1,
        }
    }
    Ok(())
}

/// The target of a hard link, as plain components from the image root.
pub fn hardlink_target<'a>(raw: &[u8], target: &'a [u8]) -> Result<Vec<&'a OsStr>> {
    components(target).map_err(|_| {
        entry_err(raw, format!("hard link to {:?} points outside the image", String::from_utf8_lossy(target)))
    })
}

/// What an entry is, whatever format it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Device,
    Fifo,
    Socket,
    /// Anything else, as the format names it.
    Other(String),
}

impl Kind {
    /// Tar headers without a meaning for the tree (global PAX headers) are
    /// `None`: readers skip them.
    pub fn of_tar(t: tar::EntryType) -> Option<Kind> {
        Some(match t {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Char | tar::EntryType::Block => Kind::Device,
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::XGlobalHeader => return None,
            other => match format!("{other:?}") {
                // Types the tar crate has no name for: the header's byte.
                s if s.starts_with("__") => Kind::Other(format!("{:?}", char::from(other.as_byte()))),
                s => Kind::Other(s),
            },
        })
    }

    /// A file found on disk (`image pack`).
    pub fn of_file_type(ft: std::fs::FileType) -> Kind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() || ft.is_block_device() {
            Kind::Device
        } else {
            Kind::Other("unknown file type".into())
        }
    }

    /// A node of a squashfs or erofs image.
    pub fn of_special(s: crate::archive::fsimage::Special) -> Kind {
        use crate::archive::fsimage::Special;
        match s {
            Special::Device => Kind::Device,
            Special::Fifo => Kind::Fifo,
            Special::Socket => Kind::Socket,
            Special::FifoOrSocket => Kind::Other("FIFO or socket".into()),
        }
    }

    /// How messages name a refused kind.
    pub fn name(&self) -> &str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::HardLink => "hard link",
            Kind::Device => "device node",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::Other(s) => s,
        }
    }

    /// Regular files, directories, symlinks and hard links make a tree;
    /// device nodes, FIFOs, sockets and anything else are refused.
    pub fn accepted(&self) -> bool {
        matches!(self, Kind::File | Kind::Dir | Kind::Symlink | Kind::HardLink)
    }
}

/// The verdict on the kind of entry `raw`: refused kinds get the same
/// words from every reader.
pub fn check_kind(raw: &[u8], kind: &Kind) -> Result<()> {
    match kind {
        k if k.accepted() => Ok(()),
        Kind::Device | Kind::Fifo | Kind::Socket => Err(entry_err(raw, format!("{} refused", kind.name()))),
        Kind::Other(t) => Err(entry_err(raw, format!("unsupported entry type {t}"))),
        _ => unreachable!(),
    }
}

/// A tar entry that passed the policy.
pub struct Checked<'a> {
    /// Its path, plain components; empty for the root (a directory).
    pub comps: Vec<&'a OsStr>,
    pub kind: Kind,
}

/// The whole verdict on a tar entry but what only the tree can tell (what
/// is already at its path, where a link really ends): the path, the kind,
/// and for links the target. `link` is the entry's link name. `None` for
/// headers that are skipped.
pub fn check_tar<'a>(raw: &'a [u8], ty: tar::EntryType, link: Option<&[u8]>) -> Result<Option<Checked<'a>>> {
    // Global headers may name anything (GNU tar uses an absolute path).
    let Some(kind) = Kind::of_tar(ty) else { return Ok(None) };
    let comps = components(raw)?;
    if comps.is_empty() && kind != Kind::Dir {
        return Err(entry_err(raw, "empty path"));
    }
    check_kind(raw, &kind)?;
    match kind {
        Kind::Symlink => {
            let t = link.ok_or_else(|| entry_err(raw, "symlink without a target"))?;
            check_symlink(raw, comps.len() - 1, t)?;
        }
        Kind::HardLink => {
            let t = link.ok_or_else(|| entry_err(raw, "hard link without a target"))?;
            if hardlink_target(raw, t)?.is_empty() {
                return Err(entry_err(raw, "hard link to the image root"));
            }
        }
        _ => {}
    }
    Ok(Some(Checked { comps, kind }))
}

/// Counts one more entry against `limits`.
pub fn count_entry(raw: &[u8], count: &mut u64, limits: &Limits) -> Result<()> {
    *count += 1;
    if *count > limits.max_entries {
        return Err(entry_err(raw, format!("more than {} entries: refused as an archive bomb", limits.max_entries)));
    }
    Ok(())
}

/// What a file of `size` bytes costs an unpack: tmpfs stores whole pages,
/// and an inode besides.
pub fn unpack_cost(size: u64) -> u64 {
    size.div_ceil(4096) * 4096 + 4096
}

/// Charges `size` more bytes of an unpack against `limits`.
pub fn charge_unpack(raw: &[u8], total: &mut u64, size: u64, limits: &Limits) -> Result<()> {
    *total += unpack_cost(size);
    if *total > limits.max_bytes {
        return Err(entry_err(
            raw,
            format!(
                "unpacked size exceeds the limit of {} bytes (TORCX_UNPACK_LIMIT or unpack_limit in the config): stopped",
                limits.max_bytes
            ),
        ));
    }
    Ok(())
}

/// Whether a reader into memory reads a wanted file of `size` bytes at all.
pub fn fits_in_memory(size: u64) -> bool {
    size <= MAX_MEM_FILE
}

/// Charges `size` more bytes read into memory against `limits`.
pub fn charge_mem(total: &mut u64, size: u64, limits: &Limits) -> Result<()> {
    *total += size;
    if *total > limits.max_bytes {
        anyhow::bail!("unit files larger than {} bytes in all", limits.max_bytes);
    }
    Ok(())
}

/// A path twice in one archive is refused, not "the later wins" as tar does:
/// the generator, which stops reading once it has the units, would otherwise
/// plan the earlier copy. (In OCI layers a later entry replaces an earlier
/// one, as a later layer replaces a lower one's: that is the format.)
pub fn duplicate_err(raw: &[u8]) -> anyhow::Error {
    entry_err(raw, "duplicate entry: the path is already in the archive")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_rules() {
        check_symlink(b"a/l", 1, b"../b").unwrap();
        check_symlink(b"a/l", 1, b"x/../../b").unwrap();
        assert!(check_symlink(b"a/l", 1, b"../../b").is_err());
        assert!(check_symlink(b"l", 0, b"/etc/passwd").is_err());
        assert!(check_symlink(b"l", 0, b"").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(components(b"./a//b/").unwrap(), [OsStr::new("a"), OsStr::new("b")]);
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../x").is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(format!("{}", check_kind(b"d", &Kind::Device).unwrap_err()), "entry \"d\": device node refused");
        assert_eq!(format!("{}", check_kind(b"p", &Kind::Fifo).unwrap_err()), "entry \"p\": FIFO refused");
        assert!(check_tar(b"x", tar::EntryType::GNUSparse, None).is_err());
        assert!(check_tar(b"g", tar::EntryType::XGlobalHeader, None).unwrap().is_none());
    }
}
