//! Switching an attached image to another reference, all or nothing.

use super::from::ImageFrom;
use super::host::check_host_units;
use super::place::{check_conflicts, place};
use super::place::{remove_files, still_ours};
use super::plan::{Origin, Placement, plan};
use super::prepare::{Options, prepare};
use super::record::{Record, RecordState};
use crate::model::config::Config;
use crate::model::names::ImageId;
use crate::sys::crash;
use crate::sys::mount;
use crate::tree::source::Tree;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// How the new reference is prepared: as the old one was attached (origin,
/// copy mode, sandbox). Host units are checked by [`plan_switch`], against
/// what the new reference adds only.
pub fn options_of(old: &Record) -> Options {
    Options {
        origin: old.origin,
        copy: old.copy,
        portable: old.portable,
        check_host_units: false,
        force: false,
        known: None,
        known_digest: None,
        unit_dirs: None,
        unrecorded: false,
    }
}

/// What switching `old` to the new reference's placements `new` changes,
/// decided before anything is changed: the placements the old attachment
/// did not make (each checked as attach checks it: no file another image or
/// the administrator placed, no unit that shadows the host's), and the
/// files of the old attachment the new one no longer places.
#[derive(Debug)]
pub struct Switch {
    pub added: Vec<Placement>,
    pub dropped: Vec<PathBuf>,
}

pub fn plan_switch(cfg: &Config, old: &Record, id: &ImageId, new: &[Placement]) -> Result<Switch> {
    let mine: Vec<&PathBuf> = old.files.iter().map(|f| &f.path).collect();
    let added: Vec<Placement> = new.iter().filter(|p| !mine.contains(&&p.dest)).cloned().collect();
    check_conflicts(cfg, id, &added)?;
    // (The old attachment's own units are not in `added`.)
    check_host_units(cfg, id, &added)?;
    let dropped = old.files.iter().filter(|f| !new.iter().any(|p| p.dest == f.path)).map(|f| f.path.clone()).collect();
    Ok(Switch { added, dropped })
}

/// Switches an attached image to another archive, all or nothing: the new
/// one is unpacked and checked beside the old, and any failure after the
/// switch puts the old attachment back exactly as it was.
pub fn reattach(cfg: &Config, img: &ImageFrom) -> Result<(Record, Record)> {
    let id = img.id().clone();
    let old = match Record::load(cfg, &id.name)? {
        Some(r) if r.state == RecordState::Attached => r,
        Some(r) => bail!(
            "image {}: an earlier attach or reattach of {} was interrupted; `torcx attach {id}` cleans it up and attaches",
            id.name,
            r.id()
        ),
        None => bail!("image {} is not attached; use `torcx attach {id}`", id.name),
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
    let opts = options_of(&old);
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
    if let Err(e) = plan_switch(cfg, &old, &id, &plan) {
        undo_next();
        return Err(e);
    }
    // The switch.
    let mut new = Record {
        name: id.name.clone(),
        reference: id.reference.clone(),
        archive: img.path().to_path_buf(),
        format: img.format(),
        digest: unpacked.digest,
        loop_device: unpacked.loop_device,
        copy: old.copy,
        portable: old.portable,
        tree: tree.clone(),
        mounted: true,
        origin: old.origin,
        state: RecordState::Attaching,
        files: vec![],
    };
    let res = (|| -> Result<()> {
        let (t, p, n) = (cfg.host(&tree), cfg.host(&prev), cfg.host(&next));
        // From here the old attachment is no longer whole: if this process
        // dies, the record must not say "attached" (apply would take it as
        // unchanged). Any other state is an interrupted operation, which the
        // next attach or apply cleans up and redoes.
        let mut leaving = old.clone();
        leaving.state = RecordState::Attaching;
        leaving.write(cfg)?;
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
        place(cfg, &mut new, &plan, &mut None)
    })();
    if let Err(e) = res {
        log::warn!("image {id}: reattach failed, putting {} back: {e:#}", old.id());
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
            let (m, _) = crate::tree::scan::manifest_or_scan(&src)?;
            let o = Origin {
                id: &old.id(),
                archive: &old.archive,
                tree: tree.clone(),
                copy: old.copy,
                portable: old.portable,
            };
            let plan = self::plan(cfg, &o, &src, &m, false)?;
            let mut back = old.clone();
            place(cfg, &mut back, &plan, &mut None)?;
            // `place` leaves the record attached; a failure before it left
            // the "attaching" mark.
            Ok(())
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
        log::info!("{}: the old tree is still in use and goes when its last user does", old.id());
    }
    let _ = std::fs::remove_dir(&p);
    Ok((old, new))
}
