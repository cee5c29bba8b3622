"""Static checks of the deployment files: they cannot be run here, so they must be right by reading.

Covers ``Dockerfile``, ``docker-compose.yml`` and everything under ``deploy/``: every YAML parses,
every ``STREAMWATCH_*`` variable is a real setting with a valid value, and the pieces that refer
to each other (rules file, mounts, kustomization, ports) agree.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamwatch.core.durations import parse_duration_ms
from streamwatch.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
RULES = DEPLOY / "rules.yaml"

# From /work/shared/INFRA.md: what a single-node apache/kafka KRaft service needs once any
# KAFKA_* variable is set. CLUSTER_ID too: the image's configure script insists on it in KRaft mode.
REQUIRED_KRAFT_ENV = {
    "CLUSTER_ID": None,
    "KAFKA_NODE_ID": None,
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_LISTENERS": None,
    "KAFKA_ADVERTISED_LISTENERS": None,
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": None,
    "KAFKA_CONTROLLER_QUORUM_VOTERS": None,
    "KAFKA_INTER_BROKER_LISTENER_NAME": None,
    "KAFKA_CONTROLLER_LISTENER_NAMES": None,
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
}

DEFAULT_RULES = {
    # name: (metric, op, threshold, severity)
    "error_rate_high": ("error_rate", ">", 0.01, "critical"),
    "latency_p95_high": ("latency_p95_ms", ">", 200, "warning"),
    "accuracy_low": ("accuracy", "<", 0.90, "warning"),
    "cpu_high": ("cpu_pct_mean", ">", 80, "warning"),
    "accuracy_below_baseline": ("accuracy_vs_baseline", "<", -0.03, "warning"),
    "latency_above_baseline": ("latency_p95_vs_baseline", ">", 1.5, "warning"),
    "feature_drift": ("drifted_features", ">=", 1, "warning"),
    "prediction_drift": ("prediction_drifted", ">=", 1, "warning"),
    "accuracy_drop": ("accuracy", "<", -0.03, "warning"),
    "latency_rise": ("latency_p95_ms", ">", 1.5, "warning"),
    "segment_error_rate_high": ("error_rate", ">", 0.05, "warning"),
    "ctr_drop": ("ctr", "<", 0.7, "warning"),
}


def _valid_env_names() -> set[str]:
    names = set()
    for name, info in Settings.model_fields.items():
        if isinstance(info.validation_alias, str):
            names.add(info.validation_alias)
        else:
            names.add(f"{ENV_PREFIX}{name.upper()}")
    return names


VALID_ENV_NAMES = _valid_env_names()


def _load_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _load_one(path: Path) -> Any:
    docs = _load_all(path)
    assert len(docs) == 1, f"{path} should hold exactly one YAML document"
    return docs[0]


def _compose() -> dict[str, Any]:
    compose = _load_one(COMPOSE)
    assert isinstance(compose, dict)
    return compose


def _services() -> dict[str, Any]:
    return _compose()["services"]


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _load_all(path)]


def _k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [
        doc
        for doc in _k8s_docs()
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert found, f"no {kind} {name or ''} under {K8S}"
    return found


def _worker_container() -> dict[str, Any]:
    (deployment,) = _k8s("Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == "worker")
    return container


def _k8s_worker_env() -> dict[str, str]:
    """Return the worker's environment as Kubernetes would build it (envFrom, then env)."""
    container = _worker_container()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            (cm,) = _k8s("ConfigMap", source["configMapRef"]["name"])
            env.update({k: str(v) for k, v in cm["data"].items()})
        elif "secretRef" in source:
            # The real Secret is created by the operator; its example has the same keys.
            (secret,) = _k8s("Secret", source["secretRef"]["name"])
            env.update({k: str(v) for k, v in secret["stringData"].items()})
    env.update({e["name"]: str(e["value"]) for e in container.get("env", [])})
    return env


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """Return ``(INSTRUCTION, arguments)`` pairs with comments and line continuations resolved."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def _dockerfile_argv(args: str) -> list[str]:
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list)
        return [str(a) for a in argv]
    return shlex.split(args)


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    return Settings()


# --- every file parses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [COMPOSE, *sorted(DEPLOY.rglob("*.yaml")), *sorted(DEPLOY.rglob("*.yml"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_yaml_parses(path: Path) -> None:
    assert _load_all(path), f"{path} holds no YAML document"


def test_every_k8s_manifest_has_kind_and_name() -> None:
    for doc in _k8s_docs():
        if doc.get("kind") == "Kustomization":
            continue
        assert doc.get("apiVersion"), doc
        assert doc["metadata"]["name"], doc


# --- docker compose ----------------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    assert {"kafka", "redis", "worker", "generator"} <= set(_services())


def test_kafka_is_single_node_kraft_with_every_required_setting() -> None:
    kafka = _services()["kafka"]
    assert kafka["image"] == "apache/kafka:3.8.0"
    env = _compose_env(kafka)
    missing = sorted(set(REQUIRED_KRAFT_ENV) - set(env))
    assert not missing, f"kafka service lacks {missing}"
    for name, expected in REQUIRED_KRAFT_ENV.items():
        if expected is not None:
            assert env[name] == expected, name
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "localhost:29092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka-broker-api-versions.sh" in str(kafka["healthcheck"]["test"])


def test_redis_has_a_ping_healthcheck() -> None:
    redis = _services()["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]


def test_worker_can_be_scaled() -> None:
    worker = _services()["worker"]
    assert "container_name" not in worker, "a fixed name breaks `docker compose up --scale`"
    assert "ports" not in worker, "a fixed host port breaks `docker compose up --scale`"
    assert worker["command"] in (["streamwatch", "worker"], "streamwatch worker")
    assert "build" in worker


def test_worker_waits_for_healthy_kafka_and_redis() -> None:
    depends_on = _services()["worker"]["depends_on"]
    for dependency in ("kafka", "redis"):
        assert depends_on[dependency]["condition"] == "service_healthy"


def test_worker_points_at_the_compose_services() -> None:
    env = _compose_env(_services()["worker"])
    assert env["STREAMWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["STREAMWATCH_REDIS_URL"] == "redis://redis:6379/0"


def test_worker_reads_the_mounted_rules_file() -> None:
    worker = _services()["worker"]
    rules_path = _compose_env(worker)["STREAMWATCH_RULES"]
    mounts = [str(v).split(":") for v in worker["volumes"]]
    assert ["./deploy/rules.yaml", rules_path, "ro"] in mounts


def test_generator_only_in_demo_profile() -> None:
    services = _services()
    generator = services["generator"]
    assert generator["profiles"] == ["demo"]
    command = generator["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    assert argv == ["streamwatch", "produce", "--rate", "2000", "--incidents", "default"]
    for name, service in services.items():
        if name != "generator":
            assert "profiles" not in service, f"{name} must start without a profile"


# --- settings named anywhere are real ----------------------------------------------------------


def _named_env_vars() -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for name, service in _services().items():
        named[f"docker-compose.yml:{name}"] = set(_compose_env(service))
    for doc in _k8s_docs():
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") == "ConfigMap":
            named[where] = set(doc.get("data", {}))
        elif doc.get("kind") == "Secret":
            named[where] = set(doc.get("stringData", {})) | set(doc.get("data", {}))
        elif doc.get("kind") == "Deployment":
            containers = doc["spec"]["template"]["spec"]["containers"]
            named[where] = {e["name"] for c in containers for e in c.get("env", [])}
    dockerfile_env: set[str] = set()
    for keyword, args in _dockerfile_instructions():
        if keyword == "ENV":
            dockerfile_env |= {pair.split("=", 1)[0] for pair in shlex.split(args)}
    named["Dockerfile"] = dockerfile_env
    return named


def test_every_streamwatch_env_var_is_a_setting() -> None:
    unknown = {
        where: sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in VALID_ENV_NAMES)
        for where, names in _named_env_vars().items()
    }
    unknown = {where: names for where, names in unknown.items() if names}
    assert not unknown, f"not settings: {unknown}; valid names: {sorted(VALID_ENV_NAMES)}"


def test_the_check_itself_sees_the_settings() -> None:
    # Guards the test above against an empty or wrongly derived name set.
    assert {"STREAMWATCH_KAFKA_BOOTSTRAP", "STREAMWATCH_WINDOWS"} <= VALID_ENV_NAMES
    assert "STREAMWATCH_WINDOWS_MS" not in VALID_ENV_NAMES


def test_compose_worker_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_compose_env(_services()["worker"]), monkeypatch)
    assert settings.kafka_bootstrap == "kafka:9092"


def test_k8s_worker_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_k8s_worker_env(), monkeypatch)
    assert str(settings.rules) == "/etc/streamwatch/rules.yaml"


# --- rules -------------------------------------------------------------------------------------


def _rules(doc: Any) -> dict[str, dict[str, Any]]:
    assert isinstance(doc, dict)
    assert isinstance(doc["rules"], list)
    return {rule["name"]: rule for rule in doc["rules"]}


def test_rules_file_has_the_default_rules() -> None:
    rules = _rules(_load_one(RULES))
    assert set(rules) == set(DEFAULT_RULES)
    for name, (metric, op, threshold, severity) in DEFAULT_RULES.items():
        rule = rules[name]
        assert (rule["metric"], rule["op"], rule["threshold"], rule["severity"]) == (
            metric,
            op,
            threshold,
            severity,
        ), name
        assert isinstance(rule["min_events"], int), name
        assert rule["min_events"] >= 1, name
        assert rule["description"], name
    # Accuracy rules count labelled events; fewer make a 3-point difference noise (at 95 %
    # accuracy one standard error over 200 labels is 1.5 points).
    assert rules["accuracy_low"]["min_events"] == 100
    assert rules["accuracy_below_baseline"]["min_events"] == 200
    assert rules["accuracy_drop"]["min_events"] == 200
    # The guide's relative rules: "95 % -> 92 %" is a difference, "100 -> 150 ms" a ratio.
    assert (rules["accuracy_drop"]["relative_to"], rules["accuracy_drop"]["change"]) == (
        "previous",
        "difference",
    )
    assert (rules["latency_rise"]["relative_to"], rules["latency_rise"]["change"]) == (
        "previous",
        "ratio",
    )


def test_k8s_rules_are_a_copy_of_deploy_rules() -> None:
    (cm,) = _k8s("ConfigMap", "streamwatch-rules")
    assert yaml.safe_load(cm["data"]["rules.yaml"]) == _load_one(RULES)


def test_rule_windows_are_configured_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    rule_windows_ms = {parse_duration_ms(r["window"]) for r in _rules(_load_one(RULES)).values()}
    for env in (_compose_env(_services()["worker"]), _k8s_worker_env()):
        windows_ms = set(_settings_from(env, monkeypatch).windows_ms)
        assert rule_windows_ms <= windows_ms


# --- kubernetes --------------------------------------------------------------------------------


def test_kustomization_lists_existing_files() -> None:
    kustomization = _load_one(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    assert resources
    for resource in resources:
        assert (K8S / resource).is_file(), f"kustomization lists missing {resource}"
    listed = set(resources)
    for required in ("namespace.yaml", "configmap.yaml", "worker-deployment.yaml"):
        assert required in listed
    # Applying it must never overwrite the operator's real Secret with placeholders.
    assert "secret.example.yaml" not in listed


def test_deployment_runs_the_worker() -> None:
    container = _worker_container()
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv == ["streamwatch", "worker"]


def test_deployment_shape() -> None:
    (deployment,) = _k8s("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()

    container = _worker_container()
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]
    assert str(container["resources"]["limits"]["cpu"]) == "1"


def test_replicas_do_not_exceed_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    (deployment,) = _k8s("Deployment")
    settings = _settings_from(_k8s_worker_env(), monkeypatch)
    assert deployment["spec"]["replicas"] <= settings.partitions


def test_probes_use_the_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust's web port listens on 127.0.0.1 only: a probe from the kubelet cannot reach it.
    container = _worker_container()
    settings = _settings_from(_k8s_worker_env(), monkeypatch)
    assert settings.metrics_port != 0
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        port = container[probe]["tcpSocket"]["port"]
        assert ports.get(port, port) == settings.metrics_port, probe


def test_rules_and_data_dir_are_mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    (deployment,) = _k8s("Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _worker_container()["volumeMounts"]}
    settings = _settings_from(_k8s_worker_env(), monkeypatch)

    assert settings.rules is not None
    rules_volume = volumes[mounts[str(settings.rules.parent)]]
    assert rules_volume["configMap"]["name"] == "streamwatch-rules"
    assert {"key": "rules.yaml", "path": settings.rules.name} in rules_volume["configMap"]["items"]

    assert "emptyDir" in volumes[mounts[str(settings.data_dir)]]


def test_pdb_allows_one_worker_down() -> None:
    (pdb,) = _k8s("PodDisruptionBudget")
    (deployment,) = _k8s("Deployment")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_secret_example_is_clearly_an_example() -> None:
    (secret,) = _k8s("Secret")
    assert {"STREAMWATCH_REDIS_URL", "STREAMWATCH_KAFKA_SASL_PASSWORD"} <= set(secret["stringData"])
    for value in secret["stringData"].values():
        assert "CHANGE-ME" in value


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_runs_the_worker_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any(k == "RUN" and "pip install --no-cache-dir ." in a for k, a in instructions)

    cmds = [a for k, a in instructions if k == "CMD"]
    assert cmds, "Dockerfile has no CMD"
    assert _dockerfile_argv(cmds[-1]) == ["streamwatch", "worker"]

    users = [a for k, a in instructions if k == "USER"]
    assert users, "Dockerfile has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert ("EXPOSE", "9108") in instructions
