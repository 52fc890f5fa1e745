//! `torcx profile populate`: every image of a profile that names a remote
//! and is in no store is downloaded into the user store (versioned with
//! `-n`), a few at a time, each checked against its remote's signed index.

use super::download::{self, Job, Retry};
use super::http::Client;
use super::remote::{self, Remote};
use super::{sig, trust};
use crate::archive::{Format, parse_archive_name};
use crate::model::config::{Config, DEFAULT_REFERENCE};
use crate::model::manifest::ProfileEntry;
use crate::model::names::ImageId;
use crate::model::remote::{Algo, Contents, Digest};
use crate::profile::{self, edit::Target};
use crate::store;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct Options {
    pub target: Option<Target>,
    /// `-n`: the OS version to populate for (its versioned store, its `${VERSION_ID}`).
    pub version: Option<String>,
    pub allow_unsigned: bool,
    pub timeout: Duration,
    pub attempts: u32,
    pub first_wait: Duration,
    /// Downloads at once.
    pub jobs: usize,
}

/// What became of one image.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub image: String,
    pub remote: String,
    /// `present`, `downloaded` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    pub bytes: u64,
    pub resumed_bytes: u64,
    pub seconds: f64,
    pub bytes_per_second: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Shows downloads as they go: the CLI draws bars on a terminal and prints
/// lines elsewhere.
pub trait Progress: Sync {
    fn start(&self, image: &str) -> Box<dyn Fn(u64, Option<u64>) + Sync + '_>;
    fn done(&self, o: &Outcome);
}

/// The profile's entries: `--name`, `--file`, or the next profile.
fn entries(cfg: &Config, target: Option<&Target>) -> Result<(String, Vec<ProfileEntry>)> {
    let (host, shown) = match target {
        Some(t) => t.paths(cfg),
        None => {
            let name =
                profile::next_profile_name(cfg)?.ok_or_else(|| anyhow!("no next profile: give --name or --file"))?;
            let p = profile::find(cfg, &name)?.ok_or_else(|| anyhow!("the next profile {name} does not exist"))?;
            (cfg.host(&p), p.display().to_string())
        }
    };
    let text = std::fs::read_to_string(&host).with_context(|| format!("profile {shown}"))?;
    let e = crate::model::manifest::parse_profile(&text).with_context(|| format!("profile {shown}"))?;
    // As a boot: one entry per image (two would download to the same file at once).
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = e.iter().find(|x| !seen.insert(x.name.as_str())) {
        bail!("profile {shown}: image {} is listed more than once", crate::model::quoted(&d.name));
    }
    Ok((shown, e))
}

/// One image to fetch.
struct Want {
    id: ImageId,
    remote: String,
}

