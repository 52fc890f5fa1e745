#!/usr/bin/env python3
"""The targets table of bench/README.md from one `bench/run.py --json`
result (run with --baseline, and --original if you have it).

usage: bench/table.py RESULT.json
"""
import json, sys

r = json.load(open(sys.argv[1]))


def ms(key):
    v = r.get(key)
    return None if v is None else v["median_ms"]


def row(work, group, torcx_row, ref_row, target):
    new, ref = ms(f"{group} / {torcx_row}"), ms(f"{group} / {ref_row}")
    before = ms(f"{group} / before: {torcx_row}")
    orig = ms(f"{group} / original torcx (Go): torcx-generator")
    cell = lambda v: "—" if v is None else f"{v:.1f} ({v / ref:.2f}×)"
    ok = "yes" if new / ref <= target else "**no**"
    print(f"| {work} | {cell(before)} | {cell(new)} | {ref_row}: {ref:.1f} | ≤ {target}× | {ok} | {cell(orig)} |")


print("| work | before (last landed) | now | reference | target | met | original (Go) |")
print("|---|---|---|---|---|---|---|")
later, first = "torcx: generator + apply, cached (later boots)", "torcx: generator + apply, cold (first boot)"
row("large tgz, later boot", "large tgz", later, "igzip -dc > /dev/null, one process", 1.2)
row("large tgz, first boot (units last)", "large tgz", first, "igzip -dc > /dev/null, one process", 2.2)
row("large zst, later boot", "large zst", later, "zstd -dc > /dev/null, one process", 1.05)
row("50 small tgz, later boot", "50 small tgz", later, "igzip -dc > /dev/null, one process", 1.3)
row("50 small squashfs", "50 small squashfs", "torcx: generator + apply",
    "LOOP_CONFIGURE + mount, one process (bench/loopmount.c)", 1.2)
row("large squashfs", "large squashfs", "torcx: generator + apply", "mount -o loop,ro (util-linux)", 2.0)
