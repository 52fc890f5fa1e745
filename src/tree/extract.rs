//! The confined tar extractor. Nothing an archive says can make it write
//! outside the image tree: every path is checked before use, directories are
//! walked one component at a time without following symlinks, symlinks that
//! leave the tree are refused, device nodes and FIFOs are refused, and the
//! unpacked size is bounded so a bomb stops early.

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of file data, each file rounded up to a page as tmpfs stores it.
    pub max_bytes: u64,
    pub max_entries: u64,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
}

/// An error about one archive entry; the caller adds the image and archive.
fn entry_err(path: &[u8], msg: impl std::fmt::Display) -> anyhow::Error {
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

/// Open directories kept by path: tar entries of one directory come
/// together, but several directories interleave (a/, b/, a/ again).
const DIR_CACHE: usize = 256;

/// Opens (creating when `create`) directory `c` in `parent`, never
/// following a symlink. Returns whether it was created.
fn open_dir_step(parent: &OwnedFd, raw: &[u8], c: &OsStr, create: bool) -> Result<(OwnedFd, bool)> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, c, flags, Mode::empty()) {
        Ok(fd) => Ok((fd, false)),
        Err(Errno::NOENT) if create => {
            let created = match rustix::fs::mkdirat(parent, c, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    rustix::fs::chmodat(parent, c, Mode::from_raw_mode(0o755), AtFlags::empty())
                        .map_err(|e| entry_err(raw, format!("creating directory {c:?}: {e}")))?;
                    true
                }
                Err(Errno::EXIST) => false,
                Err(e) => return Err(entry_err(raw, format!("creating directory {c:?}: {e}"))),
            };
            let fd = rustix::fs::openat(parent, c, flags, Mode::empty())
                .map_err(|e| entry_err(raw, format!("opening directory {c:?}: {e}")))?;
            Ok((fd, created))
        }
        Err(Errno::NOENT) => Err(entry_err(raw, format!("{c:?} does not exist"))),
        Err(Errno::NOTDIR | Errno::LOOP) => {
            Err(entry_err(raw, format!("{c:?} is a symlink or a file, not a directory: writing through it is refused")))
        }
        Err(e) => Err(entry_err(raw, format!("opening directory {c:?}: {e}"))),
    }
}

struct Extractor {
    root: OwnedFd,
    /// Parent directories already open, by path (see [`DIR_CACHE`]).
    cache: std::collections::HashMap<Vec<OsString>, OwnedFd>,
    limits: Limits,
    stats: Stats,
    entries: u64,
    symlinks: Vec<PathBuf>,
    buf: Vec<u8>,
}

impl Extractor {
    /// Opens (creating when `create`) the directory made of `comps`, one
    /// component at a time, never following a symlink.
    fn dir(&mut self, raw: &[u8], comps: &[&OsStr], create: bool) -> Result<&OwnedFd> {
        if comps.is_empty() {
            return Ok(&self.root);
        }
        let key = |n: usize| -> Vec<OsString> { comps[..n].iter().map(|c| c.to_os_string()).collect() };
        if !self.cache.contains_key(&key(comps.len())) {
            if self.cache.len() >= DIR_CACHE {
                self.cache.clear();
            }
            // Walk on from the deepest directory already open.
            let mut have = (1..comps.len()).rev().find(|&n| self.cache.contains_key(&key(n))).unwrap_or(0);
            while have < comps.len() {
                let parent = if have == 0 { &self.root } else { &self.cache[&key(have)] };
                let (fd, created) = open_dir_step(parent, raw, comps[have], create)?;
                self.stats.dirs += u64::from(created);
                self.cache.insert(key(have + 1), fd);
                have += 1;
            }
        }
        Ok(&self.cache[&key(comps.len())])
    }

