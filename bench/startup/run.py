#!/usr/bin/env python3
"""Startup time and idle memory of `polder serve` on an existing data directory.

Once: `polder serve --demo` loads the demo dataset into a data directory of its own, then stops.
Then, --runs times (default 5): exec `polder serve` on that directory (without --demo unless
--with-demo-flag) and measure
  (a) seconds from exec until the HTTP, PostgreSQL and Flight SQL ports all accept TCP
      connections (and, for information, until GET /ready answers 200);
  (b) resident memory (VmRSS from /proc/PID/status) after the server has been idle for
      --idle seconds (default 5) since its ports opened.
Medians are compared with the targets: startup < 1 s, idle RSS < 150 MB.

Run: /root/.cache/polder-venv/bin/python bench/startup/run.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

TARGET_STARTUP_S = 1.0
TARGET_RSS_MB = 150.0


def prepare(binary: Path, data_dir: Path, log: Path) -> dict:
    marker = data_dir / "bench-demo-loaded.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        print(f"demo: already loaded in {data_dir} ({info['seconds']:.2f} s on {info['date']})")
        return info
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    print(f"demo: loading into {data_dir} with polder serve --demo")
    with common.PolderServer(binary, data_dir, log, extra_args=["--demo"]) as server:
        seconds = server.wait_ready(timeout=600)
    info = {"date": common.now_iso(), "binary": str(binary), "seconds": round(seconds, 3)}
    marker.write_text(json.dumps(info, indent=2))
    print(f"demo: loaded and ready in {seconds:.2f} s")
    return info


def one_run(binary: Path, data_dir: Path, log: Path, idle: float, extra) -> dict:
    server = common.PolderServer(binary, data_dir, log, extra_args=extra)
    try:
        server.start()
        ports_s = server.wait_ports(timeout=120)
        ready_s = server.wait_ready(timeout=120)
        rss_at_ready = server.rss_kb()
        time.sleep(max(0.0, idle - (time.perf_counter() - server.started_at - ports_s)))
        server.check_alive()
        rss_idle = server.rss_kb()
        hwm = server.hwm_kb()
    finally:
        server.stop()
    return {
        "ports_s": ports_s,
        "ready_s": ready_s,
        "rss_at_ready_mb": rss_at_ready / 1024 if rss_at_ready else None,
        "rss_idle_mb": rss_idle / 1024 if rss_idle else None,
        "hwm_mb": hwm / 1024 if hwm else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading VmRSS")
    ap.add_argument("--polder-bin")
    ap.add_argument("--with-demo-flag", action="store_true",
                    help="pass --demo on the measured runs too (it finds the demo loaded)")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    binary = common.polder_bin(args.polder_bin)
    bin_info = common.binary_info(binary)
    machine = common.machine_info()
    data_dir = args.data_root / "polder-startup-demo"
    log = args.data_root / "polder-startup-demo.serve.log"
    print(f"polder: {binary} ({bin_info['profile']}, {bin_info['version']}); "
          f"nproc {machine['nproc']}, load {machine['loadavg_at_start']}")

    demo = prepare(binary, data_dir, log)
    extra = ["--demo"] if args.with_demo_flag else []
    runs = []
    for i in range(args.runs):
        r = one_run(binary, data_dir, log, args.idle, extra)
        runs.append(r)
        print(f"run {i + 1}: ports accepting after {common.fmt_s(r['ports_s'])}, /ready 200 after "
              f"{common.fmt_s(r['ready_s'])}, RSS {r['rss_at_ready_mb']:.1f} MB at ready, "
              f"{r['rss_idle_mb']:.1f} MB after {args.idle:g} s idle (peak {r['hwm_mb']:.1f} MB)")

    med_ports = common.median([r["ports_s"] for r in runs])
    med_ready = common.median([r["ready_s"] for r in runs])
    med_rss = common.median([r["rss_idle_mb"] for r in runs])
    ok_start = med_ports < TARGET_STARTUP_S
    ok_rss = med_rss < TARGET_RSS_MB
    rows = [
        ["startup: exec until HTTP, PG and Flight ports accept (median)", common.fmt_s(med_ports),
         f"< {TARGET_STARTUP_S:g} s", "PASS" if ok_start else "FAIL"],
        ["startup: exec until GET /ready is 200 (median)", common.fmt_s(med_ready), "", ""],
        [f"RSS after {args.idle:g} s idle (median)", f"{med_rss:.1f} MB", f"< {TARGET_RSS_MB:g} MB",
         "PASS" if ok_rss else "FAIL"],
    ]
    headers = ["measure", "value", "target", "result"]
    print()
    print(common.text_table(headers, rows, ["l", "r", "r", "l"]))

    meta = {
        "benchmark": "startup",
        "date": common.now_iso(),
        "machine": machine,
        "polder_binary": bin_info,
        "data_dir": str(data_dir),
        "demo_load": demo,
        "measured_with_demo_flag": args.with_demo_flag,
        "idle_s": args.idle,
    }
    summary = {"median_ports_s": med_ports, "median_ready_s": med_ready, "median_rss_idle_mb": med_rss,
               "target_startup_s": TARGET_STARTUP_S, "target_rss_mb": TARGET_RSS_MB,
               "startup_ok": ok_start, "rss_ok": ok_rss}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "startup.json").write_text(
        json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=2) + "\n")
    m = machine
    md = [
        "# Polder startup and idle memory",
        "",
        f"- Date: {meta['date']}",
        common.machine_line(m),
        f"- Polder binary: `{bin_info['path']}` ({bin_info['profile']} build, {bin_info['version']}, built {bin_info['mtime']})",
        f"- Data directory with the demo dataset loaded once beforehand ({demo['seconds']:.2f} s to load and be ready"
        f" on {demo['date']}); measured runs {'with' if args.with_demo_flag else 'without'} `--demo`",
        f"- {len(runs)} runs; RSS read from /proc/PID/status VmRSS {args.idle:g} s after the ports opened",
        "",
        *common.free_block(m),
        common.md_table(headers, rows, ["l", "r", "r", "l"]),
        "",
        common.md_table(
            ["run", "ports accepting", "/ready 200", "RSS at ready", "RSS after idle", "peak RSS"],
            [[i + 1, common.fmt_s(r["ports_s"]), common.fmt_s(r["ready_s"]), f"{r['rss_at_ready_mb']:.1f} MB",
              f"{r['rss_idle_mb']:.1f} MB", f"{r['hwm_mb']:.1f} MB"] for i, r in enumerate(runs)],
            ["r", "r", "r", "r", "r", "r"],
        ),
        "",
        "MB here is MiB (VmRSS kB / 1024).",
    ]
    (args.results_dir / "startup.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.results_dir / 'startup.json'} and {args.results_dir / 'startup.md'}")
    return 1 if args.strict and not (ok_start and ok_rss) else 0


if __name__ == "__main__":
    sys.exit(main())