pub fn populate(cfg: &Config, opts: &Options, progress: &dyn Progress) -> Result<Vec<Outcome>> {
    let (_, entries) = entries(cfg, opts.target.as_ref())?;
    // The stores of the OS version populated for: with -n, not this /usr's.
    let mut scfg = cfg.clone();
    if let Some(v) = &opts.version {
        crate::model::names::validate_reference(v).context("-n")?;
        scfg.version_id = Some(v.clone());
        scfg.vendor_store = false;
    }
    let present = store::scan(&scfg);
    let mut outcomes = vec![];
    let mut by_remote: BTreeMap<String, Vec<Want>> = BTreeMap::new();
    for e in entries {
        let Some(r) = e.remote.filter(|r| !r.is_empty()) else { continue };
        if e.reference.is_empty() {
            continue;
        }
        let id = ImageId::new(&e.name, &e.reference)?;
        if let Some(a) = present.iter().find(|a| a.id == id) {
            let o = outcome(&id, &r, "present", Some(a.path.clone()), download::Done::default(), None);
            progress.done(&o);
            outcomes.push(o);
            continue;
        }
        by_remote.entry(r).or_default().push(Want { id, remote: String::new() });
    }
    let client = Client::new(opts.timeout);
    let store_logical = cfg.user_store(opts.version.as_deref());
    let store_host = cfg.host(&store_logical);
    let mut jobs: Vec<(Want, Job, Option<PathBuf>, Vec<u8>)> = vec![];
    for (rname, wants) in by_remote {
        // A registry remote: each image pulled into its layout in the store.
        if let Ok(r) = remote::load(cfg, &rname, opts.version.as_deref())
            && r.is_registry()
        {
            // With a signed index, each image is pulled by the digest it lists.
            let index = r.has_index().then(|| open_remote(cfg, &client, &rname, opts));
            for w in wants {
                let o = match &index {
                    None => pull_from_registry(cfg, &r, &w.id, None, opts, progress),
                    Some(Ok((_, c, bytes, signed))) => {
                        let listed = Some((c, if *signed { bytes.as_slice() } else { &[] }));
                        pull_from_registry(cfg, &r, &w.id, listed, opts, progress)
                    }
                    Some(Err(e)) => outcome(&w.id, &rname, "failed", None, Default::default(), Some(format!("{e:#}"))),
                };
                progress.done(&o);
                outcomes.push(o);
            }
            continue;
        }
        match open_remote(cfg, &client, &rname, opts) {
            Err(e) => {
                for w in wants {
                    let o = outcome(&w.id, &rname, "failed", None, Default::default(), Some(format!("{e:#}")));
                    progress.done(&o);
                    outcomes.push(o);
                }
            }
            Ok((r, contents, bytes, signed)) => {
                for mut w in wants {
                    w.remote = rname.clone();
                    match plan(&r, &contents, &w.id, &store_logical, &store_host) {
                        Ok((job, link)) => jobs.push((w, job, link, if signed { bytes.clone() } else { vec![] })),
                        Err(e) => {
                            let o = outcome(&w.id, &rname, "failed", None, Default::default(), Some(format!("{e:#}")));
                            progress.done(&o);
                            outcomes.push(o);
                        }
                    }
                }
            }
        }
    }
    let retry = Retry { attempts: opts.attempts.max(1), first_wait: opts.first_wait };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 8).min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((w, job, link, index)) = jobs.get(i) else { break };
                    let shown = w.id.to_string();
                    let bar = progress.start(&shown);
                    // The version's archive may be there already (the profile names
                    // com.coreos.cl): it counts only if it is the one the index lists.
                    let existing = std::fs::symlink_metadata(&job.dest).is_ok();
                    let res = if existing {
                        check_existing(job).map(|()| download::Done::default())
                    } else {
                        download::download(&client, job, &retry, &*bar)
                    };
                    let res = res.and_then(|d| {
                        if !index.is_empty() {
                            trust::keep_index(&store_host, &w.remote, index)?;
                        }
                        if let Some(l) = link {
                            default_link(&job.dest, l)?;
                        }
                        Ok(d)
                    });
                    drop(bar);
                    let o = match res {
                        Ok(d) if existing => outcome(&w.id, &w.remote, "present", Some(job.shown.clone()), d, None),
                        Ok(d) => outcome(&w.id, &w.remote, "downloaded", Some(job.shown.clone()), d, None),
                        Err(e) => outcome(&w.id, &w.remote, "failed", None, Default::default(), Some(format!("{e:#}"))),
                    };
                    progress.done(&o);
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(o);
                }
            });
        }
    });
    outcomes.extend(results.into_inner().unwrap_or_else(|e| e.into_inner()));
    Ok(outcomes)
}

fn outcome(
    id: &ImageId,
    remote: &str,
    state: &'static str,
    path: Option<PathBuf>,
    d: download::Done,
    error: Option<String>,
) -> Outcome {
    let fetched = d.bytes.saturating_sub(d.resumed);
    Outcome {
        image: id.to_string(),
        remote: remote.to_string(),
        state,
        path,
        bytes: d.bytes,
        resumed_bytes: d.resumed,
        seconds: (d.seconds * 1000.0).round() / 1000.0,
        bytes_per_second: if d.seconds > 0.0 { (fetched as f64 / d.seconds) as u64 } else { 0 },
        error,
    }
}

