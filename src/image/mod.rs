//! Stage 8, image authoring and the stores' contents: `image list`,
//! `clear-versioned`, `pack`, `inspect` and its lint.

pub mod elf;
pub mod inspect;
pub mod lint;
pub mod list;
pub mod pack;
pub mod push;