    fn count_entry(&mut self, raw: &[u8]) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(entry_err(
                raw,
                format!("more than {} entries: refused as an archive bomb", self.limits.max_entries),
            ));
        }
        Ok(())
    }

    fn charge(&mut self, raw: &[u8], size: u64) -> Result<()> {
        self.stats.bytes += size.div_ceil(4096) * 4096 + 4096;
        if self.stats.bytes > self.limits.max_bytes {
            return Err(entry_err(
                raw,
                format!(
                    "unpacked size exceeds the limit of {} bytes (TORCX_UNPACK_LIMIT or unpack_limit in the config): stopped",
                    self.limits.max_bytes
                ),
            ));
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let comps = components(&raw)?;
        let kind = e.header().entry_type();
        if comps.is_empty() {
            // "./" itself: the tree root already exists.
            return if kind.is_dir() { Ok(()) } else { Err(entry_err(&raw, "empty path")) };
        }
        self.count_entry(&raw)?;
        let (name, parent) = comps.split_last().unwrap();
        let name = name.to_os_string();
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                let mode = mode | 0o700;
                let dir = self.dir(&raw, parent, true)?;
                match rustix::fs::mkdirat(dir, &name, Mode::from_raw_mode(mode)) {
                    Ok(()) => {
                        // The mode is the archive's, whatever the umask.
                        rustix::fs::chmodat(dir, &name, Mode::from_raw_mode(mode), AtFlags::empty())?;
                        self.stats.dirs += 1
                    }
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            return Err(entry_err(&raw, "a directory over an existing symlink or file is refused"));
                        }
                        rustix::fs::chmodat(dir, &name, Mode::from_raw_mode(mode), AtFlags::empty())?;
                    }
                    Err(err) => return Err(entry_err(&raw, err)),
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                self.charge(&raw, size)?;
                let mtime = e.header().mtime().unwrap_or(0);
                let dir = self.dir(&raw, parent, true)?;
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                // A path twice in one archive is refused, not "the later
                // wins" as tar does: the generator, which stops reading once
                // it has the units, would otherwise plan the earlier copy.
                // (OCI layers replace lower layers' files before this.)
                let fd = match rustix::fs::openat(dir, &name, flags, Mode::from_raw_mode(mode)) {
                    Ok(fd) => fd,
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
                        return Err(if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                            entry_err(&raw, "duplicate entry: the path is already in the archive")
                        } else {
                            entry_err(&raw, "a file over an existing directory or symlink is refused")
                        });
                    }
                    Err(err) => return Err(entry_err(&raw, format!("creating: {err}"))),
                };
                let mut f = std::fs::File::from(fd);
                let mut buf = std::mem::take(&mut self.buf);
                let res = (|| -> std::io::Result<()> {
                    loop {
                        let n = e.read(&mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        f.write_all(&buf[..n])?;
                    }
                })();
                self.buf = buf;
                res.map_err(|err| entry_err(&raw, format!("writing: {err}")))?;
                // The mode is the archive's, whatever the umask (which is
                // process-wide, so it cannot be changed while images unpack
                // side by side).
                rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|err| entry_err(&raw, err))?;
                let t = Timespec { tv_sec: mtime as i64, tv_nsec: 0 };
                let _ = rustix::fs::futimens(&f, &Timestamps { last_access: t, last_modification: t });
                self.stats.files += 1;
            }
            tar::EntryType::Symlink => {
                let target =
                    e.link_name_bytes().ok_or_else(|| entry_err(&raw, "symlink without a target"))?.into_owned();
                check_symlink(&raw, parent.len(), &target)?;
                let dir = self.dir(&raw, parent, true)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, &name).map_err(|err| match err {
                    Errno::EXIST => entry_err(&raw, "duplicate entry: the path already exists"),
                    err => entry_err(&raw, err),
                })?;
                self.symlinks.push(PathBuf::from(OsStr::from_bytes(&raw)));
                self.stats.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target =
                    e.link_name_bytes().ok_or_else(|| entry_err(&raw, "hard link without a target"))?.into_owned();
                let tcomps = components(&target).map_err(|_| {
                    entry_err(
                        &raw,
                        format!("hard link to {:?} points outside the image", String::from_utf8_lossy(&target)),
                    )
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(entry_err(&raw, "hard link to the image root"));
                };
                let tname = tname.to_os_string();
                let src = rustix::fs::openat(
                    self.dir(&raw, tparent, false)?,
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                match rustix::fs::statat(&src, &tname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
                    _ => {
                        return Err(entry_err(
                            &raw,
                            format!(
                                "hard link to {:?}, which is not a regular file already in the image",
                                String::from_utf8_lossy(&target)
                            ),
                        ));
                    }
                }
                let dir = self.dir(&raw, parent, true)?;
                rustix::fs::linkat(&src, &tname, dir, &name, AtFlags::empty()).map_err(|err| entry_err(&raw, err))?;
                self.stats.hardlinks += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(entry_err(&raw, "device node refused"));
            }
            tar::EntryType::Fifo => return Err(entry_err(&raw, "FIFO refused")),
            other => return Err(entry_err(&raw, format!("unsupported entry type {other:?}"))),
        }
        Ok(())
    }
}