/// `NAME:REF` from a registry remote, into the layout `NAME.torcx.oci` of
/// the store. With the remote's index (and its bytes, when signed), by the
/// digest the index lists, as tag `VERSION` (and `com.coreos.cl` when the
/// profile asks for the default); the signed index is kept beside it, for
/// `verify: signed`.
fn pull_from_registry(
    cfg: &Config,
    r: &Remote,
    id: &ImageId,
    index: Option<(&Contents, &[u8])>,
    opts: &Options,
    progress: &dyn Progress,
) -> Outcome {
    // One bar for the image: the bytes of its blobs so far.
    let bar = progress.start(&id.to_string());
    let blobs: std::sync::Mutex<BTreeMap<String, u64>> = Default::default();
    let each = |digest: &str, done: u64, _size: u64| {
        let mut b = blobs.lock().unwrap_or_else(|e| e.into_inner());
        b.insert(digest.to_string(), done);
        bar(b.values().sum(), None);
    };
    let res = (|| -> Result<super::pull::PullOutcome> {
        let (reference, name) = registry_source(r, index.map(|(c, _)| c), id)?;
        let version = opts.version.as_deref();
        let p = super::pull::pull(cfg, &reference, Some(&name.to_string()), version, false, opts.timeout, &each)?;
        if name.reference != id.reference {
            super::pull::tag_also(&cfg.host(&p.path), &name.reference, &id.reference)?;
        }
        if let Some((_, bytes)) = index.filter(|(_, b)| !b.is_empty()) {
            trust::keep_index(&cfg.host(&cfg.user_store(version)), &r.name, bytes)?;
        }
        Ok(p)
    })();
    drop(bar);
    match res {
        Ok(p) => {
            let d = download::Done { bytes: p.pulled.fetched_bytes, resumed: 0, seconds: p.seconds };
            outcome(id, &r.name, "downloaded", Some(p.path), d, None)
        }
        Err(e) => outcome(id, &r.name, "failed", None, Default::default(), Some(format!("{e:#}"))),
    }
}

/// What a registry remote pulls for `id`: the reference, and the image's
/// name and tag in the store. With an index, by the digest it lists for the
/// version (the default version for `com.coreos.cl`).
fn registry_source(r: &Remote, index: Option<&Contents>, id: &ImageId) -> Result<(String, ImageId)> {
    let Some(c) = index else { return Ok((r.registry_ref(&id.name, &id.reference).unwrap_or_default(), id.clone())) };
    let v = c.lookup(&id.name, &id.reference)?;
    let d: Digest = v.hash.parse().with_context(|| format!("image {}: version {}", id.name, v.version))?;
    if d.algo != Algo::Sha256 {
        bail!(
            "image {}: version {}: a registry image is listed by its sha256 manifest digest, not {}",
            id.name,
            v.version,
            d.algo
        );
    }
    Ok((r.registry_digest_ref(&id.name, &d.hex), ImageId::new(&id.name, &v.version)?))
}

