//! torcx: a boot-time addon manager for immutable Linux systems.
//!
//! The library behind the `torcx` and `torcx-generator` binary, folders in
//! the order data flows through them (a module never imports from a later
//! one): `model` → `sys` → `archive` → `tree` → `store` → `profile` →
//! `attach` → `boot` → `image` → `cli`. See the README's "Architecture".

pub mod archive;
pub mod attach;
pub mod boot;
pub mod cli;
pub mod fetch;
pub mod image;
pub mod model;
pub mod profile;
pub mod store;
pub mod sys;
pub mod tree;
