//! Stage 1, the system: files beneath a root, mounts, loop devices,
//! systemd, logging. The only code that talks to the kernel or to systemd
//! directly; everything above calls these with the root it works under.

pub mod crash;
pub mod fsutil;
pub mod logger;
pub mod loopdev;
pub mod mount;
pub mod systemd;
