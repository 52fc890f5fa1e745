//! The one entry policy: what an archive entry may be, whichever reader
//! meets it (the confined extractor, the generator's tar and OCI readers,
//! `image inspect`, `image pack`), and the limits they all stop at. Readers
//! keep their own mechanics (writing files, building a `Mem`); every accept
//! or refuse comes from here, and every number from `limits`, so an archive apply
//! refuses is refused by the generator too, with the same words.

use anyhow::Result;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub use super::limits::*;
pub use super::refusal::*;

/// Splits a tar path into plain components. `..` and absolute names are
/// refused (not clamped, as upstream did): such an archive is hostile or broken.
pub fn components(raw: &[u8]) -> Result<Vec<&OsStr>> {
    // The length first: no message echoes more than MAX_PATH bytes of it.
    if raw.len() > MAX_PATH {
        return Err(entry_err(&raw[..64], format!("path of {} bytes refused (at most {MAX_PATH})", raw.len())));
    }
    if raw.first() == Some(&b'/') {
        return Err(entry_err(raw, "absolute path refused"));
    }
    if raw.contains(&0) {
        return Err(entry_err(raw, "a NUL byte in the path refused"));
    }
    let mut out = vec![];
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(entry_err(raw, "path traversal ('..') refused")),
            c if c.len() > MAX_NAME => {
                return Err(entry_err(raw, format!("a name of {} bytes refused (at most {MAX_NAME})", c.len())));
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(entry_err(&raw[..64], format!("path {} deep refused (at most {MAX_DEPTH})", out.len())));
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
    if target.len() > MAX_PATH || target.contains(&0) {
        return Err(entry_err(raw, format!("symlink target of {} bytes, or with a NUL byte, refused", target.len())));
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
    if target.len() > MAX_PATH || target.contains(&0) {
        return Err(entry_err(raw, format!("hard link target of {} bytes, or with a NUL byte, refused", target.len())));
    }
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
/// and for links the target. `link` is the entry's link name, `size` the
/// data its header declares. `None` for headers that are skipped.
pub fn check_tar<'a>(raw: &'a [u8], ty: tar::EntryType, link: Option<&[u8]>, size: u64) -> Result<Option<Checked<'a>>> {
    // Global headers may name anything (GNU tar uses an absolute path).
    let Some(kind) = Kind::of_tar(ty) else { return Ok(None) };
    let comps = components(raw)?;
    if comps.is_empty() && kind != Kind::Dir {
        return Err(entry_err(raw, "empty path"));
    }
    check_kind(raw, &kind)?;
    // The tar crate skips the data a directory or link declares, GNU tar
    // reads it as the next headers: two readers would see two trees. And
    // nothing charges it, so terabytes of it passed the unpack limit.
    if kind != Kind::File && size > 0 {
        return Err(entry_err(
            raw,
            format!("a {} with {size} bytes of data: only a regular file carries data", kind.name()),
        ));
    }
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

/// A tar image whose top holds `oci-layout` is an OCI image layout: a torcx
/// bundle named as a plain archive (seed 001 calls a bundle "a gzip tar of
/// an OCI layout", so `NAME:REF.torcx.tgz` is an easy mistake). Attached as
/// a tree it would be `index.json` and `blobs/`, so it is refused, naming
/// the file name that reads it as a bundle.
pub fn check_not_bundle(raw: &[u8], c: &Checked<'_>) -> Result<()> {
    if c.kind == Kind::File && c.comps.len() == 1 && c.comps[0] == "oci-layout" {
        return Err(entry_err(
            raw,
            "this archive is an OCI image layout, not an image tree: a torcx bundle is named \
             NAME.torcx.oci.tgz (its images are NAME:TAG, one per tag)",
        ));
    }
    Ok(())
}

/// Counts one more entry against `limits`.
pub fn count_entry(raw: &[u8], link: Option<&[u8]>, count: &mut Count, limits: &Limits) -> Result<()> {
    count.entries += 1;
    if count.entries > limits.max_entries {
        return Err(limit_err(raw, format!("more than {} entries: refused as an archive bomb", limits.max_entries)));
    }
    count.names += (raw.len() + link.map_or(0, <[u8]>::len)) as u64;
    if count.names > MAX_NAMES {
        return Err(limit_err(raw, format!("paths and link targets longer than {MAX_NAMES} bytes in all: refused")));
    }
    Ok(())
}

/// Counts `dirs` directories the path of entry `raw` implies and no entry
/// made (an archive need not list a file's parents), `bytes` of paths in
/// all: they cost what entries do, in every reader alike, so a few
/// thousand deep paths cannot make millions of directories.
pub fn count_implied(raw: &[u8], dirs: u64, bytes: u64, count: &mut Count, limits: &Limits) -> Result<()> {
    if dirs == 0 {
        return Ok(());
    }
    count.entries += dirs;
    if count.entries > limits.max_entries {
        return Err(entry_err(
            raw,
            format!(
                "more than {} entries (with the directories paths imply): refused as an archive bomb",
                limits.max_entries
            ),
        ));
    }
    count.names += bytes;
    if count.names > MAX_NAMES {
        return Err(entry_err(
            raw,
            format!(
                "paths and link targets longer than {MAX_NAMES} bytes in all (with the directories paths imply): refused"
            ),
        ));
    }
    Ok(())
}

/// What [`count_entry`] has counted of one image.
#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub entries: u64,
    pub names: u64,
}

/// What a file of `size` bytes costs an unpack: tmpfs stores whole pages,
/// and an inode besides.
pub fn unpack_cost(size: u64) -> u64 {
    size.div_ceil(4096) * 4096 + 4096
}

/// Charges `size` more bytes of an unpack against `limits`.
pub fn charge_unpack(raw: &[u8], total: &mut u64, size: u64, limits: &Limits) -> Result<()> {
    let cost = unpack_cost(size);
    // The image's own limit first: past it, the image cannot fit whatever
    // the others take, and the generator names the same limit.
    // (Nothing taken from the pool, nothing added: what the unpack gives
    // back on failure is its total.)
    if *total + cost > limits.max_bytes {
        return Err(limit_err(
            raw,
            format!(
                "unpacked size exceeds the limit of {} bytes (TORCX_UNPACK_LIMIT or unpack_limit in the config): stopped",
                limits.max_bytes
            ),
        ));
    }
    if let Some(pool) = limits.pool
        && !pool.take(cost)
    {
        return Err(shared_limit_err(
            raw,
            format!(
                "unpacked size exceeds what the other images left of the limit of {} bytes for all images (TORCX_UNPACK_TOTAL_LIMIT or unpack_total_limit in the config): stopped",
                pool.total
            ),
        ));
    }
    *total += cost;
    Ok(())
}

/// Charges a file of `size` bytes that a reader into memory streams past
/// against the unpack limit, in apply's words (`limits.data`).
pub fn charge_data(raw: &[u8], total: &mut u64, size: u64, limits: &Limits) -> Result<()> {
    charge_unpack(raw, total, size, &Limits::unpack(limits.data))
}

/// Whether a reader into memory reads a wanted file of `size` bytes at all.
pub fn fits_in_memory(size: u64) -> bool {
    size <= MAX_MEM_FILE
}

/// The image manifest may be at most [`MAX_MEM_FILE`] in every reader,
/// apply's included: a generator that skipped a larger one would scan the
/// image instead and plan units apply does not place.
pub fn check_manifest_size(size: u64) -> Result<()> {
    if size > MAX_MEM_FILE {
        anyhow::bail!(".torcx/manifest.json: {size} bytes refused (at most {MAX_MEM_FILE})");
    }
    Ok(())
}

/// Charges `size` more bytes read into memory against `limits`.
pub fn charge_mem(total: &mut u64, size: u64, limits: &Limits) -> Result<()> {
    *total += size;
    if *total > limits.max_bytes {
        return Err(crate::model::failure::error(
            crate::model::failure::Kind::Limit,
            format!("unit files larger than {} bytes in all", limits.max_bytes),
        ));
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

// ---------------------------------------------------------------------------
// What is already at a path. The extractor asks the tree it writes; the
// readers that write no tree (the generator's) ask [`Paths`]. Both get the
// same answers in the same words from the functions below.

/// What an earlier entry left at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    Symlink,
}

/// A parent component that is not a directory.
pub fn through_non_dir(raw: &[u8], c: &OsStr) -> anyhow::Error {
    entry_err(raw, format!("{c:?} is a symlink or a file, not a directory: writing through it is refused"))
}

/// Whether an entry of `kind` may go where `existing` already is.
pub fn check_over(raw: &[u8], kind: &Kind, existing: Node) -> Result<()> {
    match (kind, existing) {
        (Kind::Dir, Node::Dir) => Ok(()),
        (Kind::Dir, _) => Err(entry_err(raw, "a directory over an existing symlink or file is refused")),
        (Kind::File, Node::File) => Err(duplicate_err(raw)),
        (Kind::File, _) => Err(entry_err(raw, "a file over an existing directory or symlink is refused")),
        _ => Err(entry_err(raw, "duplicate entry: the path already exists")),
    }
}

/// A hard link whose target is not a regular file of the image so far.
pub fn hardlink_not_file(raw: &[u8], target: &[u8]) -> anyhow::Error {
    entry_err(
        raw,
        format!("hard link to {:?}, which is not a regular file already in the image", String::from_utf8_lossy(target)),
    )
}

/// What is at each path of an archive read so far, for the readers that do
/// not write a tree: with it they refuse what the extractor refuses on
/// disk. Paths are kept as keyed 64-bit hashes (about 24 bytes an entry, so
/// a million entries stay well inside the generator's memory), each
/// computed in one pass over the path. Every directory gets an id, and every
/// path remembers the id of the directory it was made in: removing or
/// replacing a directory (an OCI whiteout or layer) leaves what was below it
/// behind, unreachable, without walking it.
#[derive(Default)]
pub struct Paths {
    keys: std::collections::hash_map::RandomState,
    seen: std::collections::HashMap<u64, Slot>,
    ids: u32,
    /// The id of the image root (an opaque whiteout of the root renews it).
    root: u32,
    /// The directories made for parents no entry made, bounded as entries
    /// are (each costs a slot here).
    implied: Count,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    node: Node,
    id: u32,
    parent: u32,
}

/// The keyed hash of every prefix of `comps` (the last is the whole path),
/// in one pass over the path. Components hold no NUL (refused above), so
/// the NUL after each keeps `a/bc` and `ab/c` apart.
pub fn prefix_hashes(keys: &std::collections::hash_map::RandomState, comps: &[&OsStr]) -> Vec<u64> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = keys.build_hasher();
    comps
        .iter()
        .map(|c| {
            h.write(c.as_bytes());
            h.write_u8(0);
            h.clone().finish()
        })
        .collect()
}

impl Paths {
    /// The hash of every prefix of `comps` (the last is the whole path).
    fn prefixes(&self, comps: &[&OsStr]) -> Vec<u64> {
        prefix_hashes(&self.keys, comps)
    }

    /// The key of a whole path (for readers that match paths by it).
    pub fn key(&self, comps: &[&OsStr]) -> u64 {
        self.prefixes(comps).last().copied().unwrap_or(0)
    }

    /// What is at each prefix now: `None` from the first that is missing
    /// (or was left behind by its directory's removal).
    fn live(&self, keys: &[u64]) -> Vec<Option<Slot>> {
        let mut parent = Some(self.root);
        keys.iter()
            .map(|k| {
                let s = parent.and_then(|p| self.seen.get(k).copied().filter(|s| s.parent == p));
                parent = s.filter(|s| s.node == Node::Dir).map(|s| s.id);
                s
            })
            .collect()
    }

    fn new_id(&mut self) -> u32 {
        self.ids += 1;
        self.ids
    }

    /// Checks the entry `raw` (a checked kind and path) as the extractor
    /// would find the tree, and records what it leaves. `link` is a hard
    /// link's target.
    pub fn enter(&mut self, raw: &[u8], comps: &[&OsStr], kind: &Kind, link: Option<&[u8]>) -> Result<()> {
        self.put(raw, comps, kind, link, false)
    }

    /// The same for an entry of an OCI layer, which replaces what is at its
    /// path (a directory over a directory keeps what is below it).
    pub fn replace(&mut self, raw: &[u8], comps: &[&OsStr], kind: &Kind, link: Option<&[u8]>) -> Result<()> {
        self.put(raw, comps, kind, link, true)
    }

    /// A whiteout: `comps` and what is below it are gone.
    pub fn remove(&mut self, comps: &[&OsStr]) {
        let keys = self.prefixes(comps);
        if let (Some(k), Some(Some(_))) = (keys.last(), self.live(&keys).last()) {
            self.seen.remove(k);
        }
    }

    /// An opaque whiteout: what is below the directory `comps` is gone.
    pub fn clear(&mut self, comps: &[&OsStr]) {
        if comps.is_empty() {
            self.root = self.new_id();
            return;
        }
        let keys = self.prefixes(comps);
        if let (Some(k), Some(Some(s))) = (keys.last(), self.live(&keys).last())
            && s.node == Node::Dir
        {
            let id = self.new_id();
            self.seen.insert(*k, Slot { id, ..*s });
        }
    }

    fn put(&mut self, raw: &[u8], comps: &[&OsStr], kind: &Kind, link: Option<&[u8]>, replace: bool) -> Result<()> {
        let Some((_, parents)) = comps.split_last() else { return Ok(()) };
        // In the extractor's order: the target of a hard link, the parents,
        // then what is at the path itself.
        if let (Kind::HardLink, Some(t)) = (kind, link) {
            let tc = hardlink_target(raw, t)?;
            // A layer's entry first removes what is at its path: a link to
            // that path, or below it, then finds nothing.
            if replace && tc.starts_with(comps) && self.live(&self.prefixes(comps)).last().is_some_and(Option::is_some)
            {
                return Err(if tc.len() == comps.len() {
                    hardlink_not_file(raw, t)
                } else {
                    entry_err(raw, format!("{:?} does not exist", comps[comps.len() - 1]))
                });
            }
            let slots = self.live(&self.prefixes(&tc));
            // The target's directories, walked as the extractor walks them.
            for (c, s) in tc.iter().zip(&slots).take(tc.len() - 1) {
                match s {
                    Some(Slot { node: Node::Dir, .. }) => {}
                    Some(_) => return Err(through_non_dir(raw, c)),
                    None => return Err(entry_err(raw, format!("{c:?} does not exist"))),
                }
            }
            if !matches!(slots.last(), Some(Some(Slot { node: Node::File, .. }))) {
                return Err(hardlink_not_file(raw, t));
            }
        }
        let keys = self.prefixes(comps);
        let slots = self.live(&keys);
        let mut parent = self.root;
        let mut len = 0u64;
        for ((c, k), s) in parents.iter().zip(&keys).zip(&slots) {
            len += c.len() as u64 + u64::from(len > 0);
            parent = match s {
                Some(Slot { node: Node::Dir, id, .. }) => *id,
                Some(_) => return Err(through_non_dir(raw, c)),
                // The extractor creates missing parents.
                None => {
                    count_implied(raw, 1, len, &mut self.implied, &Limits::MEM)?;
                    let id = self.new_id();
                    self.seen.insert(*k, Slot { node: Node::Dir, id, parent });
                    id
                }
            };
        }
        // (A parent made just now has nothing below it yet.)
        let existing = if slots[..parents.len()].iter().all(Option::is_some) { *slots.last().unwrap() } else { None };
        if let Some(e) = existing {
            if *kind == Kind::Dir && e.node == Node::Dir {
                return Ok(());
            }
            if !replace {
                check_over(raw, kind, e.node)?;
            }
        }
        let node = match kind {
            Kind::Dir => Node::Dir,
            Kind::Symlink => Node::Symlink,
            _ => Node::File,
        };
        let id = self.new_id();
        self.seen.insert(*keys.last().unwrap(), Slot { node, id, parent });
        Ok(())
    }
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
    fn what_is_already_there() {
        let mut p = Paths::default();
        let c = |s: &'static str| components(s.as_bytes()).unwrap();
        let err = |r: Result<()>| format!("{}", r.unwrap_err());
        p.enter(b"a/f", &c("a/f"), &Kind::File, None).unwrap();
        p.enter(b"a/", &c("a/"), &Kind::Dir, None).unwrap();
        assert_eq!(
            err(p.enter(b"a/f/", &c("a/f/"), &Kind::Dir, None)),
            "entry \"a/f/\": a directory over an existing symlink or file is refused"
        );
        assert_eq!(
            err(p.enter(b"./a/f", &c("./a/f"), &Kind::File, None)),
            "entry \"./a/f\": duplicate entry: the path is already in the archive"
        );
        assert_eq!(
            err(p.enter(b"a/f/x", &c("a/f/x"), &Kind::File, None)),
            "entry \"a/f/x\": \"f\" is a symlink or a file, not a directory: writing through it is refused"
        );
        p.enter(b"a/h", &c("a/h"), &Kind::HardLink, Some(b"a/f")).unwrap();
        assert_eq!(
            err(p.enter(b"a/g", &c("a/g"), &Kind::HardLink, Some(b"a"))),
            "entry \"a/g\": hard link to \"a\", which is not a regular file already in the image"
        );
        p.enter(b"l", &c("l"), &Kind::Symlink, None).unwrap();
        assert_eq!(
            err(p.enter(b"l/x", &c("l/x"), &Kind::File, None)),
            "entry \"l/x\": \"l\" is a symlink or a file, not a directory: writing through it is refused"
        );
        assert_eq!(
            err(p.enter(b"a", &c("a"), &Kind::File, None)),
            "entry \"a\": a file over an existing directory or symlink is refused"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(format!("{}", check_kind(b"d", &Kind::Device).unwrap_err()), "entry \"d\": device node refused");
        assert_eq!(format!("{}", check_kind(b"p", &Kind::Fifo).unwrap_err()), "entry \"p\": FIFO refused");
        assert!(check_tar(b"x", tar::EntryType::GNUSparse, None, 0).is_err());
        assert!(check_tar(b"g", tar::EntryType::XGlobalHeader, None, 0).unwrap().is_none());
    }
}
