//! Stage 6, fetching: remotes (`remote.json`), their signed indexes, and
//! downloads into the stores (`profile populate`); and the trust that
//! outlives the download (`verify: signed`, `image verify`).

pub mod download;
pub mod http;
pub mod populate;
pub mod pull;
pub mod push;
pub mod registry;
pub mod remote;
pub mod sig;
pub mod trust;
pub mod verify;
