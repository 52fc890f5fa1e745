//! The record of an attachment (`/run/torcx/attached/NAME.json`): what was
//! placed, read back by detach, reattach, status and the next apply.

use super::plan::{Class, CopyMode};
use super::portable::Sandbox;
use crate::archive::Format;
use crate::model::config::{self, Config};
use crate::model::names::ImageId;
use crate::model::units::is_unit_name;
use crate::sys::fsutil::{atomic_write_unsynced, is_at, write_kept_unsynced};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const RECORD_KIND: &str = "torcx-attachment-v0";

/// The largest record read: a few hundred bytes a placed file.
const MAX_RECORD: u64 = 64 << 20;

crate::model::string_enum! {
    /// Where an attachment is in its life: an intent while files are placed.
    RecordState {
        /// Files are being placed, or a reattach is removing the old ones
        /// (or was, when a command was killed): the next attach or apply
        /// cleans up and starts over.
        Attaching = "attaching",
        Attached = "attached",
    }
}

crate::model::string_enum! {
    /// Who attached an image.
    #[derive(Default)]
    RecordOrigin {
        /// `torcx apply` (the boot-time apply).
        Boot = "boot",
        /// `torcx attach` or `torcx reattach` on the running system.
        #[default]
        Runtime = "runtime",
    }
}

crate::model::string_enum! {
    /// What a recorded path is (the `type` field of a recorded file).
    FileKind {
        File = "file",
        Symlink = "symlink",
        Dir = "dir",
    }
}

crate::model::string_enum! {
    /// What an attachment was unpacked from: an archive format, or a directory.
    RecordFormat {
        Tgz = "tgz",
        TarZst = "tar.zst",
        Squashfs = "squashfs",
        Erofs = "erofs",
        Oci = "oci",
        Directory = "directory",
    }
}

impl From<Format> for RecordFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Tgz => RecordFormat::Tgz,
            Format::TarZst => RecordFormat::TarZst,
            Format::Squashfs => RecordFormat::Squashfs,
            Format::Erofs => RecordFormat::Erofs,
            Format::Oci | Format::OciLayout => RecordFormat::Oci,
        }
    }
}

/// The record of one attachment: `/run/torcx/attached/NAME.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub reference: String,
    pub archive: PathBuf,
    pub format: RecordFormat,
    /// `sha256:HEX` of the archive as it was unpacked.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub copy: CopyMode,
    #[serde(default)]
    pub portable: Option<Sandbox>,
    /// The loop device a squashfs or erofs image is mounted from (it frees
    /// itself when the tree is unmounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_device: Option<PathBuf>,
    /// The image tree and whether torcx mounted it.
    pub tree: PathBuf,
    pub mounted: bool,
    /// `boot` (torcx apply) or `runtime` (torcx attach).
    pub origin: RecordOrigin,
    /// `attaching` while files are being placed (an intent), then `attached`.
    pub state: RecordState,
    pub files: Vec<RecordedFile>,
}

/// A record file its writer keeps open (see [`Record::write_kept`]).
pub struct Held {
    file: std::fs::File,
    len: usize,
}

/// The largest record written over in place: what one write puts in one
/// page of the file.
const PAGE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedFile {
    pub path: PathBuf,
    pub class: Class,
    #[serde(rename = "type")]
    pub kind: FileKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    kind: String,
    value: T,
}

