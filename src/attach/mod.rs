//! Attaching an image: plan where each asset goes, refuse conflicts before
//! touching anything, record the intent, place the files, record the result.
//! Detaching reads the record and removes only what is still as placed.

pub mod from;
pub mod portable;
pub mod unpack;

mod host;
mod place;
mod plan;
mod prepare;
mod reattach;
mod record;

pub use host::{check_host_units, check_host_units_in};
pub use place::{check_conflicts, place, remove};
pub use plan::{Action, Class, CopyMode, GENERATOR_DIR, Origin, Placement, dropin, plan, plan_archive_units};
use prepare::prepare;
pub use prepare::{Options, Vouched};
pub use reattach::{Switch, options_of, plan_switch, reattach};
pub use record::{FileKind, RECORD_KIND, Record, RecordFormat, RecordOrigin, RecordState, RecordedFile};

use crate::model::config::Config;
use crate::sys::crash;
use crate::sys::mount;
use crate::sys::systemd;
use anyhow::{Context, Result, bail};
pub use from::ImageFrom;
use std::path::PathBuf;

/// An image unpacked (or mounted) and planned, its record written as an
/// intent, nothing placed yet: the first half of an attach, which `apply`
/// runs for several images at once.
pub struct Prepared {
    rec: Record,
    unpacked: unpack::Unpacked,
    plan: Vec<Placement>,
    /// The record, as written: the next versions go over it.
    held: Option<record::Held>,
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
    let loaded = if opts.unrecorded { Ok(None) } else { Record::load(cfg, &id.name) };
    let loaded = loaded.map_err(|e| {
        let what = format!("{e:#}; `torcx detach --force {}` removes it", id.name);
        crate::model::failure::error(crate::model::failure::Kind::Corrupt, what)
    })?;
    if let Some(r) = loaded {
        if r.state == RecordState::Attached {
            return Err(crate::model::failure::error(
                crate::model::failure::Kind::Conflict,
                format!(
                    "image {} is already attached ({} from {}); use `torcx reattach {}:REF` to switch references",
                    id.name,
                    r.id(),
                    r.archive.display(),
                    id.name
                ),
            ));
        }
        log::warn!("image {}: cleaning up an interrupted attach or reattach of {}", id.name, r.id());
        remove(cfg, &r)?;
    }
    let tree = cfg.unpack_dir().join(&id.name);
    if mount::is_mountpoint(&cfg.host(&tree)) {
        let what = format!("image {id}: {} is already mounted, but no record says by which image", tree.display());
        return Err(crate::model::failure::error(crate::model::failure::Kind::Conflict, what));
    }
    let mut rec = Record {
        name: id.name.clone(),
        reference: id.reference.clone(),
        archive: img.path().to_path_buf(),
        format: img.format(),
        digest: None,
        loop_device: None,
        copy: opts.copy,
        portable: opts.portable,
        tree: tree.clone(),
        mounted: true,
        origin: opts.origin,
        state: RecordState::Attaching,
        files: vec![],
    };
    // The record's directory is made by the write when it is missing.
    let mut held = None;
    rec.write_kept(cfg, &mut held, opts.unrecorded)?;
    crash::point("intent")?;
    match prepare(cfg, img, &tree, &tree, opts) {
        Ok((unpacked, plan)) => {
            rec.digest = unpacked.digest.clone();
            rec.loop_device = unpacked.loop_device.clone();
            Ok(Prepared { rec, unpacked, plan, held })
        }
        Err(e) => Err(undo(cfg, &rec, e)),
    }
}

/// The second half of [`attach`]: refuse conflicts, then place and record.
pub fn finish(cfg: &Config, p: Prepared, opts: &Options) -> Result<(Record, unpack::Unpacked)> {
    let Prepared { mut rec, unpacked, plan, mut held } = p;
    let id = rec.id();
    let res = (|| -> Result<()> {
        check_conflicts(cfg, &id, &plan)?;
        if opts.check_host_units && !opts.force {
            let checked = match &opts.unit_dirs {
                Some(dirs) => check_host_units_in(cfg, dirs, &id, &plan),
                None => check_host_units(cfg, &id, &plan),
            };
            checked.map_err(|e| match opts.origin {
                // Only `torcx attach` has the override.
                RecordOrigin::Runtime => anyhow::anyhow!("{e:#}; use --force to attach anyway"),
                RecordOrigin::Boot => e,
            })?;
        }
        place(cfg, &mut rec, &plan, &mut held)
    })();
    match res {
        Ok(()) => Ok((rec, unpacked)),
        Err(e) => {
            unpack::give_back(&unpacked);
            Err(undo(cfg, &rec, e))
        }
    }
}

/// Undoes a failed attach; the error stays the one that made it fail.
fn undo(cfg: &Config, rec: &Record, e: anyhow::Error) -> anyhow::Error {
    if let Err(e2) = remove(cfg, rec) {
        log::warn!("image {}: cleaning up after the failure: {e2:#}", rec.id());
    }
    e
}

/// Detaches an image; returns the files kept because they changed since.
pub fn detach(cfg: &Config, sd: &systemd::Systemd, name: &str, now: bool, force: bool) -> Result<Vec<PathBuf>> {
    crate::model::names::validate_name(name)?;
    let loaded = match Record::load(cfg, name) {
        // A record torcx cannot read says nothing of what it placed: --force
        // takes the record and the tree away, and says what to check.
        // (Whatever it is: a FIFO or a directory in its place too.)
        Err(e) if force && std::fs::symlink_metadata(cfg.host(&Record::path(cfg, name))).is_ok() => {
            let p = Record::path(cfg, name);
            let host = cfg.host(&p);
            let removed = if host.is_dir() && !host.is_symlink() {
                std::fs::remove_dir(&host)
            } else {
                std::fs::remove_file(&host)
            };
            removed.with_context(|| format!("removing {}", p.display()))?;
            let tree = cfg.host(&cfg.unpack_dir().join(name));
            if mount::is_mountpoint(&tree) {
                mount::unmount_lazy(&tree)?;
                let _ = std::fs::remove_dir(&tree);
            }
            log::warn!(
                "{e:#}: removed; what it placed is unknown: look for links to {} in {} and {}",
                cfg.unpack_dir().join(name).display(),
                cfg.bin_dir().display(),
                crate::model::config::UNITS_DIR
            );
            return Ok(vec![]);
        }
        r => r?,
    };
    let Some(rec) = loaded else {
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
                log::warn!("removing {}, left by an interrupted reattach", cfg.unpack_dir().join(&n).display());
                if mount::is_mountpoint(&e.path()) {
                    let _ = mount::unmount_lazy(&e.path());
                }
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}
