"""Offline checks of the deployment files (issue 8): the Dockerfile, the Compose files, the
load balancer configs and the monitoring files (Grafana dashboard, Prometheus rules).

Needs only PyYAML; nothing is started. Every PromQL metric name is checked against the names
the Rust sources actually export (`counter!`/`gauge!`/`histogram!`), so a renamed metric breaks
this test instead of a dashboard. When `promtool` or `haproxy` are on PATH they also check the
files; otherwise those two tests are skipped.

Run: python -m pytest -q tests/deploy
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
COMPOSE_PROD = ROOT / "deploy" / "compose" / "docker-compose.prod.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"
RULES = ROOT / "deploy" / "monitoring" / "prometheus-rules.yml"
NGINX = ROOT / "deploy" / "lb" / "nginx.conf"
HAPROXY = ROOT / "deploy" / "lb" / "haproxy.cfg"

CORE_SERVICES = ("polder", "postgres", "minio")
POLDER_PORTS = ("9047", "31010", "32010")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY", re.IGNORECASE)
# ${VAR}, ${VAR:-default}, ${VAR:?message}; `$${...}` is an escaped literal, not interpolation.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


# --- helpers ---------------------------------------------------------------------------------


class Reset:
    """A Compose `!reset` / `!override` value: replaces the base value instead of merging."""

    def __init__(self, tag: str, value):
        self.tag = tag
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that understands Compose's merge tags."""


def _merge_tag(loader, node):
    if isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Reset(node.tag, value)


ComposeLoader.add_constructor("!reset", _merge_tag)
ComposeLoader.add_constructor("!override", _merge_tag)


def load_compose(path: Path) -> dict:
    with path.open() as f:
        return yaml.load(f, Loader=ComposeLoader)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def effective_ports(base: dict, override: dict | None) -> list:
    """Ports after Compose merges an override: appended, unless the override resets them."""
    base_ports = list(base.get("ports") or [])
    if override is None or "ports" not in override:
        return base_ports
    ports = override["ports"]
    if isinstance(ports, Reset):
        return list(ports.value or [])
    return base_ports + list(ports or [])


def container_port(entry) -> str:
    if isinstance(entry, dict):
        return str(entry["target"])
    return str(entry).split("/")[0].rsplit(":", 1)[-1]


def exported_metrics() -> set[str]:
    """Metric names the Rust sources export, plus what Prometheus derives from them."""
    pattern = re.compile(r"\b(counter|gauge|histogram)!\(\s*\"([A-Za-z_:][A-Za-z0-9_:]*)\"")
    names: set[str] = {"up"}
    for path in (ROOT / "crates").rglob("*.rs"):
        for kind, name in pattern.findall(path.read_text(encoding="utf-8")):
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels, variables excluded)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    # Grouping clauses go entirely, so that `sum by (x) (...)` reads as the call `sum (...)`.
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        name = m.group()
        if m.start() > 0 and s[m.start() - 1] in "$.0123456789":
            continue  # a Grafana variable, or part of a number such as 1e3
        if s[m.end():].lstrip().startswith("("):
            continue  # a function call
        if name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    found = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return found


