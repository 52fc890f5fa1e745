//! The confined tar extractor. Nothing an archive says can make it write
//! outside the image tree: every path is checked before use, directories are
//! walked one component at a time without following symlinks, symlinks that
//! leave the tree are refused, device nodes and FIFOs are refused, and the
//! unpacked size is bounded so a bomb stops early. What is accepted, and
//! the limits, are `policy`'s; this file is the writing. OCI layers (the
//! same extractor, with whiteouts) are in `layer`.

use crate::tree::policy::{self, Kind, Limits, entry_err};
use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    /// Bytes of paths and link targets (see `policy::MAX_NAMES`), carried
    /// across the layers of an OCI image.
    #[serde(skip)]
    pub names: u64,
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
        Err(Errno::NOTDIR | Errno::LOOP) => Err(policy::through_non_dir(raw, c)),
        Err(e) => Err(entry_err(raw, format!("opening directory {c:?}: {e}"))),
    }
}

pub(super) struct Extractor {
    pub(super) root: OwnedFd,
    /// Parent directories already open, by the keyed hash of their path
    /// (see [`DIR_CACHE`]): finding the deepest one open costs one hash of
    /// the path, not a key per level. (A collision, one in 2^64 with keys
    /// an archive cannot know, would put a file in another directory of
    /// the same tree, never outside it.)
    pub(super) cache: std::collections::HashMap<u64, OwnedFd>,
    keys: std::collections::hash_map::RandomState,
    pub(super) limits: Limits,
    pub(super) stats: Stats,
    pub(super) count: policy::Count,
    /// The symlinks to resolve once all is unpacked; `None` once their
    /// paths took more than [`SYMLINK_LIST`] bytes (then the tree is walked).
    symlinks: Option<Vec<PathBuf>>,
    symlink_bytes: usize,
    buf: Vec<u8>,
    /// File data an OCI layer's whiteout pass read past (`layer.rs`).
    pub(super) passed: u64,
}

/// What the list of symlinks to check may take: beyond it (a few hundred
/// thousand links with long names) the tree is walked instead, which costs
/// memory with its depth only.
const SYMLINK_LIST: usize = 4 << 20;

