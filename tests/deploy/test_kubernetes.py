"""Offline checks of the Kubernetes and Terraform deployment files in deploy/ (issue 8).

Renders every Kustomize overlay with `kubectl kustomize` (the binary in $KUBECTL, else `kubectl`
on PATH), validates every rendered object against the Kubernetes JSON schemas of PyPI
`kubernetes-validate` (strict: unknown fields are errors) for the oldest and the newest
supported Kubernetes version, and checks what docs/deployment.md promises: replicas per
overlay, probes, resources, non-root, secrets referenced and never inlined, TLS on the
Ingress, autoscaling, disruption budget, network policies, metrics scraping. The Terraform
example is parsed with PyPI `python-hcl2` and checked for its parts.

Nothing here talks to a cluster or a cloud. Run: python -m pytest -q tests/deploy
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
TERRAFORM = ROOT / "deploy" / "terraform" / "aws"

OVERLAYS = {"dev": 1, "staging": 2, "prod": 3}
# Oldest Kubernetes the manifests support, and the newest schemas kubernetes-validate has.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# Custom resources: no schema in kubernetes-validate; checked field by field below.
CUSTOM_KINDS = {
    ("external-secrets.io/v1", "ExternalSecret"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
# The only egress the coordinators get: DNS, PostgreSQL (catalog), S3 (HTTPS, MinIO).
ALLOWED_EGRESS = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443), ("TCP", 9000)}
INGRESS_NAMESPACES = {"ingress-nginx", "monitoring"}
# Keys of a kustomization.yaml that kustomize v2.0.3 (kubectl 1.20, Debian's
# kubernetes-client) understands; later fields (patches, labels, replacements, components,
# ...) would make the overlays unrenderable there.
KUSTOMIZE_V2_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "commonAnnotations",
    "resources",
    "bases",
    "patchesStrategicMerge",
    "patchesJson6902",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "vars",
    "crds",
}


def kubectl() -> str | None:
    explicit = os.environ.get("KUBECTL")
    if explicit:
        return explicit
    return shutil.which("kubectl")


def render(overlay: str) -> list[dict]:
    binary = kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed (CI installs it): cannot render the overlays")
    result = subprocess.run(
        [binary, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert objects, f"overlay {overlay} rendered nothing"
    return objects


_RENDERED: dict[str, list[dict]] = {}


@pytest.fixture(params=sorted(OVERLAYS), ids=lambda name: name)
def overlay(request) -> tuple[str, list[dict]]:
    name = request.param
    if name not in _RENDERED:
        _RENDERED[name] = render(name)
    return name, _RENDERED[name]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        obj for obj in of_kind(objects, kind) if name is None or obj["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def coordinator(objects: list[dict]) -> dict:
    return one(objects, "Deployment", "polder-coordinator")


def pod_labels(objects: list[dict]) -> dict:
    return coordinator(objects)["spec"]["template"]["metadata"]["labels"]


def selects(match_labels: dict, labels: dict) -> bool:
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def container(objects: list[dict]) -> dict:
    containers = coordinator(objects)["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if c["name"] == "polder"]
    assert len(found) == 1
    return found[0]


def cpu(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity) -> float:
    text = str(quantity)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --- the kustomizations themselves --------------------------------------------------------


def kustomization_files() -> list[Path]:
    return [BASE / "kustomization.yaml"] + [
        KUBERNETES / "overlays" / name / "kustomization.yaml" for name in sorted(OVERLAYS)
    ]


@pytest.mark.parametrize("path", kustomization_files(), ids=lambda p: p.parent.name)
def test_kustomizations_use_only_fields_old_kustomize_knows(path):
    doc = yaml.safe_load(path.read_text())
    unknown = set(doc) - KUSTOMIZE_V2_FIELDS
    assert not unknown, f"{path}: fields kustomize v2.0.3 does not know: {sorted(unknown)}"
    # kustomize v2.0.3 takes directories only under `bases:`; `resources:` are files.
    for entry in doc.get("resources", []):
        assert (path.parent / entry).is_file(), f"{path}: resource {entry} is not a file"
    for entry in doc.get("bases", []):
        assert (path.parent / entry / "kustomization.yaml").is_file(), f"{path}: base {entry}"
    for entry in doc.get("patchesStrategicMerge", []):
        assert (path.parent / entry).is_file(), f"{path}: patch {entry} missing"
    for entry in doc.get("patchesJson6902", []):
        assert (path.parent / entry["path"]).is_file(), f"{path}: patch {entry['path']} missing"
    # commonLabels would be added to the kube-dns podSelector of the egress policy too.
    assert "commonLabels" not in doc, f"{path}: commonLabels rewrites network policy selectors"


def test_executor_placeholder_is_a_comment_outside_the_base():
    placeholder = BASE / "executors.yaml"
    text = placeholder.read_text()
    assert yaml.safe_load(text) is None, "executors.yaml must stay a commented placeholder"
    assert "StatefulSet" in text
    resources = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert "executors.yaml" not in resources


# --- schema validation ----------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(overlay, version):
    name, objects = overlay
    skipped = set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in CUSTOM_KINDS:
            skipped.add(key)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{name}: {e.message} (an API version Kubernetes {version} lacks?)")
        except kubernetes_validate.ValidationError as e:
            pytest.fail(
                f"{name}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes "
                f"{version}: {e.message} at {list(e.absolute_path)}"
            )
    # The custom resources were there (and are checked by the tests below).
    assert skipped == CUSTOM_KINDS, f"{name}: custom resources rendered: {skipped}"


def test_every_namespaced_object_lands_in_the_overlay_namespace(overlay):
    name, objects = overlay
    namespace = one(objects, "Namespace")["metadata"]["name"]
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        assert obj["metadata"].get("namespace") == namespace, (
            f"{name}: {obj['kind']}/{obj['metadata']['name']} not in {namespace}"
        )


# --- the coordinator Deployment -------------------------------------------------------------


def test_replicas_per_overlay(overlay):
    name, objects = overlay
    assert coordinator(objects)["spec"]["replicas"] == OVERLAYS[name]


def test_probes_use_health_and_ready(overlay):
    _, objects = overlay
    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports.get("http") == 9047
    expected = {"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"}
    for probe, path in expected.items():
        assert probe in c, f"no {probe}"
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{probe} on {get['path']}"
        assert get["port"] in ("http", 9047)


def test_listeners_bind_all_interfaces_on_the_container_ports(overlay):
    _, objects = overlay
    c = container(objects)
    args = c["args"]
    assert args[0] == "serve"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for flag, port_name in [("--http-listen", "http"), ("--pg-listen", "pg"), ("--flight-listen", "flight")]:
        assert f"{flag}=0.0.0.0:{ports[port_name]}" in args, f"{flag} missing or not on {port_name}"
    # The lake comes from the ConfigMap through the environment, not written into the args.
    assert "--lake=$(POLDER_LAKE)" in args
    config = one(objects, "ConfigMap", "polder-config")
    assert config["data"]["POLDER_LAKE"].startswith("s3://")


def test_resources_are_set_and_requests_fit_limits(overlay):
    name, objects = overlay
    resources = container(objects)["resources"]
    for kind in ("cpu", "memory"):
        request = resources["requests"][kind]
        limit = resources["limits"][kind]
        parse = cpu if kind == "cpu" else memory
        assert 0 < parse(request) <= parse(limit), f"{name}: {kind} request {request} > limit {limit}"


def test_prod_gets_more_resources_than_dev():
    dev = render("dev")
    prod = render("prod")
    dev_req = container(dev)["resources"]["requests"]
    prod_req = container(prod)["resources"]["requests"]
    assert cpu(prod_req["cpu"]) > cpu(dev_req["cpu"])
    assert memory(prod_req["memory"]) > memory(dev_req["memory"])


def test_runs_as_non_root_with_a_read_only_root(overlay):
    _, objects = overlay
    pod = coordinator(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert "ALL" in security["capabilities"]["drop"]
    # A read-only root needs a writable /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in container(objects)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]


def test_secrets_are_referenced_never_inlined(overlay):
    name, objects = overlay
    assert not of_kind(objects, "Secret"), f"{name}: a Secret is rendered into the manifests"
    c = container(objects)
    secret_refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
    assert len(secret_refs) == 1
    external = one(objects, "ExternalSecret")
    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["spec"]["target"]["name"] == secret_refs[0]
    produced = {d["secretKey"] for d in external["spec"]["data"]}
    assert {"POLDER_CATALOG", "POLDER_ADMIN_PASSWORD", "POLDER_SECRET_KEY"} <= produced
    assert external["spec"]["secretStoreRef"]["name"]
    # No literal secret in env values, args or the ConfigMap.
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|CATALOG|ACCESS_KEY")
    for env in c.get("env", []):
        if sensitive.search(env["name"]):
            assert "value" not in env, f"{name}: {env['name']} inlined"
    credential_url = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
    for arg in c["args"]:
        assert not credential_url.search(arg), f"{name}: credentials in args: {arg}"
    config_refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    assert config_refs
    for ref in config_refs:
        data = one(objects, "ConfigMap", ref).get("data", {})
        for key, value in data.items():
            assert not sensitive.search(key), f"{name}: ConfigMap {ref} holds {key}"
            assert not credential_url.search(str(value)), f"{name}: ConfigMap {ref}: {key}"


# --- Services and Ingress -------------------------------------------------------------------


def test_services_reach_the_coordinators(overlay):
    _, objects = overlay
    labels = pod_labels(objects)
    named = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    ports = {}
    for service in of_kind(objects, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert selects(service["spec"]["selector"], labels), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in named, f"targetPort {target} is no container port"
            ports[named[target]] = service["metadata"]["name"]
    assert set(ports) == {9047, 31010, 32010}
    assert ports[31010] == ports[32010] != ports[9047]


def test_ingress_has_tls_from_cert_manager(overlay):
    name, objects = overlay
    ingress = one(objects, "Ingress")
    assert ingress["metadata"]["annotations"].get("cert-manager.io/cluster-issuer")
    tls = ingress["spec"]["tls"]
    assert tls and all(entry.get("secretName") for entry in tls)
    tls_hosts = {host for entry in tls for host in entry["hosts"]}
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in tls_hosts, f"{name}: {rule['host']} served without TLS"
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = services[backend["name"]]
            port_names = {p["name"] for p in service["spec"]["ports"]}
            assert backend["port"]["name"] in port_names


# --- scaling and disruptions ----------------------------------------------------------------


def test_hpa_scales_the_deployment_on_cpu(overlay):
    name, objects = overlay
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    deployment = coordinator(objects)
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    # An HPA minimum above the Deployment's replicas would silently override the overlay.
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    assert hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    if name == "prod":
        assert hpa["spec"]["maxReplicas"] == 10


def test_pdb_keeps_one_coordinator_without_blocking_drains(overlay):
    name, objects = overlay
    pdb = one(objects, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(objects))
    replicas = OVERLAYS[name]
    if replicas >= 2:
        assert pdb["spec"]["minAvailable"] == 1
    # With every replica up, at least one may be evicted (else node drains hang).
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < replicas
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1


# --- network policies -----------------------------------------------------------------------


def test_network_policies_deny_by_default(overlay):
    name, objects = overlay
    policies = of_kind(objects, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1, f"{name}: no default-deny policy"


def coordinator_policies(objects: list[dict]) -> list[dict]:
    labels = pod_labels(objects)
    return [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] == {} or selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
    ]


def test_only_the_ingress_controller_and_monitoring_reach_the_coordinators(overlay):
    name, objects = overlay
    sources = {}
    for policy in coordinator_policies(objects):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name}: ingress rule open to every source"
            assert rule.get("ports"), f"{name}: ingress rule open on every port"
            for peer in rule["from"]:
                assert set(peer) == {"namespaceSelector"}, f"{name}: peer {peer}"
                namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                ports = {p["port"] for p in rule["ports"]}
                sources.setdefault(namespace, set()).update(ports)
    assert set(sources) == INGRESS_NAMESPACES, f"{name}: ingress from {sorted(sources)}"
    assert 9047 in sources["ingress-nginx"]
    assert sources["monitoring"] == {9047}


def test_coordinators_reach_only_dns_postgres_and_s3(overlay):
    name, objects = overlay
    allowed = set()
    for policy in coordinator_policies(objects):
        for rule in policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{name}: egress rule open on every port"
            ports = {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}
            allowed |= ports
            if any(port == 53 for _, port in ports):
                # DNS goes to kube-dns only (a selector rewritten by kustomize would cut it off).
                (peer,) = rule["to"]
                assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                assert peer["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "kube-system"
                }
    assert allowed == ALLOWED_EGRESS, f"{name}: egress {sorted(allowed)}"


# --- metrics --------------------------------------------------------------------------------


def test_service_monitor_scrapes_metrics(overlay):
    name, objects = overlay
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    endpoints = monitor["spec"]["endpoints"]
    assert [e["path"] for e in endpoints] == ["/metrics"]
    scraped = [
        s
        for s in of_kind(objects, "Service")
        if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
    ]
    assert len(scraped) == 1, f"{name}: ServiceMonitor selects {len(scraped)} services"
    port_names = {p["name"]: p["port"] for p in scraped[0]["spec"]["ports"]}
    assert port_names.get(endpoints[0]["port"]) == 9047


# --- Terraform (AWS example) ----------------------------------------------------------------


def unquote(value):
    """python-hcl2 8 keeps the quotes of strings and block labels; drop them and its markers."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if not k.startswith("__")}
    return value


