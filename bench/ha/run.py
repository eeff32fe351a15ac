#!/usr/bin/env python3
"""Failover of scheduled work between two coordinators (issue 8's figure).

Two `polder serve` coordinators share one PostgreSQL catalog (a throwaway database on
127.0.0.1:5432) and one lake. A connection syncs a slow HTTP source on a schedule; while a
sync runs on the leader, the leader is killed with SIGKILL (or stopped with SIGTERM). Measured
from the signal:

- lease:   until the other coordinator reports `"scheduler": "leader"` on /ready;
- resumed: until the interrupted sync has started again on the survivor (kill -9 only);
- done:    until that resumed sync has succeeded (its table complete).

For several lease lengths (`POLDER_LEASE_TTL`). The peer for comparison is the lease length
itself: failover after a crash is bounded by it (expiry plus at most a third of it until the
next attempt), and a clean SIGTERM hands over without waiting for expiry.

    python bench/ha/run.py [--binary PATH] [--ttl 15 --ttl 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "results"


class SlowPages(http.server.BaseHTTPRequestHandler):
    pages = 10
    per_page = 50
    delay = 0.3

    def log_message(self, *args):
        pass

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse
        page = int(parse_qs(urlparse(self.path).query).get("page", ["1"])[0])
        time.sleep(self.delay)
        start = (page - 1) * self.per_page
        items = [] if page > self.pages else [{"id": start + i} for i in range(self.per_page)]
        body = json.dumps({"items": items}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def request_json(method: str, url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def scheduler_role(server: common.PolderServer) -> str | None:
    try:
        with urllib.request.urlopen(server.http_url + "/ready", timeout=2) as response:
            return json.load(response).get("scheduler")
    except Exception:  # noqa: BLE001 - a dead or draining server has no role
        return None


def wait(check, timeout: float, poll: float = 0.02):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("timed out")


def psql_admin(sql: str) -> None:
    import psycopg
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(sql)


def one_round(binary: Path, ttl: float, how: str, hosts: str, api_port: int, work: Path) -> dict:
    database = f"polder_bench_ha_{uuid.uuid4().hex[:8]}"
    psql_admin(f"CREATE DATABASE {database}")
    lake = f"file://{work}/lake-{database}"
    args = ["--catalog", f"postgres://postgres@127.0.0.1:5432/{database}", "--lake", lake]
    env = {"POLDER_LEASE_TTL": str(ttl), "POLDER_SHUTDOWN_TIMEOUT": "5"}
    # "two hosts": distinct node names, so liveness is judged as across machines (lease expiry,
    # job heartbeats); "one host": a dead holder's process is seen to be gone at once.
    servers = [common.PolderServer(binary, work / f"{database}-{i}", work / f"{database}-{i}.log",
                                   extra_args=args, log_level="info",
                                   env={**env, **({"POLDER_NODE_NAME": f"node-{i}"} if hosts == "two hosts" else {})})
               for i in range(2)]
    try:
        for server in servers:
            server.start()
            server.wait_ready()
        leader = wait(lambda: next((s for s in servers if scheduler_role(s) == "leader"), None), timeout=3 * ttl + 10)
        survivor = next(s for s in servers if s is not leader)
        request_json("POST", survivor.http_url + "/api/v1/connections", {
            "name": "slow", "source": "http",
            "config": {"url": f"http://127.0.0.1:{api_port}/items", "records_path": "items",
                       "pagination": {"type": "page_number", "param": "page", "size": SlowPages.per_page}},
            "streams": [{"name": "items", "sync_mode": "full_refresh_overwrite"}],
            "schedule": "*/2 * * * * *",
        })

        def jobs():
            return get_json(survivor.http_url + "/api/v1/jobs?connection=slow")["jobs"]

        running = wait(lambda: [j for j in jobs() if j["status"] == "running"], timeout=60)[0]
        signalled = time.perf_counter()
        if how == "kill -9":
            leader.proc.kill()
            leader.proc.wait()
        else:
            leader.proc.send_signal(signal.SIGTERM)
        wait(lambda: scheduler_role(survivor) == "leader", timeout=3 * ttl + 30)
        lease_s = time.perf_counter() - signalled
        row = {"ttl_s": ttl, "hosts": hosts, "signal": how, "lease_s": lease_s, "resumed_s": None, "done_s": None}
        if how == "kill -9":
            # Picked up: the survivor's first sync after the kill (the resumption of the
            # interrupted one, or its next scheduled run when that came first).
            def picked_up(status: str | None = None):
                return [j for j in jobs() if j["runner"].endswith(f":{survivor.proc.pid}")
                        and j["id"] != running["id"] and (status is None or j["status"] == status)]

            wait(picked_up, timeout=3 * ttl + 90)
            row["resumed_s"] = time.perf_counter() - signalled
            wait(lambda: picked_up("succeeded"), timeout=120)
            row["done_s"] = time.perf_counter() - signalled
            row["picked_up_by"] = picked_up()[-1]["trigger"]
        leader.proc.wait(timeout=60)
        row["interrupted_job"] = running["id"]
        return row
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
            server.stop()
        psql_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", help="polder binary (default: the release build)")
    parser.add_argument("--ttl", type=float, action="append", help="lease lengths in seconds (default 15 and 5)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", default="failover")
    options = parser.parse_args()
    binary = common.polder_bin(options.binary)
    ttls = options.ttl or [15.0, 5.0]
    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # a killed coordinator hangs up mid-page: expected here

    api = QuietServer(("127.0.0.1", 0), SlowPages)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    rows = []
    cases = [(ttl, hosts, how) for ttl in ttls for hosts in ("two hosts", "one host") for how in ("kill -9", "SIGTERM")]
    with tempfile.TemporaryDirectory(prefix="polder-bench-ha-") as tmp:
        for ttl, hosts, how in cases:
            for round_number in range(options.rounds):
                row = one_round(binary, ttl, how, hosts, api.server_port, Path(tmp))
                print(f"ttl {ttl:>4} s  {hosts:<9} {how:<8} round {round_number + 1}: lease {row['lease_s']:.2f} s"
                      + (f", resumed {row['resumed_s']:.2f} s, done {row['done_s']:.2f} s" if row["resumed_s"] else ""),
                      flush=True)
                rows.append(row)
    api.shutdown()

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    table = []
    for ttl, hosts, how in cases:
        chosen = [r for r in rows if r["ttl_s"] == ttl and r["hosts"] == hosts and r["signal"] == how]
        lease = med([r["lease_s"] for r in chosen])
        resumed = med([r["resumed_s"] for r in chosen])
        done = med([r["done_s"] for r in chosen])
        table.append([f"{ttl:g} s", hosts, how, f"{lease:.2f} s", f"{lease / ttl:.2f}",
                      f"{resumed:.2f} s" if resumed is not None else "–",
                      f"{done:.2f} s" if done is not None else "–"])
    machine = common.machine_info()
    info = common.binary_info(binary)
    headers = ["lease TTL", "coordinators on", "signal", "lease taken over (median)", "÷ TTL", "interrupted sync picked up", "picked-up sync done"]
    markdown = "\n".join([
        "# Failover of scheduled work (bench/ha/run.py)",
        "",
        common.machine_line(machine, f"; binary: {info.get('profile', '?')} build, {info.get('path', binary)}"),
        f"{common.now_iso()}; {options.rounds} rounds each; two coordinators on one PostgreSQL catalog; "
        f"the sync being interrupted reads {SlowPages.pages} pages of {SlowPages.delay} s.",
        "",
        "Measured from the signal to the leader. On two hosts, a crash is noticed when the lease expires (plus at most a",
        "third of it until the survivor's next attempt) and the running sync when its heartbeat is 20 s old; on one host the",
        "dead process is seen at once. SIGTERM hands the lease over without waiting (the survivor's next attempt).",
        "\"Two hosts\" are two node names (`POLDER_NODE_NAME`) on this one machine, so that liveness is judged as across",
        "machines. Failover is a matter of timers, not CPU: the build profile and the machine's load hardly matter here.",
        "",
        common.md_table(headers, table),
        "",
    ])
    print()
    print(common.text_table(headers, table))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{options.output}.md").write_text(markdown)
    (RESULTS / f"{options.output}.json").write_text(json.dumps({"machine": machine, "binary": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
