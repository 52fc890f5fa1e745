//! Small filesystem helpers: atomic writes, the torcx lock, confined opens.

use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Writes `data` to `path` so a reader sees the old file or the new one,
/// never a part: a temporary file in the same directory (a fresh name,
/// created exclusively), synced, renamed over `path`, and the directory
/// synced, so the new file survives a power cut once this returns.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(path, data, mode, true).map(drop)
}

/// Like [`atomic_write`], without waiting for the disk: for what can be
/// rebuilt (a cache), where a lost or torn write only costs time.
pub fn atomic_write_unsynced(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(path, data, mode, false).map(drop)
}

/// `create_dir_all`, with a file in the way named as such (mkdir's own
/// word for it, "File exists", reads as if all were well), kind conflict.
pub fn make_dirs(dir: &Path) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let what =
                format!("creating {}: it (or a directory above it) exists and is not a directory", dir.display());
            Err(crate::model::failure::error(crate::model::failure::Kind::Conflict, what))
        }
        r => r.with_context(|| format!("creating {}", dir.display())),
    }
}

/// This process's id, asked of the kernel once (torcx forks only to exec).
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Returns the file written, now at `path`, open for writing.
fn write_replacing(path: &Path, data: &[u8], mode: u32, durable: bool) -> Result<File> {
    let dir = path.parent().context("no parent directory")?;
    if durable {
        let missing: Vec<&Path> = dir.ancestors().take_while(|a| std::fs::symlink_metadata(a).is_err()).collect();
        make_dirs(dir)?;
        // A new directory's name is in its parent: synced too, top down.
        for d in missing.iter().rev() {
            sync_dir(d.parent().unwrap_or(Path::new("/")))?;
        }
    }
    // The temporary file is made here rather than by tempfile, whose errors
    // carry the temporary name: the message names the file being written.
    let mut tmp = None;
    let res = (|| -> std::io::Result<File> {
        // The directory is made only when the first try says it is missing:
        // records are written three times per image at every boot.
        let (t, mut f) = match create_beside(path, mode) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !durable => {
                make_dirs(dir).map_err(std::io::Error::other)?;
                create_beside(path, mode)?
            }
            r => r?,
        };
        tmp = Some(t.clone());
        f.write_all(data)?;
        // Set whatever the umask or a default ACL of the directory took.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&t, path)?;
        tmp = None;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(f)
    })();
    if let Some(t) = tmp {
        let _ = std::fs::remove_file(t);
    }
    res.with_context(|| format!("writing {}", path.display()))
}

/// Creates `path` with `data` and `mode`, appearing whole or not at all (an
/// unnamed file linked in once written), so a crash never leaves half of
/// it; fails with `AlreadyExists` if there is a file there.
pub fn create_whole(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    create_whole_kept(path, data, mode).map(drop)
}

/// [`create_whole`], returning the file, open for writing.
pub fn create_whole_kept(path: &Path, data: &[u8], mode: u32) -> std::io::Result<File> {
    use rustix::fs::{AtFlags, CWD};
    let fd = rustix::fs::open(
        path.parent().unwrap_or(Path::new(".")),
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    let mut f = File::from(fd);
    f.write_all(data)?;
    // Whatever the umask or a default ACL of the directory took.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    rustix::fs::linkat(&f, "", CWD, path, AtFlags::EMPTY_PATH)?;
    Ok(f)
}

/// [`atomic_write_unsynced`], returning the file now at `path`, open for
/// writing. `first`: the file is most likely not there yet, so it is
/// created whole (no temporary name, no rename) if it can be; whatever
/// stops that (a file there, a missing directory, a filesystem with no
/// unnamed files) goes the other way, which also names the file in its
/// errors.
pub fn write_kept_unsynced(path: &Path, data: &[u8], mode: u32, first: bool) -> Result<File> {
    if first && let Ok(f) = create_whole_kept(path, data, mode) {
        return Ok(f);
    }
    write_replacing(path, data, mode, false)
}

/// Whether the open file `f` is (still) the one at `path`.
pub fn is_at(f: &File, path: &Path) -> bool {
    let (Ok(a), Ok(b)) = (rustix::fs::fstat(f), rustix::fs::lstat(path)) else { return false };
    a.st_nlink > 0 && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// A new file `.NAME.tmp.XXXXXXXX` beside `path`, created exclusively with
/// `mode` (less the umask, or what a default ACL allows).
fn create_beside(path: &Path, mode: u32) -> std::io::Result<(PathBuf, File)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..64 {
        let n = nanos ^ (u64::from(pid()) << 32) ^ COUNT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        let t = path.with_file_name(format!(".{name}.tmp.{:08x}", n as u32 ^ (n >> 32) as u32));
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&t) {
            Ok(f) => return Ok((t, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::EEXIST))
}

/// Syncs directory `dir`: the names renamed or linked into it survive a
/// power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}

/// Why a file was refused before it was read: kept in the `io::Error`, so
/// callers that name the file their own way still tell it from an I/O error.
#[derive(Debug)]
enum Refused {
    NotRegular,
    TooLarge(u64),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotRegular => write!(f, "not a regular file"),
            Refused::TooLarge(max) => write!(f, "larger than the limit of {max} bytes"),
        }
    }
}

