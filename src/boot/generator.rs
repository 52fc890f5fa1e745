//! `torcx-generator`: plans the boot, never does it. It runs read-only in
//! systemd's generator sandbox, so it only reads the profile and, from each
//! archive, the manifest and unit files, and writes those units, their links
//! and drop-ins into its output directory, plus the link that pulls in
//! `torcx-apply.service`, which does the unpacking.

use crate::archive::Archive;
use crate::attach::{self, Action, Placement};
use crate::boot::cache;
use crate::model::config::{self, Config, Overrides, SEAL_PATH};
use crate::model::manifest::ImageManifest;
use crate::model::names::ImageId;
use crate::profile;
use crate::store;
use crate::sys::systemd;
use crate::tree::source::Mem;

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const APPLY_UNIT: &str = "torcx-apply.service";
pub const APPLY_UNIT_PATH: &str = "/usr/lib/systemd/system/torcx-apply.service";

/// Returns the exit code: 0, or 1 when anything could not be planned.
pub fn run(root: Option<PathBuf>, normal: &Path) -> i32 {
    let root_dir = root.clone().unwrap_or_else(|| PathBuf::from("/"));
    // After a sealed boot the units live in /run/systemd/system: nothing to do,
    // and this path is on every daemon-reload, so it must stay cheap.
    if root_dir.join(SEAL_PATH.trim_start_matches('/')).exists() {
        // Quietly: this runs at every daemon-reload, and a kernel-log line
        // can cost milliseconds on a serial console.
        log::debug!("this boot is already applied (sealed); nothing to generate");
        return 0;
    }
    let mut failed = false;
    if let Err(e) = plan_boot(root, normal, &mut failed) {
        log::error!("{e:#}");
        failed = true;
    }
    // Always pull in the apply service: even when planning failed it records
    // why in /run/torcx/status.json, where an operator looks.
    if let Err(e) = link_apply(normal) {
        log::error!("{e:#}");
        failed = true;
    }
    i32::from(failed)
}

fn link_apply(normal: &Path) -> Result<()> {
    let wants = normal.join("sysinit.target.wants");
    std::fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    let link = wants.join(APPLY_UNIT);
    match std::os::unix::fs::symlink(APPLY_UNIT_PATH, &link) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("creating {}", link.display()))
        }
        _ => Ok(()),
    }
}

/// Plans every image of the resolved profile `images`. Nothing is written
/// until all are planned, so the host's unit directories are looked at once.
/// Each image (its cache entry read, or its archive, then the host check)
/// runs on one of two threads, one of which reads the host's unit
/// directories first. (Generators run before any unit starts; a first boot
/// reads its archives two at a time.)
pub fn plan(cfg: &Config, images: &[ImageId]) -> Vec<(ImageId, Result<ImagePlan>)> {
    let archives = &store::scan(cfg);
    let next = &std::sync::atomic::AtomicUsize::new(0);
    // `None`: reading them panicked (the panic is raised again below).
    let host = &std::sync::OnceLock::<Option<systemd::UnitDirs>>::new();
    let take = || {
        let mut got = vec![];
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(id) = images.get(i) else { return got };
            let planned = plan_own(cfg, archives, id).and_then(|p| match host.wait() {
                Some(h) => against_host(cfg, h, id, p),
                None => bail!("reading the host's unit directories failed"),
            });
            got.push((i, planned));
        }
    };
    let mut own = std::thread::scope(|s| {
        let helper = (images.len() > 1).then(|| s.spawn(take));
        let panicked = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| systemd::UnitDirs::read(cfg))) {
            Ok(dirs) => {
                let _ = host.set(Some(dirs));
                None
            }
            Err(p) => {
                let _ = host.set(None);
                Some(p)
            }
        };
        let mut own = take();
        if let Some(h) = helper {
            own.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
        own
    });
    own.sort_by_key(|(i, _)| *i);
    own.into_iter().map(|(i, planned)| (images[i].clone(), planned)).collect()
}

/// One image planned: its manifest, what was read of it, and the unit
/// files, links and drop-ins the generator writes for it.
pub struct ImagePlan {
    pub manifest: ImageManifest,
    pub units: Mem,
    pub placements: Vec<Placement>,
}