/// A symlink may only point inside the image: relative, and never climbing
/// above the root from where it stands.
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

/// Unpacks the tar stream `src` into the empty directory `dest`.
pub fn extract(src: impl Read, dest: &Path, limits: Limits) -> Result<Stats> {
    let root = crate::sys::fsutil::open_dir(dest)?;
    let mut x = Extractor {
        root,
        cache: Default::default(),
        limits,
        stats: Stats::default(),
        entries: 0,
        symlinks: vec![],
        buf: vec![0; 128 * 1024],
    };
    let res = (|| -> Result<()> {
        let mut ar = tar::Archive::new(src);
        for e in ar.entries().context("reading archive")? {
            let e = e.context("reading archive")?;
            if e.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            x.entry(e)?;
        }
        Ok(())
    })();
    res?;
    // The lexical check above cannot see chains (`a -> b/..` where `b` is
    // itself a link): let the kernel resolve every symlink beneath the root.
    x.cache.clear();
    for l in &x.symlinks {
        check_link(&x.root, l)?;
    }
    Ok(x.stats)
}

/// Lets the kernel resolve the symlink `rel` beneath `root`. Only a link
/// that ends nowhere inside the tree (ENOENT, ENOTDIR) may stay: the tree is
/// read-only, so it stays dangling. Anything else is refused: EXDEV is an
/// escape, and ELOOP or EAGAIN mean the kernel could not finish a scoped
/// lookup (a long chain through `..` is counted twice), which an escape can
/// hide behind.
fn check_link(root: &OwnedFd, rel: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match crate::sys::fsutil::open_beneath(root, rel, OFlags::PATH) {
            Ok(_) => return Ok(()),
            Err(e) => match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(Errno::NOTDIR) => return Ok(()),
                // A rename elsewhere on the machine: try again, a little.
                Some(Errno::AGAIN) if tries < 10 => tries += 1,
                Some(Errno::XDEV) => {
                    bail!("entry {:?}: symlink resolves outside the image", rel.display().to_string())
                }
                _ => bail!("entry {:?}: symlink cannot be resolved inside the image ({e})", rel.display().to_string()),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// OCI layers: the same confined extractor, applied layer after layer into one
// tree, where a later layer replaces what an earlier one put at a path and
// whiteout entries remove what the layers below hold.

/// The prefix of a whiteout entry: `DIR/.wh.NAME` removes `DIR/NAME`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// `DIR/.wh..wh..opq` empties `DIR` of what the layers below put in it.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Which part of an OCI layer to apply. Whiteouts act only on the layers
/// below, never on entries of their own layer, so a layer is applied in two
/// passes: its whiteouts, then its other entries (the first layer, having
/// nothing below it, needs only the second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPass {
    Whiteouts,
    Entries,
}

/// What the last component of a layer entry means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary entry.
    No,
    /// `.wh.NAME`: remove `NAME` (and everything below it).
    Remove(&'a OsStr),
    /// `.wh..wh..opq`: empty the directory.
    Opaque,
    /// Other `.wh..wh.*` names (aufs bookkeeping): skipped.
    Ignored,
}

/// Classifies the last component `name` of the layer entry `raw`. A whiteout
/// of `.`, `..` or of nothing is refused: it would name the directory itself
/// or its parent.
pub fn whiteout_kind<'a>(raw: &[u8], name: &'a OsStr) -> Result<Whiteout<'a>> {
    let b = name.as_bytes();
    if b == OPAQUE_WHITEOUT.as_bytes() {
        return Ok(Whiteout::Opaque);
    }
    if b.starts_with(b".wh..wh.") {
        return Ok(Whiteout::Ignored);
    }
    let Some(rest) = b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) else {
        return Ok(Whiteout::No);
    };
    match rest {
        b"" | b"." | b".." => Err(entry_err(
            raw,
            format!("whiteout of {:?} refused: it names no entry of its directory", OsStr::from_bytes(rest)),
        )),
        _ => Ok(Whiteout::Remove(OsStr::from_bytes(rest))),
    }
}