def terraform() -> dict:
    merged: dict = {}
    for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
        with open(TERRAFORM / name) as f:
            parsed = unquote(hcl2.load(f))
        for key, blocks in parsed.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def blocks(tf: dict, kind: str, type_: str) -> dict:
    """All `kind "type_" "name" {}` blocks, by name (kind: resource or data)."""
    found = {}
    for entry in tf.get(kind, []):
        for name, body in entry.get(type_, {}).items():
            found[name] = body
    return found


def first(block):
    return block[0] if isinstance(block, list) else block


def test_terraform_has_eks_with_irsa():
    tf = terraform()
    modules = {name: body for entry in tf["module"] for name, body in entry.items()}
    eks = [m for m in modules.values() if m["source"] == "terraform-aws-modules/eks/aws"]
    assert len(eks) == 1
    assert eks[0]["version"], "the EKS module version is not pinned"
    assert eks[0]["enable_irsa"] is True
    # The IRSA role trusts the cluster's OIDC provider for the polder service account.
    assume = blocks(tf, "data", "aws_iam_policy_document")
    web_identity = [
        doc
        for doc in assume.values()
        if any("sts:AssumeRoleWithWebIdentity" in first(s)["actions"] for s in doc["statement"])
    ]
    assert len(web_identity) == 1
    statement = first(web_identity[0]["statement"])
    assert "oidc_provider_arn" in str(statement["principals"])
    assert "system:serviceaccount:" in str(statement["condition"])
    roles = blocks(tf, "resource", "aws_iam_role")
    assert any("polder_assume" in str(role["assume_role_policy"]) for role in roles.values())


