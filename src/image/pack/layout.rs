//! What `image pack` writes into a tar, and in which order: the walk of the
//! directory (refusing what the confined unpack would refuse), the
//! manifest, and the tar stream itself, the same bytes for the same tree.

use crate::model::manifest::{self, ImageManifest};
use crate::sys::fsutil;
use crate::tree::policy::{self, Kind};
use crate::tree::scan;
use crate::tree::source::{MANIFEST_PATH, Tree};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// gzip and zstd levels: fixed, so the same tree gives the same bytes
/// (chosen for packing speed: higher levels gain a few percent at many
/// times the time; unpacking speed does not depend on them).
pub const GZIP_LEVEL: u32 = 6;
pub const ZSTD_LEVEL: i32 = 12;
/// erofs wants a UUID; a fixed one keeps images reproducible.
pub const EROFS_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// One file of the directory to pack.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the directory, plain components.
    pub rel: PathBuf,
    pub kind: EntryKind,
    /// Permission bits, with setuid/setgid/sticky.
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { size: u64, id: (u64, u64), nlink: u64 },
    Symlink(PathBuf),
}

/// Lists `dir` (sorted as GNU tar `--sort=name` does: each directory's
/// names in byte order, a directory's subtree right after it), refusing
/// what the confined unpack refuses, with the path named.
pub fn walk(dir: &Path) -> Result<Vec<Entry>> {
    let root = fsutil::open_dir(dir)?;
    let mut out = vec![];
    walk_in(dir, Path::new(""), &mut out)?;
    for e in &out {
        let EntryKind::Symlink(t) = &e.kind else { continue };
        let shown = dir.join(&e.rel);
        let depth = e.rel.components().count() - 1;
        policy::check_symlink(e.rel.as_os_str().as_bytes(), depth, t.as_os_str().as_bytes()).map_err(|_| {
            if t.is_absolute() {
                anyhow!(
                    "{}: symlink to absolute path {}: it would point outside the image (the unpack refuses it)",
                    shown.display(),
                    t.display()
                )
            } else {
                anyhow!("{}: symlink to {} leaves the image (the unpack refuses it)", shown.display(), t.display())
            }
        })?;
    }
    // Chains (`a -> b/..` where `b` is a link): let the kernel resolve each
    // link beneath the root, as the extractor does after unpacking.
    for e in &out {
        if let EntryKind::Symlink(t) = &e.kind
            && let Err(err) = fsutil::open_beneath(&root, &e.rel, rustix::fs::OFlags::PATH)
            && err.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
        {
            bail!(
                "{}: symlink to {} resolves outside the image (the unpack refuses it)",
                dir.join(&e.rel).display(),
                t.display()
            );
        }
    }
    Ok(out)
}

