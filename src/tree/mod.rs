//! Stage 3, image trees: the one entry policy every archive entry passes,
//! the confined extractor, the image's files seen the same way from a tree
//! or from an archive, and the scan of an image without a manifest.

pub mod extract;
pub mod scan;
pub mod source;
