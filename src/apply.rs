//! The boot-time apply: merge the profiles, attach every image (one failing
//! does not stop the others), record the outcome, seal when all succeeded.

use crate::attach::{self, Record};
use crate::cache;
use crate::config::{Config, SEAL_PATH};
use crate::fsutil::{Lock, atomic_write};
use crate::log;
use crate::mount;
use crate::names::ImageId;
use crate::profile;
use crate::source::{self, Mem, Tree};
use crate::store;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const STATUS_KIND: &str = "torcx-apply-status-v0";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageStatus {
    pub name: String,
    pub reference: String,
    pub archive: Option<PathBuf>,
    pub format: Option<String>,
    /// `attached`, `unchanged` (already attached by an earlier apply) or `failed`.
    pub state: String,
    pub error: Option<String>,
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

pub fn read_status(cfg: &Config) -> Option<Status> {
    let b = std::fs::read(cfg.host(&cfg.status_path())).ok()?;
    serde_json::from_slice::<Envelope<Status>>(&b).ok().map(|e| e.value)
}

fn write_status(cfg: &Config, s: &Status) -> Result<()> {
    let mut b = serde_json::to_vec_pretty(&Envelope { kind: STATUS_KIND.into(), value: s })?;
    b.push(b'\n');
    atomic_write(&cfg.host(&cfg.status_path()), &b, 0o644)
}

/// Go's `%q` for the strings torcx writes: quotes and backslashes escaped.
fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
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
    let sealed = cfg.host(Path::new(SEAL_PATH)).exists();
    if sealed && !force {
        if let Some(status) = read_status(cfg).filter(|s| s.sealed) {
            return Ok(Outcome { status, already: true });
        }
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
    let resolved = match profile::resolve(cfg) {
        Ok(r) => r,
        Err(e) => {
            status.error = Some(format!("{e:#}"));
            status.finished = now();
            write_status(cfg, &status)?;
            return Err(e);
        }
    };
    for w in &resolved.warnings {
        log::warn(w);
    }
    status.lower_profiles = resolved.lower_profiles.clone();
    status.upper_profile = resolved.upper_profile.clone();
    status.warnings = resolved.warnings.clone();
    for d in [cfg.bin_dir(), cfg.unpack_dir(), cfg.attached_dir()] {
        std::fs::create_dir_all(cfg.host(&d)).with_context(|| format!("creating {}", d.display()))?;
    }
    let archives = store::scan(cfg);
    for id in &resolved.images {
        let st = apply_image(cfg, id, &archives);
        // Failures are reported once, by the caller, from the status.
        if st.error.is_none() {
            log::info(&format!("image {id}: {}", st.state));
        }
        status.images.push(st);
    }
    let ok = status.images.iter().all(|i| i.error.is_none());
    if ok {
        let profile = serde_json::json!({
            "kind": crate::manifest::PROFILE_V0,
            "value": {"images": resolved.images.iter().map(|i| serde_json::json!({"name": i.name, "reference": i.reference})).collect::<Vec<_>>()}
        });
        let mut b = serde_json::to_vec_pretty(&profile)?;
        b.push(b'\n');
        atomic_write(&cfg.host(&cfg.run_profile_path()), &b, 0o444)?;
        let seal = seal_text(cfg, &resolved.lower_profiles, resolved.upper_profile.as_deref());
        atomic_write(&cfg.host(Path::new(SEAL_PATH)), seal.as_bytes(), 0o644)?;
        status.sealed = true;
    }
    status.finished = now();
    write_status(cfg, &status)?;
    Ok(Outcome { status, already: false })
}

fn apply_image(cfg: &Config, id: &ImageId, archives: &[store::Archive]) -> ImageStatus {
    let mut st = ImageStatus {
        name: id.name.clone(),
        reference: id.reference.clone(),
        archive: None,
        format: None,
        state: "failed".into(),
        error: None,
        unpacked_bytes: 0,
        files: 0,
    };
    // A record from an earlier apply: keep it if it is this very image and
    // complete; otherwise clear it so the image is attached afresh.
    match Record::load(cfg, &id.name) {
        Ok(Some(r))
            if r.id() == *id && r.state == "attached" && (!r.mounted || mount::is_mountpoint(&cfg.host(&r.tree))) =>
        {
            st.archive = Some(r.archive.clone());
            st.format = Some(r.format.clone());
            st.state = "unchanged".into();
            st.files = r.files.len();
            return st;
        }
        Ok(Some(r)) => {
            if let Err(e) = attach::remove(cfg, &r) {
                st.error = Some(format!("image {id}: clearing the earlier attachment: {e:#}"));
                return st;
            }
        }
        Ok(None) => {}
        Err(e) => {
            st.error = Some(format!("image {id}: {e:#}"));
            return st;
        }
    }
    let Some(a) = archives.iter().find(|a| &a.id == id) else {
        let dirs: Vec<String> = store::store_dirs(cfg).iter().map(|d| d.logical.display().to_string()).collect();
        st.error = Some(format!("image {id}: no archive in any store (searched {})", dirs.join(", ")));
        return st;
    };
    st.archive = Some(a.path.clone());
    st.format = Some(a.format.name().into());
    let opts = attach::Options { origin: "boot".into(), copy: attach::CopyMode::Copy, ..Default::default() };
    match attach::attach(cfg, &attach::ImageFrom::Archive(a.clone()), &opts) {
        Ok((rec, unpacked)) => {
            // squashfs and erofs are read through their index: nothing to gain.
            if !a.format.mounted() && cache::load(cfg, a).is_none() {
                cache_units(cfg, a, &rec);
            }
            st.state = "attached".into();
            st.unpacked_bytes = unpacked.bytes;
            st.files = rec.files.len();
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let msg = msg.strip_prefix(&format!("image {id}: ")).unwrap_or(&msg).to_string();
            st.error = Some(format!("image {id} ({}): {msg}", a.path.display()));
        }
    }
    st
}

/// The images of this boot's run profile, once sealed.
pub fn run_profile(cfg: &Config) -> Option<Vec<ImageId>> {
    let text = std::fs::read_to_string(cfg.host(&cfg.run_profile_path())).ok()?;
    let entries = crate::manifest::parse_profile(&text).ok()?;
    Some(entries.into_iter().map(|e| ImageId { name: e.name, reference: e.reference }).collect())
}

/// Keeps what the generator needs of this image for the next boots.
fn cache_units(cfg: &Config, a: &store::Archive, rec: &Record) {
    let tree = match Tree::open(&cfg.host(&rec.tree)) {
        Ok(t) => t,
        Err(_) => return,
    };
    if let Ok(Some(m)) = source::read_manifest(&tree)
        && let Ok(mem) = Mem::from_tree(&tree, &m)
    {
        cache::store(cfg, a, mem);
    }
}
