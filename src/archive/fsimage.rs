//! The one reader of squashfs and erofs images that does not mount them:
//! their index lists every node, and a file's data is read only on demand.
//! The generator (read-only, in a sandbox that cannot mount) reads the
//! manifest and the units this way; `image inspect` walks every node.
//! Which nodes are acceptable is decided by `tree::policy`, not here.

use crate::archive::Format;
use anyhow::{Context, Result, anyhow, bail};
use std::io::Read;
use std::path::{Path, PathBuf};

/// An opened squashfs or erofs image.
pub enum FsImage {
    Squashfs(Box<backhand::FilesystemReader<'static>>),
    Erofs(Box<erofs_rs::EroFS<erofs_rs::backend::MmapImage>>),
}

/// What a node is. Files carry what [`FsImage::reader`] needs to read them.
pub enum Node<'a> {
    Dir,
    File {
        size: u64,
        handle: Handle<'a>,
    },
    Link(PathBuf),
    /// A device node, FIFO or socket: named, never read.
    Special(Special),
}

/// The nodes a tree is not made of (`tree::policy` decides what they mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Device,
    Fifo,
    Socket,
    /// erofs tells these two apart only by mode bits it does not expose.
    FifoOrSocket,
}

pub enum Handle<'a> {
    Squashfs(&'a backhand::SquashfsFileReader),
    Erofs(erofs_rs::types::Inode),
}

/// One node of the image, its path relative to the image root.
pub struct Entry<'a> {
    pub path: PathBuf,
    pub mode: u32,
    pub node: Node<'a>,
}

/// The most inodes an image may declare before its index is read (the
/// entry policy's limit, and one for the root): both readers build their
/// index in memory in proportion to it.
pub const MAX_INODES: u64 = 131_072 + 1;

/// A damaged image (kind `corrupt`).
fn corrupt(format: Format, why: impl std::fmt::Display) -> anyhow::Error {
    crate::model::failure::error(crate::model::failure::Kind::Corrupt, format!("not a {} image: {why}", format.name()))
}

/// Refuses a file without the format's magic number, and an image whose
/// superblock declares more than [`MAX_INODES`].
pub fn check_inode_count(path: &Path, format: Format) -> Result<()> {
    use std::os::unix::fs::FileExt;
    // squashfs: magic "hsqs" at 0, `inodes` (u32) at 4; erofs: magic
    // 0xE0F5E1E2 at 1024, `inos` (u64) at 1024 + 16.
    let (magic_at, magic, at, len) = if format == Format::Squashfs {
        (0u64, 0x7371_7368u32, 4u64, 4usize)
    } else {
        (1024, 0xE0F5_E1E2, 1024 + 16, 8)
    };
    // Never waits on a FIFO put in an archive's place.
    let f = crate::sys::fsutil::open_regular_io(path).with_context(|| format!("opening {}", path.display()))?;
    let mut m = [0u8; 4];
    if f.read_exact_at(&mut m, magic_at).is_err() {
        return Err(corrupt(format, "too short"));
    }
    if u32::from_le_bytes(m) != magic {
        return Err(corrupt(format, "no magic number"));
    }
    let mut b = [0u8; 8];
    if f.read_exact_at(&mut b[..len], at).is_err() {
        return Err(corrupt(format, "too short"));
    }
    let n = u64::from_le_bytes(b);
    if n > MAX_INODES {
        let what = format!("{n} inodes: refused as an archive bomb (at most {})", MAX_INODES - 1);
        return Err(crate::model::failure::error(crate::model::failure::Kind::Limit, what));
    }
    Ok(())
}

/// A reader's error, never empty.
fn said(e: impl std::fmt::Display + std::fmt::Debug) -> String {
    let s = e.to_string();
    if s.trim().is_empty() { format!("{e:?}") } else { s }
}