impl Extractor {
    /// Opens (creating when `create`) the directory made of `comps`, one
    /// component at a time, never following a symlink.
    pub(super) fn dir(&mut self, raw: &[u8], comps: &[&OsStr], create: bool) -> Result<&OwnedFd> {
        if comps.is_empty() {
            return Ok(&self.root);
        }
        let hashes = policy::prefix_hashes(&self.keys, comps);
        let key = |n: usize| hashes[n - 1];
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
                if created {
                    // A directory no entry made: it counts as one.
                    let bytes = comps[..=have].iter().map(|c| c.len() as u64 + 1).sum::<u64>() - 1;
                    policy::count_implied(raw, 1, bytes, &mut self.count, &self.limits)?;
                    self.stats.names = self.count.names;
                }
                self.cache.insert(key(have + 1), fd);
                have += 1;
            }
        }
        Ok(&self.cache[&key(comps.len())])
    }

    pub(super) fn count_entry(&mut self, raw: &[u8], link: Option<&[u8]>) -> Result<()> {
        policy::count_entry(raw, link, &mut self.count, &self.limits)?;
        self.stats.names = self.count.names;
        Ok(())
    }

    pub(super) fn new(root: OwnedFd, limits: Limits, stats: Stats, entries: u64) -> Extractor {
        let count = policy::Count { entries, names: stats.names };
        Extractor {
            root,
            cache: Default::default(),
            keys: Default::default(),
            limits,
            stats,
            count,
            symlinks: Some(vec![]),
            symlink_bytes: 0,
            passed: 0,
            buf: vec![0; 128 * 1024],
        }
    }

    pub(super) fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let Some(checked) = policy::check_tar(&raw, e.header().entry_type(), link.as_deref(), e.size())? else {
            return Ok(());
        };
        policy::check_not_bundle(&raw, &checked)?;
        // "./" itself: the tree root already exists.
        let Some((name, parent)) = checked.comps.split_last() else { return Ok(()) };
        self.count_entry(&raw, link.as_deref())?;
        let name = name.to_os_string();
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        match checked.kind {
            Kind::Dir => {
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
                            return Err(policy::check_over(&raw, &Kind::Dir, policy::Node::File).unwrap_err());
                        }
                        rustix::fs::chmodat(dir, &name, Mode::from_raw_mode(mode), AtFlags::empty())?;
                    }
                    Err(err) => return Err(policy::entry_io(&raw, "", err)),
                }
            }
            Kind::File => {
                policy::charge_unpack(&raw, &mut self.stats.bytes, e.size(), &self.limits)?;
                let mtime = e.header().mtime().unwrap_or(0);
                let dir = self.dir(&raw, parent, true)?;
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                // A path twice in one archive is refused (see
                // `policy::duplicate_err`); OCI layers replace what is at
                // the path before this.
                let fd = match rustix::fs::openat(dir, &name, flags, Mode::from_raw_mode(mode)) {
                    Ok(fd) => fd,
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
                        let there = match FileType::from_raw_mode(st.st_mode) {
                            FileType::RegularFile => policy::Node::File,
                            FileType::Directory => policy::Node::Dir,
                            _ => policy::Node::Symlink,
                        };
                        return Err(policy::check_over(&raw, &Kind::File, there).unwrap_err());
                    }
                    Err(err) => return Err(policy::entry_io(&raw, "creating", err)),
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
                res.map_err(|err| policy::entry_io(&raw, "writing", err))?;
                // The mode is the archive's, whatever the umask (which is
                // process-wide, so it cannot be changed while images unpack
                // side by side).
                rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|err| policy::entry_io(&raw, "", err))?;
                let t = Timespec { tv_sec: mtime as i64, tv_nsec: 0 };
                let _ = rustix::fs::futimens(&f, &Timestamps { last_access: t, last_modification: t });
                self.stats.files += 1;
            }
            Kind::Symlink => {
                // The policy checked the target.
                let target = link.unwrap_or_default();
                // tmpfs keeps a target longer than this in a page of its own:
                // charged as a file of that page (thousands of them otherwise
                // take room no limit counts).
                if target.len() >= policy::INLINE_SYMLINK {
                    policy::charge_unpack(&raw, &mut self.stats.bytes, 1, &self.limits)?;
                }
                let dir = self.dir(&raw, parent, true)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, &name).map_err(|err| match err {
                    Errno::EXIST => policy::check_over(&raw, &Kind::Symlink, policy::Node::File).unwrap_err(),
                    err => policy::entry_io(&raw, "", err),
                })?;
                self.symlink_bytes += raw.len() + std::mem::size_of::<PathBuf>();
                if self.symlink_bytes > SYMLINK_LIST {
                    self.symlinks = None;
                } else if let Some(l) = &mut self.symlinks {
                    l.push(PathBuf::from(OsStr::from_bytes(&raw)));
                }
                self.stats.symlinks += 1;
            }
            Kind::HardLink => {
                let target = link.unwrap_or_default();
                let tcomps = policy::hardlink_target(&raw, &target)?;
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
                if !rustix::fs::statat(&src, &tname, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
                {
                    return Err(policy::hardlink_not_file(&raw, &target));
                }
                let dir = self.dir(&raw, parent, true)?;
                rustix::fs::linkat(&src, &tname, dir, &name, AtFlags::empty()).map_err(|err| match err {
                    Errno::EXIST => policy::check_over(&raw, &Kind::HardLink, policy::Node::File).unwrap_err(),
                    err => policy::entry_io(&raw, "", err),
                })?;
                self.stats.hardlinks += 1;
            }
            // Refused by the policy above.
            other => policy::check_kind(&raw, &other)?,
        }
        Ok(())
    }
}

