//! Stores: directories of archives, searched in upstream's order.

use crate::archive::{Archive, Format, parse_archive_name};
use crate::model::config::{Config, OEM_DIR};
use crate::model::names::ImageId;
use std::path::{Path, PathBuf};

/// One store directory: where it is on the booted system, and where to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDir {
    pub logical: PathBuf,
    pub host: PathBuf,
}

/// Every store, in search order.
pub fn store_dirs(cfg: &Config) -> Vec<StoreDir> {
    let mut logical = vec![];
    if cfg.vendor_store {
        logical.push(cfg.vendor_dir().join("store"));
    }
    let oem = Path::new(OEM_DIR).join("store");
    if let Some(v) = &cfg.version_id {
        logical.push(oem.join(v));
    }
    logical.push(oem);
    logical.extend(cfg.config_stores.iter().cloned());
    let user = cfg.base_dir.join("store");
    if let Some(v) = &cfg.version_id {
        logical.push(user.join(v));
    }
    logical.push(user);
    let mut dirs: Vec<StoreDir> = logical.into_iter().map(|l| StoreDir { host: cfg.host(&l), logical: l }).collect();
    for s in &cfg.extra_stores {
        dirs.push(StoreDir { logical: s.clone(), host: cfg.host(s) });
    }
    dirs
}

