//! An image's contents, seen the same way whether they are an unpacked tree
//! (`torcx apply`) or the few files the generator read out of the archive.
//! Paths are relative to the image root; resolving one never leaves it.

use crate::archive::Archive;
use crate::archive::fsimage::{self, FsImage};
use crate::archive::stream;
use crate::model::manifest::{self, ImageManifest};
use crate::sys::fsutil;
use crate::tree::policy::{self, Kind as EntryKind, Limits};
use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::OFlags;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

pub const MANIFEST_PATH: &str = ".torcx/manifest.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
}

pub trait ImageSource {
    /// What `rel` is, following symlinks in its parents but not in its last
    /// component. `None` when it does not exist.
    fn lstat(&self, rel: &Path) -> Result<Option<Kind>>;
    /// The contents of a regular file, following symlinks.
    fn read(&self, rel: &Path) -> Result<Vec<u8>>;
    /// Whether `rel`, followed, is a regular file or a directory.
    fn stat(&self, rel: &Path) -> Result<Option<Kind>>;
    /// The entries of a directory, sorted by name.
    fn list(&self, rel: &Path) -> Result<Vec<(String, Kind)>>;
}

/// Reads the image manifest; `None` when the image has none.
pub fn read_manifest(src: &dyn ImageSource) -> Result<Option<ImageManifest>> {
    // Only at its own path: a reader that stops early may not have read
    // where a symlink would send it, and would scan the image instead.
    for p in [".torcx", MANIFEST_PATH] {
        if let Some(Kind::Symlink(_)) = src.lstat(Path::new(p))? {
            bail!("{p} is a symlink: the manifest must be a regular file at {MANIFEST_PATH}");
        }
    }
    match src.stat(Path::new(MANIFEST_PATH))? {
        None => Ok(None),
        Some(Kind::File) => {
            let text = src.read(Path::new(MANIFEST_PATH))?;
            policy::check_manifest_size(text.len() as u64)?;
            let text = String::from_utf8(text).map_err(|_| anyhow!("{MANIFEST_PATH}: not UTF-8"))?;
            manifest::parse_image_manifest(&text).with_context(|| MANIFEST_PATH.to_string()).map(Some)
        }
        Some(_) => bail!("{MANIFEST_PATH} is not a regular file"),
    }
}

/// An unpacked (or mounted) image tree.
pub struct Tree {
    root: OwnedFd,
}

impl Tree {
    pub fn open(host: &Path) -> Result<Tree> {
        Ok(Tree { root: fsutil::open_dir(host)? })
    }

    fn at(&self, rel: &Path, flags: OFlags) -> Result<Option<OwnedFd>> {
        fsutil::open_beneath(&self.root, rel, flags).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
                anyhow!("/{} resolves outside the image", rel.display())
            } else {
                anyhow!("/{}: {e}", rel.display())
            }
        })
    }

    fn kind_of(st: &rustix::fs::Stat) -> Option<Kind> {
        match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => Some(Kind::File),
            rustix::fs::FileType::Directory => Some(Kind::Dir),
            _ => None,
        }
    }
}

