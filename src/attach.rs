//! Attaching an image: plan where each asset goes, refuse conflicts before
//! touching anything, record the intent, place the files, record the result.
//! Detaching reads the record and removes only what is still as placed.

use crate::config::{self, Config};
use crate::fsutil::{self, atomic_write, sha256_hex};
use crate::manifest::ImageManifest;
use crate::names::ImageId;
use crate::source::{ImageSource, Kind};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const RECORD_KIND: &str = "torcx-attachment-v0";
const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

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

/// What an image is attached from, for drop-ins, links and records.
pub struct Origin<'a> {
    pub id: &'a ImageId,
    /// Logical path of the archive.
    pub archive: &'a Path,
    /// Logical path of the image tree (`/run/torcx/unpack/NAME`).
    pub tree: PathBuf,
}

pub fn is_unit_name(name: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
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
    }
    s
}

fn manifest_rel(class: &str, p: &str) -> Result<PathBuf> {
    let rel = fsutil::relative_inside(p)
        .map_err(|e| anyhow!("manifest {class} entry {e}: outside the image"))?;
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
            let cname = serde_json::to_value(class)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            for p in list {
                let rel = manifest_rel(&cname, p)?;
                plan_copies(class, src, &rel, Path::new(dir), &mut out)
                    .with_context(|| ctx(&cname, p))?;
            }
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

fn plan_bin(
    cfg: &Config,
    o: &Origin,
    src: &dyn ImageSource,
    rel: &Path,
    out: &mut Vec<Placement>,
) -> Result<()> {
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
                        if matches!(kind, Kind::Symlink(_)) && src.stat(&child)? != Some(Kind::File)
                        {
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

fn plan_units(
    cfg: &Config,
    o: &Origin,
    src: &dyn ImageSource,
    rel: &Path,
    out: &mut Vec<Placement>,
) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    let unit_file = |rel: &Path, dest_dir: &Path, out: &mut Vec<Placement>| -> Result<()> {
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        out.push(Placement {
            class: Class::Unit,
            dest: dest_dir.join(&name),
            action: Action::File(src.read(rel)?),
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
                    Kind::Symlink(t) => out.push(Placement {
                        class: Class::Unit,
                        dest: dir.join(&name),
                        action: Action::Symlink(t),
                        source: Some(child.display().to_string()),
                    }),
                    Kind::Dir => {}
                }
            }
        }
        Some(Kind::Symlink(_)) => unreachable!("stat follows symlinks"),
    }
    Ok(())
}

fn plan_copies(
    class: Class,
    src: &dyn ImageSource,
    rel: &Path,
    dir: &Path,
    out: &mut Vec<Placement>,
) -> Result<()> {
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
        ImageId {
            name: self.name.clone(),
            reference: self.reference.clone(),
        }
    }
    pub fn path(cfg: &Config, name: &str) -> PathBuf {
        cfg.attached_dir().join(format!("{name}.json"))
    }
    pub fn write(&self, cfg: &Config) -> Result<()> {
        let doc = Envelope {
            kind: RECORD_KIND.into(),
            value: self,
        };
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        atomic_write(&cfg.host(&Record::path(cfg, &self.name)), &text, 0o644)
    }
    pub fn load(cfg: &Config, name: &str) -> Result<Option<Record>> {
        let p = Record::path(cfg, name);
        match std::fs::read(cfg.host(&p)) {
            Ok(b) => {
                let e: Envelope<Record> = serde_json::from_slice(&b)
                    .with_context(|| format!("record {}", p.display()))?;
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
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
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
    let owners = owners(cfg)?;
    for p in plan {
        let host = cfg.host(&p.dest);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if p.action == Action::Dir && meta.is_dir() {
            continue;
        }
        let owner = owners
            .get(&p.dest)
            .cloned()
            .unwrap_or_else(|| "a file torcx did not place".into());
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
    rec.state = "attaching".into();
    rec.files = plan
        .iter()
        .map(|p| RecordedFile {
            path: p.dest.clone(),
            class: p.class,
            kind: match &p.action {
                Action::Symlink(_) => "symlink",
                Action::File(_) => "file",
                Action::Dir => "dir",
            }
            .into(),
            target: match &p.action {
                Action::Symlink(t) => Some(t.clone()),
                _ => None,
            },
            sha256: match &p.action {
                Action::File(b) => Some(sha256_hex(b)),
                _ => None,
            },
            source: p.source.clone(),
        })
        .collect();
    rec.write(cfg)?;
    let mut created = vec![];
    for p in plan {
        let host = cfg.host(&p.dest);
        if let Some(parent) = host.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let res = match &p.action {
            Action::Symlink(t) => std::os::unix::fs::symlink(t, &host),
            Action::File(b) => write_new(&host, b),
            Action::Dir => match std::fs::create_dir(&host) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && host.is_dir() => {
                    // Shared with the host or another image: not ours to remove.
                    continue;
                }
                r => r,
            },
        };
        res.with_context(|| format!("placing {}", p.dest.display()))?;
        created.push(p.dest.clone());
    }
    rec.files.retain(|f| created.contains(&f.path));
    rec.state = "attached".into();
    rec.write(cfg)
}

fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(data)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
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
        let r = if f.kind == "dir" {
            std::fs::remove_dir(&host)
        } else {
            std::fs::remove_file(&host)
        };
        if let Err(e) = r {
            // A directory someone else put files in stays.
            if f.kind == "dir" {
                kept.push(f.path.clone());
            } else {
                return Err(e).with_context(|| format!("removing {}", f.path.display()));
            }
        }
    }
    let tree = cfg.host(&rec.tree);
    if rec.mounted && crate::mount::mounted_at(&tree).is_some() {
        crate::mount::unmount(&tree)?;
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
