//! `torcx image inspect`: what an archive is and what attaching it would do.
//!
//! The image is unpacked into a private temporary directory (never mounted):
//! tar formats with the confined extractor, squashfs and erofs read in
//! process (backhand, erofs-rs) and fed to the same extractor. Then the
//! attach plan is made as `attach` would make it, and the image is linted.

use crate::archive::fsimage::{Entry, FsImage, Node};
use crate::archive::{Archive, Format};
use crate::attach::{self, Action, CopyMode, ImageFrom, Origin, Placement};
use crate::image::lint::{self, Finding, Severity};
use crate::model::config::Config;
use crate::model::manifest::ImageManifest;
use crate::model::names::ImageId;
use crate::sys::fsutil;
use crate::tree::extract;
use crate::tree::policy::{self, Kind, Limits};
use crate::tree::scan;
use crate::tree::source::{self, ImageSource, MANIFEST_PATH, Tree};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Lint findings (error or warning, one line each naming the file): ELF files \
whose libraries are found neither in the image (through RPATH/RUNPATH, \
$ORIGIN being the file's directory in the image) nor on the host; absolute \
RPATH/RUNPATH entries; ELF files for another architecture; manifest paths \
missing from the image; units whose Exec*= program exists neither in the \
image (as /run/torcx/bin/NAME or /run/torcx/unpack/IMAGE/...) nor on the \
host; units clashing with a host unit of the same name (under --root). \
Exit status: 0 without error findings, 1 with any.")]
pub struct InspectArgs {
    /// NAME[:REF] from the stores, or the path of an archive (or of an image directory)
    pub image: String,
}

/// An image's tree, looked at: its manifest, the attach plan, the findings.
pub struct Examined {
    pub manifest: ImageManifest,
    /// `image` (its own), `generated` (pack wrote it), `default` (scanned: the image has none).
    pub manifest_source: &'static str,
    pub placements: Vec<Placement>,
    pub findings: Vec<Finding>,
}

/// Plans and lints the image tree at `root`. `manifest` is the one to use
/// (and whether it was generated), or `None` to read the tree's own.
pub fn examine(
    cfg: &Config,
    root: &Path,
    manifest: Option<(ImageManifest, bool)>,
    id: &ImageId,
    id_known: bool,
    archive: &Path,
) -> Result<Examined> {
    let src = Tree::open(root)?;
    let mut findings = vec![];
    let (m, manifest_source) = match manifest {
        Some((m, generated)) => (m, if generated { "generated" } else { "image" }),
        None => match source::read_manifest(&src) {
            Ok(Some(m)) => (m, "image"),
            Ok(None) => {
                findings.push(Finding {
                    severity: Severity::Warning,
                    path: format!("/{MANIFEST_PATH}"),
                    message: format!(
                        "/{MANIFEST_PATH}: missing: the default manifest scanned from the standard paths is used"
                    ),
                });
                (scan::default_manifest(&src)?, "default")
            }
            Err(e) => {
                findings.push(Finding {
                    severity: Severity::Error,
                    path: format!("/{MANIFEST_PATH}"),
                    message: format!("/{MANIFEST_PATH}: {e:#}"),
                });
                (ImageManifest::default(), "invalid")
            }
        },
    };
    // Plan with what exists (lint names what does not), so a missing path
    // is reported once, and everything else is still planned.
    let exists = |p: &String| {
        fsutil::relative_inside(p).is_ok_and(|r| !r.as_os_str().is_empty() && matches!(src.stat(&r), Ok(Some(_))))
    };
    let keep = |v: &Vec<String>| v.iter().filter(|p| exists(p)).cloned().collect::<Vec<_>>();
    let present = ImageManifest {
        bin: keep(&m.bin),
        network: keep(&m.network),
        units: keep(&m.units),
        sysusers: keep(&m.sysusers),
        tmpfiles: keep(&m.tmpfiles),
        udev_rules: keep(&m.udev_rules),
    };
    let o = Origin { id, archive, tree: cfg.unpack_dir().join(&id.name), copy: CopyMode::Auto, portable: None };
    let placements = match attach::plan(cfg, &o, &src, &present, false) {
        Ok(p) => p,
        Err(e) => {
            findings.push(Finding { severity: Severity::Error, path: String::new(), message: format!("{e:#}") });
            vec![]
        }
    };
    let bins: Vec<&Placement> = placements.iter().filter(|p| p.class == attach::Class::Bin).collect();
    let binaries: Vec<String> =
        bins.iter().filter_map(|p| p.dest.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    let bin_sources: Vec<PathBuf> = bins.iter().filter_map(|p| p.source.as_ref()).map(PathBuf::from).collect();
    let img = lint::Image {
        root,
        src: &src,
        manifest: &m,
        name: id_known.then_some(id.name.as_str()),
        binaries: &binaries,
        bin_sources: &bin_sources,
    };
    findings.extend(lint::lint(cfg, &img));
    Ok(Examined { manifest: m, manifest_source, placements, findings })
}

/// What the argument names.
enum Subject {
    Archive { a: Archive, id_known: bool },
    Dir { path: PathBuf, id: ImageId, id_known: bool },
}

fn placeholder() -> ImageId {
    ImageId { name: "IMAGE".into(), reference: "local".into() }
}

/// The format of a file, from its name or else its first bytes.
fn sniff(path: &Path) -> Result<Format> {
    let mut head = vec![0u8; 1028];
    let mut f = crate::sys::fsutil::open_regular_io(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Format::Tgz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Format::TarZst)
    } else if head.starts_with(b"hsqs") {
        Ok(Format::Squashfs)
    } else if head.len() >= 1028 && head[1024..1028] == [0xe2, 0xe1, 0xf5, 0xe0] {
        Ok(Format::Erofs)
    } else {
        bail!("{}: not a torcx archive (gzip or zstd tar, squashfs, erofs)", path.display())
    }
}

fn subject(cfg: &Config, arg: &str) -> Result<Subject> {
    let p = Path::new(arg);
    // The rule of every command (`attach::from::is_path`): `./NAME` for a
    // directory or oddly named archive here, a bare word is an image name.
    if crate::attach::from::is_path(arg) {
        let abs = std::path::absolute(p)?;
        let meta = std::fs::metadata(&abs).map_err(|e| anyhow!("{}: {e}", abs.display()))?;
        let file = abs.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if meta.is_dir() {
            let parsed = file.split_once(':').and_then(|(n, r)| ImageId::new(n, r).ok());
            return Ok(Subject::Dir { path: abs, id_known: parsed.is_some(), id: parsed.unwrap_or_else(placeholder) });
        }
        let (format, id) = match crate::archive::parse_archive_name(&file) {
            Some((f, id)) => (f, id.ok()),
            None => (sniff(&abs)?, None),
        };
        let mut id_known = id.is_some();
        let mut id = id.unwrap_or_else(placeholder);
        if format.is_oci() {
            // A bundle offers one image per tag: the one its name says, else its only one.
            let tags = crate::archive::oci::list_tags(&abs)?;
            if !tags.contains(&id.reference) {
                match tags.as_slice() {
                    [only] => {
                        id = ImageId::new(&id.name, only)?;
                        id_known = true;
                    }
                    _ => bail!(
                        "{}: a bundle of several references ({}): inspect one as NAME:REF from a store",
                        abs.display(),
                        tags.join(", ")
                    ),
                }
            }
        }
        let a = Archive { id, format, path: abs.clone(), host: abs };
        return Ok(Subject::Archive { a, id_known });
    }
    match crate::attach::from::resolve(cfg, arg, true)? {
        ImageFrom::Archive(a) => Ok(Subject::Archive { a, id_known: true }),
        ImageFrom::Dir { path, id } => Ok(Subject::Dir { path, id, id_known: true }),
    }
}

fn limits(cfg: &Config) -> Limits {
    Limits::unpack(cfg.unpack_limit)
}

/// Unpacks a tar archive into `dest`; refusals become error findings.
pub(crate) fn unpack_tar(cfg: &Config, a: &Archive, dest: &Path) -> Result<Vec<Finding>> {
    let mut stream = crate::archive::stream::open_tar(a)?;
    match extract::extract(&mut stream, dest, limits(cfg)).and_then(|_| stream.finish()) {
        Ok(()) => Ok(vec![]),
        Err(e) => Ok(vec![Finding {
            severity: Severity::Error,
            path: a.path.display().to_string(),
            message: format!("{}: the confined unpack refuses it: {e:#}", a.path.display()),
        }]),
    }
}

/// Feeds the nodes of a mounted-format image, as a tar stream, to the
/// confined extractor writing `dest`. Symlinks the extractor refuses (which
/// a mount keeps, but torcx never follows) are created afterwards, beneath
/// `dest`; device nodes, FIFOs and sockets (unusable: the mount is `nodev`)
/// are left out. Both are reported.
pub(crate) fn unpack_fsimage(cfg: &Config, a: &Archive, dest: &Path) -> Result<Vec<Finding>> {
    let fs = FsImage::open(&a.host, a.format).with_context(|| a.path.display().to_string())?;
    let nodes = fs.entries()?;
    let (reader, writer) = std::io::pipe()?;
    let d = dest.to_path_buf();
    let lim = limits(cfg);
    let th = std::thread::spawn(move || {
        let mut r = reader;
        let res = extract::extract(&mut r, &d, lim);
        // Drain, so the writer never blocks on a reader that stopped.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        res
    });
    let mut findings = vec![];
    let mut later: Vec<(PathBuf, PathBuf)> = vec![];
    let produce = (|| -> Result<()> {
        let mut b = tar::Builder::new(std::io::BufWriter::new(writer));
        for Entry { path: rel, mode, node } in nodes {
            let shown = format!("/{}", rel.display());
            let mut h = tar::Header::new_gnu();
            h.set_mode(mode & 0o7777);
            h.set_mtime(0);
            match node {
                Node::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, &rel, std::io::empty())?;
                }
                Node::File { size, handle } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(size);
                    b.append_data(&mut h, &rel, fs.reader(&handle)?.take(size))?;
                }
                Node::Link(t) => {
                    let depth = rel.components().count().saturating_sub(1);
                    if policy::check_symlink(rel.as_os_str().as_bytes(), depth, t.as_os_str().as_bytes()).is_err() {
                        findings.push(Finding {
                            severity: Severity::Warning,
                            path: shown.clone(),
                            message: format!(
                                "{shown}: symlink to {} points outside the image: torcx does not follow it",
                                t.display()
                            ),
                        });
                        later.push((rel, t));
                        continue;
                    }
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, &rel, &t)?;
                }
                Node::Special(s) => {
                    let kind = Kind::of_special(s);
                    let what = kind.name();
                    findings.push(Finding {
                        severity: Severity::Warning,
                        path: shown.clone(),
                        message: if kind == Kind::Device {
                            format!("{shown}: {what}: unusable, the image is mounted nodev")
                        } else {
                            format!("{shown}: {what}: pack and the unpack of tar formats refuse it")
                        },
                    })
                }
            }
        }
        b.into_inner()?.flush()?;
        Ok(())
    })();
    let extracted = th.join().map_err(|_| anyhow!("the extractor thread panicked"))?;
    // A failure to read the image comes first: the extractor then only saw a truncated stream.
    produce?;
    if let Err(e) = extracted {
        findings.push(Finding {
            severity: Severity::Error,
            path: String::new(),
            message: format!("the image cannot be read as torcx reads it: {e:#}"),
        });
        return Ok(findings);
    }
    let root = fsutil::open_dir(dest)?;
    for (rel, t) in later {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { continue };
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY;
        if let Ok(Some(dir)) = fsutil::open_beneath(&root, parent, flags) {
            let _ = rustix::fs::symlinkat(t.as_os_str(), &dir, name);
        }
    }
    Ok(findings)
}

