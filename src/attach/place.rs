//! Placing a plan and removing it again: conflicts refused first, every
//! file recorded before it is created, and only files still as placed removed.

use super::plan::{Action, Class, Placement};
use super::record::{FileKind, Record, RecordState, RecordedFile};
use crate::model::config::Config;
use crate::model::names::ImageId;
use crate::sys::crash;
use crate::sys::fsutil::sha256_hex;
use crate::sys::mount;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Who owns each placed path, from every record.
pub(super) fn owners(cfg: &Config) -> Result<BTreeMap<PathBuf, String>> {
    let mut m = BTreeMap::new();
    for r in Record::load_all(cfg) {
        for f in &r.files {
            if f.kind != FileKind::Dir {
                m.insert(f.path.clone(), format!("image {}", r.id()));
            }
        }
    }
    Ok(m)
}

/// Refuses any placement whose destination exists (a directory where a
/// directory goes is shared, not a conflict). Nothing is changed.
pub fn check_conflicts(cfg: &Config, id: &ImageId, plan: &[Placement]) -> Result<()> {
    // Nothing is below a directory found missing (the plan lists a
    // directory before what goes in it): those are not looked at.
    let mut missing: Vec<&Path> = vec![];
    for p in plan {
        if missing.iter().any(|m| p.dest.starts_with(m)) {
            continue;
        }
        let host = cfg.host(&p.dest);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            if p.action == Action::Dir {
                missing.push(&p.dest);
            }
            continue;
        };
        if p.action == Action::Dir && meta.is_dir() {
            continue;
        }
        // Only now read every record: naming the owner is for the error.
        let owner = owners(cfg)?.get(&p.dest).cloned().unwrap_or_else(|| "a file torcx did not place".into());
        return Err(crate::model::failure::error(
            crate::model::failure::Kind::Conflict,
            format!(
                "image {id}: {} (from /{}) conflicts with {owner}, already at {}",
                p.dest.display(),
                p.source.as_deref().unwrap_or("?"),
                p.dest.display()
            ),
        ));
    }
    Ok(())
}

/// Places the planned files, writing the record first as an intent so an
/// interrupted attach can be cleaned up, then marking it attached.
/// `held`: the record as this process last wrote it, kept open (see
/// [`Record::write_kept`]).
pub fn place(cfg: &Config, rec: &mut Record, plan: &[Placement], held: &mut Option<super::record::Held>) -> Result<()> {
    let dir_entry = |path: &Path, class: Class| RecordedFile {
        path: path.to_path_buf(),
        class,
        kind: FileKind::Dir,
        target: None,
        sha256: None,
        source: None,
    };
    // Only what torcx creates is recorded: missing parent directories (top
    // down, before their contents), and directories that do not exist yet.
    let mut files: Vec<RecordedFile> = vec![];
    let mut made: std::collections::HashSet<PathBuf> = Default::default();
    // Directories seen to exist: most of a plan goes in the same few.
    let mut there: std::collections::HashSet<&Path> = Default::default();
    for p in plan {
        let mut missing = vec![];
        let mut d = p.dest.parent();
        while let Some(dir) = d {
            if dir == Path::new("/") || made.contains(dir) || there.contains(dir) {
                break;
            }
            if cfg.host(dir).is_dir() {
                there.insert(dir);
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
                (FileKind::Dir, None, None)
            }
            Action::Symlink(t) => (FileKind::Symlink, Some(t.clone()), None),
            Action::File(b) => (FileKind::File, None, Some(sha256_hex(b))),
        };
        files.push(RecordedFile {
            path: p.dest.clone(),
            class: p.class,
            kind,
            target,
            sha256,
            source: p.source.clone(),
        });
    }
    rec.state = RecordState::Attaching;
    rec.files = files;
    rec.write_kept(cfg, held, false)?;
    crash::point("recorded")?;
    let content: HashMap<&Path, &Action> = plan.iter().map(|p| (p.dest.as_path(), &p.action)).collect();
    for f in &rec.files {
        let host = cfg.host(&f.path);
        let res = match (f.kind, content.get(f.path.as_path())) {
            (FileKind::Symlink, _) => std::os::unix::fs::symlink(f.target.as_ref().unwrap(), &host),
            (FileKind::File, Some(Action::File(b))) => crate::sys::fsutil::create_whole(&host, b, 0o644),
            _ => std::fs::create_dir(&host),
        };
        // A file where a directory must go (say /run/systemd): name that,
        // not mkdir's bare "File exists".
        if matches!(&res, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists) && f.kind == FileKind::Dir {
            let what = format!("placing {}: it exists and is not a directory", f.path.display());
            return Err(crate::model::failure::error(crate::model::failure::Kind::Conflict, what));
        }
        res.with_context(|| format!("placing {}", f.path.display()))?;
        crash::point("placed")?;
    }
    rec.state = RecordState::Attached;
    rec.write_kept(cfg, held, false)
}

/// Whether the file at `f.path` is still what torcx placed there.
pub(super) fn still_ours(cfg: &Config, f: &RecordedFile) -> bool {
    let host = cfg.host(&f.path);
    match f.kind {
        FileKind::Symlink => std::fs::read_link(&host).ok().as_ref() == f.target.as_ref(),
        // Never through a link: a file an admin replaced with a symlink, even
        // to identical content, is the admin's.
        FileKind::File => {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&host)
                .and_then(|mut fh| {
                    let mut b = vec![];
                    std::io::Read::read_to_end(&mut fh, &mut b).map(|_| b)
                })
                .is_ok_and(|b| Some(sha256_hex(&b)) == f.sha256)
        }
        FileKind::Dir => std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()),
    }
}

/// Removes what a record placed (only where it is still as placed), unmounts
/// the tree if torcx mounted it, and deletes the record. Returns the paths
/// kept because they changed since.
pub fn remove(cfg: &Config, rec: &Record) -> Result<Vec<PathBuf>> {
    let kept = remove_files(cfg, rec)?;
    let tree = cfg.host(&rec.tree);
    if rec.mounted && mount::is_mountpoint(&tree) && mount::unmount_lazy(&tree)? {
        log::warn!("{} is still in use: detached lazily, it goes when its last user does", rec.tree.display());
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

/// Removes the files of a record that are still as placed (not the tree,
/// not the record); returns those kept because they changed since.
pub(super) fn remove_files(cfg: &Config, rec: &Record) -> Result<Vec<PathBuf>> {
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
        let r = if f.kind == FileKind::Dir { std::fs::remove_dir(&host) } else { std::fs::remove_file(&host) };
        if let Err(e) = r {
            // A directory someone else put files in (an admin's drop-in,
            // another image's link) stays, and is not ours to report.
            if f.kind == FileKind::Dir {
                log::info!("leaving {}: not empty", f.path.display());
            } else {
                return Err(e).with_context(|| format!("removing {}", f.path.display()));
            }
        }
    }
    Ok(kept)
}
