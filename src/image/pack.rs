//! `torcx image pack`: build an archive from a directory.
//!
//! The directory is never modified. Its `.torcx/manifest.json` is used, or
//! one is scanned (`scan::default_manifest`) and written into the archive.
//! Tar archives put `.torcx/`, the manifest and the unit files first, so the
//! generator stops reading early, then everything else sorted by name, with
//! mtime 0, owner 0:0 and no names: the same directory gives the same bytes.
//! What the confined unpack would refuse (device nodes, FIFOs, sockets,
//! symlinks that leave the tree) is refused here, naming the path.

use crate::archive::Format;
use crate::image::inspect;
use crate::image::lint;
use crate::model::config::{Config, DEFAULT_REFERENCE};
use crate::model::manifest::{self, ImageManifest};
use crate::model::names::ImageId;
use crate::sys::fsutil;
use crate::sys::log;
use crate::tree::policy::{self, Kind};
use crate::tree::scan;
use crate::tree::source::{MANIFEST_PATH, Tree};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// gzip and zstd levels: fixed, so the same tree gives the same bytes
/// (chosen for packing speed: higher levels gain a few percent at many
/// times the time; unpacking speed does not depend on them).
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 12;
/// erofs wants a UUID; a fixed one keeps images reproducible.
const EROFS_UUID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The archive's format comes from --format, else from the output's suffix \
(.torcx.tgz, .torcx.tar.zst, .torcx.squashfs, .torcx.erofs).

--name NAME [--reference REF]: when OUTPUT is a directory, the archive is \
written there as NAME:REF.torcx.FMT (REF defaults to com.coreos.cl, the \
format to tgz); when OUTPUT is a file, its name must be exactly that.

