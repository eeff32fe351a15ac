#!/usr/bin/env python3
"""Backup and restore throughput on the TPC-H lake: `polder backup` / `restore` / `backup verify`
next to `cp -r` of the same lake directory, in the same run.

Steps: generate TPC-H with tpchgen-cli and load it into a Polder data directory exactly as
bench/tpch does (both reused when present: the data directory is bench/tpch's own); read every
lake file once so that every timed step starts from the same warm page cache; then time

1. a full `polder backup --to file://<work>/repo` and `cp -r <lake> <work>/cp-lake`;
2. an incremental `polder backup` with nothing changed (every file is reused; only the Delta logs
   are read and hashed) — `cp -r` has no incremental mode, so it is compared with the full copy;
3. `polder backup verify` (reads and hashes every file of the backup) next to
   `sha256sum` over the same files and the `cp -r` copy;
4. `polder restore` into an empty data directory and `cp -r <work>/cp-lake <work>/cp-back`;

and check that the restored deployment answers `count(*)` of every table as the original does.
Times are wall clock of the whole process (start-up, catalog, everything). MB/s is the lake's
size over the time. The work directory is deleted at the end unless --keep-work is given.

    /root/.cache/polder-venv/bin/python bench/backup/run.py --scale 1
    POLDER_BIN=/root/.cache/polder-target/debug/polder \\
      /root/.cache/polder-venv/bin/python bench/backup/run.py --scale 0.01 --results-dir /tmp
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402


def _import_tpch():
    """bench/tpch/run.py as a module: its data generation and load are reused."""
    spec = importlib.util.spec_from_file_location("bench_tpch_run", common.BENCH_DIR / "tpch" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tpch = _import_tpch()


def tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) under root."""
    files = 0
    size = 0
    for path in root.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
    return files, size


def warm(root: Path) -> float:
    """Reads every file once (so cp and polder both start from a warm page cache)."""
    start = time.perf_counter()
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(1 << 20):
                    pass
    return time.perf_counter() - start


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def polder(binary: Path, args: list[str]) -> tuple[str, float]:
    proc, seconds = common.run_polder(binary, args)
    return proc.stdout.strip(), seconds


def mb_per_s(size: int, seconds: float | None) -> float | None:
    if not seconds:
        return None
    return size / 1e6 / seconds


def counts(binary: Path, data_dir: Path) -> dict[str, int]:
    sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM tpch.{t}" for t in tpch.TABLES)
    proc, _ = common.run_polder(binary, ["sql", sql, "--format", "json", "--data-dir", str(data_dir)])
    result = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line:
            row = json.loads(line)
            result[row["t"]] = int(row["n"])
    return result


def fmt_mb_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} MB/s" if value >= 10 else f"{value:.1f} MB/s"