impl ImageSource for Tree {
    fn lstat(&self, rel: &Path) -> Result<Option<Kind>> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return self.stat(rel);
        };
        let Some(dir) = self.at(parent, OFlags::PATH | OFlags::DIRECTORY)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink => {
                let t = rustix::fs::readlinkat(&dir, name, vec![])?;
                let t: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(t.into_bytes());
                Ok(Some(Kind::Symlink(PathBuf::from(t))))
            }
            Ok(st) => Ok(Tree::kind_of(&st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(anyhow!("/{}: {e}", rel.display())),
        }
    }

    fn stat(&self, rel: &Path) -> Result<Option<Kind>> {
        let Some(fd) = self.at(rel, OFlags::PATH)? else {
            return Ok(None);
        };
        Ok(Tree::kind_of(&rustix::fs::fstat(&fd)?))
    }

    fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let fd = self.at(rel, OFlags::RDONLY)?.ok_or_else(|| anyhow!("/{} does not exist", rel.display()))?;
        let mut v = vec![];
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut v)
            .with_context(|| format!("reading /{}", rel.display()))?;
        Ok(v)
    }

    fn list(&self, rel: &Path) -> Result<Vec<(String, Kind)>> {
        let fd = self
            .at(rel, OFlags::RDONLY | OFlags::DIRECTORY)?
            .ok_or_else(|| anyhow!("/{} does not exist", rel.display()))?;
        let mut out = vec![];
        for e in rustix::fs::Dir::read_from(&fd)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if let Some(k) = self.lstat(&rel.join(&name))? {
                out.push((name, k));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The parts of an archive the generator needs, read straight from it.
#[derive(Default, Debug)]
pub struct Mem {
    files: BTreeMap<PathBuf, Vec<u8>>,
    links: BTreeMap<PathBuf, PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

fn looks_like_unit_path(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == "systemd")
}

impl Mem {
    /// Reads the manifest, and the files under the unit paths it lists (or,
    /// without a manifest, under the standard unit directories), from the
    /// index of a squashfs or erofs image: kilobytes, not the image.
    pub fn from_fsimage(fs: &FsImage) -> Result<Mem> {
        let entries = fs.entries()?;
        let mut mem = Mem::default();
        let mut files = BTreeMap::new();
        let mut count = policy::Count::default();
        for e in &entries {
            use std::os::unix::ffi::OsStrExt;
            let raw = e.path.as_os_str().as_bytes();
            let link = match &e.node {
                fsimage::Node::Link(t) => Some(t.as_os_str().as_bytes()),
                _ => None,
            };
            policy::count_entry(raw, link, &mut count, &Limits::MEM)?;
            match &e.node {
                // The index lists every directory, parents first: nothing
                // is implied here that was not counted as an entry.
                fsimage::Node::Dir => {
                    mem.insert_dir(e.path.clone());
                }
                fsimage::Node::Link(t) => {
                    mem.insert_link(e.path.clone(), t.clone());
                }
                fsimage::Node::File { size, handle } => {
                    files.insert(e.path.clone(), (*size, handle));
                }
                // A mounted image keeps these (the mount is nodev), and
                // the generator reads no unit from them.
                fsimage::Node::Special(_) => {}
            }
        }
        let read = |p: &Path, size: u64, h: &fsimage::Handle<'_>| {
            fs.read(h, size, policy::MAX_MEM_FILE).with_context(|| format!("/{}", p.display()))
        };
        let units: Vec<String> = match files.get(Path::new(MANIFEST_PATH)) {
            Some((size, h)) => {
                policy::check_manifest_size(*size)?;
                let text = read(Path::new(MANIFEST_PATH), *size, h)?;
                let m = manifest::parse_image_manifest(&String::from_utf8_lossy(&text)).context(MANIFEST_PATH)?;
                mem.insert_file(PathBuf::from(MANIFEST_PATH), text);
                m.units
            }
            // No manifest: the scan will look at the standard unit directories.
            None => crate::model::units::UNIT_DIRS.iter().map(|d| format!("/{d}")).collect(),
        };
        let mut total = 0u64;
        for u in &units {
            let Ok(rel) = fsutil::relative_inside(u) else { continue };
            let real = mem.resolve_path(&rel)?;
            for (p, (size, h)) in files.range(real.clone()..) {
                if !p.starts_with(&real) {
                    break;
                }
                // The entry itself, or its direct children (as propagation reads them).
                if p == &real || p.parent() == Some(real.as_path()) {
                    let data = read(p, *size, h)?;
                    policy::charge_mem(&mut total, data.len() as u64, &Limits::MEM)?;
                    mem.insert_file(p.clone(), data);
                }
            }
        }
        Ok(mem)
    }

    /// The files read, the symlinks and the directories (for the cache).
    pub fn files(&self) -> impl Iterator<Item = (&PathBuf, &Vec<u8>)> {
        self.files.iter()
    }
    pub fn links(&self) -> impl Iterator<Item = (&PathBuf, &PathBuf)> {
        self.links.iter()
    }
    pub fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.iter()
    }

    /// Adds a regular file (for readers of other formats). Its parents are
    /// directories, whether or not the reader met an entry for them.
    /// Returns the directories this implied, as `add_dirs` does.
    pub fn insert_file(&mut self, rel: PathBuf, data: Vec<u8>) -> (u64, u64) {
        let implied = self.add_dirs(rel.parent());
        self.files.insert(rel, data);
        implied
    }
    pub fn insert_link(&mut self, rel: PathBuf, target: PathBuf) -> (u64, u64) {
        let implied = self.add_dirs(rel.parent());
        self.links.insert(rel, target);
        implied
    }
    pub fn insert_dir(&mut self, rel: PathBuf) -> (u64, u64) {
        let implied = self.add_dirs(rel.parent());
        self.dirs.insert(rel);
        implied
    }

    /// What the generator needs of an unpacked image: its manifest and the
    /// unit files and links it lists, as `from_archive` would read them.
    pub fn from_tree(tree: &dyn ImageSource, m: &ImageManifest) -> Result<Mem> {
        let mut mem = Mem::default();
        let mp = PathBuf::from(MANIFEST_PATH);
        mem.files.insert(mp.clone(), tree.read(&mp)?);
        for u in &m.units {
            let Ok(rel) = fsutil::relative_inside(u) else { continue };
            match tree.stat(&rel)? {
                Some(Kind::File) => {
                    mem.files.insert(rel.clone(), tree.read(&rel)?);
                }
                Some(Kind::Dir) => {
                    mem.dirs.insert(rel.clone());
                    for (name, kind) in tree.list(&rel)? {
                        let child = rel.join(&name);
                        match kind {
                            Kind::File => {
                                mem.files.insert(child.clone(), tree.read(&child)?);
                            }
                            Kind::Symlink(t) => {
                                mem.links.insert(child, t);
                            }
                            Kind::Dir => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(mem)
    }

    /// Reads the manifest, the files it lists as units (or, before the
    /// manifest is known, anything under a `systemd` directory) and every
    /// symlink, and stops as soon as everything the manifest lists is in.
    pub fn from_archive(a: &Archive) -> Result<Mem> {
        Mem::from_archive_with(a, &Limits::MEM)
    }

    /// [`Mem::from_archive`] within `limits` (bytes read into memory, entries).
    pub fn from_archive_with(a: &Archive, limits: &Limits) -> Result<Mem> {
        let stream = stream::open_tar(a)?;
        let mut ar = tar::Archive::new(stream);
        let mut m = Mem::default();
        let mut wanted: Option<Vec<PathBuf>> = None;
        // Listed directories whose subtree we entered and then left.
        let mut left: BTreeSet<PathBuf> = BTreeSet::new();
        let mut inside: Option<PathBuf> = None;
        let mut total = 0u64;
        // The file data read or passed, as the unpack charges it.
        let mut data = 0u64;
        let mut count = policy::Count::default();
        // What is at each path so far: the extractor's answers, without a tree.
        let mut paths = policy::Paths::default();
        // Hard links to unit paths whose file was not read (not a unit
        // path), by the key of that file; and for every hard link, the key
        // of the file it ends at (a link to a link is a link to its file).
        let mut pending: Vec<(PathBuf, u64)> = vec![];
        let mut ends: std::collections::HashMap<u64, u64> = Default::default();
        for e in ar.entries().context("reading archive")? {
            let mut e = e.context("reading archive")?;
            let raw = e.path_bytes().into_owned();
            let link = e.link_name_bytes().map(|l| l.into_owned());
            // The extractor's policy: what apply would refuse, the generator
            // refuses too, in the same words.
            let Some(checked) = policy::check_tar(&raw, e.header().entry_type(), link.as_deref(), e.size())? else {
                continue;
            };
            policy::check_not_bundle(&raw, &checked)?;
            let rel: PathBuf = checked.comps.iter().collect();
            if let Some(w) = &wanted {
                // Tar writers put a directory's subtree together: once we
                // leave a listed directory, it is complete.
                if let Some(d) = &inside
                    && !rel.starts_with(d)
                {
                    left.insert(d.clone());
                    inside = None;
                }
                if let Some(d) = w.iter().find(|d| rel.starts_with(d) && rel != **d) {
                    inside = Some(d.clone());
                }
                let done = w.iter().all(|p| m.files.contains_key(p) || m.links.contains_key(p) || left.contains(p));
                if done {
                    break;
                }
            }
            if !checked.comps.is_empty() {
                policy::count_entry(&raw, link.as_deref(), &mut count, limits)?;
                paths.enter(&raw, &checked.comps, &checked.kind, link.as_deref())?;
            }
            // Unit-looking paths are kept even once the manifest is known: a
            // listed path may reach them through a symlink (`lib -> usr/lib`).
            let keep =
                looks_like_unit_path(&rel) || wanted.as_ref().is_some_and(|w| w.iter().any(|p| rel.starts_with(p)));
            // Parents are directories even when the archive has no entry
            // for them (`tar --no-recursion`): the scan lists them, as the
            // unpacked tree would show them. They count as the extractor
            // counts the directories it creates for them.
            let (n, bytes) = m.add_dirs(rel.parent());
            policy::count_implied(&raw, n, bytes, &mut count, limits)?;
            match checked.kind {
                // Its parents are in (above): this adds the entry itself.
                EntryKind::Dir => {
                    m.add_dirs(Some(&rel));
                }
                // A hard link to a unit already read is that unit under another name.
                EntryKind::HardLink => {
                    let t = link.unwrap_or_default();
                    let tc = policy::hardlink_target(&raw, &t)?;
                    let target: PathBuf = tc.iter().collect();
                    let tkey = paths.key(&tc);
                    let end = ends.get(&tkey).copied().unwrap_or(tkey);
                    ends.insert(paths.key(&checked.comps), end);
                    if let Some(v) = m.files.get(&target).cloned() {
                        policy::charge_mem(&mut total, v.len() as u64, limits)?;
                        m.files.insert(rel, v);
                    } else {
                        m.add_dirs(rel.parent());
                        if keep {
                            pending.push((rel, end));
                        }
                    }
                }
                // The policy checked the target.
                EntryKind::Symlink => {
                    let t = link.unwrap_or_default();
                    m.links.insert(rel, PathBuf::from(String::from_utf8_lossy(&t).into_owned()));
                }
                EntryKind::File => {
                    policy::charge_data(&raw, &mut data, e.size(), limits)?;
                    let is_manifest = rel == Path::new(MANIFEST_PATH);
                    if is_manifest {
                        policy::check_manifest_size(e.size())?;
                    }
                    if (keep || is_manifest) && policy::fits_in_memory(e.size()) {
                        let mut v = vec![];
                        std::io::Read::read_to_end(&mut e, &mut v).context("reading archive")?;
                        policy::charge_mem(&mut total, v.len() as u64, limits)?;
                        if is_manifest {
                            let man =
                                manifest::parse_image_manifest(&String::from_utf8_lossy(&v)).context(MANIFEST_PATH)?;
                            let w: Vec<PathBuf> =
                                man.units.iter().filter_map(|u| fsutil::relative_inside(u).ok()).collect();
                            wanted = Some(w);
                        }
                        m.files.insert(rel, v);
                    } else {
                        // Parents of regular files are directories.
                        m.files.remove(&rel);
                        m.add_dirs(rel.parent());
                    }
                }
                // Refused by the policy above.
                other => policy::check_kind(&raw, &other)?,
            }
        }
        if !pending.is_empty() {
            m.read_link_targets(a, &paths, pending, &mut total, limits)?;
        }
        Ok(m)
    }

    /// Records `dir` and its parents as directories. A directory already
    /// recorded has its parents recorded too, so this stops there: the
    /// work for an entry does not grow with its depth once its directory is
    /// known.
    /// Returns how many were new (the root aside) and the bytes of their paths.
    fn add_dirs(&mut self, dir: Option<&Path>) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for d in dir.into_iter().flat_map(Path::ancestors) {
            if !self.dirs.insert(d.to_path_buf()) {
                break;
            }
            if !d.as_os_str().is_empty() {
                n += 1;
                bytes += d.as_os_str().len() as u64;
            }
        }
        (n, bytes)
    }

    /// A unit that is a hard link to a file read past (one outside the unit
    /// directories) has that file's contents: read it in a second pass, up
    /// to the last such file. Rare, so the common archive is read once.
    fn read_link_targets(
        &mut self,
        a: &Archive,
        paths: &policy::Paths,
        pending: Vec<(PathBuf, u64)>,
        total: &mut u64,
        limits: &Limits,
    ) -> Result<()> {
        let mut want: std::collections::HashMap<u64, Vec<PathBuf>> = Default::default();
        for (rel, end) in pending {
            want.entry(end).or_default().push(rel);
        }
        let mut ar = tar::Archive::new(stream::open_tar(a)?);
        for e in ar.entries().context("reading archive")? {
            if want.is_empty() {
                break;
            }
            let mut e = e.context("reading archive")?;
            if EntryKind::of_tar(e.header().entry_type()) != Some(EntryKind::File) {
                continue;
            }
            // The first pass checked every path up to here.
            let raw = e.path_bytes().into_owned();
            let Ok(comps) = policy::components(&raw) else { continue };
            let Some(rels) = want.remove(&paths.key(&comps)) else { continue };
            if !policy::fits_in_memory(e.size()) {
                continue;
            }
            let mut v = vec![];
            std::io::Read::read_to_end(&mut e, &mut v).context("reading archive")?;
            for rel in rels {
                policy::charge_mem(total, v.len() as u64, limits)?;
                self.files.insert(rel, v.clone());
            }
        }
        Ok(())
    }

    /// Resolves every symlink in `rel`, never above the image root.
    pub fn resolve_path(&self, rel: &Path) -> Result<PathBuf> {
        self.resolve(rel, true)
    }

    /// Resolves symlinks in `rel` (all of them, or all but the last
    /// component), never above the image root.
    fn resolve(&self, rel: &Path, follow_last: bool) -> Result<PathBuf> {
        let mut todo: Vec<PathBuf> = rel.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
        let mut cur = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match Path::new(&c).components().next() {
                Some(Component::ParentDir) => {
                    if !cur.pop() {
                        bail!("/{} resolves outside the image", rel.display());
                    }
                    continue;
                }
                Some(Component::CurDir) | Some(Component::RootDir) | None => continue,
                _ => {}
            }
            let next = cur.join(&c);
            let last = todo.is_empty();
            match self.links.get(&next) {
                Some(t) if follow_last || !last => {
                    hops += 1;
                    if hops > 40 || t.is_absolute() {
                        bail!("/{} resolves outside the image", rel.display());
                    }
                    todo.extend(t.components().rev().map(|c| PathBuf::from(c.as_os_str())));
                }
                _ => cur = next,
            }
        }
        Ok(cur)
    }

    fn kind(&self, p: &Path) -> Option<Kind> {
        if let Some(t) = self.links.get(p) {
            return Some(Kind::Symlink(t.clone()));
        }
        if self.files.contains_key(p) {
            return Some(Kind::File);
        }
        let is_dir =
            self.dirs.contains(p) || self.files.keys().chain(self.links.keys()).any(|k| k.starts_with(p) && k != p);
        is_dir.then_some(Kind::Dir)
    }
}

impl ImageSource for Mem {
    fn lstat(&self, rel: &Path) -> Result<Option<Kind>> {
        Ok(self.kind(&self.resolve(rel, false)?))
    }
    fn stat(&self, rel: &Path) -> Result<Option<Kind>> {
        Ok(self.kind(&self.resolve(rel, true)?))
    }
    fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let p = self.resolve(rel, true)?;
        self.files.get(&p).cloned().ok_or_else(|| anyhow!("/{} was not read from the archive", rel.display()))
    }
    fn list(&self, rel: &Path) -> Result<Vec<(String, Kind)>> {
        let d = self.resolve(rel, true)?;
        let mut names = BTreeSet::new();
        for k in self.files.keys().chain(self.links.keys()).chain(self.dirs.iter()) {
            if k.parent() == Some(d.as_path()) {
                names.insert(k.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        Ok(names.into_iter().filter_map(|n| self.kind(&d.join(&n)).map(|k| (n, k))).collect())
    }
}