/// Removes `name` in `dir` and, when it is a directory, everything below it.
/// Nothing is followed: symlinks are removed, never entered, and every step
/// is relative to a directory opened with `O_NOFOLLOW`. Iterative, so a deep
/// tree cannot overflow the stack.
pub fn remove_all_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    struct Frame {
        fd: OwnedFd,
        name: OsString,
        subdirs: Option<Vec<OsString>>,
    }
    let open = |parent: &OwnedFd, name: &OsStr| {
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let mut stack = vec![Frame { fd: open(dir, name)?, name: name.to_os_string(), subdirs: None }];
    while let Some(top) = stack.last_mut() {
        if top.subdirs.is_none() {
            top.subdirs = Some(empty_files_at(&top.fd)?);
        }
        if let Some(sub) = top.subdirs.as_mut().unwrap().pop() {
            let fd = open(&top.fd, &sub)?;
            stack.push(Frame { fd, name: sub, subdirs: None });
        } else {
            let done = stack.pop().unwrap();
            let parent = stack.last().map(|f| &f.fd).unwrap_or(dir);
            rustix::fs::unlinkat(parent, &done.name, AtFlags::REMOVEDIR)?;
        }
    }
    Ok(())
}

/// Unlinks every non-directory in the directory `fd` (opened for reading)
/// and returns the names of its subdirectories.
fn empty_files_at(fd: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let mut subdirs = vec![];
    let mut others = vec![];
    for e in rustix::fs::Dir::read_from(fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let name = OsStr::from_bytes(n).to_os_string();
        let ft = match e.file_type() {
            FileType::Unknown => {
                FileType::from_raw_mode(rustix::fs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
            }
            ft => ft,
        };
        if ft == FileType::Directory { subdirs.push(name) } else { others.push(name) }
    }
    for n in others {
        rustix::fs::unlinkat(fd, &n, AtFlags::empty())?;
    }
    Ok(subdirs)
}

/// Empties the directory `dir` (an `O_PATH` or readable descriptor) without
/// removing it, never following a symlink.
pub fn clear_dir_at(dir: &OwnedFd) -> std::io::Result<()> {
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for sub in empty_files_at(&fd)? {
        remove_all_at(&fd, &sub)?;
    }
    Ok(())
}

impl Extractor {
    /// The directory `comps` below the root, walked without following a
    /// symlink; `None` when a component is missing or is not a directory (a
    /// symlink or file there replaced the directory of the layers below, so
    /// a whiteout inside it has nothing to remove).
    fn existing_dir(&self, raw: &[u8], comps: &[&OsStr]) -> Result<Option<OwnedFd>> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut cur = rustix::fs::openat(&self.root, ".", flags, Mode::empty())?;
        for c in comps {
            cur = match rustix::fs::openat(&cur, *c, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
                Err(e) => return Err(entry_err(raw, format!("opening directory {c:?}: {e}"))),
            };
        }
        Ok(Some(cur))
    }

    fn whiteout(&mut self, raw: &[u8], parent: &[&OsStr], w: &Whiteout<'_>) -> Result<()> {
        let Some(dir) = self.existing_dir(raw, parent)? else {
            return Ok(());
        };
        // What is removed may be a cached directory, or hold some.
        self.cache.clear();
        match w {
            Whiteout::Remove(name) => {
                remove_all_at(&dir, name).map_err(|e| entry_err(raw, format!("applying the whiteout: {e}")))
            }
            Whiteout::Opaque => {
                clear_dir_at(&dir).map_err(|e| entry_err(raw, format!("applying the opaque whiteout: {e}")))
            }
            Whiteout::No | Whiteout::Ignored => Ok(()),
        }
    }

    /// One entry of an OCI layer: whiteouts in the first pass, the rest in
    /// the second, where an entry replaces whatever the layers below put at
    /// its path (a directory over a directory keeps its contents).
    fn layer_entry<R: Read>(&mut self, e: tar::Entry<'_, R>, pass: LayerPass) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let comps = components(&raw)?;
        let Some((name, parent)) = comps.split_last() else {
            return if pass == LayerPass::Entries { self.entry(e) } else { Ok(()) };
        };
        let w = whiteout_kind(&raw, name)?;
        match (w, pass) {
            (Whiteout::No, LayerPass::Whiteouts) => Ok(()),
            (Whiteout::No, LayerPass::Entries) => {
                let kind = e.header().entry_type();
                let dir = self.dir(&raw, parent, true)?;
                match rustix::fs::statat(dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => {}
                    Err(err) => return Err(entry_err(&raw, err)),
                    Ok(st) => {
                        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                        if !(is_dir && kind.is_dir()) {
                            remove_all_at(dir, name)
                                .map_err(|err| entry_err(&raw, format!("replacing the entry below: {err}")))?;
                            // `name` may have been a cached directory, or held some.
                            self.cache.clear();
                        }
                    }
                }
                self.entry(e)
            }
            (w, LayerPass::Whiteouts) => {
                self.count_entry(&raw)?;
                self.whiteout(&raw, parent, &w)
            }
            (_, LayerPass::Entries) => Ok(()),
        }
    }
}

