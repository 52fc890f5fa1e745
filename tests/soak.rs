//! Soak (issue 12): N cycles (500 by default, `TORCX_SOAK_CYCLES=N` for
//! more), each attaching and detaching one image of every format (tgz,
//! tar.zst, squashfs, erofs, OCI bundle), with a reattach every 10th cycle
//! and a simulated reboot (a fresh namespace and `/run`) then `apply` every
//! 100th. Afterwards nothing is left beyond what the attached set explains:
//! no mount, loop device, file under `/run/torcx` or unit; torcx's open
//! files at exit are the same in the first cycle and the last. The time per
//! cycle is reported (first tenth against last tenth), never asserted.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const FORMATS: [&str; 5] = ["tgz", "zst", "squashfs", "erofs", "oci"];

/// An image `NAME` with a binary and a unit.
fn image(t: &TestRoot, name: &str, reference: &str) -> Image {
    let img = Image::new(t, name, reference);
    img.manifest(
        json!({"bin": [format!("/bin/{name}-tool")], "units": [format!("/lib/systemd/system/{name}.service")]}),
    )
    .exec(&format!("bin/{name}-tool"), format!("#!/bin/sh\necho {reference}\n"))
    .file(&format!("lib/systemd/system/{name}.service"), format!("[Service]\nExecStart=/run/torcx/bin/{name}-tool\n"));
    img
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One archive of each format, `s-FMT:1`, in `dir`.
fn archives(t: &TestRoot, dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for f in FORMATS {
        let name = format!("s-{f}");
        let img = image(t, &name, "1");
        let path = match f {
            "tgz" => {
                let p = dir.join(format!("{name}:1.torcx.tgz"));
                img.pack_to(&p, Fmt::Tgz);
                p
            }
            "zst" => {
                let p = dir.join(format!("{name}:1.torcx.tar.zst"));
                img.pack_to(&p, Fmt::Zst);
                p
            }
            "squashfs" => {
                let p = dir.join(format!("{name}:1.torcx.squashfs"));
                run(Command::new("mksquashfs").arg(&img.dir).arg(&p).args(["-quiet", "-noappend", "-all-root"]));
                p
            }
            "erofs" => {
                let p = dir.join(format!("{name}:1.torcx.erofs"));
                run(Command::new("mkfs.erofs").arg("--quiet").arg("--all-root").arg(&p).arg(&img.dir));
                p
            }
            _ => {
                let out_dir = dir.join("oci-out");
                std::fs::create_dir_all(&out_dir).unwrap();
                run(Command::new(TORCX).args(["image", "pack"]).arg(&img.dir).arg("-o").arg(&out_dir).args([
                    // A bundle attached by its path offers its com.coreos.cl tag.
                    "--name",
                    &name,
                    "--reference",
                    "com.coreos.cl",
                    "--format",
                    "oci",
                ]));
                let p = dir.join(format!("{name}.torcx.oci.tgz"));
                std::fs::rename(out_dir.join(format!("{name}.torcx.oci.tgz")), &p).unwrap();
                p
            }
        };
        out.push(path.display().to_string());
    }
    out
}

#[test]
fn soak() {
    require_root("soak");
    require_tool("soak", "mksquashfs", "squashfs-tools");
    require_tool("soak", "mkfs.erofs", "erofs-utils");
    let cycles: u64 = std::env::var("TORCX_SOAK_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let t = TestRoot::new();
    let dir = t.scratch("archives");
    let all = archives(&t, &dir);
    for r in ["1", "2"] {
        image(&t, "x", r).pack_to(&dir.join(format!("x:{r}.torcx.tgz")), Fmt::Tgz);
    }
    // What each boot applies: one image, attached throughout.
    image(&t, "base", "1").pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("base", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let r = t.scratch("results");
    let names: Vec<String> = FORMATS.iter().map(|f| format!("s-{f}")).collect();
    let mut first = 1;
    let mut session = 0;
    while first <= cycles {
        let last = (first + 99).min(cycles);
        let script = format!(
            r#"R={r}; D={d}
rm -rf "$ROOT/run" && mkdir "$ROOT/run"
"$TORCX" --root "$ROOT" apply > /dev/null 2>> $R/errors || echo "apply after the reboot before cycle {first}" >> $R/fail
{snap_first}
for c in $(seq {first} {last}); do
  t0=$(date +%s%N)
  for a in {archives}; do
    TORCX_TEST_FD_LOG=$R/fd.$c "$TORCX" --root "$ROOT" attach "$a" > /dev/null 2>> $R/errors || echo "cycle $c: attach $a" >> $R/fail
  done
  for n in {names}; do
    TORCX_TEST_FD_LOG=$R/fd.$c "$TORCX" --root "$ROOT" detach "$n" > /dev/null 2>> $R/errors || echo "cycle $c: detach $n" >> $R/fail
  done
  if [ $((c % 10)) -eq 0 ]; then
    "$TORCX" --root "$ROOT" attach $D/x:1.torcx.tgz > /dev/null 2>> $R/errors || echo "cycle $c: attach x" >> $R/fail
    "$TORCX" --root "$ROOT" reattach $D/x:2.torcx.tgz > /dev/null 2>> $R/errors || echo "cycle $c: reattach x" >> $R/fail
    "$TORCX" --root "$ROOT" detach x > /dev/null 2>> $R/errors || echo "cycle $c: detach x" >> $R/fail
  fi
  echo $(( ($(date +%s%N) - t0) / 1000 )) >> $R/times
done
{snap_last}"#,
            r = r.display(),
            d = dir.display(),
            archives = all.join(" "),
            names = names.join(" "),
            snap_first = if session == 0 { run_snapshot_sh("$R/snap-first") } else { String::new() },
            snap_last = if last == cycles { run_snapshot_sh("$R/snap-last") } else { String::new() },
        );
        let mut ns = Ns::new(&t);
        ns.sh(&script);
        ns.run();
        first = last + 1;
        session += 1;
    }
    let read_r = |f: &str| std::fs::read_to_string(r.join(f)).unwrap_or_default();
    assert_eq!(read_r("fail"), "", "failed commands; errors:\n{}", read_r("errors"));
    // Nothing left beyond the attached set (the boot's image), as right after the first boot.
    let (before, after) = (read_r("snap-first"), read_r("snap-last"));
    assert!(before.contains("run/torcx/attached/base.json|f|"), "{before}");
    assert_eq!(after, before, "left after {cycles} cycles");
    // No loop device outlives its namespace either.
    let loops = Command::new("sh")
        .arg("-c")
        .arg(format!("cat /sys/block/loop*/loop/backing_file 2>/dev/null | grep -F '{}/' || true", t.base.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&loops.stdout), "", "loop devices left");
    // The same open files at exit, command by command, in the first cycle and the last.
    let (fd1, fdn) = (read_r("fd.1"), read_r(&format!("fd.{cycles}")));
    assert_eq!(fd1.lines().count(), 2 * FORMATS.len(), "{fd1}");
    assert_eq!(fdn, fd1, "open files at exit, first cycle against the last");
    let times: Vec<f64> = read_r("times").lines().filter_map(|l| l.trim().parse().ok()).collect();
    let tenth = (times.len() / 10).max(1);
    let avg = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64 / 1000.0;
    let (a, b) = (avg(&times[..tenth]), avg(&times[times.len() - tenth..]));
    eprintln!(
        "soak: {cycles} cycles, {} ms per cycle in the first {tenth}, {} ms in the last {tenth} ({:+.1}%)",
        a.round(),
        b.round(),
        (b / a - 1.0) * 100.0
    );
}
