//! The man pages and completions in the repository are exactly what the clap
//! definitions generate (regenerate with `torcx generate-docs .`), and every
//! page, generated or written by hand, passes `mandoc -T lint` silently.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const HAND_WRITTEN: [&str; 4] = ["torcx-generator.8", "torcx-profile.5", "torcx-image.5", "torcx-config.5"];

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn man_pages_and_completions_are_generated_from_the_cli() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_torcx")).arg("generate-docs").arg(tmp.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for sub in ["man", "completions"] {
        let fresh = names(&tmp.path().join(sub));
        let mut checked_in = names(&repo.join(sub));
        checked_in.retain(|n| !HAND_WRITTEN.contains(&n.as_str()));
        assert_eq!(checked_in, fresh, "{sub}/ differs in its files: run `torcx generate-docs .`");
        for n in &fresh {
            let a = std::fs::read_to_string(tmp.path().join(sub).join(n)).unwrap();
            let b = std::fs::read_to_string(repo.join(sub).join(n)).unwrap();
            assert!(a == b, "{sub}/{n} is stale: run `torcx generate-docs .`");
        }
    }
    // Every page names the workflows it serves.
    for n in ["torcx.8", "torcx-attach.8", "torcx-profile-use-image.8", "torcx-image-pack.8"] {
        let text = std::fs::read_to_string(repo.join("man").join(n)).unwrap();
        assert!(text.contains(".SH EXAMPLES"), "{n} has no EXAMPLES");
    }
}

#[test]
fn man_pages_pass_mandoc_lint() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages: Vec<_> = names(&repo.join("man")).into_iter().map(|n| repo.join("man").join(n)).collect();
    assert!(pages.len() > 20);
    // A missing mandoc fails, as every missing tool does: no silent skips.
    let out = Command::new("mandoc")
        .args(["-T", "lint"])
        .args(&pages)
        .output()
        .unwrap_or_else(|e| panic!("mandoc: {e} (apt-get install mandoc)"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.is_empty(), "mandoc -T lint:\n{said}");
}
