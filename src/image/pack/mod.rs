//! `torcx image pack`: build an archive from a directory.
//!
//! The directory is never modified. Its `.torcx/manifest.json` is used, or
//! one is scanned (`scan::default_manifest`) and written into the archive.
//! Tar archives put `.torcx/`, the manifest and the unit files first, so the
//! generator stops reading early, then everything else sorted by name, with
//! mtime 0, owner 0:0 and no names: the same directory gives the same bytes.
//! What the confined unpack would refuse (device nodes, FIFOs, sockets,
//! symlinks that leave the tree) is refused here, naming the path.

pub mod layout;
pub mod oci;

use crate::archive::Format;
use crate::image::inspect;
use crate::image::lint;
use crate::model::config::{Config, DEFAULT_REFERENCE};
use crate::model::manifest::ImageManifest;
use crate::model::names::ImageId;
use crate::sys::fsutil;
use crate::tree::source::MANIFEST_PATH;
use anyhow::{Context, Result, anyhow, bail};
use layout::*;
use serde_json::json;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
        log::warn!("{}: stores only find archives named NAME:REF{}", args.output.display(), format.suffix());
    }
    let id = id.or_else(|| by_name.and_then(|(_, id)| id.ok()));
    Ok(Target { output: args.output.clone(), format, id })
}

/// `NAME:REF.torcx.FMT`; a bundle is `NAME.torcx.oci.tgz`, its reference a tag inside.
fn archive_file_name(id: &ImageId, format: Format) -> String {
    match format {
        Format::Oci | Format::OciLayout => format!("{}{}", id.name, format.suffix()),
        _ => format!("{}:{}{}", id.name, id.reference, format.suffix()),
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
    let tmp =
        fsutil::temp_file_beside(dest, "tmp").with_context(|| format!("creating a file beside {}", dest.display()))?;
    let mut count = None;
    match format {
        Format::Tgz | Format::TarZst => {
            let f = tmp.reopen().with_context(|| format!("opening {}", tmp.path().display()))?;
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
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let stage = fsutil::ScratchDir::new_in(parent, ".torcx-pack-stage.")?;
            let stage = &stage.path().join("tree");
            stage_copy(dir, entries, generated, stage)?;
            if format == Format::Squashfs {
                let args: Vec<&std::ffi::OsStr> = [
                    stage.as_os_str(),
                    tmp.path().as_os_str(),
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
                    tmp.path().as_os_str(),
                    stage.as_os_str(),
                ]
                .to_vec();
                run_tool("mkfs.erofs", "erofs-utils", &args)?;
            }
            std::fs::File::open(tmp.path())?.sync_all()?;
        }
        Format::OciLayout => {
            bail!(
                "{}: image pack writes a bundle file (NAME.torcx.oci.tgz); a layout directory (NAME.torcx.oci) is what image pull writes",
                dest.display()
            )
        }
        Format::Oci => {
            let tag = id.map(|i| i.reference.clone()).unwrap_or_else(|| DEFAULT_REFERENCE.to_string());
            count = Some(oci::write_oci(dir, entries, m, generated, &tag, tmp.path(), dest)?);
        }
    }
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(dest).map_err(|e| e.error).with_context(|| format!("writing {}", dest.display()))?;
    Ok(count)
}

/// `dir` packed as a bundle (`NAME.torcx.oci.tgz`) with the one tag `tag`,
/// at `dest`: what `image push` sends for a directory.
pub fn write_bundle(dir: &Path, tag: &str, dest: &Path) -> Result<()> {
    let entries = walk(dir)?;
    let (m, generated) = manifest_of(dir, &entries)?;
    let id = ImageId { name: "image".into(), reference: tag.into() };
    write_archive(dir, &entries, &m, generated.as_deref(), Format::Oci, Some(&id), dest)?;
    Ok(())
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
