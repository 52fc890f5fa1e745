//! The boot-time apply: merge the profiles, attach every image (one failing
//! does not stop the others), record the outcome, seal when all succeeded.

use crate::attach::{self, Record};
use crate::boot::cache;
use crate::model::config::{Config, SEAL_PATH};
use crate::model::failure::{self, Kind};
use crate::model::names::ImageId;
use crate::profile;
use crate::store;
use crate::sys::fsutil::{Lock, atomic_write};
use crate::sys::mount;
use crate::sys::systemd::UnitDirs;
use crate::tree::lookups::Lookups;
use crate::tree::source::{self, Mem, Tree};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const STATUS_KIND: &str = "torcx-apply-status-v0";

crate::model::string_enum! {
    /// What one apply did with an image.
    ImageState {
        Attached = "attached",
        /// Already attached by an earlier apply of this boot, and kept.
        Unchanged = "unchanged",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageStatus {
    pub name: String,
    pub reference: String,
    pub archive: Option<PathBuf>,
    pub format: Option<attach::RecordFormat>,
    pub state: ImageState,
    pub error: Option<String>,
    /// Why it failed, for machines (torcx(8), `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    pub unpacked_bytes: u64,
    pub files: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub started: u64,
    pub finished: u64,
    pub lower_profiles: Vec<String>,
    pub upper_profile: Option<String>,
    pub sealed: bool,
    /// Set when the apply failed as a whole (bad config, bad profile).
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub images: Vec<ImageStatus>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    kind: String,
    value: T,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The largest status file read back: a few hundred bytes an image.
const MAX_STATUS: u64 = 64 << 20;

pub fn read_status(cfg: &Config) -> Option<Status> {
    let b = crate::sys::fsutil::read_bounded(&cfg.host(&cfg.status_path()), MAX_STATUS).ok()?;
    serde_json::from_slice::<Envelope<Status>>(&b).ok().map(|e| e.value)
}

fn write_status(cfg: &Config, s: &Status) -> Result<()> {
    let mut b = serde_json::to_vec_pretty(&Envelope { kind: STATUS_KIND.into(), value: s })?;
    b.push(b'\n');
    atomic_write(&cfg.host(&cfg.status_path()), &b, 0o644)
}

/// Go's `%q` for the strings torcx writes: quotes and backslashes escaped.
fn quote(s: &str) -> String {
    // The seal is sourced by shells and read as an EnvironmentFile: inside
    // double quotes, `$`, backticks, `"` and `\` are escaped so nothing
    // expands, and control characters are written as escapes.
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' | '`' => {
                o.push('\\');
                o.push(c)
            }
            '\n' => o += "\\n",
            c if c.is_control() => o += &format!("\\x{:02x}", c as u32),
            c => o.push(c),
        }
    }
    o + "\""
}

/// The five upstream lines of `/run/metadata/torcx`.
pub fn seal_text(cfg: &Config, lower: &[String], upper: Option<&str>) -> String {
    format!(
        "TORCX_LOWER_PROFILES={}\nTORCX_UPPER_PROFILE={}\nTORCX_PROFILE_PATH={}\nTORCX_BINDIR={}\nTORCX_UNPACKDIR={}\n",
        quote(&lower.join(":")),
        quote(upper.unwrap_or("")),
        quote(&cfg.run_profile_path().display().to_string()),
        quote(&cfg.bin_dir().display().to_string()),
        quote(&cfg.unpack_dir().display().to_string()),
    )
}

/// What `torcx apply` did.
pub struct Outcome {
    pub status: Status,
    /// True when the boot was already sealed and nothing was done.
    pub already: bool,
}

pub fn apply(cfg: &Config, force: bool) -> Result<Outcome> {
    let run = cfg.host(&cfg.run_dir);
    std::fs::create_dir_all(&run).with_context(|| format!("creating {}", cfg.run_dir.display()))?;
    let _lock = Lock::take(&cfg.host(&cfg.lock_path()))?;
    attach::sweep(cfg);
    // What a killed command left half attached goes first, one image after
    // the other: its tree, still writable, would otherwise count at its full
    // size against the limit for all images while the images unpack side by
    // side (a kill at the wrong moment made the next apply fail them all).
    for r in attach::Record::load_all(cfg).iter().filter(|r| r.state != attach::RecordState::Attached) {
        log::warn!("image {}: cleaning up an interrupted attach or reattach of {}", r.name, r.id());
        if let Err(e) = attach::remove(cfg, r) {
            log::warn!("image {}: {e:#}", r.name);
        }
    }
    let sealed = cfg.host(Path::new(SEAL_PATH)).exists();
    if sealed
        && !force
        && let Some(status) = read_status(cfg).filter(|s| s.sealed)
    {
        return Ok(Outcome { status, already: true });
    }
    let started = now();
    let mut status = Status {
        started,
        finished: 0,
        lower_profiles: vec![],
        upper_profile: None,
        sealed: false,
        error: None,
        warnings: vec![],
        images: vec![],
    };
    // Whatever stops the apply as a whole is in the status too: a machine
    // never boots with the last apply unexplained.
    let fail = |status: &mut Status, e: anyhow::Error| -> anyhow::Error {
        status.error = Some(format!("{e:#}"));
        status.finished = now();
        status.sealed = false;
        if let Err(w) = write_status(cfg, status) {
            log::error!("{w:#}");
        }
        e
    };
    let resolved = match profile::resolve(cfg) {
        Ok(r) => r,
        Err(e) => return Err(fail(&mut status, e)),
    };
    for w in &resolved.warnings {
        log::warn!("{}", w);
    }
    status.lower_profiles = resolved.lower_profiles.clone();
    status.upper_profile = resolved.upper_profile.clone();
    status.warnings = resolved.warnings.clone();
    for d in [cfg.bin_dir(), cfg.unpack_dir(), cfg.attached_dir()] {
        if let Err(e) = crate::sys::fsutil::make_dirs(&cfg.host(&d)) {
            return Err(fail(&mut status, e));
        }
    }
    let archives = store::scan(cfg);
    for st in apply_images(cfg, &resolved.images, &archives) {
        // Failures are reported once, by the caller, from the status.
        if st.error.is_none() {
            log::info!("image {}:{}: {}", st.name, st.reference, st.state);
        }
        status.images.push(st);
    }
    // An unreadable next-profile: its images are unknown, so the boot is
    // not what the admin asked for. The lower profiles' images are attached
    // all the same, but nothing is sealed, and the status names the file.
    if let Some(e) = &resolved.upper_error {
        log::error!("{e}; the lower profiles' images are applied, the boot is not sealed");
        status.error = Some(e.clone());
    }
    crate::sys::crash::point("images applied")?;
    let ok = status.images.iter().all(|i| i.error.is_none()) && resolved.upper_error.is_none();
    if ok {
        let profile = serde_json::json!({
            "kind": crate::model::manifest::PROFILE_V0,
            "value": {"images": resolved.images.iter().map(|i| serde_json::json!({"name": i.name, "reference": i.reference})).collect::<Vec<_>>()}
        });
        let mut b = serde_json::to_vec_pretty(&profile)?;
        b.push(b'\n');
        if let Err(e) = atomic_write(&cfg.host(&cfg.run_profile_path()), &b, 0o444) {
            return Err(fail(&mut status, e));
        }
        crate::sys::crash::point("profile written")?;
        let seal = seal_text(cfg, &resolved.lower_profiles, resolved.upper_profile.as_deref());
        if let Err(e) = atomic_write(&cfg.host(Path::new(SEAL_PATH)), seal.as_bytes(), 0o644) {
            return Err(fail(&mut status, e));
        }
        crate::sys::crash::point("sealed")?;
        status.sealed = true;
    }
    status.finished = now();
    if let Err(e) = write_status(cfg, &status) {
        // A seal without its status would say "done" with nothing to show
        // for it: take the seal back, so the next apply runs again.
        if status.sealed {
            let _ = std::fs::remove_file(cfg.host(Path::new(SEAL_PATH)));
        }
        return Err(e);
    }
    Ok(Outcome { status, already: false })
}

/// Where an image stands after the first, parallel half of the apply.
enum Half {
    Done(ImageStatus),
    Ready(ImageStatus, crate::archive::Archive, Box<attach::Prepared>),
}

fn boot_options(unit_dirs: Option<&Arc<UnitDirs>>) -> attach::Options {
    // A unit already on the host fails the image at boot too (design.md).
    attach::Options {
        origin: attach::RecordOrigin::Boot,
        copy: attach::CopyMode::Copy,
        check_host_units: true,
        unit_dirs: unit_dirs.cloned(),
        ..Default::default()
    }
}

/// An image's status before anything is done for it.
fn new_status(id: &ImageId) -> ImageStatus {
    ImageStatus {
        name: id.name.clone(),
        reference: id.reference.clone(),
        archive: None,
        format: None,
        state: ImageState::Failed,
        error: None,
        kind: None,
        unpacked_bytes: 0,
        files: 0,
    }
}

/// What an earlier apply left of one image: kept (`Some`, done) if it is
/// this very image and complete; otherwise cleared, so the image is
/// attached afresh (`None`). Every image's is settled before any image is
/// placed: a later image's old files (another reference's) must be gone
/// before an earlier one claims their paths.
fn settle_earlier(cfg: &Config, id: &ImageId, recorded: &HashSet<std::ffi::OsString>) -> Option<Half> {
    let mut st = new_status(id);
    // At boot there are no records yet: the directory is read once instead
    // of each image's record looked for.
    if !recorded.contains(std::ffi::OsStr::new(&format!("{}.json", id.name))) {
        return None;
    }
    match Record::load(cfg, &id.name) {
        Ok(Some(r))
            if r.id() == *id
                && r.state == attach::RecordState::Attached
                && (!r.mounted || mount::is_mountpoint(&cfg.host(&r.tree))) =>
        {
            st.archive = Some(r.archive.clone());
            st.format = Some(r.format);
            st.state = ImageState::Unchanged;
            st.files = r.files.len();
            Some(Half::Done(st))
        }
        Ok(Some(r)) => match attach::remove(cfg, &r) {
            Ok(_) => None,
            Err(e) => {
                st.error = Some(format!("image {id}: clearing the earlier attachment: {e:#}"));
                st.kind = Some(failure::kind_of(&e));
                Some(Half::Done(st))
            }
        },
        Ok(None) => None,
        Err(e) => {
            st.error = Some(format!("image {id}: {e:#}"));
            st.kind = Some(failure::kind_of(&e));
            Some(Half::Done(st))
        }
    }
}

/// The first half of one image whose earlier attachment is settled: find
/// its archive, unpack or mount it, and plan. Nothing is placed.
fn begin_image(cfg: &Config, id: &ImageId, archives: &[crate::archive::Archive], tar_slots: &Slots) -> Half {
    let mut st = new_status(id);
    let Some(a) = archives.iter().find(|a| &a.id == id) else {
        if let Some((path, why)) = store::unusable(cfg, id) {
            st.error = Some(format!("image {id}: {}: {why}", path.display()));
            st.kind = Some(if why.contains("does not exist") { Kind::Missing } else { Kind::Corrupt });
            return Half::Done(st);
        }
        let dirs: Vec<String> = store::store_dirs(cfg).iter().map(|d| d.logical.display().to_string()).collect();
        st.error = Some(format!("image {id}: no archive in any store (searched {})", dirs.join(", ")));
        st.kind = Some(Kind::Missing);
        return Half::Done(st);
    };
    st.archive = Some(a.path.clone());
    st.format = Some(a.format.into());
    // Unpacking keeps two threads busy: at most two at once, so memory stays
    // bounded too. Mounting mostly waits on the kernel: those run freely.
    let _slot = (!a.format.mounted()).then(|| tar_slots.take());
    let opts = attach::Options {
        // Not with verify: signed: /var is as forgeable as the stores, and
        // what is placed must come from the hashed file.
        known: (a.format.mounted() && cfg.verify != crate::model::config::Verify::Signed)
            .then(|| cache::load_vouched(cfg, a))
            .flatten()
            .map(std::sync::Arc::new),
        // A tar archive's digest is information for the record: an earlier
        // apply's, for the same file, saves reading it all again.
        known_digest: (!a.format.mounted() && !a.format.is_oci() && cfg.verify != crate::model::config::Verify::Signed)
            .then(|| cache::known_digest(cfg, a))
            .flatten(),
        // Settled: no record is left (see `settle_earlier`).
        unrecorded: true,
        // The host's units are checked by the second half.
        ..boot_options(None)
    };
    match attach::begin(cfg, &attach::ImageFrom::Archive(a.clone()), &opts) {
        Ok(p) => Half::Ready(st, a.clone(), Box::new(p)),
        Err(e) => {
            fail(&mut st, id, a, e);
            Half::Done(st)
        }
    }
}

fn fail(st: &mut ImageStatus, id: &ImageId, a: &crate::archive::Archive, e: anyhow::Error) {
    let msg = format!("{e:#}");
    let msg = msg.strip_prefix(&format!("image {id}: ")).unwrap_or(&msg).to_string();
    st.error = Some(format!("image {id} ({}): {msg}", a.path.display()));
    st.kind = Some(failure::kind_of(&e));
}

/// The second half, in profile order: conflicts are refused against what
/// the images before it placed, then its files are placed.
fn finish_image(cfg: &Config, half: Half, unit_dirs: &Arc<UnitDirs>) -> ImageStatus {
    let (mut st, a, p) = match half {
        Half::Done(st) => return st,
        Half::Ready(st, a, p) => (st, a, p),
    };
    let id = a.id.clone();
    match attach::finish(cfg, *p, &boot_options(Some(unit_dirs))) {
        Ok((rec, mut unpacked)) => {
            // A file the cache vouched for has its entry already. A digest
            // is kept only with the identity of the very file it is of.
            let digest = unpacked.file.and(unpacked.digest.take());
            if !unpacked.vouched && !cache::is_current(cfg, &a, digest.as_deref()) {
                cache_units(cfg, &a, &rec, unpacked.lookups.take(), unpacked.file, digest);
            }
            st.state = ImageState::Attached;
            st.unpacked_bytes = unpacked.bytes;
            st.files = rec.files.len();
        }
        Err(e) => fail(&mut st, &id, &a, e),
    }
    st
}

/// A counting semaphore (two tar unpacks at a time).
struct Slots {
    free: std::sync::Mutex<usize>,
    cv: std::sync::Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots { free: std::sync::Mutex::new(n), cv: std::sync::Condvar::new() }
    }
    fn take(&self) -> Slot<'_> {
        let mut f = self.free.lock().unwrap();
        while *f == 0 {
            f = self.cv.wait(f).unwrap();
        }
        *f -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap() += 1;
        self.0.cv.notify_one();
    }
}

/// Runs the first half of every image on a few threads, and the second half
/// of each in profile order as soon as its first half is done: placing the
/// early images overlaps mounting and unpacking the later ones.
fn apply_images(cfg: &Config, ids: &[ImageId], archives: &[crate::archive::Archive]) -> Vec<ImageStatus> {
    // Mounting mostly waits on the loop devices' reads: eight in flight
    // overlap those waits (50 squashfs images: 22.8 -> 20.7 ms). Unpacking
    // is CPU-bound and has two slots anyway: more threads there only cost
    // memory.
    let mounts_only = ids.iter().all(|id| archives.iter().find(|a| &a.id == id).is_some_and(|a| a.format.mounted()));
    let workers = if mounts_only { 8 } else { 4 };
    let recorded: HashSet<std::ffi::OsString> = std::fs::read_dir(cfg.host(&cfg.attached_dir()))
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default();
    let mut begun: Vec<Option<Half>> = ids.iter().map(|id| settle_earlier(cfg, id, &recorded)).collect();
    let todo: Vec<usize> = (0..ids.len()).filter(|&i| begun[i].is_none()).collect();
    let todo = &todo;
    let next = &std::sync::atomic::AtomicUsize::new(0);
    let tar_slots = &Slots::new(2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        for _ in 0..workers.min(todo.len()) {
            let tx = tx.clone();
            sc.spawn(move || {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { break };
                    if tx.send((i, begin_image(cfg, &ids[i], archives, tar_slots))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // The host's unit directories, looked at once (nothing but torcx's
        // own changes while images are applied), and here, while the first
        // images mount: only the second halves need them.
        let unit_dirs = &Arc::new(UnitDirs::read(cfg));
        // The second halves stay in profile order: an image's conflicts are
        // refused against what the images before it placed.
        let mut done = Vec::with_capacity(ids.len());
        let finish_ready = |begun: &mut Vec<Option<Half>>, done: &mut Vec<ImageStatus>| {
            while let Some(h) = begun.get_mut(done.len()).and_then(Option::take) {
                done.push(finish_image(cfg, h, unit_dirs));
            }
        };
        finish_ready(&mut begun, &mut done);
        for (i, half) in rx {
            begun[i] = Some(half);
            finish_ready(&mut begun, &mut done);
        }
        assert_eq!(done.len(), ids.len(), "every image was begun");
        done
    })
}

/// Keeps what the generator needs of this image for the next boots.
fn cache_units(
    cfg: &Config,
    a: &crate::archive::Archive,
    rec: &Record,
    lookups: Option<Lookups>,
    file: Option<crate::archive::FileId>,
    digest: Option<String>,
) {
    let tree = match Tree::open(&cfg.host(&rec.tree)) {
        Ok(t) => t,
        Err(_) => return,
    };
    if let Ok(Some(m)) = source::read_manifest(&tree)
        && let Ok(mem) = Mem::from_tree(&tree, &m)
    {
        cache::store(cfg, a, mem, lookups, file, digest);
    }
}
