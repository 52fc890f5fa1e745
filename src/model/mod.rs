//! Stage 0, the vocabulary: names, the JSON documents (profiles, image
//! manifests, records' envelopes), the configuration and its paths, and
//! what a unit name is. Pure data and parsing: nothing here mounts or
//! writes.

pub mod config;
pub mod manifest;
pub mod names;
pub mod units;
