//! OCI bundles (seed 001): a gzip tar of an OCI image layout whose index is
//! annotated `"com.coreos.torcx.bundle.v0": "yes"`; its tags are references.

use crate::extract::{Limits, Stats};
use crate::source::Mem;
use anyhow::{Result, bail};
use std::path::Path;

/// The tags (references) a bundle offers.
pub fn list_tags(path: &Path) -> Result<Vec<String>> {
    let _ = path;
    bail!("OCI bundles are not supported yet")
}

/// Applies the layers of `tag` in order into the empty directory `dest`.
pub fn unpack(path: &Path, tag: &str, dest: &Path, limits: Limits) -> Result<Stats> {
    let _ = (path, tag, dest, limits);
    bail!("OCI bundles are not supported yet")
}

/// What the generator needs (manifest, unit files, links) of `tag`, without unpacking.
pub fn read_units(path: &Path, tag: &str) -> Result<Mem> {
    let _ = (path, tag);
    bail!("OCI bundles are not supported yet")
}