impl Record {
    pub fn id(&self) -> ImageId {
        ImageId { name: self.name.clone(), reference: self.reference.clone() }
    }
    pub fn path(cfg: &Config, name: &str) -> PathBuf {
        cfg.attached_dir().join(format!("{name}.json"))
    }
    /// The record file's bytes: the envelope, pretty-printed, and a newline.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let doc = Envelope { kind: RECORD_KIND.into(), value: self };
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        Ok(text)
    }
    /// Parses a record file's bytes (the envelope of [`RECORD_KIND`]).
    pub fn from_json(b: &[u8]) -> Result<Record> {
        let e: Envelope<Record> = serde_json::from_slice(b)?;
        if e.kind != RECORD_KIND {
            bail!("unknown kind {:?}", e.kind);
        }
        Ok(e.value)
    }
    /// Replaced whole (a reader or a killed writer never sees half), but not
    /// synced: a record describes mounts and files under /run, which a power
    /// cut takes away with it. (Three writes per image at every boot.)
    pub fn write(&self, cfg: &Config) -> Result<()> {
        atomic_write_unsynced(&cfg.host(&Record::path(cfg, &self.name)), &self.to_json()?, 0o644)
    }
    /// [`Record::write`] for the writer of an attachment (it holds the lock),
    /// which keeps the record it wrote open in `held`: a new version of a
    /// record of at most a page is written over it in one write, which a
    /// killed writer does whole or not at all (a shorter version is padded
    /// with blanks, which JSON ignores). Readers take a shared lock on the
    /// record while they read it (see [`Record::load`]); the write takes an
    /// exclusive one, without waiting: while anyone reads, the record is
    /// replaced whole instead, so a reader never sees part of a version and
    /// never holds up the writer. `first`: no record is there yet (the
    /// caller found none): it is created whole.
    pub fn write_kept(&self, cfg: &Config, held: &mut Option<Held>, first: bool) -> Result<()> {
        use rustix::fs::{FlockOperation, flock};
        use std::os::unix::fs::FileExt;
        let path = cfg.host(&Record::path(cfg, &self.name));
        let mut data = self.to_json()?;
        if let Some(h) = held.as_mut()
            && data.len().max(h.len) <= PAGE
            && is_at(&h.file, &path)
            && flock(&h.file, FlockOperation::NonBlockingLockExclusive).is_ok()
        {
            data.resize(data.len().max(h.len), b' ');
            let written = h.file.write_all_at(&data, 0);
            let _ = flock(&h.file, FlockOperation::Unlock);
            written.with_context(|| format!("writing {}", path.display()))?;
            h.len = data.len();
            return Ok(());
        }
        let file = write_kept_unsynced(&path, &data, 0o644, first && held.is_none())?;
        *held = Some(Held { file, len: data.len() });
        Ok(())
    }
    pub fn load(cfg: &Config, name: &str) -> Result<Option<Record>> {
        let p = Record::path(cfg, name);
        // A FIFO in a record's place is refused, not waited on.
        // Under a shared lock: never while its writer writes it over (see
        // `write_kept`).
        match crate::sys::fsutil::read_bounded_shared_io(&cfg.host(&p), MAX_RECORD) {
            Ok(b) => Record::from_json(&b).map(Some).with_context(|| format!("record {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("record {}", p.display())),
        }
    }
    /// Every record that can be read; one that cannot is logged (with the
    /// command that removes it) and hides none of the others.
    pub fn load_all(cfg: &Config) -> Vec<Record> {
        let mut out = vec![];
        let Ok(rd) = std::fs::read_dir(cfg.host(&cfg.attached_dir())) else {
            return out;
        };
        let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        for n in names {
            let Some(name) = n.strip_suffix(".json").filter(|_| !n.starts_with('.')) else { continue };
            match Record::load(cfg, name) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => log::error!("{e:#}; `torcx detach --force {name}` removes it"),
            }
        }
        out
    }
}

impl Record {
    /// Unit files the image placed at the top of the units directory.
    pub fn units(&self) -> Vec<String> {
        let units = Path::new(config::UNITS_DIR);
        self.files
            .iter()
            .filter(|f| f.class == Class::Unit && f.kind != FileKind::Dir && f.path.parent() == Some(units))
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| is_unit_name(n))
            .collect()
    }
    /// Units the image enables (links in its `.wants`/`.requires` directories).
    pub fn enabled_units(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.class == Class::Unit && f.kind == FileKind::Symlink)
            .filter(|f| {
                f.path.parent().and_then(|p| p.file_name()).is_some_and(|d| {
                    let d = d.to_string_lossy();
                    d.ends_with(".wants") || d.ends_with(".requires")
                })
            })
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
    pub fn binaries(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| f.class == Class::Bin && f.kind == FileKind::Symlink)
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}
