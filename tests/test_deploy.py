"""The deployment files in deploy/ are valid and agree with each other and with the code.

Checked offline by validators from the package registries: kubernetes-validate (the schemas of
each Kubernetes version, strict: an unknown field is an error) and check-jsonschema's copy of the
compose specification; HAProxy's own configuration check where HAProxy is installed. None of those
sees cross-references, so the last tests do: selectors against labels, the autoscaler's target, the
probes' ports and paths, the Secret's keys against the settings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from atlas_image_mcp.settings import ENV_VARS

from .servers import find_program, haproxy_missing, unavailable

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
#: The oldest Kubernetes the manifests promise to fit, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")
TIMEOUT = 60


def tool(name: str) -> str:
    """A validator installed beside this interpreter (the test extra), never looked up on PATH."""
    path = Path(sys.executable).with_name(name)
    assert path.exists(), f"{name} is not installed: pip install -e '.[test]'"
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT, check=False)


def manifests() -> dict[str, dict[str, Any]]:
    """Every manifest by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] not in found, f"two {doc['kind']} manifests"
            found[doc["kind"]] = doc
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_kubernetes_manifests_validate_strictly(version: str) -> None:
    assert {p.name for p in MANIFESTS} == {
        "deployment.yaml",
        "service.yaml",
        "secret.yaml",
        "hpa.yaml",
        "pdb.yaml",
    }
    result = run(tool("kubernetes-validate"), "-k", version, "--strict", *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_file_validates() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validators_reject_a_broken_file(tmp_path: Path) -> None:
    """Both validators can fail: a misspelt probe field, a dependency condition that does not exist."""
    deployment = (DEPLOY / "k8s" / "deployment.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "deployment.yaml"
    broken.write_text(deployment.replace("periodSeconds: 5", "periodSecond: 5"), encoding="utf-8")
    assert (
        run(tool("kubernetes-validate"), "-k", KUBERNETES_VERSIONS[0], "--strict", str(broken)).returncode
        != 0
    )
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        COMPOSE.read_text(encoding="utf-8").replace("condition: service_healthy", "condition: healthy")
    )
    assert (
        run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)).returncode != 0
    )


def test_haproxy_accepts_the_balancer_configuration(tmp_path: Path) -> None:
    reason = haproxy_missing()
    if reason:
        unavailable(reason)
    haproxy = find_program("haproxy")
    assert haproxy is not None
    result = run(haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg"))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "haproxy.cfg"
    broken.write_text((DEPLOY / "haproxy.cfg").read_text().replace("balance roundrobin", "balance roundrobn"))
    assert run(haproxy, "-c", "-f", str(broken)).returncode != 0


def test_the_manifests_refer_to_each_other_and_to_settings_that_exist() -> None:
    docs = manifests()
    deployment, service, secret = docs["Deployment"], docs["Service"], docs["Secret"]
    hpa, pdb = docs["HorizontalPodAutoscaler"], docs["PodDisruptionBudget"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    # every selector picks the pods of the Deployment
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # the autoscaler scales that Deployment, from at least the replicas the budget keeps
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"], target["apiVersion"]) == (
        "Deployment",
        deployment["metadata"]["name"],
        deployment["apiVersion"],
    )
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # the Service and the probes use the port the container opens, which is the one it serves on
    assert service["spec"]["ports"][0]["targetPort"] in ports
    args = container["args"]
    assert int(args[args.index("--port") + 1]) == ports["http"]
    probes = {
        kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert {kind: probe["port"] in ports for kind, probe in probes.items()} == dict.fromkeys(probes, True)
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    # the Secret the pods read exists, and holds settings the server declares
    (source,) = container["envFrom"]
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) <= set(ENV_VARS)
    assert {"ATLAS_MCP_DATABASE_URL", "ATLAS_MCP_TASK_SECRET"} <= set(secret["stringData"])
    assert secret["stringData"]["ATLAS_MCP_DATABASE_URL"].startswith("postgresql://")


def test_the_compose_file_refers_to_files_services_and_ports_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "mcp", "balancer"}
    mcp = services["mcp"]
    port = int(mcp["command"][mcp["command"].index("--port") + 1])
    assert "--stateless" in mcp["command"]
    assert (DEPLOY / mcp["build"]["context"] / mcp["build"]["dockerfile"]).exists()
    assert '".[postgres]"' in (DEPLOY / mcp["build"]["context"] / mcp["build"]["dockerfile"]).read_text()
    assert f"127.0.0.1:{port}/healthz" in " ".join(mcp["healthcheck"]["test"])
    config = services["balancer"]["volumes"][0].split(":")[0]
    haproxy = (DEPLOY / config).read_text(encoding="utf-8")
    assert f"server-template mcp 10 mcp:{port} " in haproxy and "option httpchk GET /healthz" in haproxy
    assert "option http-no-delay" in haproxy and "stick store-response res.hdr(mcp-session-id)" in haproxy
    rules = [line.split("#")[0].strip() for line in haproxy.splitlines()]
    assert not [rule for rule in rules if rule.startswith("retry-on")]  # a request that reached a replica
    # (it may have started a paid job) is never sent twice
    (secret,) = services["postgres"]["secrets"]
    assert secret in compose["secrets"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == f"/run/secrets/{secret}"
