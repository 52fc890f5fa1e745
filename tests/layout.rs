//! The architecture's rules, checked on the source (README "Architecture"):
//! every module sits in a stage folder, no module imports from a later
//! stage, and no source file grows past the size a newcomer can read.

use std::path::{Path, PathBuf};

/// The stages in the order data flows through them.
const STAGES: [&str; 11] =
    ["model", "sys", "archive", "tree", "store", "profile", "fetch", "attach", "boot", "image", "cli"];
const MAX_LINES: usize = 650;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn stage_of(src: &Path, file: &Path) -> Option<usize> {
    let first = file.strip_prefix(src).unwrap().components().next()?.as_os_str().to_str()?;
    let first = first.strip_suffix(".rs").unwrap_or(first);
    STAGES.iter().position(|s| *s == first)
}

#[test]
fn stages_import_only_earlier_stages() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    sources(&src, &mut files);
    files.sort();
    let mut problems = vec![];
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        if rel == "main.rs" || rel == "lib.rs" {
            continue;
        }
        let Some(mine) = stage_of(&src, f) else {
            problems.push(format!("{rel}: not in a stage folder"));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if let Some(theirs) = STAGES.iter().position(|s| *s == name)
                    && theirs > mine
                {
                    problems.push(format!("{rel}:{}: stage {} imports the later stage {name}", n + 1, STAGES[mine]));
                }
            }
        }
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("{rel}: {lines} lines (at most {MAX_LINES})"));
        }
    }
    assert!(problems.is_empty(), "layout rules broken:\n{}", problems.join("\n"));
}

/// Module path (`attach::plan`) of every source file but main.rs and lib.rs.
fn modules(src: &Path) -> std::collections::BTreeMap<String, String> {
    let mut files = vec![];
    sources(src, &mut files);
    let mut out = std::collections::BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        if parts == ["main"] || parts == ["lib"] {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may use anything; the rule is about the code that ships.
        let text = match text.find("#[cfg(test)]") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        out.insert(parts.join("::"), text);
    }
    out
}

/// The names a file refers to: `crate::a::b` paths, `super::x`, and, in a
/// `mod.rs`, its own child modules used by name.
fn uses(me: &str, text: &str, all: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let longest = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|c| all.contains_key(c))
    };
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let path: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        out.extend(longest(path.trim_end_matches(':')));
    }
    let parent = me.rsplit_once("::").map(|(p, _)| p.to_string()).unwrap_or_default();
    let mut rest = text;
    while let Some(i) = rest.find("super::") {
        rest = &rest[i + 7..];
        let name = ident(rest);
        let child = if parent.is_empty() { name.clone() } else { format!("{parent}::{name}") };
        out.extend(if all.contains_key(&child) { Some(child) } else { Some(parent.clone()) });
    }
    for child in all.keys().filter(|k| k.strip_prefix(&format!("{me}::")).is_some_and(|r| !r.contains("::"))) {
        let short = child.rsplit("::").next().unwrap();
        let used = text.match_indices(&format!("{short}::")).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if used {
            out.push(child.clone());
        }
    }
    out.retain(|m| m != me && all.contains_key(m));
    out.sort();
    out.dedup();
    out
}

#[test]
fn no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = modules(&src);
    let graph: std::collections::BTreeMap<&str, Vec<String>> =
        all.iter().map(|(m, text)| (m.as_str(), uses(m, text, &all))).collect();
    // A module reaching itself again through its imports is a cycle.
    let mut cycles = vec![];
    for start in graph.keys() {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<Vec<String>> = graph[start].iter().map(|n| vec![n.clone()]).collect();
        while let Some(path) = todo.pop() {
            let last = path.last().unwrap();
            if last == start {
                cycles.push(format!("{start} -> {}", path.join(" -> ")));
                break;
            }
            if seen.insert(last.clone()) {
                for n in &graph[last.as_str()] {
                    let mut p = path.clone();
                    p.push(n.clone());
                    todo.push(p);
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
