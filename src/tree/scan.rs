//! The manifest of an image that ships none: what upstream torcx scanned
//! for (reference/torcx-upstream.md, seed 000): binaries in the standard bin
//! directories, units in the standard unit directories.

use crate::model::manifest::ImageManifest;
use crate::model::units::{BIN_DIRS, UNIT_DIRS, is_dep_dir, is_unit_name};
use crate::tree::source::{ImageSource, Kind};
use anyhow::Result;
use std::path::{Component, Path, PathBuf};

/// The image manifest, or for an image without one the manifest a scan of
/// the standard directories gives (seeds 000 and 001); the flag says which.
pub fn manifest_or_scan(src: &dyn ImageSource) -> Result<(ImageManifest, bool)> {
    Ok(match crate::tree::source::read_manifest(src)? {
        Some(m) => (m, false),
        None => (default_manifest(src)?, true),
    })
}

/// The manifest an image without `.torcx/manifest.json` gets: one `bin`
/// entry per standard bin directory that exists (attach flattens it into
/// links to its files and symlinks), and one `units` entry per unit file and
/// `.wants`/`.requires` directory of the standard unit directories. A
/// directory that is a symlink to another of the list (`/bin -> usr/bin`)
/// is not listed twice; a unit name already found is not listed again.
pub fn default_manifest(src: &dyn ImageSource) -> Result<ImageManifest> {
    let mut m = ImageManifest::default();
    for d in existing_dirs(src, &BIN_DIRS) {
        m.bin.push(format!("/{d}"));
    }
    let mut seen: Vec<String> = vec![];
    for d in existing_dirs(src, &UNIT_DIRS) {
        let Ok(entries) = src.list(Path::new(d)) else { continue };
        for (name, kind) in entries {
            let wanted = match &kind {
                Kind::File => is_unit_name(&name),
                Kind::Dir => is_dep_dir(&name),
                // A link to a sibling is an alias (or a mask to /dev/null):
                // placing a copy under the alias would make a second unit.
                // A link elsewhere in the image is the unit's file.
                Kind::Symlink(t) => {
                    is_unit_name(&name)
                        && t.components().count() > 1
                        && matches!(src.stat(&Path::new(d).join(&name)), Ok(Some(Kind::File)))
                }
            };
            if wanted && !seen.contains(&name) {
                m.units.push(format!("/{d}/{name}"));
                seen.push(name);
            }
        }
    }
    Ok(m)
}

/// The directories of `list` that exist in the image (following symlinks
/// beneath its root), leaving out a symlink to another directory of the list.
fn existing_dirs<'a>(src: &dyn ImageSource, list: &[&'a str]) -> Vec<&'a str> {
    let is_dir = |d: &str| matches!(src.stat(Path::new(d)), Ok(Some(Kind::Dir)));
    let mut out = vec![];
    for d in list {
        if !is_dir(d) {
            continue;
        }
        // A symlink in the path (`/bin`, or `/lib` of `/lib/systemd/system`)
        // may make it another entry of the list.
        let resolved = resolve_lexically(src, Path::new(d));
        let real = |x: &str, r: &Path| r == Path::new(x);
        let pos = |x: &str| list.iter().position(|y| *y == x);
        // Of two names of one directory, keep the real one, else the first.
        let dup = list.iter().any(|o| {
            if o == d || !is_dir(o) {
                return false;
            }
            let ro = resolve_lexically(src, Path::new(o));
            ro == resolved && (real(o, &ro), pos(d)) > (real(d, &resolved), pos(o))
        });
        if !dup {
            out.push(*d);
        }
    }
    out
}

/// `rel` with the symlinks of its components replaced by their (relative)
/// targets, as far as they stay inside the image; for comparing two paths.
fn resolve_lexically(src: &dyn ImageSource, rel: &Path) -> PathBuf {
    let mut todo: Vec<PathBuf> = rel.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match Path::new(&c).components().next() {
            Some(Component::ParentDir) => {
                cur.pop();
                continue;
            }
            Some(Component::Normal(_)) => {}
            _ => continue,
        }
        let next = cur.join(&c);
        match src.lstat(&next) {
            Ok(Some(Kind::Symlink(t))) if !t.is_absolute() && hops < 40 => {
                hops += 1;
                todo.extend(t.components().rev().map(|c| PathBuf::from(c.as_os_str())));
            }
            _ => cur = next,
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::source::{Mem, Tree};

    #[test]
    fn scans_bins_and_units() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let w = |p: &str, d: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        };
        w("usr/bin/a", "a");
        w("usr/sbin/b", "b");
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        w("usr/lib/systemd/system/a.service", "[Service]\n");
        w("usr/lib/systemd/system/README", "not a unit");
        std::fs::create_dir_all(r.join("usr/lib/systemd/system/multi-user.target.wants")).unwrap();
        std::os::unix::fs::symlink("../a.service", r.join("usr/lib/systemd/system/multi-user.target.wants/a.service"))
            .unwrap();
        std::os::unix::fs::symlink("a.service", r.join("usr/lib/systemd/system/alias.service")).unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system/a.service.d")).unwrap();
        let m = default_manifest(&Tree::open(r).unwrap()).unwrap();
        assert_eq!(m.bin, ["/usr/bin", "/usr/sbin"]);
        assert_eq!(m.units, ["/usr/lib/systemd/system/a.service", "/usr/lib/systemd/system/multi-user.target.wants"]);

        // Two real directories, one unit name in both: the first wins.
        let t2 = tempfile::tempdir().unwrap();
        let r2 = t2.path();
        for (p, d) in [("bin/x", "x"), ("lib/systemd/system/x.service", "1"), ("usr/lib/systemd/system/x.service", "2")]
        {
            let p = r2.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        }
        let m = default_manifest(&Tree::open(r2).unwrap()).unwrap();
        assert_eq!(m.bin, ["/bin"]);
        assert_eq!(m.units, ["/usr/lib/systemd/system/x.service"]);

        // Nothing at all.
        let m = default_manifest(&Mem::default()).unwrap();
        assert_eq!(m, ImageManifest::default());
    }
}
