//! Lint: what would break once an image is attached, found before it is
//! (seed 000, "Dynamic binaries and libraries"). Images are unpacked into a
//! tree of their own, so libraries must be found through `$ORIGIN` rpaths or
//! on the host, units must name binaries that exist where systemd looks,
//! and the manifest must name paths the image has.

use crate::image::elf::{ElfCache, ElfInfo, HostLibs, host_arch, machine_name, multiarch};
use crate::model::config::Config;
use crate::model::manifest::ImageManifest;
use crate::model::units::is_unit_name;
use crate::sys::fsutil;
use crate::sys::systemd;
use crate::tree::source::{ImageSource, Kind};
use object::elf;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding: a one-line message that names the file (`path`, inside the image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

/// An image to lint: its tree (a real directory) and how it would be attached.
pub struct Image<'a> {
    /// The image tree on this machine.
    pub root: &'a Path,
    /// The same tree, read beneath its root.
    pub src: &'a dyn ImageSource,
    pub manifest: &'a ImageManifest,
    /// The image name, when known (`/run/torcx/unpack/NAME`).
    pub name: Option<&'a str>,
    /// Names the image links into the bin directory.
    pub binaries: &'a [String],
    /// Paths (in the image) of the files linked into the bin directory.
    pub bin_sources: &'a [PathBuf],
}

/// Every finding, errors and warnings, in a stable order.
pub fn lint(cfg: &Config, img: &Image) -> Vec<Finding> {
    let mut l = Linter { cfg, img, out: vec![], seen: BTreeSet::new() };
    l.manifest_paths();
    l.elves();
    l.units();
    l.out
}

pub fn count(findings: &[Finding], s: Severity) -> usize {
    findings.iter().filter(|f| f.severity == s).count()
}

/// `error   /usr/bin/x: ...` lines, for people.
pub fn render(findings: &[Finding]) -> String {
    // Messages quote the image's paths: one line each, no control characters.
    findings
        .iter()
        .map(|f| format!("{:<8}{}\n", f.severity.name(), crate::sys::logger::escape_controls(&f.message)))
        .collect()
}

struct Linter<'a> {
    cfg: &'a Config,
    img: &'a Image<'a>,
    out: Vec<Finding>,
    seen: BTreeSet<(String, String)>,
}

fn slash(rel: &Path) -> String {
    format!("/{}", rel.display())
}

