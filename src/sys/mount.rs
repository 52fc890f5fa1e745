//! Mounts: the per-image tmpfs, its read-only remount, and reading mountinfo.

use anyhow::{Context, Result};
use rustix::mount::{MountFlags, UnmountFlags};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Mounts a fresh tmpfs for one image: `nodev,nosuid`, bounded in size and inodes.
///
/// `huge=within_size` lets a kernel from 6.14 on store a file in folios as
/// large as the writes that fill it (never past the file's end, so nothing
/// is wasted): unpacking then allocates, charges and copies into a few
/// large folios instead of one 4 KiB page at a time. A kernel built
/// without transparent huge pages refuses the option: the tmpfs is then
/// mounted without it.
pub fn mount_tmpfs(dir: &Path, size: u64) -> Result<()> {
    let opts = format!("mode=0755,size={size},nr_inodes={}", (size / 4096).max(1024));
    let mount = |opts: &str| {
        let data = CString::new(opts).unwrap();
        rustix::mount::mount("torcx", dir, "tmpfs", MountFlags::NODEV | MountFlags::NOSUID, Some(data.as_c_str()))
    };
    match mount(&format!("{opts},huge=within_size")) {
        Err(rustix::io::Errno::INVAL) => mount(&opts),
        other => other,
    }
    .with_context(|| format!("mounting tmpfs on {}", dir.display()))
}

/// Bytes the image tmpfs trees (source `torcx`) mounted below `under`, but
/// the one at `except`, hold or may still take: what a read-only tree uses,
/// the whole size of one still being written.
pub fn tmpfs_taken_below(under: &Path, except: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return 0 };
    let Ok(under) = std::fs::canonicalize(under) else { return 0 };
    let except = std::fs::canonicalize(except).unwrap_or_else(|_| except.to_path_buf());
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fstype == "tmpfs" && m.source == "torcx")
        .filter(|m| m.mount_point.starts_with(&under) && !m.mount_point.starts_with(&except))
        .filter_map(|m| {
            let s = rustix::fs::statvfs(&m.mount_point).ok()?;
            let ro = m.options.split(',').any(|o| o == "ro");
            Some(if ro { s.f_blocks.saturating_sub(s.f_bfree) } else { s.f_blocks } * s.f_frsize)
        })
        .sum()
}

/// Makes a mount read-only, keeping `nodev,nosuid` (a remount resets them otherwise).
pub fn remount_ro(dir: &Path) -> Result<()> {
    let _no_child_starting = CHILDREN.write().unwrap_or_else(|e| e.into_inner());
    let remount = || rustix::mount::mount_remount(dir, MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID, "");
    // A child's copies of the files are closed when its exec is done, but
    // the kernel may release the last of them a moment after `spawn` has
    // returned: `EBUSY` is given that moment (50 ms at most) to pass.
    let mut res = remount();
    for _ in 0..50 {
        if res != Err(rustix::io::Errno::BUSY) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        res = remount();
    }
    res.with_context(|| format!("remounting {} read-only", dir.display()))
}

/// A child this process starts holds a copy of every open file from fork
/// to exec, those another thread is writing into a tree it unpacks
/// included; while it does, that tree cannot be made read-only (`EBUSY`:
/// a boot failed an image so, 2 to 4 times in 20 with tar and squashfs
/// images side by side) nor unmounted at once. Starting a child holds this
/// shared until its exec is done (`Command::spawn` returns then);
/// remounting and unmounting a tree hold it alone.
pub static CHILDREN: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Mounts a read-only file system image (a block device, or an erofs file).
pub fn mount_ro(source: &Path, dir: &Path, fstype: &str) -> Result<()> {
    rustix::mount::mount(source, dir, fstype, MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID, None)
        .with_context(|| format!("mounting {} ({fstype}) on {}", source.display(), dir.display()))
}

/// Binds `src` at `dir`, then makes the bind read-only, `nodev,nosuid`.
pub fn bind_ro(src: &Path, dir: &Path) -> Result<()> {
    rustix::mount::mount_bind(src, dir).with_context(|| format!("binding {} at {}", src.display(), dir.display()))?;
    rustix::mount::mount_remount(
        dir,
        MountFlags::BIND | MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID,
        "",
    )
    .with_context(|| format!("remounting {} read-only", dir.display()))
}

/// Unmounts; a busy tree (a service still runs from it) is detached lazily.
pub fn unmount_lazy(dir: &Path) -> Result<bool> {
    let _no_child_starting = CHILDREN.write().unwrap_or_else(|e| e.into_inner());
    match rustix::mount::unmount(dir, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(dir, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                .with_context(|| format!("unmounting {}", dir.display()))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("unmounting {}", dir.display())),
    }
}

/// One line of `/proc/self/mountinfo`, the parts torcx looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub options: String,
    pub fstype: String,
    pub source: String,
}

/// `\040` and friends are octal escapes in mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                options: f.get(5)?.to_string(),
                fstype: p.first()?.to_string(),
                source: unescape(p.get(1)?),
            })
        })
        .collect()
}

/// Whether something is mounted at `dir`: one statx (the kernel's
/// mount-root attribute, Linux ≥ 5.8), instead of reading the whole mount
/// table, which costs more with every image mounted.
pub fn is_mountpoint(dir: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    match rustix::fs::statx(
        rustix::fs::CWD,
        dir,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Ok(_) => mounted_at(dir).is_some(),
        Err(_) => false,
    }
}

/// The topmost mount at exactly `dir`, if any.
pub fn mounted_at(dir: &Path) -> Option<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = std::fs::canonicalize(dir).ok()?;
    parse_mountinfo(&text).into_iter().rev().find(|m| m.mount_point == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        let t = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                 63 43 0:39 / /run/torcx/unpack/x ro,nosuid,nodev,relatime shared:5 - tmpfs torcx ro,size=1024k\n";
        let m = parse_mountinfo(t);
        assert_eq!(m[0].mount_point, Path::new("/mnt/a b"));
        assert_eq!(m[1].options, "ro,nosuid,nodev,relatime");
        assert_eq!((m[1].fstype.as_str(), m[1].source.as_str()), ("tmpfs", "torcx"));
    }
}