fn placement_json(p: &Placement) -> serde_json::Value {
    let (kind, target, size) = match &p.action {
        Action::Symlink(t) => ("symlink", Some(t.display().to_string()), None),
        Action::File(b) => ("file", None, Some(b.len())),
        Action::Dir => ("dir", None, None),
    };
    json!({
        "class": p.class,
        "path": p.dest,
        "type": kind,
        "target": target,
        "size": size,
        "source": p.source.as_ref().map(|s| format!("/{s}")),
    })
}

fn placement_line(p: &Placement) -> String {
    let class = serde_json::to_value(p.class).unwrap().as_str().unwrap_or("").to_string();
    let what = match &p.action {
        Action::Symlink(t) => format!("{} -> {}", p.dest.display(), t.display()),
        Action::File(b) => format!("{} ({} bytes)", p.dest.display(), b.len()),
        Action::Dir => format!("{}/", p.dest.display()),
    };
    let from = match (&p.action, &p.source) {
        (Action::File(_), Some(s)) if p.class != attach::Class::DropIn => format!(", from /{s}"),
        _ => String::new(),
    };
    // Paths come from the image: shown with control characters escaped.
    format!("  {class:<10} {}", esc(&format!("{what}{from}")))
}

/// Text from an image, fit for a terminal: one line, no control characters.
fn esc(s: &str) -> String {
    crate::sys::logger::escape_controls(s).into_owned()
}

