#!/usr/bin/env python3
"""dbt projects: Polder's runner (`polder build`, `polder compile`) against dbt-core with
dbt-duckdb on the same project, measured in the same run.

Two projects:
1. examples/jaffle_shop (3 seeds, 7 models, 21 data tests). `polder build` against `dbt build`,
   --runs times each, alternating. "cold": a fresh data directory / DuckDB file and no target/
   (so dbt parses everything); "warm": a second build right after, on the built state, with
   dbt's partial parsing (the incremental model takes its incremental path).
2. A generated project of --models models (default 200) in --layers layers over one seed of
   --seed-rows rows: each model after the first layer refs 1-3 models of earlier layers (fixed
   random seed, so every run builds the same DAG), every 10th model has a not_null test.
   `polder compile` against `dbt compile` and `dbt parse` (each without target/, so nothing
   is cached), then `polder build` against `dbt build`.

Times are wall clock of the CLI process, median of --runs; ratio = Polder / dbt (below 1 means
Polder is faster). dbt runs with 4 threads (the project's profile), Polder with its defaults.
Reports go to bench/results/transform.json and .md.

Run: /root/.cache/polder-venv/bin/python bench/transform/run.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

DBT_VENV = Path(os.environ.get("POLDER_DBT_VENV", str(Path.home() / ".cache/polder-dbt")))
JAFFLE = common.REPO_DIR / "examples" / "jaffle_shop"
GENERATED_NAME = "bench_dag"

SCHEMA_MACRO = """{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
"""


# --------------------------------------------------------------------------------------------
# The generated project
# --------------------------------------------------------------------------------------------

def generate_project(root: Path, models: int, layers: int, seed_rows: int) -> dict:
    """Writes a dbt project of `models` models in `layers` layers; returns its shape."""
    if root.exists():
        shutil.rmtree(root)
    (root / "models").mkdir(parents=True)
    (root / "seeds").mkdir()
    (root / "macros").mkdir()
    (root / "dbt_project.yml").write_text(
        f"name: {GENERATED_NAME}\nversion: '1.0.0'\nconfig-version: 2\nprofile: {GENERATED_NAME}\n"
        "model-paths: ['models']\nseed-paths: ['seeds']\nmacro-paths: ['macros']\n"
        f"models:\n  {GENERATED_NAME}:\n    +materialized: table\n    +schema: dag\n"
        f"seeds:\n  {GENERATED_NAME}:\n    +schema: dag_raw\n"
    )
    (root / "macros" / "generate_schema_name.sql").write_text(SCHEMA_MACRO)
    rng = random.Random(42)
    with open(root / "seeds" / "events.csv", "w") as f:
        f.write("id,grp,amount,day\n")
        for i in range(1, seed_rows + 1):
            f.write(f"{i},{i % 17},{rng.randrange(1, 10_000)},2024-{1 + i % 12:02d}-{1 + i % 28:02d}\n")

    per_layer = [models // layers + (1 if n < models % layers else 0) for n in range(layers)]
    names_by_layer: list[list[str]] = []
    edges = 0
    tests = []
    index = 0
    for layer, count in enumerate(per_layer):
        directory = root / "models" / f"layer_{layer:02d}"
        directory.mkdir()
        names = []
        for _ in range(count):
            index += 1
            name = f"m{index:04d}"
            if layer == 0:
                sql = (f"select id, grp, amount * {1 + index % 5} as amount, day\n"
                       f"from {{{{ ref('events') }}}}\nwhere grp <> {index % 17}\n")
            else:
                earlier = [n for names_ in names_by_layer for n in names_]
                parents = rng.sample(earlier, k=min(len(earlier), rng.randint(1, 3)))
                # The first parent is one of the layer right before, so the DAG really is deep.
                parents[0] = rng.choice(names_by_layer[-1])
                parents = list(dict.fromkeys(parents))
                edges += len(parents)
                first = parents[0]
                sql = "select p0.id, p0.grp, p0.day,\n    p0.amount"
                sql += "".join(f" + coalesce(p{k}.amount, 0)" for k in range(1, len(parents)))
                sql += " as amount\n"
                sql += f"from {{{{ ref('{first}') }}}} as p0\n"
                for k, parent in enumerate(parents[1:], start=1):
                    sql += f"left join {{{{ ref('{parent}') }}}} as p{k} on p0.id = p{k}.id\n"
                sql += f"where p0.grp % {2 + index % 3} = {index % 2}\n" if index % 4 == 0 else ""
            (directory / f"{name}.sql").write_text(sql)
            names.append(name)
            if index % 10 == 0:
                tests.append(name)
        names_by_layer.append(names)
    lines = ["version: 2", "", "models:"]
    for name in tests:
        lines += [f"  - name: {name}", "    columns:", "      - name: id", "        data_tests:", "          - not_null"]
    (root / "models" / "schema.yml").write_text("\n".join(lines) + "\n")
    return {"models": models, "layers": layers, "edges": edges, "tests": len(tests), "seed_rows": seed_rows}


# --------------------------------------------------------------------------------------------
# Running the two tools
# --------------------------------------------------------------------------------------------

class DbtTool:
    def __init__(self, project: Path, work: Path, profile: str):
        self.project = project
        self.work = work
        self.database = work / "dbt.duckdb"
        self.profile = profile
        self.bin = DBT_VENV / "bin" / "dbt"
        if not self.bin.is_file():
            sys.exit(f"dbt not found at {self.bin} (tests/setup.sh makes that virtualenv; or set POLDER_DBT_VENV)")
        work.mkdir(parents=True, exist_ok=True)
        (work / "profiles.yml").write_text(
            f"{profile}:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
            f"      path: {self.database}\n      schema: main\n      threads: 4\n"
        )

    def reset(self) -> None:
        for path in [self.database, self.database.with_suffix(".duckdb.wal")]:
            path.unlink(missing_ok=True)
        shutil.rmtree(self.project / "target", ignore_errors=True)

    def run(self, *args: str) -> float:
        env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DBT_USE_COLORS="false")
        cmd = [str(self.bin), *args, "--project-dir", str(self.project), "--profiles-dir", str(self.work)]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.project)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"$ {' '.join(cmd)}\nexit code {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return elapsed


class PolderTool:
    def __init__(self, binary: Path, project: Path, work: Path):
        self.binary = binary
        self.project = project
        self.data_dir = work / "data"

    def reset(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.project / "target", ignore_errors=True)

    def run(self, *args: str) -> float:
        env = dict(os.environ, POLDER_LOG_LEVEL="warn", POLDER_AUTH_ENABLED="false")
        cmd = [str(self.binary), "--data-dir", str(self.data_dir), *args, "--project-dir", str(self.project)]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"$ {' '.join(cmd)}\nexit code {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return elapsed


def measure(label: str, runs: int, sides: dict, prepare: dict, action: dict, errors: list[str]) -> dict:
    """Alternates the sides run by run; per side a list of seconds, or None after a failure."""
    times: dict[str, list[float] | None] = {side: [] for side in sides}
    for run in range(runs):
        for side in sides:
            if times[side] is None:
                continue
            try:
                prepare[side]()
                times[side].append(action[side]())
            except RuntimeError as err:
                errors.append(f"{label}, {side}, run {run + 1}: {err}")
                print(f"  {label} {side}: FAILED (see report)", flush=True)
                times[side] = None
        shown = ", ".join(f"{s} {common.fmt_s(t[-1]) if t else '—'}" for s, t in times.items())
        print(f"  {label} run {run + 1}/{runs}: {shown}", flush=True)
    return {side: {"runs": t, "median": common.median(t) if t else None} for side, t in times.items()}


def ratio(polder: float | None, dbt: float | None) -> str:
    if polder is None or dbt is None or dbt == 0:
        return "—"
    return f"{polder / dbt:.2f}"


def dbt_versions() -> str:
    try:
        done = subprocess.run([str(DBT_VENV / "bin" / "pip"), "freeze", "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=60)
        pins = [line for line in done.stdout.splitlines() if line.split("==")[0] in ("dbt-core", "dbt-duckdb", "duckdb")]
        return ", ".join(pins)
    except OSError:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="repetitions of every measurement (median reported)")
    ap.add_argument("--models", type=int, default=200, help="models of the generated project")
    ap.add_argument("--layers", type=int, default=10, help="layers of the generated project's DAG")
    ap.add_argument("--seed-rows", type=int, default=1000, help="rows of the generated project's seed")
    ap.add_argument("--only", default="jaffle,dag", help="comma-separated: jaffle, dag")
    ap.add_argument("--polder-bin")
    ap.add_argument("--data-root", type=Path, default=common.DATA_DIR)
    ap.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--output", default="transform", help="report file stem in --results-dir")
    args = ap.parse_args()
    only = set(args.only.split(","))

    binary = common.polder_bin(args.polder_bin)
    binfo = common.binary_info(binary)
    machine = common.machine_info()
    work = args.data_root / "transform"
    work.mkdir(parents=True, exist_ok=True)
    print(f"polder: {binfo['path']} ({binfo['profile']}); dbt: {dbt_versions()}")
    errors: list[str] = []
    results: dict = {}

    if "jaffle" in only:
        print("jaffle_shop:")
        projects = {}
        for side in ("polder", "dbt"):
            projects[side] = work / f"jaffle-{side}" / "jaffle_shop"
            shutil.rmtree(projects[side].parent, ignore_errors=True)
            shutil.copytree(JAFFLE, projects[side], ignore=shutil.ignore_patterns("target", "logs"))
        polder = PolderTool(binary, projects["polder"], projects["polder"].parent)
        dbt = DbtTool(projects["dbt"], projects["dbt"].parent, "jaffle_shop")
        sides = {"polder": polder, "dbt": dbt}
        nothing = {side: (lambda: None) for side in sides}
        results["jaffle_cold_build"] = measure(
            "cold build", args.runs, sides, {s: t.reset for s, t in sides.items()},
            {s: (lambda t=t: t.run("build")) for s, t in sides.items()}, errors)
        results["jaffle_warm_build"] = measure(
            "warm build", args.runs, sides, nothing,
            {s: (lambda t=t: t.run("build")) for s, t in sides.items()}, errors)

    if "dag" in only:
        print(f"generated project ({args.models} models):")
        shape = None
        projects = {}
        for side in ("polder", "dbt"):
            projects[side] = work / f"dag-{side}" / GENERATED_NAME
            shape = generate_project(projects[side], args.models, args.layers, args.seed_rows)
        results["dag_shape"] = shape
        polder = PolderTool(binary, projects["polder"], projects["polder"].parent)
        dbt = DbtTool(projects["dbt"], projects["dbt"].parent, GENERATED_NAME)
        sides = {"polder": polder, "dbt": dbt}
        reset = {s: t.reset for s, t in sides.items()}
        results["dag_compile"] = measure(
            "compile", args.runs, sides, reset,
            {s: (lambda t=t: t.run("compile")) for s, t in sides.items()}, errors)
        results["dag_dbt_parse"] = measure(
            "dbt parse", args.runs, {"dbt": dbt}, {"dbt": dbt.reset}, {"dbt": lambda: dbt.run("parse")}, errors)
        results["dag_build"] = measure(
            "build", args.runs, sides, reset,
            {s: (lambda t=t: t.run("build")) for s, t in sides.items()}, errors)

    rows = []

    def row(label: str, key: str, dbt_key: str | None = None) -> None:
        if key not in results:
            return
        p = results[key].get("polder", {}).get("median")
        d = results[dbt_key or key]["dbt"]["median"]
        rows.append([label, common.fmt_s(p), common.fmt_s(d), ratio(p, d)])

    row("jaffle_shop: build, cold (empty database, no target/)", "jaffle_cold_build")
    row("jaffle_shop: build, warm (built state, incremental path)", "jaffle_warm_build")
    row(f"{args.models} models: polder compile vs dbt compile", "dag_compile")
    row(f"{args.models} models: polder compile vs dbt parse", "dag_compile", "dag_dbt_parse")
    row(f"{args.models} models: build (empty database)", "dag_build")
    headers = ["measurement", "polder (median)", "dbt-duckdb (median)", "ratio polder/dbt"]
    table = common.md_table(headers, rows, ["l", "r", "r", "r"])
    print()
    print(common.text_table(headers, rows, ["l", "r", "r", "r"]))

    report = {
        "date": common.now_iso(), "machine": machine, "binary": binfo, "dbt": dbt_versions(),
        "runs": args.runs, "results": results, "errors": errors,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{args.output}.json").write_text(json.dumps(report, indent=2) + "\n")
    shape = results.get("dag_shape")
    lines = [
        "# dbt projects: Polder vs dbt-duckdb",
        "",
        f"- Date: {report['date']}",
        common.machine_line(machine),
        f"- Polder: `{binfo['path']}` ({binfo['profile']} build, {binfo['version']}, built {binfo['mtime']})",
        f"- dbt: {report['dbt']}, 4 threads",
        f"- Median of {args.runs} runs each, wall clock of the CLI process, sides alternating",
    ]
    if shape:
        lines.append(f"- Generated project: {shape['models']} table models in {shape['layers']} layers, "
                     f"{shape['edges']} refs, {shape['tests']} not_null tests, one seed of {shape['seed_rows']} rows")
    if binfo["profile"] != "release":
        lines.append("- **Not a release build: these numbers say nothing about performance.**")
    lines += ["", table, ""]
    lines += common.free_block(machine)
    if errors:
        lines += ["## Failures", "", "```", *(e[:3000] for e in errors), "```", ""]
    (args.results_dir / f"{args.output}.md").write_text("\n".join(lines))
    print(f"\nwrote {args.results_dir / (args.output + '.md')}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
