//! Reading squashfs and erofs images without mounting them, for the
//! generator (which runs read-only, in a sandbox that cannot mount): the
//! manifest, and the unit files and links it lists. Both formats index their
//! metadata, so this reads kilobytes, not the image.

use crate::model::manifest;
use crate::sys::fsutil;
use crate::tree::source::{MANIFEST_PATH, Mem};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

enum Node<F> {
    File(F),
    Dir,
    Link(PathBuf),
}

/// Builds the generator's view from a listing of the image, reading only
/// the manifest and the files under the unit paths it lists.
fn build<F>(nodes: BTreeMap<PathBuf, Node<F>>, mut read: impl FnMut(&F) -> Result<Vec<u8>>) -> Result<Mem> {
    let mut mem = Mem::default();
    for (p, n) in &nodes {
        match n {
            Node::Dir => mem.insert_dir(p.clone()),
            Node::Link(t) => mem.insert_link(p.clone(), t.clone()),
            Node::File(_) => {}
        }
    }
    let units: Vec<String> = match nodes.get(Path::new(MANIFEST_PATH)) {
        Some(Node::File(mf)) => {
            let text = read(mf)?;
            let m = manifest::parse_image_manifest(&String::from_utf8_lossy(&text)).context(MANIFEST_PATH)?;
            mem.insert_file(PathBuf::from(MANIFEST_PATH), text);
            m.units
        }
        // No manifest: the scan will look at the standard unit directories.
        _ => crate::tree::scan::UNIT_DIRS.iter().map(|d| format!("/{d}")).collect(),
    };
    for u in &units {
        let Ok(rel) = fsutil::relative_inside(u) else { continue };
        let real = mem.resolve_path(&rel)?;
        for (p, n) in nodes.range(real.clone()..) {
            if !p.starts_with(&real) {
                break;
            }
            // The entry itself, or its direct children (as propagation reads them).
            if let Node::File(f) = n
                && (p == &real || p.parent() == Some(real.as_path()))
            {
                mem.insert_file(p.clone(), read(f)?);
            }
        }
    }
    Ok(mem)
}

fn rel(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_path_buf()
}

pub fn squashfs(path: &Path) -> Result<Mem> {
    let f = std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let fs = backhand::FilesystemReader::from_reader(f).map_err(|e| anyhow!("not a squashfs image: {e}"))?;
    let mut nodes = BTreeMap::new();
    for n in fs.files() {
        let p = rel(&n.fullpath);
        if p.as_os_str().is_empty() {
            continue;
        }
        let node = match &n.inner {
            backhand::InnerNode::File(r) => Node::File(r),
            backhand::InnerNode::Dir(_) => Node::Dir,
            backhand::InnerNode::Symlink(l) => Node::Link(l.link.clone()),
            _ => continue,
        };
        nodes.insert(p, node);
    }
    build(nodes, |r| {
        let mut v = vec![];
        fs.file(r).reader().read_to_end(&mut v).context("reading squashfs file")?;
        Ok(v)
    })
}

pub fn erofs(path: &Path) -> Result<Mem> {
    // SAFETY: store archives are not modified in place (they are replaced by
    // rename), and a truncation would only make this read fail.
    let image = unsafe { erofs_rs::backend::MmapImage::new_from_path(path) }
        .with_context(|| format!("opening {}", path.display()))?;
    let fs = erofs_rs::EroFS::new(image).map_err(|e| anyhow!("not an erofs image: {e}"))?;
    let mut nodes = BTreeMap::new();
    for e in fs.walk_dir("/").map_err(|e| anyhow!("reading erofs directory: {e}"))? {
        let e = e.map_err(|e| anyhow!("reading erofs directory: {e}"))?;
        let p = rel(Path::new(&e.dir_entry.path().to_string_lossy().into_owned()));
        let node = if e.inode.is_dir() {
            Node::Dir
        } else if e.inode.is_symlink() {
            let t = fs.read_link_inode(e.inode.clone()).map_err(|e| anyhow!("reading erofs link: {e}"))?;
            Node::Link(PathBuf::from(t.to_string_lossy().into_owned()))
        } else if e.inode.is_file() {
            Node::File(e.inode.clone())
        } else {
            continue;
        };
        nodes.insert(p, node);
    }
    build(nodes, |inode| {
        let mut f = fs.open_inode_file(inode.clone()).map_err(|e| anyhow!("opening erofs file: {e}"))?;
        let mut v = vec![];
        f.read_to_end(&mut v).context("reading erofs file")?;
        Ok(v)
    })
}