impl std::error::Error for Refused {}

fn refused(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<Refused>())
}

/// Opens `path` for reading and makes sure it is a regular file, without
/// waiting on a FIFO (O_NONBLOCK, which regular files ignore): the fd and
/// what fstat said of it.
fn open_checked(path: &Path) -> std::io::Result<(OwnedFd, rustix::fs::Stat)> {
    let fd =
        rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::other(Refused::NotRegular));
    }
    Ok((fd, st))
}

/// [`open_regular`] with the error as it is, for a caller that names the
/// file its own way: "not a regular file" for a FIFO, a device, a directory.
pub fn open_regular_io(path: &Path) -> std::io::Result<File> {
    open_regular_stat_io(path).map(|(f, _)| f)
}

/// [`open_regular_io`], with what fstat said of the file opened (no second
/// look: its identity, its size).
pub fn open_regular_stat_io(path: &Path) -> std::io::Result<(File, rustix::fs::Stat)> {
    let (fd, st) = open_checked(path)?;
    // Kept open (a loop device reads through it): O_NONBLOCK is cleared,
    // though regular files ignore it.
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok((File::from(fd), st))
}

/// Opens a regular file for reading (following symlinks): a FIFO, a device
/// or a directory is refused at once, never waited on or read forever.
pub fn open_regular(path: &Path) -> Result<File> {
    open_regular_stat(path).map(|(f, _)| f)
}

/// [`open_regular`], with what fstat said of the file opened.
pub fn open_regular_stat(path: &Path) -> Result<(File, rustix::fs::Stat)> {
    open_regular_stat_io(path).map_err(|e| named(path, e, "opening"))
}

/// An error about `path`: a refusal says what the file is, any other error
/// what was being done.
fn named(path: &Path, e: std::io::Error, doing: &str) -> anyhow::Error {
    match refused(&e) {
        true => anyhow::anyhow!("{}: {e}", path.display()),
        false => anyhow::Error::new(e).context(format!("{doing} {}", path.display())),
    }
}

/// All of the open regular file `fd` if it holds at most `max` bytes; a
/// larger one is an error, not cut. The buffer is sized from `size` (what
/// fstat said): one read, and the one that finds the end.
fn read_limited(fd: OwnedFd, size: u64, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if size > max {
        return Err(std::io::Error::other(Refused::TooLarge(max)));
    }
    let mut v = Vec::with_capacity(size as usize + 1);
    // A file that grows meanwhile is still cut at the bound.
    File::from(fd).take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(std::io::Error::other(Refused::TooLarge(max)));
    }
    Ok(v)
}

/// [`read_bounded`] with the error as it is ("larger than the limit of N
/// bytes", "not a regular file", or the system's).
pub fn read_bounded_io(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let (fd, st) = open_checked(path)?;
    read_limited(fd, st.st_size as u64, max)
}

/// [`read_bounded_io`], read under a shared `flock` of the file: never
/// while a writer that takes the exclusive one (for the time of one write)
/// writes it. Anyone who can read the file can lock it too: after 50 ms
/// without the lock it is read all the same, never waited on for good.
pub fn read_bounded_shared_io(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{FlockOperation, flock};
    let (fd, st) = open_checked(path)?;
    for _ in 0..200 {
        match flock(&fd, FlockOperation::NonBlockingLockShared) {
            Err(rustix::io::Errno::WOULDBLOCK) => std::thread::sleep(std::time::Duration::from_micros(250)),
            _ => break,
        }
    }
    read_limited(fd, st.st_size as u64, max)
}

