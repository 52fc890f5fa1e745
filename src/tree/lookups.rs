//! What planning an image asked of its tree, and the answers. At boot a
//! squashfs or erofs image the generator cache vouches for is the same
//! bytes as when it was first attached, so the same questions have the same
//! answers: the cache keeps them, and a later apply plans without looking
//! up a single path in the freshly mounted image (each lookup there is a
//! read through the loop device: half of mounting 50 small images).

use super::policy;
use super::source::{ImageSource, Kind, Mem, Tree};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Past this many answers an image's are not kept: the cache entry stays
/// small, and such an image is looked up in its tree as before.
const MAX_ANSWERS: usize = 4096;

/// The answers of [`ImageSource::lstat`], `stat` and `list`, by path
/// relative to the image root. What is not here is asked of the tree.
#[derive(Default, Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lookups {
    lstat: Answers,
    stat: Answers,
    list: BTreeMap<String, Vec<(String, Answer)>>,
}

/// A [`Kind`] as kept in the cache (paths as UTF-8 text).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Answer {
    File,
    Dir,
    Symlink(String),
}

impl Answer {
    fn of(k: &Kind) -> Option<Answer> {
        Some(match k {
            Kind::File => Answer::File,
            Kind::Dir => Answer::Dir,
            Kind::Symlink(t) => Answer::Symlink(t.to_str()?.to_string()),
        })
    }
    fn kind(&self) -> Kind {
        match self {
            Answer::File => Kind::File,
            Answer::Dir => Kind::Dir,
            Answer::Symlink(t) => Kind::Symlink(PathBuf::from(t)),
        }
    }
}

impl Lookups {
    pub fn lstat(&self, rel: &Path) -> Option<Option<Kind>> {
        self.lstat.get(rel.to_str()?).map(|a| a.as_ref().map(Answer::kind))
    }
    pub fn stat(&self, rel: &Path) -> Option<Option<Kind>> {
        self.stat.get(rel.to_str()?).map(|a| a.as_ref().map(Answer::kind))
    }
    pub fn list(&self, rel: &Path) -> Option<Vec<(String, Kind)>> {
        self.list.get(rel.to_str()?).map(|v| v.iter().map(|(n, a)| (n.clone(), a.kind())).collect())
    }
    /// Refuses answers the tree could not have given (they are read back
    /// from a file in /var): a path or a link the entry policy refuses, a
    /// listed name that is not one plain name, too many answers. A planner
    /// joins listed names to the bin directory: "../x" would leave it.
    pub fn check(&self) -> Result<()> {
        if self.answers() > MAX_ANSWERS {
            bail!("more than {MAX_ANSWERS} lookups");
        }
        let path = |p: &str| -> Result<usize> {
            if p.is_empty() {
                return Ok(0);
            }
            let comps = policy::components(p.as_bytes())?;
            if comps.iter().collect::<PathBuf>().as_os_str() != p {
                bail!("{p:?}: not a plain relative path");
            }
            Ok(comps.len())
        };
        let link = |p: &str, depth: usize, a: &Answer| -> Result<()> {
            match a {
                Answer::Symlink(t) => policy::check_symlink(p.as_bytes(), depth, t.as_bytes()),
                _ => Ok(()),
            }
        };
        for (p, a) in &self.lstat {
            let n = path(p)?;
            if let Some(a) = a {
                link(p, n.saturating_sub(1), a)?;
            }
        }
        // stat follows symlinks: it never answers one.
        for (p, a) in &self.stat {
            path(p)?;
            if let Some(Answer::Symlink(_)) = a {
                bail!("{p:?}: a symlink where symlinks are followed");
            }
        }
        for (p, entries) in &self.list {
            let n = path(p)?;
            for (name, a) in entries {
                if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) || name.len() > 255 {
                    bail!("{p:?}: {name:?} is not a name in a directory");
                }
                // The entry policy, as for any path of the image.
                let child = if p.is_empty() { name.clone() } else { format!("{p}/{name}") };
                path(&child)?;
                link(&child, n, a)?;
            }
        }
        Ok(())
    }

    fn answers(&self) -> usize {
        self.lstat.len() + self.stat.len() + self.list.values().map(|v| v.len() + 1).sum::<usize>()
    }
}