/// All archives, first occurrence of an image winning except that a mounted
/// format replaces an earlier tar one.
pub fn scan(cfg: &Config) -> Vec<Archive> {
    let mut found: Vec<Archive> = vec![];
    for dir in store_dirs(cfg) {
        let Ok(rd) = std::fs::read_dir(&dir.host) else {
            continue;
        };
        // With the type the directory gives (no stat for a plain file: a
        // store may hold hundreds).
        let mut names: Vec<(String, Option<std::fs::FileType>)> = rd
            .filter_map(|e| {
                let e = e.ok()?;
                Some((e.file_name().into_string().ok()?, e.file_type().ok()))
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (file, kind) in names {
            let Some((format, id)) = parse_archive_name(&file) else {
                continue;
            };
            let host = dir.host.join(&file);
            let id = match id {
                Ok(id) => id,
                Err(e) => {
                    log::warn!("ignoring archive {}: {e:#}", dir.logical.join(&file).display());
                    continue;
                }
            };
            // Follows symlinks: a dangling link is not an archive, nor a
            // directory, but for an OCI layout, which is one.
            let want_dir = format == Format::OciLayout;
            let is = |t: std::fs::FileType| if want_dir { t.is_dir() } else { t.is_file() };
            let usable = match kind {
                Some(t) if !t.is_symlink() => is(t),
                _ => std::fs::metadata(&host).is_ok_and(|m| is(m.file_type())),
            };
            if !usable {
                continue;
            }
            // A bundle offers one image per tag.
            let ids = if format.is_oci() {
                match crate::archive::oci::list_tags(&host) {
                    Ok(tags) => tags.iter().filter_map(|t| ImageId::new(&id.name, t).ok()).collect(),
                    Err(e) => {
                        log::warn!("ignoring bundle {}: {e:#}", dir.logical.join(&file).display());
                        continue;
                    }
                }
            } else {
                vec![id]
            };
            for id in ids {
                add(&mut found, Archive { id, format, path: dir.logical.join(&file), host: host.clone() });
            }
        }
    }
    found
}

/// Why no archive of `id` was found when a store has a file by its name:
/// the first such file, and what is wrong with it (a dangling link, a
/// directory, a FIFO), for a message better than "missing".
pub fn unusable(cfg: &Config, id: &ImageId) -> Option<(PathBuf, String)> {
    for dir in store_dirs(cfg) {
        let Ok(rd) = std::fs::read_dir(&dir.host) else { continue };
        let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        for file in names {
            match parse_archive_name(&file) {
                Some((Format::OciLayout, _)) | None => continue,
                Some((_, Ok(found))) if &found == id => {}
                Some(_) => continue,
            }
            let host = dir.host.join(&file);
            let why = match (std::fs::symlink_metadata(&host), std::fs::metadata(&host)) {
                (Ok(l), Err(_)) if l.file_type().is_symlink() => {
                    let to = std::fs::read_link(&host).map(|t| t.display().to_string()).unwrap_or_default();
                    format!("a link to {to}, which does not exist")
                }
                (_, Ok(m)) if m.is_dir() => "a directory, not an archive".to_string(),
                (_, Ok(m)) if !m.is_file() => "not a regular file".to_string(),
                _ => continue,
            };
            return Some((dir.logical.join(&file), why));
        }
    }
    None
}

/// Adds `a` unless its image is already found, with the one exception.
fn add(found: &mut Vec<Archive>, a: Archive) {
    match found.iter_mut().find(|x| x.id == a.id) {
        None => found.push(a),
        Some(prev) if a.format.mounted() && !prev.format.mounted() => {
            log::info!("{} replaces {} for {}", a.path.display(), prev.path.display(), a.id);
            *prev = a;
        }
        Some(prev) => {
            log::info!("ignoring {}: {} already found at {}", a.path.display(), a.id, prev.path.display())
        }
    }
}

#[cfg(test)]
pub fn find(cfg: &Config, id: &ImageId) -> Option<Archive> {
    scan(cfg).into_iter().find(|a| &a.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        let (f, id) = parse_archive_name("docker:20.10.torcx.tgz").unwrap();
        assert_eq!((f, id.unwrap().to_string()), (Format::Tgz, "docker:20.10".to_string()));
        let (f, id) = parse_archive_name("docker.torcx.tar.zst").unwrap();
        assert_eq!((f, id.unwrap().to_string()), (Format::TarZst, "docker:com.coreos.cl".to_string()));
        assert!(parse_archive_name("docker:1.tgz").is_none());
        assert!(parse_archive_name("..:1.torcx.tgz").unwrap().1.is_err());
        assert!(parse_archive_name("a:b:c.torcx.tgz").unwrap().1.is_err());
    }

    #[test]
    fn order_and_precedence() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let touch = |p: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        };
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "VERSION_ID=999.9\n").unwrap();
        let env = |k: &str| (k == "TORCX_STOREPATH").then(|| "/extra".to_string());
        let cfg =
            Config::load_with_env(&crate::model::config::Overrides { root: Some(root.into()), stores: vec![] }, &env)
                .unwrap();
        let dirs: Vec<_> = store_dirs(&cfg).into_iter().map(|d| d.logical.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/usr/share/torcx/store",
                "/usr/share/oem/torcx/store/999.9",
                "/usr/share/oem/torcx/store",
                "/var/lib/torcx/store/999.9",
                "/var/lib/torcx/store",
                "/extra"
            ]
        );
        touch("var/lib/torcx/store/a:1.torcx.tgz");
        touch("var/lib/torcx/store/999.9/a:1.torcx.tgz");
        touch("extra/a:1.torcx.squashfs");
        touch("extra/b:2.torcx.tgz");
        std::os::unix::fs::symlink("b:2.torcx.tgz", root.join("extra/c:3.torcx.tgz")).unwrap();
        std::os::unix::fs::symlink("missing", root.join("extra/d:4.torcx.tgz")).unwrap();
        let all = scan(&cfg);
        let got: Vec<_> = all.iter().map(|a| (a.id.to_string(), a.path.display().to_string())).collect();
        assert_eq!(
            got,
            [
                ("a:1".to_string(), "/extra/a:1.torcx.squashfs".to_string()),
                ("b:2".into(), "/extra/b:2.torcx.tgz".into()),
                ("c:3".into(), "/extra/c:3.torcx.tgz".into()),
            ]
        );
        std::fs::remove_file(root.join("extra/a:1.torcx.squashfs")).unwrap();
        let a = find(&cfg, &ImageId::new("a", "1").unwrap()).unwrap();
        assert_eq!(a.path, Path::new("/var/lib/torcx/store/999.9/a:1.torcx.tgz"));
    }
}