/// Unpacks the tar stream `src` into the empty directory `dest`.
pub fn extract(src: impl Read, dest: &Path, limits: Limits) -> Result<Stats> {
    let root = crate::sys::fsutil::open_dir(dest)?;
    let mut x = Extractor::new(root, limits, Stats::default(), 0);
    let res = (|| -> Result<()> {
        let mut ar = tar::Archive::new(src);
        for e in ar.entries().context("reading archive")? {
            x.entry(e.context("reading archive")?)?;
        }
        // The lexical check above cannot see chains (`a -> b/..` where `b` is
        // itself a link): let the kernel resolve every symlink beneath the root.
        x.cache.clear();
        match &x.symlinks {
            Some(list) => list.iter().try_for_each(|l| check_link(&x.root, l)),
            None => check_symlinks(dest),
        }
    })();
    if let Err(e) = res {
        // The tree is removed: what it took is free for the other images.
        limits.give_back(x.stats.bytes);
        return Err(e);
    }
    Ok(x.stats)
}

/// Lets the kernel resolve the symlink `rel` beneath `root`. Only a link
/// that ends nowhere inside the tree (ENOENT, ENOTDIR) may stay: the tree is
/// read-only, so it stays dangling. Anything else is refused: EXDEV is an
/// escape, and ELOOP or EAGAIN mean the kernel could not finish a scoped
/// lookup (a long chain through `..` is counted twice), which an escape can
/// hide behind.
pub(super) fn check_link(root: &OwnedFd, rel: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match crate::sys::fsutil::open_beneath(root, rel, OFlags::PATH) {
            Ok(_) => return Ok(()),
            Err(e) => match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(Errno::NOTDIR) => return Ok(()),
                // A rename elsewhere on the machine: try again, a little.
                Some(Errno::AGAIN) if tries < 10 => tries += 1,
                Some(Errno::XDEV) => {
                    bail!(
                        "entry {}: symlink resolves outside the image",
                        policy::shown_path(rel.as_os_str().as_bytes())
                    )
                }
                _ => bail!(
                    "entry {}: symlink cannot be resolved inside the image ({e})",
                    policy::shown_path(rel.as_os_str().as_bytes())
                ),
            },
        }
    }
}

/// Resolves every symlink of the tree `dest` beneath it (the kernel refusing
/// escapes), as [`extract`] does for one archive: a chain of links, each
/// harmless alone, may leave the tree, and with layers the links of a chain
/// can come from different layers.
pub fn check_symlinks(dest: &Path) -> Result<()> {
    let root = crate::sys::fsutil::open_dir(dest)?;
    // Depth first, one open directory per level: memory grows with the
    // depth (bounded by the policy), not with the number of entries.
    let open = |rel: &Path| -> Result<(OwnedFd, rustix::fs::Dir)> {
        let fd = crate::sys::fsutil::open_beneath(&root, rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
            .with_context(|| format!("reading /{}", rel.display()))?
            .ok_or_else(|| anyhow!("/{} vanished", rel.display()))?;
        let dir = rustix::fs::Dir::read_from(&fd).with_context(|| format!("reading /{}", rel.display()))?;
        Ok((fd, dir))
    };
    let mut stack = vec![(PathBuf::new(), open(Path::new(""))?)];
    // A mounted image is walked here without having been counted: a graph
    // of hard-linked directories would make the walk endless.
    let mut seen = 0u64;
    while let Some((rel, (fd, dir))) = stack.last_mut() {
        let Some(e) = dir.next() else {
            stack.pop();
            continue;
        };
        let e = e.with_context(|| format!("reading /{}", rel.display()))?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let name = OsStr::from_bytes(n);
        seen += 1;
        if seen > policy::MAX_ENTRIES {
            bail!("more than {} entries: refused as an archive bomb", policy::MAX_ENTRIES);
        }
        let ft = match e.file_type() {
            FileType::Unknown => {
                FileType::from_raw_mode(rustix::fs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
            }
            ft => ft,
        };
        let child = rel.join(name);
        match ft {
            FileType::Directory => {
                let d = open(&child)?;
                stack.push((child, d));
            }
            FileType::Symlink => check_link(&root, &child)?,
            _ => {}
        }
    }
    Ok(())
}