/// The unit placements of one image, as apply would make them, refused as
/// apply would refuse them.
pub fn plan_image(cfg: &Config, archives: &[Archive], host: &systemd::UnitDirs, id: &ImageId) -> Result<ImagePlan> {
    against_host(cfg, host, id, plan_own(cfg, archives, id)?)
}

/// Apply will refuse an image whose units the host has; they must not
/// shadow the host's meanwhile. (/run/systemd/system holds what an
/// earlier, failed apply placed.)
fn against_host(cfg: &Config, host: &systemd::UnitDirs, id: &ImageId, p: ImagePlan) -> Result<ImagePlan> {
    attach::check_host_units_in(cfg, host, id, &p.placements)?;
    Ok(p)
}

/// [`plan_image`] but for the host's units.
fn plan_own(cfg: &Config, archives: &[Archive], id: &ImageId) -> Result<ImagePlan> {
    let Some(a) = archives.iter().find(|a| &a.id == id) else { bail!("no archive in any store") };
    let ctx = || format!("reading {}", a.path.display());
    let limits = crate::tree::policy::Limits::reading(cfg.unpack_limit);
    let mem = match crate::fetch::trust::requirement(cfg, &a.id, &a.path)? {
        // With `verify: signed`, no unit of an archive no signed index vouches
        // for reaches systemd: apply would refuse the image, but its units
        // would be loaded (and could run host binaries) before. The archive
        // is hashed every boot, and the cache is not used: it is keyed by file
        // metadata and lives in /var, both as forgeable as the store.
        // A layout from a registry: its tag's digests, checked as it is read.
        Some(want) if a.format == crate::archive::Format::OciLayout => {
            let refused = std::cell::Cell::new(false);
            let check = |r: &crate::archive::oci::Resolved| {
                let res = crate::fetch::trust::check_layout(&a.path, &a.id, &want, &r.path);
                refused.set(res.is_err());
                res.map(|_| ())
            };
            // The refusal names the layout itself.
            crate::tree::oci::read_units_checked(&a.host, &a.id.reference, &limits, &check)
                .map_err(|e| if refused.get() { e } else { e.context(ctx()) })?
        }
        Some(want) => {
            use crate::archive::digest;
            let algos: Vec<_> = want.iter().map(|d| d.algo).collect();
            // One open file for the hash and the read: a name replaced between them changes nothing.
            let (file, pinned) = digest::pin(a).with_context(ctx)?;
            let got = digest::reader_digests(file.try_clone()?, &algos).with_context(ctx)?;
            crate::fetch::trust::check(&a.path, &a.id, &want, &got)?;
            crate::tree::isolated::read_units(&pinned, &limits).with_context(ctx)?
        }
        None => match cache::load(cfg, a) {
            Some(m) => m,
            None => crate::tree::isolated::read_units(a, &limits).with_context(ctx)?,
        },
    };
    let (manifest, plan) = attach::plan_archive_units(cfg, a, &mem)?;
    Ok(ImagePlan { manifest, units: mem, placements: plan })
}

fn plan_boot(root: Option<PathBuf>, normal: &Path, failed: &mut bool) -> Result<()> {
    let cfg = Config::load(&Overrides { root, stores: vec![] })?;
    let resolved = profile::resolve(&cfg)?;
    for w in &resolved.warnings {
        log::warn!("{}", w);
    }
    // As apply: the lower profiles' images are planned all the same.
    if let Some(e) = &resolved.upper_error {
        log::error!("{e}; planning the lower profiles' images");
        *failed = true;
    }
    let mut out = Output::new(normal);
    let (mut files, mut unplanned) = (0, vec![]);
    // Units, drop-ins and links: the directories holding them aside.
    let written = |p: &ImagePlan| p.placements.iter().filter(|p| p.action != Action::Dir).count();
    for (id, planned) in plan(&cfg, &resolved.images) {
        match planned.and_then(|p| write_units(&mut out, &p.placements).map(|()| written(&p))) {
            Ok(n) => {
                files += n;
                log::debug!("image {id}: {n} files written");
            }
            Err(e) => {
                log::error!("image {id}: {e:#}");
                unplanned.push(id.to_string());
                *failed = true;
            }
        }
    }
    // One line for the whole profile: the kernel log keeps a burst of ten
    // lines from a generator, and a profile has hundreds of images.
    let total = resolved.images.len();
    let failures =
        if unplanned.is_empty() { String::new() } else { format!("; not planned: {}", unplanned.join(", ")) };
    log::info!("{} of {total} images planned, {files} files written{failures}", total - unplanned.len());
    Ok(())
}

