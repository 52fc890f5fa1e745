//! Stage 2, archives: what each format is and how its bytes are read (a
//! decompressed tar stream, the squashfs/erofs index, an OCI layout). It
//! yields entries; deciding which entries are acceptable is `tree`'s job.

pub mod barren;
pub mod digest;
pub mod fsimage;
pub mod guard;
pub mod gunzip;
pub mod oci;
mod oci_doc;
pub mod oci_layout;
pub mod stream;
#[doc(hidden)]
pub mod testkit;

use crate::model::config::DEFAULT_REFERENCE;
use crate::model::names::{self, ImageId};
use std::path::PathBuf;

/// Which file an archive is, as far as its bytes go: the same device and
/// inode, size, mtime and ctime, and the same first and last 4 KiB. The
/// kernel changes the ctime at a write, but not always: a page written
/// again through a shared mapping before it is written back changes no
/// time, and a read-only image (a `/usr` swapped by an update) carries the
/// times its builder gave, which a reproducible build keeps. The ends catch
/// much of what the times miss (a gzip archive ends with the checksum of
/// all it holds, a zstd one may; a squashfs or erofs image starts and ends
/// with its tables' offsets), not all of it: the generator cache also keys
/// on the OS (see `boot::cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    /// The first 8 bytes of the sha256 of the file's first and last 4 KiB.
    pub ends: u64,
}

impl FileId {
    /// The identity of the open regular file `f`, of which fstat said `s`.
    pub fn of_open(f: &std::fs::File, s: &rustix::fs::Stat) -> std::io::Result<FileId> {
        Ok(FileId {
            dev: s.st_dev,
            ino: s.st_ino,
            size: s.st_size as u64,
            mtime: (s.st_mtime, s.st_mtime_nsec as i64),
            ctime: (s.st_ctime, s.st_ctime_nsec as i64),
            ends: ends(f, s.st_size as u64)?,
        })
    }

    /// The identity of the open regular file `f` as it is now.
    pub fn of_file(f: &std::fs::File) -> std::io::Result<FileId> {
        FileId::of_open(f, &rustix::fs::fstat(f)?)
    }
}

/// See [`FileId::ends`]: two reads at most, from the page cache at a later
/// boot's second look (the generator's).
fn ends(f: &std::fs::File, size: u64) -> std::io::Result<u64> {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    const END: u64 = 4096;
    let mut h = sha2::Sha256::new();
    let mut buf = [0u8; END as usize];
    for at in [0, size.saturating_sub(END).max(END.min(size))] {
        let want = (size - at).min(END) as usize;
        f.read_exact_at(&mut buf[..want], at)?;
        h.update(&buf[..want]);
    }
    let d = h.finalize();
    Ok(u64::from_le_bytes(d[..8].try_into().expect("8 of 32 bytes")))
}

/// What an archive holds and how it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tgz,
    #[serde(rename = "tar.zst")]
    TarZst,
    Squashfs,
    Erofs,
    /// A gzip tar of an OCI image layout (seed 001): `NAME.torcx.oci.tgz`,
    /// one image `NAME:TAG` per tag.
    Oci,
    /// An OCI image layout directory, `NAME.torcx.oci/`, as `image pull`
    /// writes it: every tag of a repository shares its blobs. Read as the
    /// bundle it would be (see `oci_layout`).
    #[serde(rename = "oci-layout")]
    OciLayout,
}

impl Format {
    pub const ALL: [Format; 6] =
        [Format::Tgz, Format::TarZst, Format::Squashfs, Format::Erofs, Format::Oci, Format::OciLayout];

    pub fn suffix(self) -> &'static str {
        match self {
            Format::Tgz => ".torcx.tgz",
            Format::TarZst => ".torcx.tar.zst",
            Format::Squashfs => ".torcx.squashfs",
            Format::Erofs => ".torcx.erofs",
            Format::Oci => ".torcx.oci.tgz",
            Format::OciLayout => ".torcx.oci",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Tgz => "tgz",
            Format::TarZst => "tar.zst",
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
            Format::Oci => "oci",
            Format::OciLayout => "oci-layout",
        }
    }

    /// Mounted formats cost no unpacking, so they beat tar formats of the
    /// same image wherever they are (as upstream did for squashfs).
    pub fn mounted(self) -> bool {
        matches!(self, Format::Squashfs | Format::Erofs)
    }

    /// OCI images: a bundle file or a layout directory, one image per tag.
    pub fn is_oci(self) -> bool {
        matches!(self, Format::Oci | Format::OciLayout)
    }
}

/// An archive found in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub id: ImageId,
    pub format: Format,
    /// The path as the booted system sees it (the symlink, when it is one).
    pub path: PathBuf,
    /// The path to open.
    pub host: PathBuf,
}

/// Splits `NAME:REF.torcx.FMT`; `None` for files that are not archives.
pub fn parse_archive_name(file: &str) -> Option<(Format, Result<ImageId, anyhow::Error>)> {
    let format = Format::ALL.into_iter().find(|f| file.ends_with(f.suffix()))?;
    let base = &file[..file.len() - format.suffix().len()];
    let id = match base.rsplit_once(':') {
        Some((n, r)) => ImageId::new(n, r),
        None => names::validate_name(base).map(|_| ImageId { name: base.into(), reference: DEFAULT_REFERENCE.into() }),
    };
    Some((format, id))
}
