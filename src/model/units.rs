//! What systemd calls a unit: the names torcx places as units, and the
//! dependency directories (`.wants`, `.requires`) that enable them.

/// The unit types an image may ship.
pub const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// `foo.service`, `a@.socket`: a name with a unit type's suffix.
pub fn is_unit_name(name: &str) -> bool {
    UNIT_SUFFIXES.iter().any(|s| name.len() > s.len() && name.ends_with(s))
}

/// `multi-user.target.wants`, `foo.socket.requires`.
pub fn is_dep_dir(name: &str) -> bool {
    [".wants", ".requires"].iter().any(|s| name.strip_suffix(s).is_some_and(is_unit_name))
}

/// Directories whose files and symlinks are the image's binaries.
pub const BIN_DIRS: [&str; 4] = ["bin", "usr/bin", "sbin", "usr/sbin"];
/// Directories whose unit files and `.wants`/`.requires` directories are the image's units.
pub const UNIT_DIRS: [&str; 2] = ["usr/lib/systemd/system", "lib/systemd/system"];
