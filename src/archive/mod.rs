//! Stage 2, archives: what each format is and how its bytes are read (a
//! decompressed tar stream, the squashfs/erofs index, an OCI layout). It
//! yields entries; deciding which entries are acceptable is `tree`'s job.

pub mod fsimage;
pub mod oci;
pub mod stream;