/// Loads a remote and fetches and checks its index.
fn open_remote(cfg: &Config, client: &Client, name: &str, opts: &Options) -> Result<(Remote, Contents, Vec<u8>, bool)> {
    let r = remote::load(cfg, name, opts.version.as_deref())?;
    let url = r.index_url();
    let mut attempt = 0;
    let mut wait = opts.first_wait;
    let bytes = loop {
        attempt += 1;
        let res = client.open(&url, 0).and_then(|o| {
            let mut v = vec![];
            std::io::Read::read_to_end(&mut std::io::Read::take(o.reader, sig::MAX_INDEX + 1), &mut v)
                .map_err(|e| super::http::Failure { retry: true, error: anyhow!("GET {url}: {e}") })?;
            Ok(v)
        });
        match res {
            Ok(v) => break v,
            Err(f) if f.retry && attempt < opts.attempts => {
                log::warn!("remote {name}: {:#} (again in {} s)", f.error, wait.as_secs_f32());
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(f) => return Err(f.error.context(format!("remote {name}"))),
        }
    };
    if bytes.len() as u64 > sig::MAX_INDEX {
        bail!("remote {name}: {url}: the index is larger than {} bytes", sig::MAX_INDEX);
    }
    let (contents, t) =
        sig::open_index(&bytes, &r.keys, opts.allow_unsigned).with_context(|| format!("remote {name}: {url}"))?;
    if t == sig::Trust::Unsigned {
        log::warn!("remote {name}: {url} is not signed; accepted because of --allow-unsigned");
    }
    Ok((r, contents, bytes, t != sig::Trust::Unsigned))
}

/// Where the archive of `id` comes from and goes: its URL and hash from the
/// index, and `STORE/NAME:VERSION.torcx.FMT`. For `com.coreos.cl`, the link
/// `NAME:com.coreos.cl.torcx.FMT` to it as well, as Container Linux had.
fn plan(
    r: &Remote,
    c: &Contents,
    id: &ImageId,
    store_logical: &std::path::Path,
    store_host: &std::path::Path,
) -> Result<(Job, Option<PathBuf>)> {
    let v = c.lookup(&id.name, &id.reference)?;
    let digest: Digest = v.hash.parse().with_context(|| format!("image {}: version {}", id.name, v.version))?;
    let url = r.archive_url(&v.location)?;
    let file = url.rsplit('/').next().unwrap_or("");
    let file = file.split(['?', '#']).next().unwrap_or("");
    let version = ImageId::new(&id.name, &v.version)?;
    let format = match parse_archive_name(file) {
        Some((f, Ok(got))) if got == version => f,
        _ => bail!(
            "location {}: the file must be named {version}{} (or another torcx format)",
            crate::model::quoted(&v.location),
            Format::Tgz.suffix()
        ),
    };
    let name = format!("{version}{}", format.suffix());
    let link = (id.reference == DEFAULT_REFERENCE)
        .then(|| store_host.join(format!("{}:{DEFAULT_REFERENCE}{}", id.name, format.suffix())));
    Ok((Job { url, digest, dest: store_host.join(&name), shown: store_logical.join(&name) }, link))
}

/// An archive already at the job's destination must have the listed hash.
fn check_existing(job: &Job) -> Result<()> {
    let f = crate::sys::fsutil::open_regular(&job.dest)?;
    let got = crate::archive::digest::reader_digests(f, &[job.digest.algo])
        .with_context(|| format!("reading {}", job.shown.display()))?;
    if !got.contains(&job.digest) {
        bail!(
            "{} is there but is not the archive the index lists ({}); remove it to download it",
            job.shown.display(),
            job.digest
        );
    }
    Ok(())
}

/// `NAME:com.coreos.cl.torcx.FMT` → `NAME:VERSION.torcx.FMT`, replacing an older link.
fn default_link(dest: &std::path::Path, link: &std::path::Path) -> Result<()> {
    let target = dest.file_name().context("no file name")?;
    let tmp = link.with_file_name(format!(".{}.link", link.file_name().unwrap_or_default().to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).with_context(|| format!("linking {}", link.display()))?;
    std::fs::rename(&tmp, link).with_context(|| format!("linking {}", link.display()))?;
    // Lost in a power cut, the link would leave the boot without its default.
    crate::sys::fsutil::sync_dir(link.parent().context("no directory")?)?;
    Ok(())
}

/// `profile check --remote-only`: for each image of the profile that names
/// a remote, its remote loads, its index fetches and verifies, and lists
/// the image with a hash and a well-named file. Nothing is downloaded.
pub fn check_remotes(cfg: &Config, opts: &Options) -> Result<Vec<(String, Option<String>)>> {
    let (_, entries) = entries(cfg, opts.target.as_ref())?;
    let client = Client::new(opts.timeout);
    let store = cfg.user_store(opts.version.as_deref());
    let mut opened: BTreeMap<String, Result<(Remote, Contents), String>> = BTreeMap::new();
    let mut out = vec![];
    for e in entries {
        let Some(r) = e.remote.filter(|r| !r.is_empty()) else { continue };
        if e.reference.is_empty() {
            continue;
        }
        let id = ImageId::new(&e.name, &e.reference)?;
        let o = opened.entry(r.clone()).or_insert_with(|| match remote::load(cfg, &r, opts.version.as_deref()) {
            Ok(rem) if !rem.has_index() => Ok((rem, Contents::default())),
            _ => open_remote(cfg, &client, &r, opts).map(|(r, c, _, _)| (r, c)).map_err(|e| format!("{e:#}")),
        });
        let res = match o {
            Ok((rem, c)) if rem.is_registry() => registry_source(rem, rem.has_index().then_some(&*c), &id)
                .and_then(|(reference, _)| super::pull::check(cfg, &reference, opts.timeout))
                .map_err(|e| format!("remote {r}: {e:#}")),
            Err(e) => Err(e.clone()),
            Ok((rem, c)) => {
                plan(rem, c, &id, &store, &cfg.host(&store)).map(|_| ()).map_err(|e| format!("remote {r}: {e:#}"))
            }
        };
        out.push((id.to_string(), res.err()));
    }
    Ok(out)
}
