//! Records written by the current release are read by this one and written
//! back byte for byte (no root needed: the library parses the file).

use torcx::attach::{Class, CopyMode, FileKind, Record, RecordFormat, RecordOrigin, RecordState};

const V0: &str = include_str!("fixtures/record-v0.json");

#[test]
fn a_v0_record_is_read_and_written_back_byte_identically() {
    let rec = Record::from_json(V0.as_bytes()).unwrap();
    assert_eq!(rec.state, RecordState::Attached);
    assert_eq!(rec.origin, RecordOrigin::Runtime);
    assert_eq!(rec.format, RecordFormat::Squashfs);
    assert_eq!(rec.copy, CopyMode::Auto);
    assert_eq!(rec.files.iter().filter(|f| f.kind == FileKind::Dir).count(), 3);
    assert_eq!(rec.files.iter().filter(|f| f.kind == FileKind::Symlink).count(), 3);
    assert_eq!(rec.files.iter().filter(|f| f.kind == FileKind::File).count(), 3);
    assert_eq!(rec.units(), ["docker.service"]);
    assert_eq!(rec.enabled_units(), ["docker.service"]);
    assert_eq!(rec.binaries(), ["docker", "dockerd"]);
    assert!(rec.files.iter().any(|f| f.class == Class::Sysusers));
    let back = String::from_utf8(rec.to_json().unwrap()).unwrap();
    assert_eq!(back, V0);
}

#[test]
fn every_string_a_record_may_hold_reads_back_as_itself() {
    for (field, values) in [
        ("state", &["attaching", "attached"][..]),
        ("origin", &["boot", "runtime"][..]),
        ("format", &["tgz", "tar.zst", "squashfs", "erofs", "oci", "directory"][..]),
        ("copy", &["auto", "copy", "symlink"][..]),
    ] {
        let doc: serde_json::Value = serde_json::from_str(V0).unwrap();
        let line = format!("\"{field}\": \"{}\"", doc["value"][field].as_str().unwrap());
        for v in values {
            let text = V0.replacen(&line, &format!("\"{field}\": \"{v}\""), 1);
            let rec = Record::from_json(text.as_bytes()).unwrap_or_else(|e| panic!("{field} {v}: {e:#}"));
            assert_eq!(String::from_utf8(rec.to_json().unwrap()).unwrap(), text, "{field} {v}");
        }
    }
    let bad = V0.replacen("\"state\": \"attached\"", "\"state\": \"halfway\"", 1);
    assert!(Record::from_json(bad.as_bytes()).is_err());
}

#[test]
fn copy_auto_is_recorded_as_such_and_places_copies() {
    assert_eq!(CopyMode::default(), CopyMode::Auto);
    assert_eq!(CopyMode::Auto.effective(), CopyMode::Copy);
    assert_eq!(CopyMode::Copy.effective(), CopyMode::Copy);
    assert_eq!(CopyMode::Symlink.effective(), CopyMode::Symlink);
}