/// A mounted tree whose files' contents are known already: the manifest
/// and units the generator cache holds for this very archive. Contents come
/// from `known` where it has them, everything else from the tree. (Reading
/// a small file of a squashfs image makes the kernel inflate the whole
/// block around it; at boot that was half of the apply.)
/// Lookups come from `lookups`, what planning this file asked of its tree
/// when it was first attached (see `tree::lookups`), where it has them.
pub struct Known<'a> {
    pub tree: &'a Tree,
    pub known: &'a Mem,
    pub lookups: Option<&'a Lookups>,
}

impl ImageSource for Known<'_> {
    fn lstat(&self, rel: &Path) -> Result<Option<Kind>> {
        match self.lookups.and_then(|l| l.lstat(rel)) {
            Some(k) => Ok(k),
            None => self.tree.lstat(rel),
        }
    }
    fn stat(&self, rel: &Path) -> Result<Option<Kind>> {
        match self.lookups.and_then(|l| l.stat(rel)) {
            Some(k) => Ok(k),
            None => self.tree.stat(rel),
        }
    }
    fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        self.known.read(rel).or_else(|_| self.tree.read(rel))
    }
    fn list(&self, rel: &Path) -> Result<Vec<(String, Kind)>> {
        match self.lookups.and_then(|l| l.list(rel)) {
            Some(v) => Ok(v),
            None => self.tree.list(rel),
        }
    }
}

/// An [`ImageSource`] that keeps every answer its inner source gave. An
/// answer that cannot be kept (a path that is not UTF-8, too many answers)
/// spoils the record: then nothing is kept.
pub struct Recording<'a> {
    inner: &'a dyn ImageSource,
    kept: RefCell<Option<Lookups>>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn ImageSource) -> Recording<'a> {
        Recording { inner, kept: RefCell::new(Some(Lookups::default())) }
    }

    /// The answers given, unless the record was spoiled.
    pub fn into_lookups(self) -> Option<Lookups> {
        self.kept.into_inner()
    }

    fn keep(&self, f: impl FnOnce(&mut Lookups) -> Option<()>) {
        let mut k = self.kept.borrow_mut();
        if let Some(l) = k.as_mut()
            && (f(l).is_none() || l.answers() > MAX_ANSWERS)
        {
            *k = None;
        }
    }
}

type Answers = BTreeMap<String, Option<Answer>>;

impl Recording<'_> {
    /// Keeps `r`, an answer of `lstat` or `stat` (`which`) about `rel`.
    fn keep_kind(&self, which: fn(&mut Lookups) -> &mut Answers, rel: &Path, r: &Option<Kind>) {
        self.keep(|l| {
            let a = match r {
                None => None,
                Some(k) => Some(Answer::of(k)?),
            };
            which(l).insert(rel.to_str()?.to_string(), a);
            Some(())
        });
    }
}

