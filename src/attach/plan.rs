//! Planning an attachment: where each asset of an image goes (bins, units
//! and their drop-ins, networkd, sysusers, tmpfiles, udev), and the checks
//! a plan must pass against the host before anything is placed.

use super::portable::{self, Sandbox};
use crate::archive::Archive;
use crate::model::config::{self, Config};
use crate::model::manifest::ImageManifest;
use crate::model::names::ImageId;
use crate::model::units::{dep_dir_unit, is_unit_name, refuse_unit_name, template_of};
use crate::sys::fsutil::{self};
use crate::tree::source::{self, ImageSource, Kind};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
///
/// `auto` is not a third way of placing: it records that the user left the
/// choice to torcx, which today copies. A record saying `copy` or `symlink`
/// keeps that choice when the image is reattached; a record saying `auto`
/// follows torcx's default of the day. (Records and `attach` output of
/// earlier releases say `auto`, so the word stays.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Let torcx choose (today: copy), and record that it chose
    #[default]
    Auto,
    /// Copy unit files (they survive the tree going away, and reloads see them whole)
    Copy,
    /// Link unit files into the image tree
    Symlink,
}

impl CopyMode {
    /// What `auto` means today: copy.
    pub const AUTO_MEANS: CopyMode = CopyMode::Copy;

    /// The way units are actually placed: `Copy` or `Symlink`, never `Auto`.
    pub fn effective(self) -> CopyMode {
        match self {
            CopyMode::Auto => CopyMode::AUTO_MEANS,
            m => m,
        }
    }
}

/// The drop-in tying a unit to its image (design.md, "Drop-in").
pub fn dropin(cfg: &Config, o: &Origin, unit: &str) -> String {
    // The archive's path is the admin's (a store, a path given to attach):
    // in the comment, a control character cannot start a line of its own.
    let archive = o.archive.to_string_lossy();
    let archive = crate::sys::logger::escape_controls(&archive);
    let mut s = format!(
        "# Attached by torcx from {} ({archive}); do not edit.\n[Unit]\nRequires=torcx.target\nAfter=torcx.target\n",
        o.id
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
    check_changes_only_its_units(&out)?;
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
        // stat follows symlinks: no source answers this (a cache that did
        // is refused), but a boot never stops on it.
        Some(Kind::Symlink(_)) => bail!("is a symlink after following symlinks"),
    }
    Ok(())
}

fn plan_units(cfg: &Config, o: &Origin, src: &dyn ImageSource, rel: &Path, out: &mut Vec<Placement>) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    let unit_file = |rel: &Path, dest_dir: &Path, out: &mut Vec<Placement>| -> Result<()> {
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        let action = match o.copy.effective() {
            CopyMode::Symlink => Action::Symlink(o.tree.join(rel)),
            _ => {
                let data = src.read(rel)?;
                // As the generator reads units: one larger is no unit.
                if data.len() as u64 > crate::tree::policy::MAX_MEM_FILE {
                    bail!(
                        "/{}: {} bytes refused for a unit (at most {})",
                        rel.display(),
                        data.len(),
                        crate::tree::policy::MAX_MEM_FILE
                    );
                }
                Action::File(data)
            }
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
        // stat follows symlinks: no source answers this (a cache that did
        // is refused), but a boot never stops on it.
        Some(Kind::Symlink(_)) => bail!("is a symlink after following symlinks"),
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
        Some(Kind::Symlink(_)) => bail!("is a symlink after following symlinks"),
    }
    Ok(())
}

/// The manifest (or scan) and the unit placements of an archive, from what
/// the generator reads of it: the planning the generator and `profile check`
/// share.
pub fn plan_archive_units(cfg: &Config, a: &Archive, mem: &source::Mem) -> Result<(ImageManifest, Vec<Placement>)> {
    let (m, _) = crate::tree::scan::manifest_or_scan(mem)?;
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

/// Where the torcx generator writes (systemd's normal generator directory).
pub const GENERATOR_DIR: &str = "/run/systemd/generator";

/// An image changes only the units it ships (design.md): every file it puts
/// among the units is a unit of its own, and every directory there is a
/// drop-in directory of one of its units, or a dependency directory
/// (`.wants`, `.requires`, `.upholds`) of a target or of one of its units,
/// holding only links to its own units (or instances of its templates).
fn check_changes_only_its_units(out: &[Placement]) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    let name_of = |p: &Placement| p.dest.file_name().unwrap().to_string_lossy().into_owned();
    let from = |p: &Placement| p.source.as_deref().unwrap_or("?").to_string();
    let ours = |p: &Placement| p.class == Class::Unit;
    let shipped: Vec<String> = out
        .iter()
        .filter(|p| ours(p) && p.action != Action::Dir && p.dest.parent() == Some(units))
        .map(name_of)
        .collect();
    for p in out.iter().filter(|p| ours(p) && p.action != Action::Dir && p.dest.parent() == Some(units)) {
        if let Some(why) = refuse_unit_name(&name_of(p)) {
            bail!("manifest units entry /{}: {} {why}", from(p), name_of(p));
        }
    }
    let is_shipped = |u: &str| shipped.iter().any(|s| s == u) || template_of(u).is_some_and(|t| shipped.contains(&t));
    for p in out.iter().filter(|p| ours(p) && p.action == Action::Dir && p.dest.parent() == Some(units)) {
        let name = name_of(p);
        if let Some(unit) = name.strip_suffix(".d") {
            if !shipped.iter().any(|u| u == unit) {
                bail!(
                    "manifest units entry /{}: drop-in directory {name} changes {unit}, which the image does not ship",
                    from(p)
                );
            }
        } else if let Some(unit) = dep_dir_unit(&name) {
            if !unit.ends_with(".target") && !shipped.iter().any(|u| u == unit) {
                bail!(
                    "manifest units entry /{}: dependency directory {name} changes {unit}, which the image does not ship \
                     (only a target, or a unit of the image, may get dependencies)",
                    from(p)
                );
            }
            // What goes in it: its own units only.
            // systemd pulls in the unit a link is named after (and follows
            // the link only to find its file): both must be the image's.
            for q in out.iter().filter(|q| ours(q) && q.dest.parent() == Some(&p.dest)) {
                if let Some(why) = refuse_unit_name(&name_of(q)) {
                    bail!("manifest units entry /{}: {name}/{} {why}", from(q), name_of(q));
                }
                let target = match &q.action {
                    Action::Symlink(t) => t.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    _ => name_of(q),
                };
                if let Some(linked) = [name_of(q), target].into_iter().find(|u| !is_shipped(u)) {
                    bail!(
                        "manifest units entry /{}: {name}/{} pulls in {linked}, which the image does not ship",
                        from(q),
                        name_of(q)
                    );
                }
            }
        } else {
            bail!("manifest units entry /{}: {name} is neither a drop-in nor a dependency directory", from(p));
        }
    }
    Ok(())
}