When DIR has no .torcx/manifest.json, one is scanned (binaries of /bin, \
/usr/bin, /sbin, /usr/sbin; units of /usr/lib/systemd/system and \
/lib/systemd/system) and written into the archive; DIR is never modified. \
Identical input gives byte-identical output. squashfs needs mksquashfs \
(squashfs-tools), erofs needs mkfs.erofs (erofs-utils). Lint findings are \
printed after packing, as `torcx image inspect` prints them; they do not \
change the exit status (inspect's does).")]
pub struct PackArgs {
    /// The image's root directory
    pub dir: PathBuf,
    /// The archive to write (a file, or a directory with --name)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Archive format (default: from the output's suffix)
    #[arg(long, value_enum)]
    pub format: Option<PackFormat>,
    /// Image name: names the archive in an output directory, or checks the output's name
    #[arg(long)]
    pub name: Option<String>,
    /// Image reference, with --name (default com.coreos.cl)
    #[arg(long, requires = "name")]
    pub reference: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFormat {
    /// gzip tar (.torcx.tgz)
    Tgz,
    /// zstd tar (.torcx.tar.zst)
    #[value(alias = "tar.zst")]
    Zst,
    /// squashfs, mounted (.torcx.squashfs)
    Squashfs,
    /// erofs, mounted (.torcx.erofs)
    Erofs,
    /// OCI bundle (not yet)
    Oci,
}

impl PackFormat {
    fn format(self) -> Format {
        match self {
            PackFormat::Tgz => Format::Tgz,
            PackFormat::Zst => Format::TarZst,
            PackFormat::Squashfs => Format::Squashfs,
            PackFormat::Erofs => Format::Erofs,
            PackFormat::Oci => Format::Oci,
        }
    }
}

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

fn walk_in(base: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<()> {
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

/// Where the archive goes, in which format, for which image.
struct Target {
    output: PathBuf,
    format: Format,
    id: Option<ImageId>,
}

fn target(args: &PackArgs) -> Result<Target> {
    let fmt = args.format.map(PackFormat::format);
    let reference = args.reference.clone().unwrap_or_else(|| DEFAULT_REFERENCE.to_string());
    let id = match &args.name {
        Some(n) => Some(ImageId::new(n, &reference)?),
        None => None,
    };
    if args.output.is_dir() {
        let Some(id) = id else {
            bail!("{}: is a directory: give --name (and --reference) to name the archive in it", args.output.display())
        };
        let format = fmt.unwrap_or(Format::Tgz);
        let output = args.output.join(archive_file_name(&id, format));
        return Ok(Target { output, format, id: Some(id) });
    }
    let file = args
        .output
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", args.output.display()))?
        .to_string_lossy()
        .into_owned();
    let by_name = crate::archive::parse_archive_name(&file);
    let format = match (fmt, &by_name) {
        (Some(f), Some((g, _))) if f != *g => {
            bail!("{}: the name says {}, but --format says {}", args.output.display(), g.name(), f.name())
        }
        (Some(f), _) => f,
        (None, Some((g, _))) => *g,
        (None, None) => bail!(
            "{}: cannot tell the format from the name (NAME:REF.torcx.tgz, .torcx.tar.zst, .torcx.squashfs, \
             .torcx.erofs): name it so, or give --format",
            args.output.display()
        ),
    };
    if let Some(id) = &id {
        let want = archive_file_name(id, format);
        if file != want {
            bail!("{}: the archive of {id} in {} format must be named {want}", args.output.display(), format.name());
        }
    } else if by_name.is_none() {
        log::warn(&format!("{}: stores only find archives named NAME:REF{}", args.output.display(), format.suffix()));
    }
    let id = id.or_else(|| by_name.and_then(|(_, id)| id.ok()));
    Ok(Target { output: args.output.clone(), format, id })
}

/// `NAME:REF.torcx.FMT`; a bundle is `NAME.torcx.oci.tgz`, its reference a tag inside.
fn archive_file_name(id: &ImageId, format: Format) -> String {
    match format {
        Format::Oci => format!("{}{}", id.name, format.suffix()),
        _ => format!("{}:{}{}", id.name, id.reference, format.suffix()),
    }
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
enum Item<'a> {
    Entry(&'a Entry),
    GenDir,
    GenManifest,
}

/// `.torcx/`, the manifest, the unit files (a listed directory with its
/// whole subtree, together), then everything else in walk order.
fn tar_order<'a>(entries: &'a [Entry], m: &ImageManifest) -> Vec<Item<'a>> {
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
struct Exactly<R> {
    inner: R,
    left: u64,
    path: PathBuf,
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

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn dir_name(rel: &Path) -> PathBuf {
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

/// A path next to `dest` that is removed when dropped (unless kept).
struct Temp {
    path: PathBuf,
    keep: bool,
}

impl Temp {
    fn beside(dest: &Path, what: &str) -> Result<Temp> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = dest.file_name().ok_or_else(|| anyhow!("{}: no file name", dest.display()))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
        let path = dir.join(format!(".{}.{what}{}-{}", name.to_string_lossy(), std::process::id(), nanos.unwrap_or(0)));
        Ok(Temp { path, keep: false })
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                fsutil::make_writable(&self.path);
                let _ = std::fs::remove_dir_all(&self.path);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

/// Copies the walked tree to `stage` (hard links kept), adding the
/// generated manifest; directory modes are set last.
fn stage_copy(dir: &Path, entries: &[Entry], generated: Option<&[u8]>, stage: &Path) -> Result<()> {
    std::fs::create_dir(stage).with_context(|| format!("creating {}", stage.display()))?;
    let mut first_of: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for e in entries {
        let (src, dst) = (dir.join(&e.rel), stage.join(&e.rel));
        let ctx = || format!("copying {} to {}", src.display(), dst.display());
        match &e.kind {
            EntryKind::Dir => std::fs::create_dir(&dst).with_context(ctx)?,
            EntryKind::Symlink(t) => std::os::unix::fs::symlink(t, &dst).with_context(ctx)?,
            EntryKind::File { id, nlink, .. } => {
                if *nlink > 1 {
                    if let Some(first) = first_of.get(id) {
                        std::fs::hard_link(first, &dst).with_context(ctx)?;
                        continue;
                    }
                    first_of.insert(*id, dst.clone());
                }
                std::fs::copy(&src, &dst).with_context(ctx)?;
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(e.mode)).with_context(ctx)?;
            }
        }
    }
    if let Some(data) = generated {
        let d = stage.join(".torcx");
        if !d.is_dir() {
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let f = stage.join(MANIFEST_PATH);
        std::fs::write(&f, data).with_context(|| format!("writing {}", f.display()))?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644))?;
    }
    for e in entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
        let d = stage.join(&e.rel);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(e.mode))
            .with_context(|| format!("setting the mode of {}", d.display()))?;
    }
    Ok(())
}

fn run_tool(tool: &str, package: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(tool).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!("{tool} not found: install {package}")
        } else {
            anyhow!("running {tool}: {e}")
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        bail!("{tool} failed ({}): {last}", out.status);
    }
    Ok(())
}

/// Writes the archive of `dir` to `dest` (atomically); returns the entry
/// count of tar formats.
fn write_archive(
    dir: &Path,
    entries: &[Entry],
    m: &ImageManifest,
    generated: Option<&[u8]>,
    format: Format,
    id: Option<&ImageId>,
    dest: &Path,
) -> Result<Option<usize>> {
    let mut tmp = Temp::beside(dest, "tmp")?;
    let mut count = None;
    match format {
        Format::Tgz | Format::TarZst => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp.path)
                .with_context(|| format!("creating {}", tmp.path.display()))?;
            let w = std::io::BufWriter::with_capacity(256 * 1024, f);
            let f = if format == Format::Tgz {
                let gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(3)
                    .write(w, flate2::Compression::new(GZIP_LEVEL));
                let (gz, n) = write_tar(gz, dir, entries, m, generated)?;
                count = Some(n);
                gz.finish()?
            } else {
                let mut z = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                z.include_checksum(true)?;
                let (z, n) = write_tar(z, dir, entries, m, generated)?;
                count = Some(n);
                z.finish()?
            };
            let f = f.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        Format::Squashfs | Format::Erofs => {
            let stage = Temp::beside(dest, "stage")?;
            stage_copy(dir, entries, generated, &stage.path)?;
            if format == Format::Squashfs {
                let args: Vec<&std::ffi::OsStr> = [
                    stage.path.as_os_str(),
                    tmp.path.as_os_str(),
                    "-noappend".as_ref(),
                    "-all-root".as_ref(),
                    "-mkfs-time".as_ref(),
                    "0".as_ref(),
                    "-all-time".as_ref(),
                    "0".as_ref(),
                    "-no-xattrs".as_ref(),
                    "-quiet".as_ref(),
                    "-no-progress".as_ref(),
                ]
                .to_vec();
                run_tool("mksquashfs", "squashfs-tools", &args)?;
            } else {
                let uuid = format!("-U{EROFS_UUID}");
                let args: Vec<&std::ffi::OsStr> = [
                    "-T0".as_ref(),
                    "--all-root".as_ref(),
                    uuid.as_ref(),
                    "-x-1".as_ref(),
                    "--quiet".as_ref(),
                    tmp.path.as_os_str(),
                    stage.path.as_os_str(),
                ]
                .to_vec();
                run_tool("mkfs.erofs", "erofs-utils", &args)?;
            }
            std::fs::File::open(&tmp.path)?.sync_all()?;
        }
        Format::Oci => {
            let tag = id.map(|i| i.reference.clone()).unwrap_or_else(|| DEFAULT_REFERENCE.to_string());
            count = Some(write_oci(dir, entries, m, generated, &tag, &tmp.path, dest)?);
        }
    }
    std::fs::set_permissions(&tmp.path, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp.path, dest).with_context(|| format!("writing {}", dest.display()))?;
    tmp.keep = true;
    Ok(count)
}

pub fn run(cfg: &Config, args: &PackArgs, json: bool) -> Result<i32> {
    let dir = std::path::absolute(&args.dir)?;
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let t = target(args)?;
    // The temporary file must not land in the directory being packed.
    let out_abs = std::path::absolute(&t.output)?;
    let out_dir = out_abs.parent().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    let real_dir = std::fs::canonicalize(&dir)?;
    if out_dir.as_ref().is_some_and(|o| o.starts_with(&real_dir)) {
        bail!("{}: inside the directory being packed ({})", t.output.display(), dir.display());
    }
    let entries = walk(&dir)?;
    let (m, generated) = manifest_of(&dir, &entries)?;
    let count = write_archive(&dir, &entries, &m, generated.as_deref(), t.format, t.id.as_ref(), &t.output)?;
    let size = std::fs::metadata(&t.output)?.len();
    let digest = crate::archive::stream::digest_in_background(&t.output).join().ok().flatten();

    let placeholder = ImageId { name: "IMAGE".into(), reference: "local".into() };
    let id = t.id.clone().unwrap_or(placeholder);
    let ex = inspect::examine(cfg, &dir, Some((m.clone(), generated.is_some())), &id, t.id.is_some(), &out_abs)?;
    let (errors, warnings) =
        (lint::count(&ex.findings, lint::Severity::Error), lint::count(&ex.findings, lint::Severity::Warning));
    if json {
        let v = json!({
            "output": t.output,
            "format": t.format.name(),
            "image": t.id.as_ref().map(|i| i.to_string()),
            "size": size,
            "digest": digest,
            "entries": count,
            "manifest": serde_json::to_value(&m)?,
            "manifest_generated": generated.is_some(),
            "findings": ex.findings,
            "errors": errors,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&json!({"kind": "torcx-image-pack-v0", "value": v}))?);
    } else {
        println!(
            "wrote {} ({}, {size} bytes, {}; manifest {})",
            t.output.display(),
            t.format.name(),
            digest.as_deref().unwrap_or("-"),
            if generated.is_some() { "generated" } else { "from the image" }
        );
        print!("{}", lint::render(&ex.findings));
        if !ex.findings.is_empty() {
            println!("{errors} error(s), {warnings} warning(s)");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for (p, d) in [
            ("usr/bin/b", "b"),
            ("usr/lib/systemd/system/b.service", "[Service]\nExecStart=/run/torcx/bin/b\n"),
            ("a-z", "x"),
            ("a/z", "y"),
        ] {
            std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            std::fs::write(r.join(p), d).unwrap();
        }
        std::fs::create_dir_all(r.join("usr/lib/systemd/system/multi-user.target.wants")).unwrap();
        std::os::unix::fs::symlink("../b.service", r.join("usr/lib/systemd/system/multi-user.target.wants/b.service"))
            .unwrap();
        std::fs::hard_link(r.join("usr/bin/b"), r.join("usr/bin/c")).unwrap();
        t
    }

    #[test]
    fn order_and_determinism() {
        let t = tree();
        let entries = walk(t.path()).unwrap();
        let names: Vec<String> = entries.iter().map(|e| e.rel.display().to_string()).collect();
        // a, a/z before a-z: GNU tar's --sort=name order.
        assert_eq!(&names[..3], ["a", "a/z", "a-z"]);
        let (m, gen_) = manifest_of(t.path(), &entries).unwrap();
        assert!(gen_.is_some());
        let (v, n) = write_tar(vec![], t.path(), &entries, &m, gen_.as_deref()).unwrap();
        let (v2, _) = write_tar(vec![], t.path(), &entries, &m, gen_.as_deref()).unwrap();
        assert_eq!(v, v2);
        let mut ar = tar::Archive::new(&v[..]);
        let got: Vec<String> =
            ar.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect();
        assert_eq!(got.len(), n);
        assert_eq!(
            &got[..5],
            [
                ".torcx/",
                ".torcx/manifest.json",
                "usr/lib/systemd/system/b.service",
                "usr/lib/systemd/system/multi-user.target.wants/",
                "usr/lib/systemd/system/multi-user.target.wants/b.service"
            ]
        );
        assert!(got.contains(&"usr/bin/c".to_string()));
    }

    #[test]
    fn refusals() {
        let t = tree();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("a/abs")).unwrap();
        let e = format!("{:#}", walk(t.path()).unwrap_err());
        assert!(e.contains("a/abs") && e.contains("absolute"), "{e}");
        std::fs::remove_file(t.path().join("a/abs")).unwrap();
        std::os::unix::fs::symlink("../../x", t.path().join("a/up")).unwrap();
        let e = format!("{:#}", walk(t.path()).unwrap_err());
        assert!(e.contains("a/up") && e.contains("leaves the image"), "{e}");
        std::fs::remove_file(t.path().join("a/up")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            t.path().join("a/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = format!("{:#}", walk(t.path()).unwrap_err());
        assert!(e.contains("a/fifo") && e.contains("FIFO"), "{e}");
    }
}

/// Counts and hashes what goes through it.
struct Hashed<W> {
    inner: W,
    hash: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(h: sha2::Sha256) -> String {
    fsutil::hex(&sha2::Digest::finalize(h))
}

/// Writes a torcx OCI bundle (seed 001): a gzip tar of an OCI image layout
/// with one tar+gzip layer holding the tree, the bundle annotation and the
/// tag `tag`. `index.json` comes first, so listing its tags reads little.
fn write_oci(
    dir: &Path,
    entries: &[Entry],
    m: &ImageManifest,
    generated: Option<&[u8]>,
    tag: &str,
    tmp: &Path,
    dest: &Path,
) -> Result<usize> {
    // The layer goes to a file of its own first: its digest names it.
    let layer_tmp = Temp::beside(dest, "layer")?;
    let f = std::fs::File::create(&layer_tmp.path).with_context(|| format!("creating {}", layer_tmp.path.display()))?;
    let outer = Hashed { inner: std::io::BufWriter::new(f), hash: Default::default(), len: 0 };
    let gz = flate2::GzBuilder::new().mtime(0).operating_system(3).write(outer, flate2::Compression::new(GZIP_LEVEL));
    let inner = Hashed { inner: gz, hash: Default::default(), len: 0 };
    let (inner, n) = write_tar(inner, dir, entries, m, generated)?;
    let diff_id = hex(inner.hash);
    let mut outer = inner.inner.finish()?;
    outer.flush()?;
    let (layer_digest, layer_size) = (hex(outer.hash), outer.len);

    let blob = |v: serde_json::Value| -> (Vec<u8>, String) {
        let b = serde_json::to_vec(&v).unwrap();
        let d = fsutil::sha256_hex(&b);
        (b, d)
    };
    let (config, config_digest) = blob(json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    }));
    let (manifest, manifest_digest) = blob(json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
        "annotations": {"com.coreos.torcx.bundle.v0": "yes"},
    }));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag, "com.coreos.torcx.bundle.v0": "yes"},
        }],
        "annotations": {"com.coreos.torcx.bundle.v0": "yes"},
    }))?;

    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(std::io::BufWriter::new(f), flate2::Compression::new(GZIP_LEVEL));
    let mut b = tar::Builder::new(gz);
    let add = |b: &mut tar::Builder<_>, path: &str, data: &[u8]| -> Result<()> {
        b.append_data(&mut header(tar::EntryType::Regular, 0o644, data.len() as u64), path, data)?;
        Ok(())
    };
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add(&mut b, "index.json", &index)?;
    for d in ["blobs/", "blobs/sha256/"] {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), d, std::io::empty())?;
    }
    add(&mut b, &format!("blobs/sha256/{manifest_digest}"), &manifest)?;
    add(&mut b, &format!("blobs/sha256/{config_digest}"), &config)?;
    let layer = std::fs::File::open(&layer_tmp.path)?;
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, layer_size),
        format!("blobs/sha256/{layer_digest}"),
        layer,
    )?;
    let gz = b.into_inner()?;
    let w = gz.finish()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(n)
}