impl Linter<'_> {
    fn push(&mut self, severity: Severity, path: &str, message: String) {
        if self.seen.insert((path.to_string(), message.clone())) {
            self.out.push(Finding { severity, path: path.to_string(), message });
        }
    }

    // ---- the manifest ----------------------------------------------------

    fn manifest_paths(&mut self) {
        let m = self.img.manifest;
        let lists = m.classes();
        for (class, list) in lists {
            for p in list {
                match fsutil::relative_inside(p) {
                    Err(e) => {
                        self.push(Severity::Error, p, format!("{p}: manifest {class} entry {e}: outside the image"))
                    }
                    Ok(rel) => match self.img.src.stat(&rel) {
                        Ok(Some(_)) => {}
                        Ok(None) => self.push(
                            Severity::Error,
                            p,
                            format!("{p}: manifest {class} entry does not exist in the image"),
                        ),
                        Err(e) => self.push(Severity::Error, p, format!("{p}: manifest {class} entry: {e:#}")),
                    },
                }
            }
        }
    }

    // ---- ELF files -------------------------------------------------------

    fn elves(&mut self) {
        let mut files = vec![];
        walk(self.img.root, Path::new(""), &mut files);
        let mut cache = ElfCache::default();
        let mut objects: Vec<(PathBuf, Rc<ElfInfo>)> = vec![];
        for rel in files {
            match cache.parse(self.img.root, &rel) {
                Some(Ok(e)) => objects.push((rel, e)),
                Some(Err(msg)) => {
                    let p = slash(&rel);
                    self.push(Severity::Warning, &p, format!("{p}: looks like ELF but cannot be parsed: {msg}"))
                }
                None => {}
            }
        }
        let host = HostLibs::new(self.cfg);
        let arch = host_arch();
        let mut reached: BTreeSet<PathBuf> = BTreeSet::new();
        let mut missing: BTreeSet<(PathBuf, String)> = BTreeSet::new();
        for (rel, e) in &objects {
            let p = slash(rel);
            let in_bin = self.img.bin_sources.iter().any(|b| b == rel);
            if let Some((machine, is64)) = arch
                && (e.machine != machine || e.is64 != is64)
            {
                let sev = if e.is_executable() || in_bin { Severity::Error } else { Severity::Warning };
                self.push(
                    sev,
                    &p,
                    format!(
                        "{p}: ELF for {} ({}-bit), but this machine is {} ({}-bit)",
                        machine_name(e.machine),
                        if e.is64 { 64 } else { 32 },
                        machine_name(machine),
                        if is64 { 64 } else { 32 }
                    ),
                );
                continue;
            }
            for (what, list) in [("RPATH", &e.rpath), ("RUNPATH", &e.runpath)] {
                for entry in list {
                    if entry.starts_with("$ORIGIN") || entry.starts_with("${ORIGIN}") {
                        continue;
                    }
                    if entry.starts_with('/') {
                        if self.own_tree_path(Path::new(entry)).is_some() {
                            continue;
                        }
                        self.push(
                            Severity::Warning,
                            &p,
                            format!(
                                "{p}: {what} entry {entry} is absolute: it points outside the image once unpacked \
                                 (use $ORIGIN/...)"
                            ),
                        );
                    } else {
                        self.push(
                            Severity::Warning,
                            &p,
                            format!(
                                "{p}: {what} entry {entry:?} is relative to the working directory, not to the binary \
                                 (use $ORIGIN/...)"
                            ),
                        );
                    }
                }
            }
            if !e.is_executable() {
                continue;
            }
            if let Some(interp) = &e.interp {
                let found = match self.own_tree_path(Path::new(interp)) {
                    Some(rel) => matches!(self.img.src.stat(&rel), Ok(Some(Kind::File))),
                    None => std::fs::metadata(self.cfg.host(Path::new(interp))).is_ok(),
                };
                if !found {
                    self.push(
                        Severity::Error,
                        &p,
                        format!("{p}: its program interpreter {interp} is not on the host nor in the image"),
                    );
                }
            }
            self.load(&mut cache, &host, rel, e, &mut reached, &mut missing, Severity::Error);
        }
        // Libraries no executable loads (plugins, or loaded by something
        // outside the image): checked on their own; whatever loads them may
        // provide what is missing, so only a warning.
        for (rel, e) in &objects {
            if e.is_executable() || reached.contains(rel) || e.etype != elf::ET_DYN {
                continue;
            }
            if arch.is_some_and(|(m, b)| e.machine != m || e.is64 != b) {
                continue;
            }
            self.load(&mut cache, &host, rel, e, &mut reached, &mut missing, Severity::Warning);
        }
    }

    /// `/run/torcx/unpack/NAME/x` as `x` (any NAME when the image's is unknown).
    fn own_tree_path(&self, p: &Path) -> Option<PathBuf> {
        let rest = p.strip_prefix(self.cfg.unpack_dir()).ok()?;
        let mut c = rest.components();
        let name = c.next()?.as_os_str().to_string_lossy().into_owned();
        if self.img.name.is_some_and(|n| n != name) {
            return None;
        }
        fsutil::relative_inside(&c.as_path().to_string_lossy()).ok()
    }

    /// Loads `rel` (and what it needs) as the dynamic linker would, breadth
    /// first, each library once, reporting what is found nowhere.
    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        cache: &mut ElfCache,
        host: &HostLibs,
        rel: &Path,
        e: &Rc<ElfInfo>,
        reached: &mut BTreeSet<PathBuf>,
        missing: &mut BTreeSet<(PathBuf, String)>,
        sev: Severity,
    ) {
        let top = slash(rel);
        // The executable's RPATH is searched for every object without a RUNPATH.
        let exe_rpath: Vec<Dir> =
            if e.runpath.is_empty() { self.expand(&e.rpath, rel.parent().unwrap_or(Path::new(""))) } else { vec![] };
        let mut loaded: BTreeSet<String> = BTreeSet::new();
        let mut queue: std::collections::VecDeque<(PathBuf, Rc<ElfInfo>)> = [(rel.to_path_buf(), e.clone())].into();
        let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
        while let Some((orel, o)) = queue.pop_front() {
            if !seen.insert(orel.clone()) {
                continue;
            }
            if let Some(s) = &o.soname {
                loaded.insert(s.clone());
            }
            let origin = orel.parent().unwrap_or(Path::new("")).to_path_buf();
            let dirs: Vec<Dir> = if !o.runpath.is_empty() {
                self.expand(&o.runpath, &origin)
            } else {
                let mut d = self.expand(&o.rpath, &origin);
                d.extend(exe_rpath.iter().cloned());
                d
            };
            for n in &o.needed {
                if loaded.contains(n) {
                    continue;
                }
                if n.contains('/') {
                    // A path: relative to the working directory, or absolute.
                    if n.starts_with('/') && std::fs::metadata(self.cfg.host(Path::new(n))).is_ok() {
                        loaded.insert(n.clone());
                    }
                    continue;
                }
                let mut found = false;
                for d in &dirs {
                    match d {
                        Dir::Image(dir) => {
                            let cand = dir.join(n);
                            if !matches!(self.img.src.stat(&cand), Ok(Some(Kind::File))) {
                                continue;
                            }
                            match cache.parse_source(self.img.src, &cand) {
                                Some(Ok(l)) if l.machine == o.machine && l.is64 == o.is64 => {
                                    reached.insert(cand.clone());
                                    queue.push_back((cand, l));
                                    found = true;
                                }
                                _ => continue,
                            }
                        }
                        Dir::Host(dir) => found = host.has(&dir.join(n), o.machine, o.is64),
                    }
                    if found {
                        break;
                    }
                }
                if !found {
                    found = host.find(n, o.machine, o.is64);
                }
                if found {
                    loaded.insert(n.clone());
                    continue;
                }
                if !missing.insert((orel.clone(), n.clone())) {
                    continue;
                }
                let p = slash(&orel);
                let who = if orel == rel { p.clone() } else { format!("{p} (loaded by {top})") };
                let paths: Vec<String> = if !o.runpath.is_empty() {
                    o.runpath.iter().map(|r| format!("RUNPATH {r}")).collect()
                } else {
                    o.rpath.iter().map(|r| format!("RPATH {r}")).collect()
                };
                let searched = if paths.is_empty() {
                    "no RPATH/RUNPATH: the image's libraries are not searched".to_string()
                } else {
                    paths.join(", ")
                };
                self.push(
                    sev,
                    &p,
                    format!("{who}: needs {n}, found neither in the image ({searched}) nor on the host"),
                );
            }
        }
    }

    /// RPATH/RUNPATH entries as directories to search; `$ORIGIN` is the
    /// object's directory inside the image.
    fn expand(&self, entries: &[String], origin: &Path) -> Vec<Dir> {
        let mut out = vec![];
        for entry in entries {
            let mut variants = vec![entry.clone()];
            for tok in ["$LIB", "${LIB}"] {
                if entry.contains(tok) {
                    variants = ["lib", "lib64", &format!("lib/{}", multiarch())]
                        .iter()
                        .flat_map(|lib| variants.iter().map(move |v| v.replace(tok, lib)))
                        .collect();
                }
            }
            for v in variants {
                let rest = v
                    .strip_prefix("$ORIGIN")
                    .or_else(|| v.strip_prefix("${ORIGIN}"))
                    .map(|r| r.trim_start_matches('/'));
                if let Some(rest) = rest {
                    if let Some(d) = normalize(&origin.join(rest)) {
                        out.push(Dir::Image(d));
                    }
                } else if v.starts_with('/') {
                    match self.own_tree_path(Path::new(&v)) {
                        Some(rel) => out.push(Dir::Image(rel)),
                        None => out.push(Dir::Host(PathBuf::from(&v))),
                    }
                }
            }
        }
        out
    }

    // ---- units -----------------------------------------------------------

    fn units(&mut self) {
        let src = self.img.src;
        // (unit file in the image, its name as placed)
        let mut files: Vec<PathBuf> = vec![];
        let mut links: Vec<(PathBuf, String)> = vec![];
        for u in &self.img.manifest.units {
            let Ok(rel) = fsutil::relative_inside(u) else { continue };
            match src.stat(&rel) {
                Ok(Some(Kind::File)) => files.push(rel),
                Ok(Some(Kind::Dir)) => {
                    for (name, kind) in src.list(&rel).unwrap_or_default() {
                        match kind {
                            Kind::File => files.push(rel.join(&name)),
                            Kind::Symlink(t) => links.push((
                                rel.join(&name),
                                t.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                            )),
                            Kind::Dir => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let provided: BTreeSet<String> =
            files.iter().filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let p = slash(f);
            if let Ok(text) = src.read(f) {
                let text = String::from_utf8_lossy(&text);
                for (key, cmd) in exec_lines(&text) {
                    self.exec(&p, &key, &cmd);
                }
            }
            // Units directly in a manifest `units` entry go to the top of the
            // units directory, where a host unit of the same name clashes.
            let top = self.img.manifest.units.iter().any(|u| fsutil::relative_inside(u).ok().as_deref() == Some(f));
            if top
                && is_unit_name(&name)
                && let Some(found) = systemd::find_unit(self.cfg, &name)
                && !self.placed_by_us(&found)
            {
                self.push(
                    Severity::Warning,
                    &p,
                    format!(
                        "{p}: unit {name} clashes with {} on the host (attach refuses it without --force; \
                         the higher of the two in systemd's search path wins)",
                        found.display()
                    ),
                );
            }
        }
        for (l, unit) in &links {
            if is_unit_name(unit) && !provided.contains(unit) && systemd::find_unit(self.cfg, unit).is_none() {
                let p = slash(l);
                self.push(
                    Severity::Warning,
                    &p,
                    format!("{p}: enables {unit}, which neither the image nor the host provides"),
                );
            }
        }
    }

    /// Whether `logical` was placed by an attachment of this same image (an
    /// image inspected while attached does not clash with itself).
    fn placed_by_us(&self, logical: &Path) -> bool {
        let Some(name) = self.img.name else { return false };
        crate::attach::Record::load(self.cfg, name)
            .ok()
            .flatten()
            .is_some_and(|r| r.files.iter().any(|f| f.path == logical))
    }

    /// Checks the program of one `Exec*=` line of unit `p`.
    fn exec(&mut self, p: &str, key: &str, cmd: &str) {
        let Some(prog) = first_word(cmd) else { return };
        if prog.contains('$') || prog.contains('%') {
            // Expanded by systemd at run time: nothing to check here.
            return;
        }
        let what = format!("{p}: {key}={prog}");
        let bin_dir = self.cfg.bin_dir();
        let image_has = |rel: &Path| matches!(self.img.src.stat(rel), Ok(Some(Kind::File)));
        if !prog.starts_with('/') {
            // systemd resolves a bare name in its own fixed search path, not
            // in the PATH the drop-in sets (systemd.service(5), "Command lines").
            if SYSTEMD_PATH.iter().any(|d| is_file(&self.cfg.host(&Path::new(d).join(&prog)))) {
                return;
            }
            let msg = if self.img.binaries.contains(&prog) {
                format!(
                    "{what}: systemd looks bare names up in its own search path, not in {}: use {}",
                    bin_dir.display(),
                    bin_dir.join(&prog).display()
                )
            } else {
                format!("{what}: found neither in the image nor in systemd's search path on the host")
            };
            self.push(Severity::Error, p, msg);
            return;
        }
        let path = Path::new(&prog);
        if let Ok(name) = path.strip_prefix(&bin_dir) {
            let n = name.to_string_lossy();
            if self.img.binaries.iter().any(|b| *b == n) {
                return;
            }
            if std::fs::symlink_metadata(self.cfg.host(path)).is_ok() {
                self.push(
                    Severity::Warning,
                    p,
                    format!("{what}: the image provides no binary {n}; another image's is used"),
                );
            } else {
                self.push(
                    Severity::Error,
                    p,
                    format!("{what}: the image provides no binary {n} (see its manifest's bin)"),
                );
            }
            return;
        }
        if path.starts_with(self.cfg.unpack_dir()) {
            match self.own_tree_path(path) {
                Some(rel) if image_has(&rel) => {}
                Some(rel) => {
                    self.push(Severity::Error, p, format!("{what}: /{} does not exist in the image", rel.display()))
                }
                None => self.push(Severity::Warning, p, format!("{what}: points into another image's tree")),
            }
            return;
        }
        if is_file(&self.cfg.host(path)) {
            return;
        }
        let msg = match fsutil::relative_inside(&prog) {
            Ok(rel) if image_has(&rel) => format!(
                "{what}: not on the host; the image's file is at {} once attached{}",
                self.cfg.unpack_dir().join(self.img.name.unwrap_or("NAME")).join(&rel).display(),
                if self.img.bin_sources.contains(&rel) {
                    format!(", and linked as {}", bin_dir.join(rel.file_name().unwrap()).display())
                } else {
                    String::new()
                }
            ),
            _ => format!("{what}: exists neither in the image nor on the host"),
        };
        self.push(Severity::Error, p, msg);
    }
}

/// systemd's compiled-in search path for bare command names.
const SYSTEMD_PATH: [&str; 6] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

fn is_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// `(key, command line)` of every `Exec*=` setting, continuation lines joined.
pub fn exec_lines(text: &str) -> Vec<(String, String)> {
    const KEYS: [&str; 7] =
        ["ExecStart", "ExecStartPre", "ExecStartPost", "ExecCondition", "ExecReload", "ExecStop", "ExecStopPost"];
    let mut out = vec![];
    let mut joined = String::new();
    let mut logical: Vec<String> = vec![];
    for line in text.lines() {
        if joined.is_empty() && (line.trim_start().starts_with('#') || line.trim_start().starts_with(';')) {
            continue;
        }
        if let Some(s) = line.strip_suffix('\\') {
            joined.push_str(s);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        logical.push(std::mem::take(&mut joined));
    }
    if !joined.is_empty() {
        logical.push(joined);
    }
    for l in logical {
        let Some((k, v)) = l.split_once('=') else { continue };
        let k = k.trim();
        if KEYS.contains(&k) && !v.trim().is_empty() {
            out.push((k.to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The program of a command line: its first word, after the `-@:+!`
/// prefixes, unquoted.
pub fn first_word(cmd: &str) -> Option<String> {
    let s = cmd.trim_start().trim_start_matches(['-', '@', ':', '+', '!', '|']).trim_start();
    let mut chars = s.chars();
    let w: String = match s.chars().next()? {
        q @ ('"' | '\'') => {
            chars.next();
            chars.take_while(|c| *c != q).collect()
        }
        _ => s.split_whitespace().next()?.to_string(),
    };
    (!w.is_empty()).then_some(w)
}

/// A directory the dynamic linker searches.
#[derive(Debug, Clone)]
enum Dir {
    /// Inside the image (relative to its root).
    Image(PathBuf),
    /// On the host (logical path).
    Host(PathBuf),
}

/// `a/b/../c` → `a/c`; `None` when it climbs above the root.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir if !out.pop() => return None,
            Component::ParentDir => {}
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Some(out)
}

/// Regular files under `dir` (relative), not following symlinks, sorted.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root.join(rel)) else { return };
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let Ok(m) = std::fs::symlink_metadata(root.join(&r)) else { continue };
        if m.is_dir() {
            walk(root, &r, out);
        } else if m.is_file() {
            out.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::elf::parse_elf;

    #[test]
    fn exec_parsing() {
        let t = "[Service]\n# ExecStart=/nope\nExecStart=-/run/torcx/bin/x --a \\\n  --b\nExecStart=\nExecStartPre=!!\"/bin/my tool\" x\n";
        let l = exec_lines(t);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(first_word(&l[0].1).as_deref(), Some("/run/torcx/bin/x"));
        assert_eq!(first_word(&l[1].1).as_deref(), Some("/bin/my tool"));
        assert_eq!(first_word("@/bin/sh sh -c x").as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn normalizing() {
        assert_eq!(normalize(Path::new("usr/bin/../lib")), Some(PathBuf::from("usr/lib")));
        assert_eq!(normalize(Path::new("bin/../../lib")), None);
    }

    #[test]
    fn own_elf() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let e = parse_elf(&exe).unwrap();
        assert_eq!(Some((e.machine, e.is64)), host_arch());
        assert!(e.is_executable());
    }
}
