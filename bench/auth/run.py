#!/usr/bin/env python3
"""Authorization overhead: a 1-row query's latency with authentication on vs off, same run.

Two `polder serve` processes on identical data directories (a one-row table `bench.one`):
one with authentication off (loopback), one with it on, queried by an analyst who reads the
table through a schema grant — so every query pays the token/session check and the grant check
where the table name resolves. For each interface (PostgreSQL wire via psycopg, Flight SQL via
ADBC, HTTP with a bearer token on a kept-alive connection) the two servers are queried in
alternating batches (so that machine noise hits both alike), and the medians are compared.

Target (issue 3): the overhead is under 5 % or under 100 µs per query.

Run: /root/.cache/polder-venv/bin/python bench/auth/run.py [--queries 2000] [--batch 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

import adbc_driver_flightsql.dbapi as flight_sql  # noqa: E402
import psycopg  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password-1"
READER_PASSWORD = "bench-reader-password-1"
QUERY = "SELECT id, label FROM bench.one"
TARGET_RATIO = 1.05
TARGET_DELTA_US = 100.0


def prepare(binary: Path, data_dir: Path) -> None:
    common.run_polder(binary, ["sql", "--data-dir", str(data_dir),
                               "CREATE SCHEMA bench; CREATE TABLE bench.one (id INT, label TEXT); "
                               "INSERT INTO bench.one VALUES (1, 'one')"])


def http_post(url: str, body: dict, headers: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


class Clients:
    """One connection per interface to one server, as `user` (None: authentication off)."""

    def __init__(self, server: common.PolderServer, user: str | None, password: str | None):
        credentials = f" user={user} password={password}" if user else " user=admin"
        self.pg = psycopg.connect(f"host=127.0.0.1 port={server.pg_port} dbname=polder{credentials}", autocommit=True)
        kwargs = {"username": user, "password": password} if user else {}
        self.flight = flight_sql.connect(server.flight_uri, db_kwargs=kwargs)
        self.cursor = self.flight.cursor()
        import http.client
        self.http = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        self.headers = {"content-type": "application/json"}
        if user:
            token = http_post(f"{server.http_url}/api/v1/login", {"username": user, "password": password}, {})["token"]
            self.headers["authorization"] = f"Bearer {token}"
        # Bytes, so that http.client sends headers and body in one packet (no Nagle stall).
        self.body = json.dumps({"sql": QUERY}).encode()

    def run(self, interface: str) -> float:
        start = time.perf_counter()
        if interface == "postgres":
            rows = self.pg.execute(QUERY).fetchall()
        elif interface == "flight_sql":
            self.cursor.execute(QUERY)
            rows = self.cursor.fetchall()
        else:
            self.http.request("POST", "/api/v1/sql", body=self.body, headers=self.headers)
            response = self.http.getresponse()
            rows = json.loads(response.read())["rows"]
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {rows}")
        elapsed = time.perf_counter() - start
        if len(rows) != 1:
            raise RuntimeError(f"{interface}: expected one row, got {rows!r}")
        return elapsed

    def close(self):
        self.cursor.close()
        self.flight.close()
        self.pg.close()
        self.http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polder-bin")
    parser.add_argument("--queries", type=int, default=2000, help="queries per interface and server")
    parser.add_argument("--batch", type=int, default=100, help="queries per batch before switching server")
    args = parser.parse_args()

    binary = common.polder_bin(args.polder_bin)
    machine = common.machine_info()
    work = Path(tempfile.mkdtemp(prefix="polder-bench-auth-"))
    try:
        for name in ("off", "on"):
            prepare(binary, work / name)
        off = common.PolderServer(binary, work / "off", work / "off.log", env={"POLDER_AUTH_ENABLED": "false"})
        on = common.PolderServer(binary, work / "on", work / "on.log",
                                 env={"POLDER_AUTH_ENABLED": "true", "POLDER_ADMIN_PASSWORD": ADMIN_PASSWORD})
        with off, on:
            off.wait_ready()
            on.wait_ready()
            admin = {"authorization": "Basic " + __import__("base64").b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}
            urllib.request.urlopen(urllib.request.Request(
                f"{on.http_url}/api/v1/users", method="POST", headers={**admin, "content-type": "application/json"},
                data=json.dumps({"name": "reader", "role": "analyst", "password": READER_PASSWORD}).encode()), timeout=30)
            http_post(f"{on.http_url}/api/v1/sql", {"sql": "GRANT SELECT ON SCHEMA bench TO reader"}, admin)
            clients = {"off": Clients(off, None, None), "on": Clients(on, "reader", READER_PASSWORD)}
            results = {}
            for interface in ("postgres", "flight_sql", "http"):
                samples = {"off": [], "on": []}
                for side in ("off", "on"):  # warm-up
                    for _ in range(20):
                        clients[side].run(interface)
                while len(samples["on"]) < args.queries:
                    for side in ("off", "on"):
                        for _ in range(args.batch):
                            samples[side].append(clients[side].run(interface))
                med = {side: statistics.median(v) * 1e6 for side, v in samples.items()}
                p95 = {side: statistics.quantiles(v, n=20)[18] * 1e6 for side, v in samples.items()}
                ratio = med["on"] / med["off"]
                delta = med["on"] - med["off"]
                results[interface] = {
                    "median_us_off": round(med["off"], 1), "median_us_on": round(med["on"], 1),
                    "p95_us_off": round(p95["off"], 1), "p95_us_on": round(p95["on"], 1),
                    "ratio": round(ratio, 3), "delta_us": round(delta, 1),
                    "meets_target": ratio < TARGET_RATIO or delta < TARGET_DELTA_US,
                }
                print(f"{interface:<11} off {med['off']:8.0f} µs  on {med['on']:8.0f} µs  "
                      f"ratio {ratio:5.3f}  delta {delta:+7.0f} µs")
            for c in clients.values():
                c.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {"date": common.now_iso(), "binary": common.binary_info(binary), "machine": machine,
              "queries": args.queries, "batch": args.batch, "query": QUERY, "results": results}
    common.RESULTS_DIR.mkdir(exist_ok=True)
    (common.RESULTS_DIR / "auth-overhead.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Authorization overhead: 1-row query, authentication on vs off",
        "",
        f"- Date: {report['date']}; binary: {report['binary']['profile']} ({report['binary']['version']})",
        common.machine_line(machine),
        f"- Query: `{QUERY}`, {args.queries} per interface and server, alternating batches of {args.batch};"
        " on: an analyst reading through a schema grant (token/session check + grant check per query)",
        f"- Target: overhead < {int((TARGET_RATIO - 1) * 100)} % or < {TARGET_DELTA_US:.0f} µs",
        "",
        "| interface | median off (µs) | median on (µs) | p95 off | p95 on | on/off | delta (µs) | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for interface, r in results.items():
        lines.append(f"| {interface} | {r['median_us_off']:.0f} | {r['median_us_on']:.0f} | {r['p95_us_off']:.0f} | "
                     f"{r['p95_us_on']:.0f} | {r['ratio']:.3f} | {r['delta_us']:+.0f} | "
                     f"{'met' if r['meets_target'] else 'MISSED'} |")
    (common.RESULTS_DIR / "auth-overhead.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {common.RESULTS_DIR / 'auth-overhead.md'}")


if __name__ == "__main__":
    main()