/// Writes the unit placements under the generator's output directory
/// instead of /run/systemd/system. An existing file is a conflict, and an
/// image with one writes nothing.
fn write_units(out: &mut Output, plan: &[Placement]) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    let dests: Vec<(PathBuf, &Action)> = plan
        .iter()
        .filter_map(|p| p.dest.strip_prefix(units).ok().map(|rel| (out.normal.join(rel), &p.action)))
        .collect();
    let taken = |d: &Path| anyhow::anyhow!("{} is already provided by an earlier image of the profile", d.display());
    if let Some((d, _)) = dests.iter().find(|(d, a)| **a != Action::Dir && out.exists(d)) {
        return Err(taken(d));
    }
    for (d, a) in dests {
        out.dir(d.parent().unwrap())?;
        let r = match a {
            Action::Dir => out.dir(&d).map_err(std::io::Error::other),
            // Never over a file another generator wrote meanwhile.
            Action::File(b) => {
                use std::os::unix::fs::OpenOptionsExt;
                // Never world-writable, whatever the umask (0644 at most).
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create_new(true).mode(0o644);
                o.open(&d).and_then(|mut f| f.write_all(b))
            }
            Action::Symlink(t) => std::os::unix::fs::symlink(t, &d),
        };
        if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists) {
            return Err(taken(&d));
        }
        r.with_context(|| format!("writing {}", d.display()))?;
        out.written.insert(d);
    }
    Ok(())
}

/// The generator's output directory, and what this run knows of it: the
/// names it held when the run began, the directories made or found since,
/// the paths written. At boot it starts empty, and 50 images are written
/// without asking the kernel whether each path exists.
struct Output {
    normal: PathBuf,
    /// `None`: the directory could not be listed; every path is looked at.
    initial: Option<std::collections::HashSet<std::ffi::OsString>>,
    dirs: std::collections::HashSet<PathBuf>,
    written: std::collections::HashSet<PathBuf>,
}

impl Output {
    fn new(normal: &Path) -> Output {
        let initial = std::fs::read_dir(normal)
            .ok()
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect::<std::collections::HashSet<_>>());
        Output { normal: normal.to_path_buf(), initial, dirs: Default::default(), written: Default::default() }
    }

    fn exists(&self, d: &Path) -> bool {
        if self.written.contains(d) || self.dirs.contains(d) {
            return true;
        }
        // Under a name that was not there when the run began, only what this
        // run made exists.
        let first = d.strip_prefix(&self.normal).ok().and_then(|r| r.components().next());
        match (&self.initial, first) {
            (Some(names), Some(c)) if !names.contains(c.as_os_str()) => false,
            _ => std::fs::symlink_metadata(d).is_ok(),
        }
    }

    fn dir(&mut self, d: &Path) -> Result<()> {
        if !self.dirs.contains(d) {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            let made = d.ancestors().take_while(|a| a.starts_with(&self.normal));
            self.dirs.extend(made.map(Path::to_path_buf));
        }
        Ok(())
    }
}

/// `torcx-generator [--root DIR] NORMAL [EARLY LATE]`, as systemd calls it;
/// returns the exit status.
pub fn main() -> i32 {
    crate::sys::logger::init("torcx-generator", true, log::LevelFilter::Info);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--version") {
        println!("torcx-generator {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let mut root = None;
    if args.first().is_some_and(|a| a == "--root") && args.len() >= 2 {
        root = Some(std::path::PathBuf::from(args.remove(1)));
        args.remove(0);
    }
    if args.len() != 1 && args.len() != 3 {
        log::error!("usage: torcx-generator [--root DIR] NORMAL_DIR [EARLY_DIR LATE_DIR]");
        return 2;
    }
    run(root, std::path::Path::new(&args[0]))
}