def test_terraform_has_rds_postgres_for_the_catalog():
    tf = terraform()
    instances = blocks(tf, "resource", "aws_db_instance")
    assert len(instances) == 1
    (db,) = instances.values()
    assert db["engine"] == "postgres"
    assert db["storage_encrypted"] is True
    assert db["publicly_accessible"] is False
    assert db["backup_retention_period"] > 0


def test_terraform_has_an_encrypted_private_versioned_bucket():
    tf = terraform()
    buckets = blocks(tf, "resource", "aws_s3_bucket")
    assert len(buckets) == 1
    (bucket_name,) = buckets
    ref = f"aws_s3_bucket.{bucket_name}."

    def for_bucket(type_: str) -> dict:
        found = [b for b in blocks(tf, "resource", type_).values() if ref in b["bucket"]]
        assert len(found) == 1, f"{type_} for the lake bucket"
        return found[0]

    encryption = for_bucket("aws_s3_bucket_server_side_encryption_configuration")
    default = first(first(encryption["rule"])["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] in ("aws:kms", "AES256")
    public = for_bucket("aws_s3_bucket_public_access_block")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert public[flag] is True, flag
    versioning = for_bucket("aws_s3_bucket_versioning")
    assert first(versioning["versioning_configuration"])["status"] == "Enabled"


def test_terraform_keeps_the_secrets_in_secrets_manager():
    tf = terraform()
    secrets = blocks(tf, "resource", "aws_secretsmanager_secret")
    assert len(secrets) == 1
    versions = blocks(tf, "resource", "aws_secretsmanager_secret_version")
    (version,) = versions.values()
    # The keys the ExternalSecret reads.
    external = yaml.safe_load((BASE / "externalsecret.yaml").read_text())
    properties = {d["remoteRef"]["property"] for d in external["spec"]["data"]}
    for prop in properties:
        assert f"{prop} " in version["secret_string"] or f"{prop}=" in version["secret_string"], prop


def test_terraform_references_only_declared_variables_and_modules():
    text = "".join((TERRAFORM / f).read_text() for f in ("main.tf", "outputs.tf", "versions.tf"))
    tf = terraform()
    declared_vars = {name for entry in tf["variable"] for name in entry}
    used_vars = set(re.findall(r"\bvar\.(\w+)", text))
    assert used_vars <= declared_vars, f"undeclared variables: {used_vars - declared_vars}"
    declared_modules = {name for entry in tf["module"] for name in entry}
    used_modules = set(re.findall(r"\bmodule\.(\w+)", text))
    assert used_modules <= declared_modules, f"undeclared modules: {used_modules - declared_modules}"
    declared_resources = {
        f"{type_}.{name}" for entry in tf["resource"] for type_, named in entry.items() for name in named
    }
    used_resources = set(re.findall(r"(?<!data\.)\b(aws_\w+|random_\w+)\.(\w+)\.", text))
    missing = {f"{t}.{n}" for t, n in used_resources} - declared_resources
    assert not missing, f"undeclared resources: {missing}"
    declared_data = {
        f"{type_}.{name}" for entry in tf["data"] for type_, named in entry.items() for name in named
    }
    used_data = {f"{t}.{n}" for t, n in re.findall(r"\bdata\.(\w+)\.(\w+)\.", text)}
    assert used_data and used_data <= declared_data, f"undeclared data: {used_data - declared_data}"


def test_terraform_is_fmt_canonical():
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        pytest.skip("terraform/tofu is not installed: cannot run `terraform fmt -check`")
    result = subprocess.run(
        [binary, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"