pub fn walk_in(base: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let here = base.join(rel);
    let rd = std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))?;
    let mut names: Vec<OsString> = vec![];
    for e in rd {
        names.push(e.with_context(|| format!("reading {}", here.display()))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for n in names {
        let r = rel.join(&n);
        let p = base.join(&r);
        let m = std::fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        let ft = m.file_type();
        let mode = m.mode() & 0o7777;
        let kind = Kind::of_file_type(ft);
        if !kind.accepted() {
            // What the policy refuses, named as it names it.
            bail!("{}: {}: the confined unpack refuses it", p.display(), kind.name());
        }
        if ft.is_dir() {
            out.push(Entry { rel: r.clone(), kind: EntryKind::Dir, mode });
            walk_in(base, &r, out)?;
        } else if ft.is_file() {
            out.push(Entry {
                rel: r,
                kind: EntryKind::File { size: m.len(), id: (m.dev(), m.ino()), nlink: m.nlink() },
                mode,
            });
        } else {
            let t = std::fs::read_link(&p).with_context(|| format!("reading {}", p.display()))?;
            out.push(Entry { rel: r, kind: EntryKind::Symlink(t), mode: 0o777 });
        }
    }
    Ok(())
}

/// The manifest to pack: the directory's own, or a scanned one (generated).
pub fn manifest_of(dir: &Path, entries: &[Entry]) -> Result<(ImageManifest, Option<Vec<u8>>)> {
    let mp = Path::new(MANIFEST_PATH);
    match entries.iter().find(|e| e.rel == mp) {
        Some(Entry { kind: EntryKind::File { .. }, .. }) => {
            let p = dir.join(mp);
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let m = manifest::parse_image_manifest(&text).with_context(|| p.display().to_string())?;
            Ok((m, None))
        }
        Some(_) => bail!("{}: not a regular file", dir.join(mp).display()),
        None => {
            if let Some(e) = entries.iter().find(|e| e.rel == Path::new(".torcx"))
                && e.kind != EntryKind::Dir
            {
                bail!("{}: not a directory: cannot add the manifest", dir.join(".torcx").display());
            }
            let m = scan::default_manifest(&Tree::open(dir)?)?;
            Ok((m.clone(), Some(manifest_json(&m))))
        }
    }
}

/// `{"kind": "image-manifest-v0", "value": {...}}`, non-empty lists only.
pub fn manifest_json(m: &ImageManifest) -> Vec<u8> {
    let mut value = serde_json::Map::new();
    for (k, v) in m.classes() {
        if !v.is_empty() {
            value.insert(k.into(), json!(v));
        }
    }
    let doc = json!({"kind": manifest::IMAGE_MANIFEST_V0, "value": value});
    let mut out = serde_json::to_vec_pretty(&doc).unwrap();
    out.push(b'\n');
    out
}

/// What goes into a tar, in order.
pub enum Item<'a> {
    Entry(&'a Entry),
    GenDir,
    GenManifest,
}

/// `.torcx/`, the manifest, the unit files (a listed directory with its
/// whole subtree, together), then everything else in walk order.
pub fn tar_order<'a>(entries: &'a [Entry], m: &ImageManifest) -> Vec<Item<'a>> {
    let mut out = vec![];
    let mut done = vec![false; entries.len()];
    let find = |p: &Path| entries.iter().position(|e| e.rel == p);
    match find(Path::new(".torcx")) {
        Some(i) => {
            done[i] = true;
            out.push(Item::Entry(&entries[i]));
        }
        None => out.push(Item::GenDir),
    }
    match find(Path::new(MANIFEST_PATH)) {
        Some(i) => {
            done[i] = true;
            out.push(Item::Entry(&entries[i]));
        }
        None => out.push(Item::GenManifest),
    }
    for u in &m.units {
        let Ok(rel) = fsutil::relative_inside(u) else { continue };
        let Some(i) = find(&rel) else { continue };
        for (j, e) in entries.iter().enumerate().skip(i) {
            if !(j == i || (entries[i].kind == EntryKind::Dir && e.rel.starts_with(&rel))) {
                break;
            }
            if !done[j] {
                done[j] = true;
                out.push(Item::Entry(e));
            }
        }
    }
    for (j, e) in entries.iter().enumerate() {
        if !done[j] {
            out.push(Item::Entry(e));
        }
    }
    out
}

/// A reader that fails when the file is shorter than the header said.
pub struct Exactly<R> {
    pub inner: R,
    left: u64,
    pub path: PathBuf,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::other(format!("{}: changed while packing", self.path.display())));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

pub fn dir_name(rel: &Path) -> PathBuf {
    let mut s = rel.as_os_str().to_os_string().into_vec();
    s.push(b'/');
    PathBuf::from(OsString::from_vec(s))
}

/// Writes the tar stream; returns the number of entries.
pub fn write_tar<W: Write>(
    w: W,
    dir: &Path,
    entries: &[Entry],
    m: &ImageManifest,
    generated: Option<&[u8]>,
) -> Result<(W, usize)> {
    let mut b = tar::Builder::new(w);
    let mut first_of: HashMap<(u64, u64), &Path> = HashMap::new();
    let order = tar_order(entries, m);
    let n = order.len();
    for item in order {
        match item {
            Item::GenDir => {
                b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), ".torcx/", std::io::empty())?;
            }
            Item::GenManifest => {
                let data = generated.ok_or_else(|| anyhow!("no manifest to write"))?;
                let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
                b.append_data(&mut h, MANIFEST_PATH, data)?;
            }
            Item::Entry(e) => {
                let p = dir.join(&e.rel);
                let ctx = || format!("packing {}", p.display());
                match &e.kind {
                    EntryKind::Dir => {
                        let mut h = header(tar::EntryType::Directory, e.mode, 0);
                        b.append_data(&mut h, dir_name(&e.rel), std::io::empty()).with_context(ctx)?;
                    }
                    EntryKind::Symlink(t) => {
                        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                        b.append_link(&mut h, &e.rel, t).with_context(ctx)?;
                    }
                    EntryKind::File { size, id, nlink } => {
                        if *nlink > 1 {
                            if let Some(first) = first_of.get(id) {
                                let mut h = header(tar::EntryType::Link, e.mode, 0);
                                b.append_link(&mut h, &e.rel, first).with_context(ctx)?;
                                continue;
                            }
                            first_of.insert(*id, &e.rel);
                        }
                        let f = std::fs::File::open(&p).with_context(ctx)?;
                        let mut h = header(tar::EntryType::Regular, e.mode, *size);
                        let r = Exactly { inner: std::io::BufReader::new(f), left: *size, path: p.clone() };
                        b.append_data(&mut h, &e.rel, r).with_context(ctx)?;
                    }
                }
            }
        }
    }
    b.finish()?;
    Ok((b.into_inner()?, n))
}
