//! Attaching an image: plan where each asset goes, refuse conflicts before
//! touching anything, record the intent, place the files, record the result.
//! Detaching reads the record and removes only what is still as placed.

pub mod from;
pub mod portable;
pub mod unpack;

use crate::archive::Archive;
use crate::model::config::{self, Config};
use crate::model::manifest::ImageManifest;
use crate::model::names::ImageId;
use crate::model::units::is_unit_name;
use crate::sys::crash;
use crate::sys::fsutil::{self, atomic_write, sha256_hex};
use crate::sys::log;
use crate::sys::mount;
use crate::sys::systemd;
use crate::tree::source::{self, ImageSource, Kind, Tree};
use anyhow::{Context, Result, anyhow, bail};
pub use from::ImageFrom;
use portable::Sandbox;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const RECORD_KIND: &str = "torcx-attachment-v0";
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Bin,
    Unit,
    DropIn,
    Network,
    Sysusers,
    Tmpfiles,
    UdevRules,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Symlink(PathBuf),
    File(Vec<u8>),
    Dir,
}

/// One file torcx will place, at a logical path.
#[derive(Debug, Clone)]
pub struct Placement {
    pub class: Class,
    pub dest: PathBuf,
    pub action: Action,
    /// Where in the image it comes from, for messages and the record.
    pub source: Option<String>,
}

/// What an image is attached from, and how, for drop-ins, links and records.
pub struct Origin<'a> {
    pub id: &'a ImageId,
    /// Logical path of the archive.
    pub archive: &'a Path,
    /// Logical path of the image tree (`/run/torcx/unpack/NAME`).
    pub tree: PathBuf,
    pub copy: CopyMode,
    pub portable: Option<Sandbox>,
}

/// How unit files are placed: copied, or linked into the image tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Copy (the unit then survives the tree going away, and reloads see it whole)
    #[default]
    Auto,
    Copy,
    Symlink,
}

/// The drop-in tying a unit to its image (design.md, "Drop-in").
pub fn dropin(cfg: &Config, o: &Origin, unit: &str) -> String {
    let mut s = format!(
        "# Attached by torcx from {} ({}); do not edit.\n[Unit]\nRequires=torcx.target\nAfter=torcx.target\n",
        o.id,
        o.archive.display()
    );
    if unit.ends_with(".service") {
        let bin = cfg.bin_dir();
        s += &format!(
            "\n[Service]\nEnvironment=TORCX_IMAGE={} TORCX_REFERENCE={} TORCX_IMAGEDIR={} TORCX_BINDIR={}\n\
             Environment=PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             LogExtraFields=TORCX_IMAGE={}\n",
            o.id.name,
            o.id.reference,
            o.tree.display(),
            bin.display(),
            bin.display(),
            o.id
        );
        if let Some(sb) = o.portable {
            s += &format!("RootDirectory={}\n", o.tree.display());
            s += &portable::service_settings(sb);
        }
    }
    s
}

fn manifest_rel(class: &str, p: &str) -> Result<PathBuf> {
    let rel = fsutil::relative_inside(p).map_err(|e| anyhow!("manifest {class} entry {e}: outside the image"))?;
    if rel.as_os_str().is_empty() {
        bail!("manifest {class} entry {p:?} names the image root");
    }
    Ok(rel)
}

