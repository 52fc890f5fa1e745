//! Replays the fuzz targets' kept corpora (`fuzz/corpus/TARGET`, minimized,
//! seeded from this suite's images and grown by `make fuzz`) through the
//! same bodies the fuzzers run, so every input that once found a crash,
//! a hang or an oversized error keeps being tried, on stable, without
//! libFuzzer.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: only {} inputs", dir.display(), files.len());
    for f in files {
        // (A running `make fuzz` may replace files meanwhile.)
        let Ok(data) = std::fs::read(&f) else { continue };
        // A panic names the input that caused it.
        let res = std::panic::catch_unwind(|| body(&data));
        assert!(res.is_ok(), "fuzz input {} failed", f.display());
    }
    harness::remove_scratch();
}

#[test]
fn extract_corpus() {
    replay("extract", harness::extract);
}

#[test]
fn reader_tar_corpus() {
    replay("reader_tar", harness::reader_tar);
}

#[test]
fn reader_fsimage_corpus() {
    replay("reader_fsimage", harness::reader_fsimage);
}

#[test]
fn reader_oci_corpus() {
    replay("reader_oci", harness::reader_oci);
}

#[test]
fn parse_corpus() {
    replay("parse", harness::parse);
}
