"""Shared helpers for the Polder benchmarks: binary lookup, ports, the server process, machine facts.

Only the standard library is used here, so every benchmark can import it before its own
third-party imports.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"

TARGET_DIR = Path("/root/.cache/polder-target")
VENV_BIN = Path("/root/.cache/polder-venv/bin")


def polder_bin(explicit: str | None = None) -> Path:
    """The binary to benchmark: --polder-bin, else $POLDER_BIN, else release if built, else debug."""
    candidates = []
    if explicit:
        candidates = [Path(explicit)]
    elif os.environ.get("POLDER_BIN"):
        candidates = [Path(os.environ["POLDER_BIN"])]
    else:
        candidates = [TARGET_DIR / "release" / "polder", TARGET_DIR / "debug" / "polder"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    sys.exit(f"no polder binary found (tried {', '.join(str(c) for c in candidates)}); set POLDER_BIN")


def binary_info(path: Path) -> dict:
    """Path, version, build profile (guessed from the path) and modification time of a binary."""
    try:
        version = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = "unknown"
    parts = path.parts
    profile = "release" if "release" in parts else "debug" if "debug" in parts else "unknown"
    mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
    return {"path": str(path), "version": version, "profile": profile, "mtime": mtime}


def find_tool(name: str) -> str:
    """A console script: on PATH, next to this interpreter, or in the project's venv."""
    found = shutil.which(name)
    if found:
        return found
    for directory in (Path(sys.executable).parent, VENV_BIN):
        candidate = directory / name
        if candidate.is_file():
            return str(candidate)
    sys.exit(f"{name} not found (install it in the venv: pip install -r bench/requirements.txt)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def port_accepts(port: int, timeout: float = 0.05) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.rstrip()
    except OSError:
        free = "unavailable"
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        nproc = os.cpu_count() or 1
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    return {
        "nproc": nproc,
        "cpu": cpu,
        "kernel": platform.release(),
        "free_g": free,
        "loadavg_at_start": load,
        "python": platform.python_version(),
    }


def machine_line(m: dict, extra: str = "") -> str:
    """The report line that names the machine and its load at the start of the run."""
    return (f"- Machine: nproc {m['nproc']}, {m['cpu']}, Linux {m['kernel']}, "
            f"load average at start {m['loadavg_at_start']}{extra}")


def free_block(m: dict) -> list[str]:
    """`free -g` as a fenced block for a report."""
    return ["`free -g`:", "", "```", m["free_g"], "```", ""]


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def proc_status_kb(pid: int, field: str) -> int | None:
    """A field of /proc/PID/status in kB (VmRSS, VmHWM, ...)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def median(values):
    return statistics.median(values) if values else None


class PolderServer:
    """`polder serve` on free loopback ports; a context manager that always stops it."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, extra_args=(), log_level="warn", env=None):
        self.binary = binary
        self.env_overrides = dict(env or {})
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.http_port, self.pg_port, self.flight_port = free_ports(3)
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self._log = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def flight_uri(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    @property
    def pg_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.pg_port} user=admin dbname=polder"

    @property
    def ports(self) -> list[int]:
        return [self.http_port, self.pg_port, self.flight_port]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        env = dict(os.environ)
        env["POLDER_LOG_LEVEL"] = self.log_level
        # Loopback only, and the benchmarks measure the engine and the protocols, not logins.
        env.setdefault("POLDER_AUTH_ENABLED", "false")
        # Repeated runs of one query measure the engine, not the results cache (the
        # acceleration benchmark turns it on where it measures it).
        env.setdefault("POLDER_RESULTS_CACHE_MB", "0")
        env.update(self.env_overrides)
        cmd = [
            str(self.binary), "serve",
            "--data-dir", str(self.data_dir),
            "--http-listen", f"127.0.0.1:{self.http_port}",
            "--pg-listen", f"127.0.0.1:{self.pg_port}",
            "--flight-listen", f"127.0.0.1:{self.flight_port}",
            *self.extra_args,
        ]
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"polder serve exited with code {self.proc.returncode}; see {self.log_path}:\n"
                + self.log_tail()
            )

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Waits until GET /ready returns 200; returns seconds since start."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.http_url + "/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started_at
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise TimeoutError(f"polder serve not ready after {timeout}s; see {self.log_path}")

    def wait_ports(self, timeout: float = 60.0, poll: float = 0.001) -> float:
        """Waits until all three ports accept TCP connections; returns seconds since start."""
        pending = set(self.ports)
        deadline = time.perf_counter() + timeout
        while pending:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"ports {sorted(pending)} not accepting after {timeout}s")
            self.check_alive()
            for port in list(pending):
                if port_accepts(port):
                    pending.discard(port)
            if pending:
                time.sleep(poll)
        return time.perf_counter() - self.started_at

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.proc.pid, "VmRSS") if self.proc else None

    def hwm_kb(self) -> int | None:
        return proc_status_kb(self.proc.pid, "VmHWM") if self.proc else None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def run_polder(binary: Path, args: list[str], check: bool = True, log_level: str = "warn"):
    """Runs a polder CLI command; returns (CompletedProcess, seconds)."""
    env = dict(os.environ)
    env["POLDER_LOG_LEVEL"] = log_level
    start = time.perf_counter()
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"polder {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc, elapsed


def fmt_s(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_rate(rows_per_s: float | None) -> str:
    if rows_per_s is None:
        return "—"
    if rows_per_s >= 1e6:
        return f"{rows_per_s / 1e6:.2f} M rows/s"
    if rows_per_s >= 1e3:
        return f"{rows_per_s / 1e3:.1f} k rows/s"
    return f"{rows_per_s:.0f} rows/s"


def md_table(headers: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(headers)
    sep = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(headers)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def fmt(cells):
        out = []
        for i, cell in enumerate(cells):
            cell = str(cell)
            out.append(cell.rjust(widths[i]) if align[i] == "r" else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)
