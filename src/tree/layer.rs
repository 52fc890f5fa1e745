//! OCI layers: the confined extractor, applied layer after layer into one
//! tree, where a later layer replaces what an earlier one put at a path and
//! whiteout entries remove what the layers below hold.

use crate::tree::extract::{Extractor, Stats};
use crate::tree::policy::{self, Limits, entry_err};
use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
        if policy::Kind::of_tar(e.header().entry_type()).is_none() {
            return Ok(());
        }
        let raw = e.path_bytes().into_owned();
        let comps = policy::components(&raw)?;
        let Some((name, parent)) = comps.split_last() else {
            return if pass == LayerPass::Entries { self.entry(e) } else { Ok(()) };
        };
        let w = whiteout_kind(&raw, name)?;
        match (w, pass) {
            // Passed over here and written in the next pass, but read now:
            // checked and charged now too, or the tar crate would skip a
            // directory's or a file's declared terabyte before the next
            // pass refuses it (found by an outside attack: 41 s for a
            // 33 MB layer).
            (Whiteout::No, LayerPass::Whiteouts) => {
                let link = e.link_name_bytes().map(|l| l.into_owned());
                let size = e.size();
                let checked = policy::check_tar(&raw, e.header().entry_type(), link.as_deref(), size)?;
                if checked.is_some_and(|c| c.kind == policy::Kind::File) {
                    policy::charge_data(&raw, &mut self.passed, size, &self.limits)?;
                }
                Ok(())
            }
            (Whiteout::No, LayerPass::Entries) => {
                let kind = e.header().entry_type();
                let dir = self.dir(&raw, parent, true)?;
                match rustix::fs::statat(dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => {}
                    Err(err) => return Err(policy::entry_io(&raw, "", err)),
                    Ok(st) => {
                        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                        if !(is_dir && kind.is_dir()) {
                            remove_all_at(dir, name)
                                .map_err(|err| policy::entry_io(&raw, "replacing the entry below", err))?;
                            // `name` may have been a cached directory, or held some.
                            self.cache.clear();
                        }
                    }
                }
                self.entry(e)
            }
            (w, LayerPass::Whiteouts) => {
                self.count_entry(&raw, None)?;
                self.whiteout(&raw, parent, &w)
            }
            (_, LayerPass::Entries) => Ok(()),
        }
    }
}

/// Applies one pass of the OCI layer `src` (a decompressed tar stream) over
/// the tree `dest`, under the same confinement rules as [`crate::tree::extract::extract`]; `stats`
/// carries the counts and the size charged across layers. Symlinks are
/// checked lexically here; once every layer is in, [`crate::tree::extract::check_symlinks`]
/// resolves them.
pub fn extract_layer(src: impl Read, dest: &Path, limits: Limits, stats: &mut Stats, pass: LayerPass) -> Result<()> {
    let root = crate::sys::fsutil::open_dir(dest)?;
    let entries = stats.files + stats.dirs + stats.symlinks + stats.hardlinks;
    let mut x = Extractor::new(root, limits, *stats, entries);
    let res = (|| -> Result<()> {
        let mut ar = tar::Archive::new(src);
        for e in ar.entries().context("reading layer")? {
            x.layer_entry(e.context("reading layer")?, pass)?;
        }
        // To the end of the compressed stream: its trailer (gzip's CRC and
        // length) is checked, and data after it refused, as for a .tgz.
        std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).context("reading layer")?;
        Ok(())
    })();
    *stats = x.stats;
    res
}