def fmt_ratio(polder_s: float | None, peer_s: float | None) -> str:
    if not polder_s or not peer_s:
        return "—"
    return f"{polder_s / peer_s:.2f}x"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    ap.add_argument("--polder-bin", help="binary (default $POLDER_BIN, else release, else debug)")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--keep-work", action="store_true", help="keep the repository and copies")
    args = ap.parse_args()

    binary = common.polder_bin(args.polder_bin)
    bin_info = common.binary_info(binary)
    machine = common.machine_info()
    label = tpch.scale_label(args.scale)
    print(f"binary: {binary} ({bin_info['profile']} build)")
    if bin_info["profile"] != "release":
        print("note: not a release build; the numbers check the harness, not performance")

    parquet_dir = args.data_root / f"tpch-sf{label}"
    data_dir = args.data_root / f"polder-tpch-sf{label}"
    gen_info = tpch.generate(args.scale, parquet_dir)
    load_info = tpch.load(binary, parquet_dir, data_dir)
    lake = data_dir / "lake"
    lake_files, lake_bytes = tree_size(lake)
    print(f"lake: {lake} — {lake_files} files, {lake_bytes / 1e6:.1f} MB")

    work = args.data_root / f"backup-sf{label}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repo = work / "repo"
    repo_url = f"file://{repo}"
    restored = work / "restored"
    cp_lake = work / "cp-lake"
    cp_back = work / "cp-back"

    try:
        warm_s = warm(lake)
        print(f"warm-up read of the lake: {warm_s:.2f} s")
        steps = {}

        cp_s = timed(["cp", "-r", str(lake), str(cp_lake)])
        out, full_s = polder(binary, ["backup", "--to", repo_url, "--data-dir", str(data_dir)])
        print(f"full backup: polder {full_s:.2f} s, cp -r {cp_s:.2f} s\n  {out}")
        steps["full backup"] = {"polder_s": full_s, "peer": "cp -r lake", "peer_s": cp_s, "output": out}

        out, incr_s = polder(binary, ["backup", "--to", repo_url, "--data-dir", str(data_dir)])
        print(f"incremental backup (nothing changed): polder {incr_s:.2f} s\n  {out}")
        steps["incremental backup, nothing changed"] = {
            "polder_s": incr_s, "peer": "cp -r lake (no incremental mode)", "peer_s": cp_s, "output": out}

        listing, _ = polder(binary, ["backup", "list", "--json", "--from", repo_url])
        manifests = [json.loads(line) for line in listing.splitlines() if line.strip()]

        data_files = [str(p) for p in (repo / "data").rglob("*") if p.is_file()]
        start = time.perf_counter()
        for i in range(0, len(data_files), 500):
            subprocess.run(["sha256sum", *data_files[i:i + 500]], check=True, capture_output=True)
        sha_s = time.perf_counter() - start
        out, verify_s = polder(binary, ["backup", "verify", "--from", repo_url])
        print(f"verify: polder {verify_s:.2f} s, sha256sum {sha_s:.2f} s, cp -r {cp_s:.2f} s\n  {out}")
        steps["verify"] = {"polder_s": verify_s, "peer": "sha256sum of the backup's files",
                           "peer_s": sha_s, "cp_s": cp_s, "output": out}

        cp_back_s = timed(["cp", "-r", str(cp_lake), str(cp_back)])
        out, restore_s = polder(binary, ["restore", "--from", repo_url, "--data-dir", str(restored)])
        print(f"restore: polder {restore_s:.2f} s, cp -r back {cp_back_s:.2f} s\n  {out}")
        steps["restore"] = {"polder_s": restore_s, "peer": "cp -r copy back", "peer_s": cp_back_s, "output": out}

        original = counts(binary, data_dir)
        after = counts(binary, restored)
        if original != after:
            print(f"MISMATCH: original {original}, restored {after}", file=sys.stderr)
            return 1
        print(f"restored counts match: {sum(after.values())} rows in {len(after)} tables")
        repo_files, repo_bytes = tree_size(repo)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    for step in steps.values():
        step["polder_mb_s"] = mb_per_s(lake_bytes, step["polder_s"])
        step["peer_mb_s"] = mb_per_s(lake_bytes, step["peer_s"])
        step["ratio"] = step["polder_s"] / step["peer_s"] if step["peer_s"] else None

    meta = {
        "benchmark": "backup",
        "date": common.now_iso(),
        "scale": label,
        "machine": machine,
        "loadavg_at_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "polder_binary": bin_info,
        "lake": {"path": str(lake), "files": lake_files, "bytes": lake_bytes},
        "repository": {"files": repo_files, "bytes": repo_bytes},
        "warm_up_read_s": warm_s,
        "generation": gen_info,
        "load": {k: load_info.get(k) for k in ("date", "total_rows", "total_seconds", "reused")},
        "rows": after,
        "manifests": manifests,
    }
    name = "backup" if label == "1" else f"backup-sf{label}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.results_dir / f"{name}.json"
    md_path = args.results_dir / f"{name}.md"
    json_path.write_text(json.dumps({"meta": meta, "steps": steps}, indent=2, default=str) + "\n")

    headers = ["step", "polder", "polder MB/s", "peer", "peer time", "peer MB/s", "polder / peer"]
    align = ["l", "r", "r", "l", "r", "r", "r"]
    rows = [[step, common.fmt_s(v["polder_s"]), fmt_mb_s(v["polder_mb_s"]), v["peer"],
             common.fmt_s(v["peer_s"]), fmt_mb_s(v["peer_mb_s"]), fmt_ratio(v["polder_s"], v["peer_s"])]
            for step, v in steps.items()]
    print()
    print(common.text_table(headers, rows, align))

    b = bin_info
    out = [
        f"# Backup and restore: Polder vs `cp -r` (TPC-H SF{label} lake)",
        "",
        f"- Date: {meta['date']}",
        common.machine_line(machine, f", at end {meta['loadavg_at_end']}"),
        f"- Polder binary: `{b['path']}` ({b['profile']} build, {b['version']}, built {b['mtime']})"
        + ("" if b["profile"] == "release" else " — **not a release build: these numbers say nothing "
           "about performance**"),
        f"- Lake: {lake_files} files, {lake_bytes / 1e6:.1f} MB (TPC-H SF{label} loaded with "
        "`polder import`, as bench/tpch does); repository after two backups: "
        f"{repo_files} files, {repo_bytes / 1e6:.1f} MB",
        "- Local disk to local disk (`file://` repository on the same filesystem); every file of the lake "
        f"read once before the timed steps ({warm_s:.2f} s), so each step starts from a warm page cache",
        "- Times are wall clock of the whole command (process start, catalog, hashing, writing); "
        "MB/s = lake size / time; polder / peer above 1 means Polder is slower",
        "",
        *common.free_block(machine),
        common.md_table(headers, rows, align),
        "",
        "What each Polder step does beyond the copy: the backup reads the catalog in one transaction, "
        "loads every table's Delta log, hashes every file (SHA-256) while copying and writes a "
        "manifest; the incremental backup reuses every data file by path and size and only reads and "
        "hashes the Delta logs; verify reads and hashes every file; restore checks each file's hash "
        "before it lands, restores the commit times of the Delta logs and writes the catalog.",
        "",
        f"RTO for this lake (restore, wall clock): {common.fmt_s(steps['restore']['polder_s'])}. "
        "RPO is the time since the last backup (docs/backup.md).",
        "",
        "Restored deployment checked: `count(*)` of every table equals the original's.",
        "",
        "## Command output",
        "",
        "```",
        *[f"{step}: {v['output']}" for step, v in steps.items()],
        "```",
    ]
    md_path.write_text("\n".join(out) + "\n")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