/// Works out every placement of an image. With `units_only`, only what the
/// generator writes (units, their links and drop-ins).
pub fn plan(
    cfg: &Config,
    o: &Origin,
    src: &dyn ImageSource,
    m: &ImageManifest,
    units_only: bool,
) -> Result<Vec<Placement>> {
    let mut out: Vec<Placement> = vec![];
    let ctx = |class: &str, p: &str| format!("manifest {class} entry {p:?}");
    if !units_only {
        for p in &m.bin {
            let rel = manifest_rel("bin", p)?;
            plan_bin(cfg, o, src, &rel, &mut out).with_context(|| ctx("bin", p))?;
        }
    }
    for p in &m.units {
        let rel = manifest_rel("units", p)?;
        plan_units(cfg, o, src, &rel, &mut out).with_context(|| ctx("units", p))?;
    }
    if !units_only {
        for (class, list, dir) in [
            (Class::Network, &m.network, config::NETWORK_DIR),
            (Class::Sysusers, &m.sysusers, config::SYSUSERS_DIR),
            (Class::Tmpfiles, &m.tmpfiles, config::TMPFILES_DIR),
            (Class::UdevRules, &m.udev_rules, config::UDEV_RULES_DIR),
        ] {
            let cname = serde_json::to_value(class).unwrap().as_str().unwrap().to_string();
            for p in list {
                let rel = manifest_rel(&cname, p)?;
                plan_copies(class, src, &rel, Path::new(dir), &mut out).with_context(|| ctx(&cname, p))?;
            }
        }
    }
    // A drop-in directory may only change units the image ships itself: an
    // image must not reconfigure the host's services.
    let units_dir = Path::new(config::UNITS_DIR);
    let shipped: Vec<String> = out
        .iter()
        .filter(|p| p.class == Class::Unit && p.action != Action::Dir && p.dest.parent() == Some(units_dir))
        .map(|p| p.dest.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for p in
        out.iter().filter(|p| p.class == Class::Unit && p.action == Action::Dir && p.dest.parent() == Some(units_dir))
    {
        let name = p.dest.file_name().unwrap().to_string_lossy();
        if let Some(unit) = name.strip_suffix(".d")
            && !shipped.iter().any(|u| u == unit)
        {
            bail!(
                "manifest units entry /{}: drop-in directory {name} changes {unit}, which the image does not ship",
                p.source.as_deref().unwrap_or("?")
            );
        }
    }
    // Two assets of one image at one place: name both.
    let mut seen: HashMap<&Path, &Placement> = HashMap::new();
    for p in &out {
        if let Some(prev) = seen.insert(&p.dest, p)
            && !(prev.action == Action::Dir && p.action == Action::Dir)
        {
            bail!(
                "{} is provided twice by the image: by /{} and by /{}",
                p.dest.display(),
                prev.source.as_deref().unwrap_or("?"),
                p.source.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(out)
}

fn plan_bin(cfg: &Config, o: &Origin, src: &dyn ImageSource, rel: &Path, out: &mut Vec<Placement>) -> Result<()> {
    match src.stat(rel)? {
        None => bail!("does not exist in the image"),
        Some(Kind::File) => {
            let name = rel.file_name().unwrap();
            out.push(Placement {
                class: Class::Bin,
                dest: cfg.bin_dir().join(name),
                action: Action::Symlink(o.tree.join(rel)),
                source: Some(rel.display().to_string()),
            });
        }
        Some(Kind::Dir) => {
            // Directories are flattened: every file below gets a link by its name.
            for (name, kind) in src.list(rel)? {
                let child = rel.join(&name);
                match kind {
                    Kind::Dir => plan_bin(cfg, o, src, &child, out)?,
                    Kind::Symlink(_) | Kind::File => {
                        if matches!(kind, Kind::Symlink(_)) && src.stat(&child)? != Some(Kind::File) {
                            continue;
                        }
                        out.push(Placement {
                            class: Class::Bin,
                            dest: cfg.bin_dir().join(&name),
                            action: Action::Symlink(o.tree.join(&child)),
                            source: Some(child.display().to_string()),
                        })
                    }
                }
            }
        }
        Some(Kind::Symlink(_)) => unreachable!("stat follows symlinks"),
    }
    Ok(())
}

fn plan_units(cfg: &Config, o: &Origin, src: &dyn ImageSource, rel: &Path, out: &mut Vec<Placement>) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    let unit_file = |rel: &Path, dest_dir: &Path, out: &mut Vec<Placement>| -> Result<()> {
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        let action = match o.copy {
            CopyMode::Symlink => Action::Symlink(o.tree.join(rel)),
            CopyMode::Auto | CopyMode::Copy => Action::File(src.read(rel)?),
        };
        out.push(Placement {
            class: Class::Unit,
            dest: dest_dir.join(&name),
            action,
            source: Some(rel.display().to_string()),
        });
        if is_unit_name(&name) && dest_dir == units {
            out.push(Placement {
                class: Class::DropIn,
                dest: units.join(format!("{name}.d")),
                action: Action::Dir,
                source: Some(rel.display().to_string()),
            });
            out.push(Placement {
                class: Class::DropIn,
                dest: units.join(format!("{name}.d/10-torcx.conf")),
                action: Action::File(dropin(cfg, o, &name).into_bytes()),
                source: Some(rel.display().to_string()),
            });
        }
        Ok(())
    };
    match src.stat(rel)? {
        None => bail!("does not exist in the image"),
        Some(Kind::File) => unit_file(rel, units, out)?,
        Some(Kind::Dir) => {
            // e.g. multi-user.target.wants: recreated with its relative links.
            let dir = units.join(rel.file_name().unwrap());
            out.push(Placement {
                class: Class::Unit,
                dest: dir.clone(),
                action: Action::Dir,
                source: Some(rel.display().to_string()),
            });
            for (name, kind) in src.list(rel)? {
                let child = rel.join(&name);
                match kind {
                    Kind::File => unit_file(&child, &dir, out)?,
                    // `systemctl enable` links: placed as `../UNIT`, whatever
                    // path the image used, so a link that was confined in the
                    // image cannot point at a host file once placed.
                    Kind::Symlink(t) => {
                        let unit = t.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if !is_unit_name(&unit) {
                            bail!("/{}: link to {} is not a unit", child.display(), t.display());
                        }
                        out.push(Placement {
                            class: Class::Unit,
                            dest: dir.join(&name),
                            action: Action::Symlink(Path::new("..").join(unit)),
                            source: Some(child.display().to_string()),
                        })
                    }
                    Kind::Dir => {}
                }
            }
        }
        Some(Kind::Symlink(_)) => unreachable!("stat follows symlinks"),
    }
    Ok(())
}

fn plan_copies(class: Class, src: &dyn ImageSource, rel: &Path, dir: &Path, out: &mut Vec<Placement>) -> Result<()> {
    let copy = |rel: &Path, out: &mut Vec<Placement>| -> Result<()> {
        out.push(Placement {
            class,
            dest: dir.join(rel.file_name().unwrap()),
            action: Action::File(src.read(rel)?),
            source: Some(rel.display().to_string()),
        });
        Ok(())
    };
    match src.stat(rel)? {
        None => bail!("does not exist in the image"),
        Some(Kind::File) => copy(rel, out)?,
        Some(Kind::Dir) => {
            for (name, _) in src.list(rel)? {
                let child = rel.join(&name);
                if src.stat(&child)? == Some(Kind::File) {
                    copy(&child, out)?;
                }
            }
        }
        Some(Kind::Symlink(_)) => unreachable!(),
    }
    Ok(())
}

/// The record of one attachment: `/run/torcx/attached/NAME.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub reference: String,
    pub archive: PathBuf,
    pub format: String,
    /// `sha256:HEX` of the archive as it was unpacked.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub copy: CopyMode,
    #[serde(default)]
    pub portable: Option<Sandbox>,
    /// The loop device a squashfs or erofs image is mounted from (it frees
    /// itself when the tree is unmounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_device: Option<PathBuf>,
    /// The image tree and whether torcx mounted it.
    pub tree: PathBuf,
    pub mounted: bool,
    /// `boot` (torcx apply) or `runtime` (torcx attach).
    pub origin: String,
    /// `attaching` while files are being placed (an intent), then `attached`.
    pub state: String,
    pub files: Vec<RecordedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedFile {
    pub path: PathBuf,
    pub class: Class,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    kind: String,
    value: T,
}

impl Record {
    pub fn id(&self) -> ImageId {
        ImageId { name: self.name.clone(), reference: self.reference.clone() }
    }
    pub fn path(cfg: &Config, name: &str) -> PathBuf {
        cfg.attached_dir().join(format!("{name}.json"))
    }
    pub fn write(&self, cfg: &Config) -> Result<()> {
        let doc = Envelope { kind: RECORD_KIND.into(), value: self };
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        atomic_write(&cfg.host(&Record::path(cfg, &self.name)), &text, 0o644)
    }
    pub fn load(cfg: &Config, name: &str) -> Result<Option<Record>> {
        let p = Record::path(cfg, name);
        match std::fs::read(cfg.host(&p)) {
            Ok(b) => {
                let e: Envelope<Record> =
                    serde_json::from_slice(&b).with_context(|| format!("record {}", p.display()))?;
                if e.kind != RECORD_KIND {
                    bail!("record {}: unknown kind {:?}", p.display(), e.kind);
                }
                Ok(Some(e.value))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("record {}", p.display())),
        }
    }
    pub fn load_all(cfg: &Config) -> Result<Vec<Record>> {
        let mut out = vec![];
        let Ok(rd) = std::fs::read_dir(cfg.host(&cfg.attached_dir())) else {
            return Ok(out);
        };
        let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        for n in names {
            if let Some(name) = n.strip_suffix(".json")
                && !n.starts_with('.')
                && let Some(r) = Record::load(cfg, name)?
            {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// Who owns each placed path, from every record.
fn owners(cfg: &Config) -> Result<BTreeMap<PathBuf, String>> {
    let mut m = BTreeMap::new();
    for r in Record::load_all(cfg)? {
        for f in &r.files {
            if f.kind != "dir" {
                m.insert(f.path.clone(), format!("image {}", r.id()));
            }
        }
    }
    Ok(m)
}

/// Refuses any placement whose destination exists (a directory where a
/// directory goes is shared, not a conflict). Nothing is changed.
pub fn check_conflicts(cfg: &Config, id: &ImageId, plan: &[Placement]) -> Result<()> {
    for p in plan {
        let host = cfg.host(&p.dest);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if p.action == Action::Dir && meta.is_dir() {
            continue;
        }
        // Only now read every record: naming the owner is for the error.
        let owner = owners(cfg)?.get(&p.dest).cloned().unwrap_or_else(|| "a file torcx did not place".into());
        bail!(
            "image {id}: {} (from /{}) conflicts with {owner}, already at {}",
            p.dest.display(),
            p.source.as_deref().unwrap_or("?"),
            p.dest.display()
        );
    }
    Ok(())
}

/// Places the planned files, writing the record first as an intent so an
/// interrupted attach can be cleaned up, then marking it attached.
pub fn place(cfg: &Config, rec: &mut Record, plan: &[Placement]) -> Result<()> {
    let dir_entry = |path: &Path, class: Class| RecordedFile {
        path: path.to_path_buf(),
        class,
        kind: "dir".into(),
        target: None,
        sha256: None,
        source: None,
    };
    // Only what torcx creates is recorded: missing parent directories (top
    // down, before their contents), and directories that do not exist yet.
    let mut files: Vec<RecordedFile> = vec![];
    let mut made: std::collections::HashSet<PathBuf> = Default::default();
    for p in plan {
        let mut missing = vec![];
        let mut d = p.dest.parent();
        while let Some(dir) = d {
            if dir == Path::new("/") || made.contains(dir) || cfg.host(dir).is_dir() {
                break;
            }
            missing.push(dir.to_path_buf());
            d = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            made.insert(dir.clone());
            files.push(dir_entry(&dir, p.class));
        }
        let (kind, target, sha256) = match &p.action {
            Action::Dir if made.contains(&p.dest) || cfg.host(&p.dest).is_dir() => continue,
            Action::Dir => {
                made.insert(p.dest.clone());
                ("dir", None, None)
            }
            Action::Symlink(t) => ("symlink", Some(t.clone()), None),
            Action::File(b) => ("file", None, Some(sha256_hex(b))),
        };
        files.push(RecordedFile {
            path: p.dest.clone(),
            class: p.class,
            kind: kind.into(),
            target,
            sha256,
            source: p.source.clone(),
        });
    }
    rec.state = "attaching".into();
    rec.files = files;
    rec.write(cfg)?;
    crash::point("recorded")?;
    let content: HashMap<&Path, &Action> = plan.iter().map(|p| (p.dest.as_path(), &p.action)).collect();
    for f in &rec.files {
        let host = cfg.host(&f.path);
        let res = match (f.kind.as_str(), content.get(f.path.as_path())) {
            ("symlink", _) => std::os::unix::fs::symlink(f.target.as_ref().unwrap(), &host),
            ("file", Some(Action::File(b))) => write_new(&host, b),
            _ => std::fs::create_dir(&host),
        };
        res.with_context(|| format!("placing {}", f.path.display()))?;
        crash::point("placed")?;
    }
    rec.state = "attached".into();
    rec.write(cfg)
}

/// Creates `path` with `data`, appearing whole or not at all (an unnamed
/// file linked in when written), so a crash never leaves half a unit.
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    use std::io::Write;
    let dir =
        rustix::fs::open(path.parent().unwrap(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let fd =
        rustix::fs::openat(&dir, ".", OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    rustix::fs::linkat(&f, "", &dir, path.file_name().unwrap(), AtFlags::EMPTY_PATH)?;
    Ok(())
}

/// Whether the file at `f.path` is still what torcx placed there.
fn still_ours(cfg: &Config, f: &RecordedFile) -> bool {
    let host = cfg.host(&f.path);
    match f.kind.as_str() {
        "symlink" => std::fs::read_link(&host).ok().as_ref() == f.target.as_ref(),
        "file" => std::fs::read(&host).is_ok_and(|b| Some(sha256_hex(&b)) == f.sha256),
        "dir" => host.is_dir(),
        _ => false,
    }
}

/// Removes what a record placed (only where it is still as placed), unmounts
/// the tree if torcx mounted it, and deletes the record. Returns the paths
/// kept because they changed since.
pub fn remove(cfg: &Config, rec: &Record) -> Result<Vec<PathBuf>> {
    let kept = remove_files(cfg, rec)?;
    let tree = cfg.host(&rec.tree);
    if rec.mounted && mount::is_mountpoint(&tree) && mount::unmount_lazy(&tree)? {
        log::warn(&format!("{} is still in use: detached lazily, it goes when its last user does", rec.tree.display()));
    }
    if rec.mounted {
        let _ = std::fs::remove_dir(&tree);
    }
    let p = cfg.host(&Record::path(cfg, &rec.name));
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", p.display()));
        }
        _ => {}
    }
    Ok(kept)
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `boot` (torcx apply) or `runtime`.
    pub origin: String,
    pub copy: CopyMode,
    pub portable: Option<Sandbox>,
    /// Refuse a unit that exists anywhere in systemd's search path (runtime
    /// attaches; at boot the generator's copies are expected there).
    pub check_host_units: bool,
    /// Override only the host-unit check.
    pub force: bool,
}

/// Unpacks (or binds) an image into its tree, reads it into a plan, and
/// refuses conflicts; nothing is placed yet. The tree is at `tree`.
fn prepare(
    cfg: &Config,
    img: &ImageFrom,
    tree: &Path,
    final_tree: &Path,
    opts: &Options,
) -> Result<(unpack::Unpacked, Vec<Placement>)> {
    let unpacked = match img {
        ImageFrom::Archive(a) if a.format.mounted() => unpack::mount_image(cfg, a, tree)?,
        ImageFrom::Archive(a) if a.format == crate::archive::Format::Oci => unpack::unpack_oci(cfg, a, tree)?,
        ImageFrom::Archive(a) => unpack::unpack_archive(cfg, a, tree)?,
        ImageFrom::Dir { path, .. } => unpack::bind_dir(cfg, path, tree)?,
    };
    let src = Tree::open(&cfg.host(tree))?;
    if opts.portable.is_some() {
        portable::check_image(&src)?;
    }
    let (m, scanned) = source::manifest_or_scan(&src)?;
    if scanned {
        log::info(&format!(
            "image {}: no {}; propagating what a scan of its standard directories found",
            img.id(),
            source::MANIFEST_PATH
        ));
    }
    let o = Origin {
        id: img.id(),
        archive: img.path(),
        tree: final_tree.to_path_buf(),
        copy: opts.copy,
        portable: opts.portable,
    };
    let plan = plan(cfg, &o, &src, &m, false)?;
    crash::point("planned")?;
    Ok((unpacked, plan))
}

/// The manifest (or scan) and the unit placements of an archive, from what
/// the generator reads of it: the planning the generator and `profile check`
/// share.
pub fn plan_archive_units(cfg: &Config, a: &Archive, mem: &source::Mem) -> Result<(ImageManifest, Vec<Placement>)> {
    let (m, _) = source::manifest_or_scan(mem)?;
    let o = Origin {
        id: &a.id,
        archive: &a.path,
        tree: cfg.unpack_dir().join(&a.id.name),
        copy: CopyMode::Copy,
        portable: None,
    };
    let plan = plan(cfg, &o, mem, &m, true)?;
    Ok((m, plan))
}

/// Refuses units that systemd already knows from elsewhere on the host
/// (`skip`: unit directories not to look in, such as the generator's, which
/// holds this very image's units during a boot).
pub fn check_host_units(cfg: &Config, id: &ImageId, plan: &[Placement], skip: &[&str]) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    for p in plan.iter().filter(|p| p.class == Class::Unit && p.dest.parent() == Some(units)) {
        let name = p.dest.file_name().unwrap().to_string_lossy();
        if !is_unit_name(&name) {
            continue;
        }
        if let Some(found) = systemd::find_unit(cfg, &name, skip) {
            bail!(
                "image {id}: unit {name} (from /{}) conflicts with {} on the host; use --force to attach anyway",
                p.source.as_deref().unwrap_or("?"),
                found.display()
            );
        }
    }
    Ok(())
}

/// The unit directories a boot's own planning writes: not the host's.
pub const GENERATOR_DIRS: [&str; 3] =
    ["/run/systemd/generator", "/run/systemd/generator.early", "/run/systemd/generator.late"];

/// An image unpacked (or mounted) and planned, its record written as an
/// intent, nothing placed yet: the first half of an attach, which `apply`
/// runs for several images at once.
pub struct Prepared {
    rec: Record,
    unpacked: unpack::Unpacked,
    plan: Vec<Placement>,
}

/// Attaches one image, all or nothing: on any error everything done for it
/// is undone. The record is written first, so a crash at any point leaves
/// something `detach` or the next `attach` cleans up.
pub fn attach(cfg: &Config, img: &ImageFrom, opts: &Options) -> Result<(Record, unpack::Unpacked)> {
    finish(cfg, begin(cfg, img, opts)?, opts)
}

/// The first half of [`attach`]: refuse an attached image, record the
/// intent, unpack or mount, read the manifest, plan.
pub fn begin(cfg: &Config, img: &ImageFrom, opts: &Options) -> Result<Prepared> {
    let id = img.id().clone();
    if let Some(r) = Record::load(cfg, &id.name)? {
        if r.state == "attached" {
            bail!(
                "image {} is already attached ({} from {}); use `torcx reattach {}:REF` to switch references",
                id.name,
                r.id(),
                r.archive.display(),
                id.name
            );
        }
        log::warn(&format!("image {}: cleaning up an interrupted attach of {}", id.name, r.id()));
        remove(cfg, &r)?;
    }
    let tree = cfg.unpack_dir().join(&id.name);
    if mount::is_mountpoint(&cfg.host(&tree)) {
        bail!("image {id}: {} is already mounted, but no record says by which image", tree.display());
    }
    let mut rec = Record {
        name: id.name.clone(),
        reference: id.reference.clone(),
        archive: img.path().to_path_buf(),
        format: img.format().into(),
        digest: None,
        loop_device: None,
        copy: opts.copy,
        portable: opts.portable,
        tree: tree.clone(),
        mounted: true,
        origin: opts.origin.clone(),
        state: "attaching".into(),
        files: vec![],
    };
    std::fs::create_dir_all(cfg.host(&cfg.attached_dir()))
        .with_context(|| format!("creating {}", cfg.attached_dir().display()))?;
    rec.write(cfg)?;
    crash::point("intent")?;
    match prepare(cfg, img, &tree, &tree, opts) {
        Ok((unpacked, plan)) => {
            rec.digest = unpacked.digest.clone();
            rec.loop_device = unpacked.loop_device.clone();
            Ok(Prepared { rec, unpacked, plan })
        }
        Err(e) => Err(undo(cfg, &rec, e)),
    }
}

/// The second half of [`attach`]: refuse conflicts, then place and record.
pub fn finish(cfg: &Config, p: Prepared, opts: &Options) -> Result<(Record, unpack::Unpacked)> {
    let Prepared { mut rec, unpacked, plan } = p;
    let id = rec.id();
    let res = (|| -> Result<()> {
        check_conflicts(cfg, &id, &plan)?;
        if opts.check_host_units && !opts.force {
            // At boot the generator's copies of this image's units are there.
            let skip: &[&str] = if opts.origin == "boot" { &GENERATOR_DIRS } else { &[] };
            check_host_units(cfg, &id, &plan, skip)?;
        }
        place(cfg, &mut rec, &plan)
    })();
    match res {
        Ok(()) => Ok((rec, unpacked)),
        Err(e) => Err(undo(cfg, &rec, e)),
    }
}

/// Undoes a failed attach; the error stays the one that made it fail.
fn undo(cfg: &Config, rec: &Record, e: anyhow::Error) -> anyhow::Error {
    if let Err(e2) = remove(cfg, rec) {
        log::warn(&format!("image {}: cleaning up after the failure: {e2:#}", rec.id()));
    }
    e
}

impl Record {
    /// Unit files the image placed at the top of the units directory.
    pub fn units(&self) -> Vec<String> {
        let units = Path::new(config::UNITS_DIR);
        self.files
            .iter()
            .filter(|f| f.class == Class::Unit && f.kind != "dir" && f.path.parent() == Some(units))
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| is_unit_name(n))
            .collect()
    }
    /// Units the image enables (links in its `.wants`/`.requires` directories).
    pub fn enabled_units(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.class == Class::Unit && f.kind == "symlink")
            .filter(|f| {
                f.path.parent().and_then(|p| p.file_name()).is_some_and(|d| {
                    let d = d.to_string_lossy();
                    d.ends_with(".wants") || d.ends_with(".requires")
                })
            })
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
    pub fn binaries(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| f.class == Class::Bin && f.kind == "symlink")
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

/// Detaches an image; returns the files kept because they changed since.
pub fn detach(cfg: &Config, sd: &systemd::Systemd, name: &str, now: bool, force: bool) -> Result<Vec<PathBuf>> {
    crate::model::names::validate_name(name)?;
    let Some(rec) = Record::load(cfg, name)? else {
        bail!("image {name} is not attached (no {})", Record::path(cfg, name).display());
    };
    let units = rec.units();
    let active: Vec<String> = units.iter().filter(|u| sd.is_active(u)).cloned().collect();
    if !active.is_empty() {
        if now {
            sd.run_jobs("stop", &active)?;
        } else if !force {
            bail!(
                "image {}: unit{} {} {} active; stop {} first, or use --now to stop {} or --force to detach anyway",
                rec.id(),
                if active.len() > 1 { "s" } else { "" },
                active.join(", "),
                if active.len() > 1 { "are" } else { "is" },
                if active.len() > 1 { "them" } else { "it" },
                if active.len() > 1 { "them" } else { "it" },
            );
        }
    }
    remove(cfg, &rec)
}

/// Switches an attached image to another archive, all or nothing: the new
/// one is unpacked and checked beside the old, and any failure after the
/// switch puts the old attachment back exactly as it was.
pub fn reattach(cfg: &Config, img: &ImageFrom) -> Result<(Record, Record)> {
    let id = img.id().clone();
    let Some(old) = Record::load(cfg, &id.name)?.filter(|r| r.state == "attached") else {
        bail!("image {} is not attached; use `torcx attach {id}`", id.name);
    };
    // Nothing of the old attachment may have changed: it must be restorable.
    if let Some(f) =
        old.files.iter().find(|f| std::fs::symlink_metadata(cfg.host(&f.path)).is_err() || !still_ours(cfg, f))
    {
        bail!(
            "image {}: {} changed or disappeared since it was attached; refusing to reattach",
            old.id(),
            f.path.display()
        );
    }
    let tree = old.tree.clone();
    let next = cfg.unpack_dir().join(format!(".{}.next", id.name));
    let prev = cfg.unpack_dir().join(format!(".{}.prev", id.name));
    for stale in [&next, &prev] {
        let h = cfg.host(stale);
        if mount::is_mountpoint(&h) {
            mount::unmount_lazy(&h)?;
        }
        let _ = std::fs::remove_dir(&h);
    }
    let opts = Options {
        origin: old.origin.clone(),
        copy: old.copy,
        portable: old.portable,
        check_host_units: false,
        force: false,
    };
    let undo_next = || {
        let h = cfg.host(&next);
        if mount::is_mountpoint(&h) {
            let _ = mount::unmount_lazy(&h);
        }
        let _ = std::fs::remove_dir(&h);
    };
    let (unpacked, plan) = match prepare(cfg, img, &next, &tree, &opts) {
        Ok(x) => x,
        Err(e) => {
            undo_next();
            return Err(e);
        }
    };
    // Conflicts, except with what the old attachment itself placed.
    let mine: Vec<&PathBuf> = old.files.iter().map(|f| &f.path).collect();
    let others: Vec<Placement> = plan.iter().filter(|p| !mine.contains(&&p.dest)).cloned().collect();
    if let Err(e) = check_conflicts(cfg, &id, &others) {
        undo_next();
        return Err(e);
    }
    // The switch.
    let mut new = Record {
        name: id.name.clone(),
        reference: id.reference.clone(),
        archive: img.path().to_path_buf(),
        format: img.format().into(),
        digest: unpacked.digest,
        loop_device: unpacked.loop_device,
        copy: old.copy,
        portable: old.portable,
        tree: tree.clone(),
        mounted: true,
        origin: old.origin.clone(),
        state: "attaching".into(),
        files: vec![],
    };
    let res = (|| -> Result<()> {
        let (t, p, n) = (cfg.host(&tree), cfg.host(&prev), cfg.host(&next));
        remove_files(cfg, &old)?;
        crash::point("old-removed")?;
        // The trees trade places by binding, not by moving: /run is a shared
        // mount on systemd hosts, and the kernel refuses to move a mount out
        // of a shared parent (EINVAL).
        std::fs::create_dir_all(&p)?;
        mount::bind_ro(&t, &p)?;
        mount::unmount_lazy(&t)?;
        crash::point("old-aside")?;
        mount::bind_ro(&n, &t)?;
        mount::unmount_lazy(&n)?;
        crash::point("switched")?;
        place(cfg, &mut new, &plan)
    })();
    if let Err(e) = res {
        log::warn(&format!("image {id}: reattach failed, putting {} back: {e:#}", old.id()));
        let restore = (|| -> Result<()> {
            remove_files(cfg, &new)?;
            let (t, p) = (cfg.host(&tree), cfg.host(&prev));
            if mount::is_mountpoint(&p) {
                if mount::is_mountpoint(&t) {
                    mount::unmount_lazy(&t)?;
                }
                mount::bind_ro(&p, &t)?;
                mount::unmount_lazy(&p)?;
            }
            // Re-place the old files from the old tree: the plan is a function of it.
            let src = Tree::open(&t)?;
            let (m, _) = source::manifest_or_scan(&src)?;
            let o = Origin {
                id: &old.id(),
                archive: &old.archive,
                tree: tree.clone(),
                copy: old.copy,
                portable: old.portable,
            };
            let plan = self::plan(cfg, &o, &src, &m, false)?;
            let mut back = old.clone();
            place(cfg, &mut back, &plan)
        })();
        undo_next();
        let _ = std::fs::remove_dir(cfg.host(&prev));
        if let Err(e2) = restore {
            bail!("image {id}: reattach failed ({e:#}), and restoring {} failed too: {e2:#}", old.id());
        }
        return Err(e);
    }
    let _ = std::fs::remove_dir(cfg.host(&next));
    let p = cfg.host(&prev);
    if mount::unmount_lazy(&p)? {
        log::info(&format!("{}: the old tree is still in use and goes when its last user does", old.id()));
    }
    let _ = std::fs::remove_dir(&p);
    Ok((old, new))
}

/// What a killed command left that no record describes, cleaned up by the
/// next one (which holds the lock, so none of it is in use): temporary
/// record files, and the staging trees of an interrupted reattach
/// (`/run/torcx/unpack/.NAME.next`, `.NAME.prev`).
pub fn sweep(cfg: &Config) {
    if let Ok(rd) = std::fs::read_dir(cfg.host(&cfg.attached_dir())) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(cfg.host(&cfg.unpack_dir())) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && (n.ends_with(".next") || n.ends_with(".prev")) {
                log::warn(&format!(
                    "removing {}, left by an interrupted reattach",
                    cfg.unpack_dir().join(&n).display()
                ));
                if mount::is_mountpoint(&e.path()) {
                    let _ = mount::unmount_lazy(&e.path());
                }
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

/// Removes the files of a record that are still as placed (not the tree,
/// not the record); returns those kept because they changed since.
fn remove_files(cfg: &Config, rec: &Record) -> Result<Vec<PathBuf>> {
    let mut kept = vec![];
    // Files before the directories that hold them.
    for f in rec.files.iter().rev() {
        let host = cfg.host(&f.path);
        if std::fs::symlink_metadata(&host).is_err() {
            continue;
        }
        if !still_ours(cfg, f) {
            kept.push(f.path.clone());
            continue;
        }
        let r = if f.kind == "dir" { std::fs::remove_dir(&host) } else { std::fs::remove_file(&host) };
        if let Err(e) = r {
            // A directory someone else put files in (an admin's drop-in,
            // another image's link) stays, and is not ours to report.
            if f.kind == "dir" {
                log::info(&format!("leaving {}: not empty", f.path.display()));
            } else {
                return Err(e).with_context(|| format!("removing {}", f.path.display()));
            }
        }
    }
    Ok(kept)
}