fn manifest_lines(m: &ImageManifest) -> String {
    let mut s = String::new();
    for (k, v) in m.classes() {
        for (i, p) in v.iter().enumerate() {
            s += &format!("  {:<10} {}\n", if i == 0 { k } else { "" }, esc(p));
        }
    }
    s
}

pub fn run(cfg: &Config, args: &InspectArgs, json: bool) -> Result<i32> {
    let subj = subject(cfg, &args.image)?;
    let tmp;
    let mut findings = vec![];
    let (root, id, id_known, shown, format, size, digest) = match &subj {
        Subject::Dir { path, id, id_known } => {
            // What pack would refuse, the unpack would refuse too.
            if let Err(e) = crate::image::pack::layout::walk(path) {
                findings.push(Finding { severity: Severity::Error, path: String::new(), message: format!("{e:#}") });
            }
            (path.clone(), id.clone(), *id_known, path.clone(), "directory", None, None)
        }
        Subject::Archive { a, id_known } => {
            let digest = crate::archive::stream::digest_in_background(&a.host);
            let size = std::fs::metadata(&a.host).with_context(|| format!("{}", a.path.display()))?.len();
            tmp = fsutil::ScratchDir::new_in(&std::env::temp_dir(), "torcx-inspect-")?;
            let dest = tmp.path().join("tree");
            std::fs::create_dir(&dest)?;
            findings.extend(match a.format {
                Format::Tgz | Format::TarZst => unpack_tar(cfg, a, &dest)?,
                Format::Squashfs | Format::Erofs => unpack_fsimage(cfg, a, &dest)?,
                Format::Oci | Format::OciLayout => {
                    crate::tree::oci::unpack(&a.host, &a.id.reference, &dest, limits(cfg))?;
                    vec![]
                }
            });
            (dest, a.id.clone(), *id_known, a.path.clone(), a.format.name(), Some(size), Some(digest))
        }
    };
    let unpack_failed = findings.iter().any(|f| f.severity == Severity::Error && !matches!(subj, Subject::Dir { .. }));
    // An archive that did not unpack may be a valid start and a terabyte of
    // sparse hole: its digest is not waited for.
    let digest = digest.filter(|_| !unpack_failed).and_then(|d| d.join().ok().flatten());
    let ex = if unpack_failed {
        Examined {
            manifest: ImageManifest::default(),
            manifest_source: "unreadable",
            placements: vec![],
            findings: vec![],
        }
    } else {
        examine(cfg, &root, None, &id, id_known, &shown)?
    };
    findings.extend(ex.findings);
    let errors = lint::count(&findings, Severity::Error);
    let warnings = lint::count(&findings, Severity::Warning);
    let image = id_known.then(|| id.to_string());
    if json {
        let v = json!({
            "image": image,
            "path": shown,
            "format": format,
            "size": size,
            "digest": digest,
            "manifest": ex.manifest,
            "manifest_source": ex.manifest_source,
            "placements": ex.placements.iter().map(placement_json).collect::<Vec<_>>(),
            "findings": findings,
            "errors": errors,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&json!({"kind": "torcx-image-inspect-v0", "value": v}))?);
    } else {
        let mut s = String::new();
        s += &format!("{:<12} {}\n", "image", esc(image.as_deref().unwrap_or("-")));
        s += &format!("{:<12} {}\n", "path", esc(&shown.display().to_string()));
        s += &format!("{:<12} {format}\n", "format");
        if let Some(n) = size {
            s += &format!("{:<12} {n} bytes\n", "size");
        }
        if let Some(d) = &digest {
            s += &format!("{:<12} {d}\n", "digest");
        }
        let src = match ex.manifest_source {
            "image" => format!("/{MANIFEST_PATH}"),
            "default" => format!("none in the image: scanned default (no /{MANIFEST_PATH})"),
            other => other.to_string(),
        };
        s += &format!("{:<12} {src}\n", "manifest");
        s += &manifest_lines(&ex.manifest);
        s += if ex.placements.is_empty() { "placements   none\n" } else { "placements\n" };
        for p in &ex.placements {
            s += &placement_line(p);
            s.push('\n');
        }
        if findings.is_empty() {
            s += &format!("{:<12} none\n", "lint");
        } else {
            s += &format!("{:<12} {errors} error(s), {warnings} warning(s)\n", "lint");
            for l in lint::render(&findings).lines() {
                s += &format!("  {l}\n");
            }
        }
        print!("{s}");
    }
    Ok(if errors > 0 { 1 } else { 0 })
}
