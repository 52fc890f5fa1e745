//! The architecture's rules, checked on the source (README "Architecture"):
//! every module sits in a stage folder, no module imports from a later
//! stage, and no source file grows past the size a newcomer can read.

use std::path::{Path, PathBuf};

/// The stages in the order data flows through them.
const STAGES: [&str; 10] = ["model", "sys", "archive", "tree", "store", "profile", "attach", "boot", "image", "cli"];
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