impl ImageSource for Recording<'_> {
    fn lstat(&self, rel: &Path) -> Result<Option<Kind>> {
        let r = self.inner.lstat(rel)?;
        self.keep_kind(|l| &mut l.lstat, rel, &r);
        Ok(r)
    }
    fn stat(&self, rel: &Path) -> Result<Option<Kind>> {
        let r = self.inner.stat(rel)?;
        self.keep_kind(|l| &mut l.stat, rel, &r);
        Ok(r)
    }
    fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        self.inner.read(rel)
    }
    fn list(&self, rel: &Path) -> Result<Vec<(String, Kind)>> {
        let r = self.inner.list(rel)?;
        self.keep(|l| {
            let v = r.iter().map(|(n, k)| Some((n.clone(), Answer::of(k)?))).collect::<Option<Vec<_>>>()?;
            l.list.insert(rel.to_str()?.to_string(), v);
            Some(())
        });
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_kept_are_the_answers_given() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::write(d.path().join("bin/a"), b"x").unwrap();
        std::os::unix::fs::symlink("a", d.path().join("bin/b")).unwrap();
        let tree = Tree::open(d.path()).unwrap();
        let rec = Recording::new(&tree);
        let listed = rec.list(Path::new("bin")).unwrap();
        assert_eq!(rec.stat(Path::new("bin/b")).unwrap(), Some(Kind::File));
        assert_eq!(rec.lstat(Path::new("nope")).unwrap(), None);
        let l = rec.into_lookups().unwrap();
        // Through the cache's JSON and back.
        let l: Lookups = serde_json::from_slice(&serde_json::to_vec(&l).unwrap()).unwrap();
        assert_eq!(l.list(Path::new("bin")), Some(listed));
        assert_eq!(l.list(Path::new("bin")).unwrap()[1].1, Kind::Symlink("a".into()));
        assert_eq!(l.stat(Path::new("bin/b")), Some(Some(Kind::File)));
        assert_eq!(l.lstat(Path::new("nope")), Some(None));
        // Never asked: the tree answers.
        assert_eq!(l.stat(Path::new("bin/a")), None);
    }

    #[test]
    fn answers_no_tree_gives_are_refused() {
        let bad = [
            r#"{"lstat":{},"stat":{},"list":{"bin":[["../../etc/x","file"]]}}"#,
            r#"{"lstat":{},"stat":{},"list":{"bin":[["..","dir"]]}}"#,
            r#"{"lstat":{"/etc":"dir"},"stat":{},"list":{}}"#,
            r#"{"lstat":{"a/../b":"file"},"stat":{},"list":{}}"#,
            r#"{"lstat":{"bin/x":{"symlink":"../../etc"}},"stat":{},"list":{}}"#,
            r#"{"lstat":{},"stat":{},"list":{"bin":[["x",{"symlink":"/etc/passwd"}]]}}"#,
            r#"{"lstat":{},"stat":{"bin":{"symlink":"lib"}},"list":{}}"#,
        ];
        for b in bad {
            let l: Lookups = serde_json::from_str(b).unwrap();
            assert!(l.check().is_err(), "{b}");
        }
        // A listed name is held to the entry policy as a path: one more
        // level under a directory as deep as the policy allows is refused.
        let deep = vec!["d"; crate::tree::limits::MAX_DEPTH].join("/");
        let l: Lookups =
            serde_json::from_value(serde_json::json!({"lstat": {}, "stat": {}, "list": {&deep: []}})).unwrap();
        l.check().unwrap();
        let l: Lookups =
            serde_json::from_value(serde_json::json!({"lstat": {}, "stat": {}, "list": {&deep: [["x", "file"]]}}))
                .unwrap();
        assert!(l.check().unwrap_err().to_string().contains("deep refused"), "{:?}", l.check());
        let good =
            r#"{"lstat":{".torcx":"dir"},"stat":{"bin/x":"file"},"list":{"bin":[["x",{"symlink":"../lib/x"}]]}}"#;
        serde_json::from_str::<Lookups>(good).unwrap().check().unwrap();
        // What a tree may hold is accepted as the tree's own answer would
        // be: a newline, `%` or `$` in a name, a name of 255 bytes.
        let odd = serde_json::json!({"lstat": {}, "stat": {"bin/a\nb": "file"},
            "list": {"bin": [["a\nb", "file"], ["50%", "file"], ["$HOME", "file"], ["n".repeat(255), "file"]]}});
        serde_json::from_value::<Lookups>(odd).unwrap().check().unwrap();
        let long = serde_json::json!({"lstat": {}, "stat": {}, "list": {"bin": [["n".repeat(256), "file"]]}});
        assert!(serde_json::from_value::<Lookups>(long).unwrap().check().is_err());
        // A truncated entry does not parse at all.
        assert!(serde_json::from_str::<Lookups>(&good[..good.len() / 2]).is_err());
    }

    #[test]
    fn too_many_answers_keep_none() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::open(d.path()).unwrap();
        let rec = Recording::new(&tree);
        for i in 0..=MAX_ANSWERS {
            rec.lstat(Path::new(&format!("f{i}"))).unwrap();
        }
        assert!(rec.into_lookups().is_none());
    }
}
