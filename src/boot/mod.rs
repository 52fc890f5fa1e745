//! Stage 7, the boot: the generator (plan, then write), `torcx apply`
//! (every image of the profile, status, seal) and the generator's cache.

pub mod apply;
pub mod cache;
pub mod check;
pub mod generator;