/// A whole file of at most `max` bytes; a larger one is an error, not cut.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let (fd, st) = open_checked(path).map_err(|e| named(path, e, "opening"))?;
    read_limited(fd, st.st_size as u64, max).map_err(|e| named(path, e, "reading"))
}

/// The length of a partial download left by an earlier run; anything but a
/// plain file of ours (a symlink planted there, a FIFO, a hard link) is removed.
pub fn partial_len(part: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(part) {
        Ok(m) if m.file_type().is_file() && m.nlink() == 1 => m.len(),
        Ok(m) if m.is_dir() => 0,
        Ok(_) => {
            let _ = std::fs::remove_file(part);
            0
        }
        Err(_) => 0,
    }
}

/// Opens (or creates) a partial download without following a symlink or
/// blocking on a FIFO, and makes sure it is a plain file with no other name.
pub fn open_partial(part: &Path) -> Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let dir = part.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(part, flags, Mode::from_raw_mode(0o600))
        .with_context(|| format!("opening {}", part.display()))?;
    let st = rustix::fs::fstat(&fd).with_context(|| format!("opening {}", part.display()))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile || st.st_nlink != 1 {
        anyhow::bail!("{}: not a plain file", part.display());
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty()).with_context(|| format!("opening {}", part.display()))?;
    Ok(std::fs::File::from(fd))
}

/// A new file next to `dest` (`.NAME.WHAT.XXXXXX`, created exclusively),
/// removed when dropped unless persisted.
pub fn temp_file_beside(dest: &Path, what: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new().prefix(&format!(".{name}.{what}.")).tempfile_in(dir)
}

/// A new directory (mode 0700) removed with everything in it when dropped,
/// read-only directories included (an unpacked image tree has them).
pub struct ScratchDir(Option<tempfile::TempDir>);

impl ScratchDir {
    /// In `dir`, named `PREFIX.XXXXXX`.
    pub fn new_in(dir: &Path, prefix: &str) -> Result<ScratchDir> {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(dir)
            .with_context(|| format!("creating a temporary directory in {}", dir.display()))?;
        Ok(ScratchDir(Some(d)))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch directory").path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            make_writable(d.path());
            let _ = d.close();
        }
    }
}

/// The torcx lock: every command that changes state holds it.
pub struct Lock(#[allow(dead_code)] File);

impl Lock {
    pub fn take(path: &Path) -> Result<Lock> {
        make_dirs(path.parent().unwrap()).with_context(|| format!("taking the lock {}", path.display()))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        if f.try_lock().is_err() {
            log::warn!("waiting for another torcx command to release {}", path.display());
            f.lock().with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(Lock(f))
    }
}

/// A manifest or archive path as a relative path of plain components:
/// `/bin/x` → `bin/x`. `..` is refused, never clamped.
pub fn relative_inside(p: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(format!("{p:?} contains '..'")),
            Component::Prefix(_) => return Err(format!("{p:?} is not a path")),
        }
    }
    Ok(out)
}

/// Opens `rel` beneath `dir` with the kernel refusing any escape (`..`,
/// absolute symlinks, magic links). `Ok(None)` when it does not exist.
pub fn open_beneath(dir: &OwnedFd, rel: &Path, flags: OFlags) -> std::io::Result<Option<OwnedFd>> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    match rustix::fs::openat2(
        dir,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("opening {}", path.display()))
}

/// Gives every directory from `p` down owner rwx (a tree unpacked with
/// read-only directories), so it can be removed.
pub fn make_writable(p: &Path) {
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

/// Lower-case hex, as digests are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative() {
        assert_eq!(relative_inside("/bin/x").unwrap(), Path::new("bin/x"));
        assert_eq!(relative_inside("lib/systemd/system/a.wants/").unwrap(), Path::new("lib/systemd/system/a.wants"));
        assert!(relative_inside("/../../etc/shadow").is_err());
        assert!(relative_inside("/a/../b").is_err());
    }

    #[test]
    fn atomic() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d/f");
        atomic_write(&p, b"one", 0o444).unwrap();
        atomic_write(&p, b"two", 0o444).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o444);
        assert_eq!(std::fs::read_dir(t.path().join("d")).unwrap().count(), 1);
    }
}