def rules_exprs(rules: dict) -> list[tuple[str, str]]:
    return [
        (rule.get("alert") or rule.get("record"), rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        logical.append(current)
        current = ""
    out = []
    for text in logical:
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def compose_prod() -> dict:
    return load_compose(COMPOSE_PROD)


@pytest.fixture(scope="module")
def metrics() -> set[str]:
    names = exported_metrics()
    assert "polder_queries_total" in names, "the metric scan of crates/ found nothing"
    return names


# --- Compose ---------------------------------------------------------------------------------


def test_compose_has_the_three_services_each_with_a_healthcheck(compose):
    """polder, postgres and minio exist, and each has a healthcheck with a test command."""
    services = compose["services"]
    for name in CORE_SERVICES:
        assert name in services, f"service {name} missing"
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"service {name} has no healthcheck"
        assert not check.get("disable"), f"service {name} disables its healthcheck"


def test_polder_waits_for_healthy_postgres_and_minio(compose):
    """polder depends on postgres and minio with condition service_healthy."""
    depends = compose["services"]["polder"].get("depends_on")
    assert isinstance(depends, dict), "depends_on must be the long form with conditions"
    for name in ("postgres", "minio"):
        assert depends.get(name, {}).get("condition") == "service_healthy", name
    # Any one-shot it waits for (the bucket creation) must have finished successfully.
    for name, spec in depends.items():
        if name not in CORE_SERVICES:
            assert spec.get("condition") == "service_completed_successfully", name


def test_polder_uses_postgres_catalog_and_s3_lake(compose):
    """polder's environment points the catalog at the postgres service and the lake at MinIO."""
    env = environment(compose["services"]["polder"])
    assert env["POLDER_CATALOG"].startswith("postgres://")
    assert "@postgres:5432/" in env["POLDER_CATALOG"]
    assert env["POLDER_LAKE"].startswith("s3://")
    assert "minio:9000" in env["POLDER_S3_ENDPOINT"]


def test_data_lives_in_named_volumes(compose):
    """polder, postgres and minio mount a top-level named volume (not a bind mount)."""
    named = set((compose.get("volumes") or {}).keys())
    assert named, "no top-level named volumes"
    for name in CORE_SERVICES:
        mounts = compose["services"][name].get("volumes") or []
        sources = {
            (m["source"] if isinstance(m, dict) else str(m).split(":", 1)[0]) for m in mounts
        }
        assert sources & named, f"service {name} mounts no named volume: {mounts}"


def test_polder_publishes_its_three_ports(compose):
    """HTTP 9047, PostgreSQL wire 31010 and Flight SQL 32010 are published."""
    published = {container_port(p) for p in compose["services"]["polder"].get("ports", [])}
    for port in POLDER_PORTS:
        assert port in published, f"port {port} not published: {published}"


def test_prod_sets_resource_limits_for_every_service(compose, compose_prod):
    """Every service of the base file gets deploy.resources.limits (cpus and memory) in prod."""
    prod_services = compose_prod["services"]
    for name in compose["services"]:
        limits = (
            prod_services.get(name, {}).get("deploy", {}).get("resources", {}).get("limits")
        )
        assert limits, f"service {name} has no resource limits in the prod override"
        assert limits.get("cpus") and limits.get("memory"), f"{name}: {limits}"
        assert prod_services[name].get("restart"), f"service {name} has no restart policy"


def test_prod_publishes_no_postgres_or_minio_port(compose, compose_prod):
    """After merging the prod override (which appends ports unless reset), postgres and minio
    publish nothing."""
    for name in ("postgres", "minio"):
        ports = effective_ports(compose["services"][name], compose_prod["services"].get(name))
        assert ports == [], f"{name} still publishes {ports} in production"


def test_prod_requires_every_secret(compose, compose_prod):
    """In the prod override every secret-looking variable is required (`${X:?...}`), never
    defaulted, and every base environment entry that carries a secret is overridden."""
    text = COMPOSE_PROD.read_text()
    secret_refs = [(v, mod) for v, mod in INTERPOLATION.findall(text) if SECRET_NAME.search(v)]
    assert secret_refs, "the prod override references no secret at all"
    for var, modifier in secret_refs:
        assert modifier.startswith(":?") or modifier.startswith("?"), (
            f"${{{var}{modifier}}} is not required"
        )
    for name, service in compose_prod["services"].items():
        for key, value in environment(service).items():
            refs = INTERPOLATION.findall(value)
            if SECRET_NAME.search(key) or any(SECRET_NAME.search(v) for v, _ in refs):
                assert refs, f"{name}.{key} is a literal secret"
                for var, modifier in refs:
                    assert modifier.startswith(":?"), f"{name}.{key}: ${{{var}{modifier}}}"
    for name, service in compose["services"].items():
        prod_env = environment(compose_prod["services"].get(name, {}))
        for key, value in environment(service).items():
            carries_secret = SECRET_NAME.search(key) or any(
                SECRET_NAME.search(v) for v, _ in INTERPOLATION.findall(value)
            )
            if carries_secret:
                assert key in prod_env, f"{name}.{key} keeps its development default in prod"


def test_env_example_lists_every_variable_the_compose_files_use():
    """`.env.example` names every variable the two compose files interpolate."""
    listed = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    used = {
        var for path in (COMPOSE, COMPOSE_PROD) for var, _ in INTERPOLATION.findall(path.read_text())
    }
    optional = {"MINIO_IMAGE", "MC_IMAGE"}  # image pins with defaults, documented in the file
    missing = used - listed - optional
    assert not missing, f"not in .env.example: {sorted(missing)}"


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    """At least two FROM stages with a COPY --from, a final USER that is not root, a
    HEALTHCHECK whose tool is installed (or is polder), and the three ports exposed."""
    instructions = dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert len(froms) >= 2, froms
    assert any(word == "COPY" and "--from=" in args for word, args in instructions)
    users = [args for word, args in instructions if word == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runs as {users[-1]}"
    checks = [args for word, args in instructions if word == "HEALTHCHECK"]
    assert checks and checks[-1].upper() != "NONE"
    assert "/health" in checks[-1]
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    final_stage = " ".join(args for _, args in instructions[last_from:])
    command = checks[-1].split("CMD", 1)[-1].split()[0]
    if command not in ("polder", "/usr/local/bin/polder"):
        assert re.search(rf"install[^&]*\b{re.escape(command)}\b", final_stage), (
            f"the HEALTHCHECK runs {command}, which the runtime stage does not install"
        )
    exposed = " ".join(args for word, args in instructions if word == "EXPOSE").split()
    for port in POLDER_PORTS:
        assert port in exposed, f"EXPOSE lacks {port}"


# --- monitoring ------------------------------------------------------------------------------


def test_promql_metric_scanner_finds_names_and_skips_functions():
    """The expression scanner used below returns metric names, not functions, labels,
    keywords or Grafana variables (so the metric checks can fail)."""
    expr = (
        'histogram_quantile(0.95, sum by (le, interface) '
        '(rate(polder_query_duration_seconds_bucket{job=~"$job"}[$__rate_interval]))) '
        '> 1e3 and on (instance) made_up_metric offset 5m'
    )
    assert promql_metrics(expr) == {"polder_query_duration_seconds_bucket", "made_up_metric"}


def test_grafana_dashboard_uses_only_exported_metrics(metrics):
    """The dashboard is valid JSON with a recent schemaVersion, and every PromQL expression
    (panels and variable queries) names at least one metric, all exported by Polder."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard.get("title") and dashboard.get("uid")
    assert 36 <= dashboard["schemaVersion"] <= 41
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 8, "too few panels with queries"
    for variable in dashboard.get("templating", {}).get("list", []):
        definition = variable.get("definition", "")
        m = re.match(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", definition)
        if m:
            exprs.append((f"variable {variable['name']}", m.group(1)))
    used = set()
    for title, expr in exprs:
        names = promql_metrics(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = names - metrics
        assert not unknown, f"{title}: unknown metrics {unknown} in {expr!r}"
        used |= names
    # The panels the brief asks for: rate, errors, latency, rows/bytes, cache, reflections.
    for needed in (
        "polder_queries_total",
        "polder_query_errors_total",
        "polder_query_duration_seconds_bucket",
        "polder_rows_returned_total",
        "polder_bytes_returned_total",
        "polder_results_cache_hits_total",
        "polder_results_cache_misses_total",
        "polder_reflection_substitutions_total",
        "polder_reflection_refreshes_total",
    ):
        assert needed in used, f"no panel over {needed}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_prometheus_rules_use_only_exported_metrics(metrics):
    """Each rule has an expr over exported metrics, a severity and a summary; the alerts the
    runbook names (instance down, error ratio, p95 latency, cache hit ratio as info) exist."""
    rules = yaml.safe_load(RULES.read_text())
    assert rules.get("groups")
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule.get("alert"), f"{group['name']}: a rule without a name"
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"].get("summary")
            alerts[rule["alert"]] = rule
    for name, expr in rules_exprs(rules):
        names = promql_metrics(expr)
        assert names, f"{name}: no metric in {expr!r}"
        unknown = names - metrics
        assert not unknown, f"{name}: unknown metrics {unknown}"
    down = [r for r in alerts.values() if re.search(r"\bup\b.*==\s*0", r["expr"])]
    assert down, "no `up == 0` alert"
    assert any(
        "polder_queries_total" in r["expr"] and 'outcome="error"' in r["expr"]
        for r in alerts.values()
    ), "no query error ratio alert"
    assert any(
        "histogram_quantile(0.95" in r["expr"].replace(" ", "") for r in alerts.values()
    ), "no p95 latency alert"
    cache = [r for r in alerts.values() if "polder_results_cache_hits_total" in r["expr"]]
    assert cache and cache[0]["labels"]["severity"] == "info"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_rules_and_dashboard_queries(tmp_path):
    """promtool parses the rules file, and the dashboard's expressions (Grafana variables
    filled in) as recording rules."""
    subprocess.run(["promtool", "check", "rules", str(RULES)], check=True, capture_output=True)
    dashboard = json.loads(DASHBOARD.read_text())
    records = [
        {
            "record": f"polder:dashboard_check:{i}",
            "expr": expr.replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$instance", ".*"),
        }
        for i, (_, expr) in enumerate(dashboard_exprs(dashboard))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- load balancers --------------------------------------------------------------------------


def test_load_balancer_configs_cover_the_three_ports_and_ready():
    """nginx and HAProxy both balance 9047, 31010 and 32010 and check /ready; the PostgreSQL
    wire and Flight SQL are balanced as TCP streams."""
    for path in (NGINX, HAPROXY):
        text = path.read_text()
        for port in POLDER_PORTS:
            assert re.search(rf"(?m)^[^#\n]*\b{port}\b", text), f"{path.name}: no {port}"
        assert re.search(r"(?m)^[^#\n]*/ready", text), f"{path.name}: /ready not used"
    nginx = NGINX.read_text()
    stream = nginx[nginx.index("\nstream {"):]
    assert "31010" in stream and "32010" in stream
    haproxy = HAPROXY.read_text()
    assert len(re.findall(r"(?m)^\s*mode tcp\b", haproxy)) >= 2
    assert re.search(r"(?m)^\s*http-check send meth GET uri /ready", haproxy)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_its_config(tmp_path):
    """`haproxy -c` accepts the config (backend host names replaced by 127.0.0.1 so that they
    resolve here)."""
    text = re.sub(r" polder-\d+:", " 127.0.0.1:", HAPROXY.read_text())
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    result = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
