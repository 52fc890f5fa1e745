//! One archive from a URL into a store: streamed to `.FILE.part` in the
//! store and hashed as it streams, resumed with a range request after an
//! interruption (in this run or the next), checked whole against the index,
//! then synced, renamed into place, and the directory synced.

use super::http::{Client, Failure};
use crate::archive::digest::Hasher;
use crate::model::remote::Digest;
use crate::sys::fsutil;
use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest archive accepted from a remote.
pub const MAX_ARCHIVE: u64 = 16 << 30;

pub struct Job {
    pub url: String,
    pub digest: Digest,
    /// The archive's final path (host), and as the booted system sees it.
    pub dest: PathBuf,
    pub shown: PathBuf,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    pub bytes: u64,
    /// Bytes a partial download of an earlier attempt or run already had.
    pub resumed: u64,
    pub seconds: f64,
}

pub struct Retry {
    pub attempts: u32,
    pub first_wait: Duration,
}

/// `progress(done, total)` is called as bytes arrive.
pub fn download(
    client: &Client,
    job: &Job,
    retry: &Retry,
    progress: &(dyn Fn(u64, Option<u64>) + Sync),
) -> Result<Done> {
    let started = Instant::now();
    let dir = job.dest.parent().context("no store directory")?;
    let file = job.dest.file_name().context("no file name")?.to_string_lossy().into_owned();
    let part = dir.join(format!(".{file}.part"));
    let mut st = State { resumed: 0, hasher: Hasher::new(&[job.digest.algo]), busy: false, ident: (0, 0) };
    let mut restarted = false;
    let mut wait = retry.first_wait;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match attempt_once(client, job, &part, progress, &mut st) {
            Ok(bytes) => {
                let got = std::mem::replace(&mut st.hasher, Hasher::new(&[job.digest.algo])).finish().remove(0);
                if got != job.digest {
                    if st.resumed > 0 && !restarted {
                        // The part may be of an older file of the same name: once more from the start.
                        log::warn!("{}: hash mismatch after resuming; downloading it again whole", job.url);
                        let _ = std::fs::remove_file(&part);
                        restarted = true;
                        st.resumed = 0;
                        continue;
                    }
                    let _ = std::fs::remove_file(&part);
                    bail!("hash mismatch: the index lists {}, the download is {got}", job.digest);
                }
                install(&part, &job.dest, st.ident).inspect_err(|_| {
                    let _ = std::fs::remove_file(&part);
                })?;
                return Ok(Done { bytes, resumed: st.resumed, seconds: started.elapsed().as_secs_f64() });
            }
            Err(f) if f.retry && attempt < retry.attempts => {
                log::warn!(
                    "{:#} (attempt {attempt} of {}; again in {} s)",
                    f.error,
                    retry.attempts,
                    wait.as_secs_f32()
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(f) => {
                // An interrupted transfer keeps its bytes for the next run; nothing else is
                // left. Another download's part is not ours to remove.
                if !st.busy && (!f.retry || std::fs::metadata(&part).map(|m| m.len() == 0).unwrap_or(true)) {
                    let _ = std::fs::remove_file(&part);
                }
                return Err(f.error);
            }
        }
    }
}

/// What the attempts of one download share.
struct State {
    /// Bytes an earlier attempt or run had when this download resumed.
    resumed: u64,
    /// The part's bytes so far, hashed.
    hasher: Hasher,
    /// Another torcx holds the part's lock.
    busy: bool,
    /// The part's device and inode, to check that the installed file is it.
    ident: (u64, u64),
}

/// One request: appends to the part from where it ends. Returns the part's
/// length once the body ended where the server said it would.
fn attempt_once(
    client: &Client,
    job: &Job,
    part: &Path,
    progress: &(dyn Fn(u64, Option<u64>) + Sync),
    st: &mut State,
) -> Result<u64, Failure> {
    let io = |e: std::io::Error, what: &str| Failure { retry: false, error: anyhow!("{what} {}: {e}", part.display()) };
    let have = fsutil::partial_len(part);
    let opened = match client.open(&job.url, have) {
        Err(f) if have > 0 && f.error.to_string().contains("HTTP 416") => {
            // The part is no prefix of this file: start over.
            let _ = std::fs::remove_file(part);
            client.open(&job.url, 0)?
        }
        r => r?,
    };
    // Created only once the server answered: a refused request leaves nothing.
    let mut f = fsutil::open_partial(part).map_err(|e| Failure { retry: false, error: e })?;
    if f.try_lock().is_err() {
        st.busy = true;
        return Err(Failure { retry: false, error: anyhow!("{}: another torcx is downloading it", part.display()) });
    }
    {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata().map_err(|e| io(e, "reading"))?;
        st.ident = (m.dev(), m.ino());
    }
    let start = if opened.start == 0 { 0 } else { have };
    if start == 0 && have > 0 {
        log::info!("{}: the server sent the whole file; not resuming", job.url);
    }
    if start > 0 && st.resumed == 0 {
        st.resumed = start;
    }
    f.set_len(start).map_err(|e| io(e, "truncating"))?;
    if st.hasher.bytes != start {
        // Bytes from an earlier run: hashed once, before the rest streams in.
        st.hasher = Hasher::new(&[job.digest.algo]);
        hash_prefix(part, start, &mut st.hasher).map_err(|e| io(e, "reading"))?;
    }
    f.seek(std::io::SeekFrom::Start(start)).map_err(|e| io(e, "seeking"))?;
    if let Some(t) = opened.total
        && t > MAX_ARCHIVE
    {
        return Err(Failure::fatal_msg(format!("{}: {t} bytes, over the limit of {MAX_ARCHIVE}", job.url)));
    }
    let mut r = opened.reader;
    let mut buf = vec![0u8; 128 * 1024];
    let mut done = start;
    progress(done, opened.total);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = f.sync_data();
                return Err(Failure {
                    retry: true,
                    error: anyhow!("{}: interrupted after {done} bytes: {e}", job.url),
                });
            }
        };
        st.hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(|e| io(e, "writing"))?;
        done += n as u64;
        if done > MAX_ARCHIVE {
            return Err(Failure::fatal_msg(format!("{}: larger than the limit of {MAX_ARCHIVE} bytes", job.url)));
        }
        progress(done, opened.total);
    }
    if let Some(t) = opened.total
        && done != t
    {
        let _ = f.sync_data();
        return Err(Failure { retry: true, error: anyhow!("{}: the body ended after {done} of {t} bytes", job.url) });
    }
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| io(e, "chmod"))?;
    }
    f.sync_all().map_err(|e| io(e, "syncing"))?;
    Ok(done)
}

impl Failure {
    fn fatal_msg(m: String) -> Failure {
        Failure { retry: false, error: anyhow!(m) }
    }
}

/// The first `len` bytes of the part, into `h`.
fn hash_prefix(part: &Path, len: u64, h: &mut Hasher) -> std::io::Result<()> {
    let mut f = std::fs::File::open(part)?.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// Renames the verified part into place (checking it is still the file that
/// was verified) and syncs the directory.
fn install(part: &Path, dest: &Path, written: (u64, u64)) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::rename(part, dest).with_context(|| format!("renaming {} to {}", part.display(), dest.display()))?;
    let after = std::fs::symlink_metadata(dest).with_context(|| format!("reading {}", dest.display()))?;
    if (after.dev(), after.ino()) != written || !after.file_type().is_file() {
        let _ = std::fs::remove_file(dest);
        bail!("{}: replaced while it was installed", dest.display());
    }
    let dir = dest.parent().context("no directory")?;
    crate::sys::fsutil::sync_dir(dir)
}