/// What backhand's error means. Built without its `error-strings` feature
/// (which brings `thiserror` and `tracing` for this alone), its `Display`
/// and `Debug` print nothing: the variant is all there is.
fn squashfs_said(e: backhand::BackhandError) -> String {
    use backhand::BackhandError as E;
    match e {
        E::StdIo(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => "cut short (a table past its end)".into(),
        E::StdIo(io) => format!("reading it: {io}"),
        E::UnsupportedCompression(c) => format!("unsupported compression {c:?}"),
        E::MissingCompressor => "no compressor for it in this build".into(),
        E::UnsupportedSquashfsVersion(a, b) => format!("unsupported version {a}.{b}"),
        E::InvalidCompressionOption => "invalid compression options".into(),
        E::InvalidIdTable | E::IdNotFoundInTable => "invalid uid/gid table".into(),
        E::InvalidFilePath | E::UndefineFileName => "an entry with an invalid name".into(),
        E::DuplicatedFileName => "an entry named twice".into(),
        E::TryReserveError(_) => "an index too large to hold".into(),
        _ => "corrupted or invalid".into(),
    }
}

fn rel(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_path_buf()
}

impl FsImage {
    pub fn open(path: &Path, format: Format) -> Result<FsImage> {
        check_inode_count(path, format)?;
        match format {
            Format::Squashfs => {
                let f = std::io::BufReader::new(
                    crate::sys::fsutil::open_regular_io(path).with_context(|| format!("opening {}", path.display()))?,
                );
                let fs = backhand::FilesystemReader::from_reader(f).map_err(|e| corrupt(format, squashfs_said(e)))?;
                Ok(FsImage::Squashfs(Box::new(fs)))
            }
            Format::Erofs => {
                // SAFETY: store archives are not modified in place (they are
                // replaced by rename), and a truncation would only make a read fail.
                let image = unsafe { erofs_rs::backend::MmapImage::new_from_path(path) }
                    .with_context(|| format!("opening {}", path.display()))?;
                let fs = erofs_rs::EroFS::new(image).map_err(|e| corrupt(format, said(e)))?;
                Ok(FsImage::Erofs(Box::new(fs)))
            }
            other => bail!("{} archives are not file system images", other.name()),
        }
    }

    /// Every node but the root, parents before their children.
    pub fn entries(&self) -> Result<Vec<Entry<'_>>> {
        let mut out = vec![];
        match self {
            FsImage::Squashfs(fs) => {
                for n in fs.files() {
                    let path = rel(&n.fullpath);
                    if path.as_os_str().is_empty() {
                        continue;
                    }
                    let node = match &n.inner {
                        backhand::InnerNode::File(r) => {
                            Node::File { size: r.file_len() as u64, handle: Handle::Squashfs(r) }
                        }
                        backhand::InnerNode::Dir(_) => Node::Dir,
                        backhand::InnerNode::Symlink(l) => Node::Link(l.link.clone()),
                        backhand::InnerNode::CharacterDevice(_) | backhand::InnerNode::BlockDevice(_) => {
                            Node::Special(Special::Device)
                        }
                        backhand::InnerNode::NamedPipe => Node::Special(Special::Fifo),
                        backhand::InnerNode::Socket => Node::Special(Special::Socket),
                    };
                    out.push(Entry { path, mode: u32::from(n.header.permissions), node });
                }
            }
            FsImage::Erofs(fs) => {
                use std::os::unix::fs::PermissionsExt;
                for e in fs.walk_dir("/").map_err(|e| anyhow!("reading erofs directory: {e}"))? {
                    let e = e.map_err(|e| anyhow!("reading erofs directory: {e}"))?;
                    let path = rel(Path::new(&e.dir_entry.path().to_string_lossy().into_owned()));
                    if path.as_os_str().is_empty() {
                        continue;
                    }
                    let mode = e.inode.permissions().mode();
                    let node = if e.inode.is_dir() {
                        Node::Dir
                    } else if e.inode.is_symlink() {
                        let t = fs.read_link_inode(e.inode).map_err(|e| anyhow!("reading erofs link: {e}"))?;
                        Node::Link(PathBuf::from(t.to_string_lossy().into_owned()))
                    } else if e.inode.is_file() {
                        Node::File { size: e.inode.data_size(), handle: Handle::Erofs(e.inode) }
                    } else if e.inode.device().is_some() {
                        Node::Special(Special::Device)
                    } else {
                        Node::Special(Special::FifoOrSocket)
                    };
                    out.push(Entry { path, mode, node });
                }
            }
        }
        Ok(out)
    }

    /// The data of a file node.
    pub fn reader<'a>(&'a self, h: &Handle<'a>) -> Result<Box<dyn Read + 'a>> {
        Ok(match (self, h) {
            (FsImage::Squashfs(fs), Handle::Squashfs(r)) => Box::new(fs.file(r).reader()),
            (FsImage::Erofs(fs), Handle::Erofs(inode)) => {
                Box::new(fs.open_inode_file(*inode).map_err(|e| anyhow!("opening erofs file: {e}"))?)
            }
            _ => bail!("a file handle of another image"),
        })
    }

    /// The whole data of a file node, refused past `max` bytes.
    pub fn read(&self, h: &Handle<'_>, size: u64, max: u64) -> Result<Vec<u8>> {
        if size > max {
            bail!("{size} bytes (at most {max})");
        }
        let mut v = Vec::with_capacity(size as usize);
        self.reader(h)?.take(max + 1).read_to_end(&mut v).context("reading file")?;
        if v.len() as u64 > max {
            bail!("more than {max} bytes");
        }
        Ok(v)
    }
}