/// Applies one pass of the OCI layer `src` (a decompressed tar stream) over
/// the tree `dest`, under the same confinement rules as [`extract`]; `stats`
/// carries the counts and the size charged across layers. Symlinks are
/// checked lexically here; once every layer is in, [`check_symlinks`]
/// resolves them.
pub fn extract_layer(src: impl Read, dest: &Path, limits: Limits, stats: &mut Stats, pass: LayerPass) -> Result<()> {
    let root = crate::sys::fsutil::open_dir(dest)?;
    let mut x = Extractor {
        root,
        cache: Default::default(),
        limits,
        stats: *stats,
        entries: stats.files + stats.dirs + stats.symlinks + stats.hardlinks,
        symlinks: vec![],
        buf: vec![0; 128 * 1024],
    };
    let res = (|| -> Result<()> {
        let mut ar = tar::Archive::new(src);
        for e in ar.entries().context("reading layer")? {
            let e = e.context("reading layer")?;
            if e.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            x.layer_entry(e, pass)?;
        }
        Ok(())
    })();
    *stats = x.stats;
    res
}

/// Resolves every symlink of the tree `dest` beneath it (the kernel refusing
/// escapes), as [`extract`] does for one archive: a chain of links, each
/// harmless alone, may leave the tree, and with layers the links of a chain
/// can come from different layers.
pub fn check_symlinks(dest: &Path) -> Result<()> {
    let root = crate::sys::fsutil::open_dir(dest)?;
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let fd = crate::sys::fsutil::open_beneath(&root, &rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
            .with_context(|| format!("reading /{}", rel.display()))?
            .ok_or_else(|| anyhow!("/{} vanished", rel.display()))?;
        for e in rustix::fs::Dir::read_from(&fd)? {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let name = OsStr::from_bytes(n);
            let ft = match e.file_type() {
                FileType::Unknown => {
                    FileType::from_raw_mode(rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
                }
                ft => ft,
            };
            let child = rel.join(name);
            match ft {
                FileType::Directory => todo.push(child),
                FileType::Symlink => check_link(&root, &child)?,
                _ => {}
            }
        }
    }
    Ok(())
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
}
