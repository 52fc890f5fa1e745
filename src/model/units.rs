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
    dep_dir_unit(name).is_some()
}

/// The unit whose dependencies the directory `name` adds to
/// (`multi-user.target` for `multi-user.target.wants`).
pub fn dep_dir_unit(name: &str) -> Option<&str> {
    [".wants", ".requires", ".upholds"].iter().find_map(|s| name.strip_suffix(s)).filter(|u| is_unit_name(u))
}

/// The template of an instance: `getty@.service` for `getty@tty1.service`.
pub fn template_of(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let dot = rest.rfind('.')?;
    (dot > 0).then(|| format!("{prefix}@{}", &rest[dot..]))
}

/// Why `name` may not be a unit an image ships, if it may not: systemd
/// reads more into some names than one unit. `foo-.service` is the
/// drop-in prefix of every `foo-*.service`.
pub fn refuse_unit_name(name: &str) -> Option<&'static str> {
    if !is_unit_name(name) {
        return Some(
            "is not a unit name (a unit ends in .service, .socket, .target, .timer, .path, .mount, .automount, .swap, .slice, .scope or .device)",
        );
    }
    // systemd's own alphabet for unit names; anything else would reach
    // logs, tables and unit files as it is.
    if name.len() > 255 || !name.chars().all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c)) {
        return Some("holds characters systemd does not allow in a unit name (letters, digits and : - _ . \\ @)");
    }
    let stem = &name[..name.rfind('.').unwrap_or(name.len())];
    if stem.ends_with('-') {
        return Some("ends in '-': systemd applies its drop-ins to every unit whose name starts so");
    }
    None
}

/// Directories whose files and symlinks are the image's binaries.
pub const BIN_DIRS: [&str; 4] = ["bin", "usr/bin", "sbin", "usr/sbin"];
/// Directories whose unit files and `.wants`/`.requires` directories are the image's units.
pub const UNIT_DIRS: [&str; 2] = ["usr/lib/systemd/system", "lib/systemd/system"];
