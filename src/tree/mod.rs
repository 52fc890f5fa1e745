//! Stage 3, image trees: the one entry policy every archive entry passes,
//! the confined extractor, the image's files seen the same way from a tree
//! or from an archive, and the scan of an image without a manifest.

pub mod cached;
pub mod extract;
pub mod isolated;
pub mod layer;
pub mod limits;
pub mod lookups;
pub mod oci;
pub mod oci_unpack;
pub mod policy;
mod refusal;
pub mod scan;
pub mod source;

use crate::archive::fsimage::FsImage;
use crate::archive::{Archive, Format};
use source::Mem;

/// What the generator needs of an archive of any format (its manifest, unit
/// files and links), read without mounting or unpacking it, within `limits`
/// ([`limits::Limits::reading`]).
pub fn read_units(a: &Archive, limits: &limits::Limits) -> anyhow::Result<Mem> {
    match a.format {
        Format::Tgz | Format::TarZst => Mem::from_archive_with(a, limits),
        Format::Squashfs | Format::Erofs => Mem::from_fsimage(&FsImage::open(&a.host, a.format)?),
        Format::Oci | Format::OciLayout => oci::read_units_with(&a.host, &a.id.reference, limits),
    }
}
