"""Offline checks of deploy/: container image, Kubernetes manifests (kustomize) and the RabbitMQ
topology objects, against the code they deploy. No cluster, no network.

What is checked (docs/operations.md explains the choices):
- every YAML parses; every kustomization references files that exist; no manifest is orphaned;
- every service has a Deployment, a migration Job, a CNPG Cluster, a PDB and a NetworkPolicy;
- workloads are PSS "restricted" (non-root, no privilege escalation, ALL capabilities dropped,
  RuntimeDefault seccomp, read-only root with an emptyDir /tmp), have probes, resources and a
  graceful termination period, and run their command in exec form;
- secrets only come from Secrets created by the operators, never from ConfigMaps or literals;
- the Exchange/Queue/Binding/Policy objects match mailroom_shared.messaging.topology exactly;
- the Dockerfile builds as a non-root user with the pins of constraints.txt;
- when `kubectl` is on the PATH, both overlays render (`kubectl kustomize`, offline) and the
  rendered output passes the same workload checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from mailroom_shared.messaging import topology
from mailroom_shared.messaging.topology import AUDIT_MAX_LENGTH, AUDIT_QUEUE, PRODUCERS, SUBSCRIPTIONS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
OVERLAYS = ("dev", "production")
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
SERVICES = tuple(PRODUCERS)  # every service publishes events, so PRODUCERS lists them all
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:(?![$][({])[^@\s/]+@")
MIN_GRACE_SECONDS = 30
HAND_MADE_SECRETS = {"mailroom-auth", "mailroom-outbound-smtp", "mailroom-notifier", "mailroom-ingest-s3"}


# --- loading -----------------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def is_manifest(doc) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


def kustomization_files() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def _generator_source(entry: str) -> str:
    """`files: [key=path]` or `[path]` -> path."""
    return entry.split("=", 1)[1] if "=" in entry else entry


@cache
def kustomize_tree(directory: Path) -> tuple[tuple[Path, ...], dict]:
    """Manifest files reachable from a kustomization (resources, recursively) and the ConfigMaps
    its generators make: {name: {key: value}} (a stand-in for `kustomize build`)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: list[Path] = []
    configmaps: dict[str, dict[str, str]] = {}
    for entry in kust.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            sub_files, sub_maps = kustomize_tree(target)
            files += sub_files
            configmaps.update(sub_maps)
        else:
            files.append(target)
    for gen in kust.get("configMapGenerator", []):
        data = dict(configmaps.get(gen["name"], {})) if gen.get("behavior") in ("merge", "replace") else {}
        if gen.get("behavior") == "replace":
            data = {}
        for entry in gen.get("files", []):
            key = entry.split("=", 1)[0] if "=" in entry else Path(entry).name
            data[key] = (directory / _generator_source(entry)).read_text()
        for entry in gen.get("envs", []):
            data.update(parse_env_file(directory / entry))
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        configmaps[gen["name"]] = data
    return tuple(files), configmaps


def parse_env_file(path: Path) -> dict[str, str]:
    result = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        result[key] = value
    return result


PLATFORM_RABBITMQ = K8S / "platform" / "rabbitmq"


@cache
def base_docs() -> tuple[dict, ...]:
    """The base and the platform pieces every overlay adds (the broker in its own namespace)."""
    files = kustomize_tree(BASE)[0] + kustomize_tree(PLATFORM_RABBITMQ)[0]
    return tuple(doc for path in files for doc in load_docs(path) if is_manifest(doc))


def rabbitmq_namespace() -> str:
    return yaml.safe_load((PLATFORM_RABBITMQ / "kustomization.yaml").read_text())["namespace"]


def base_configmaps() -> dict[str, dict[str, str]]:
    return kustomize_tree(BASE)[1]


def of_kind(kind: str, docs=None) -> list[dict]:
    return [doc for doc in (base_docs() if docs is None else docs) if doc["kind"] == kind]


def by_name(kind: str, docs=None) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(kind, docs)}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def all_containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def deployment_for(service: str, docs=None) -> dict:
    for deployment in of_kind("Deployment", docs):
        if deployment["spec"]["template"]["spec"]["containers"][0]["command"][-1] == f"{service}.service":
            return deployment
    raise AssertionError(f"no Deployment runs {service}.service")


@cache
def kubectl() -> str | None:
    return shutil.which("kubectl")


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    result = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


# --- files and kustomize -------------------------------------------------------------------------


def test_every_yaml_file_parses():
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert paths
    for path in paths:
        load_docs(path)


def test_kustomizations_reference_files_that_exist():
    assert {p.parent.relative_to(K8S).as_posix() for p in kustomization_files()} >= {
        "base", "overlays/dev", "overlays/production"}
    for path in kustomization_files():
        kust = yaml.safe_load(path.read_text())
        directory = path.parent
        assert kust.get("kind") in ("Kustomization", "Component"), path
        assert "secretGenerator" not in kust, f"{path}: secrets never come from the repository"
        refs = list(kust.get("resources", [])) + list(kust.get("components", []))
        for ref in refs:
            target = directory / ref
            assert target.exists(), f"{path}: {ref} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), f"{path}: {ref} has no kustomization.yaml"
        for patch in kust.get("patches", []) + kust.get("patchesStrategicMerge", []):
            ref = patch.get("path") if isinstance(patch, dict) else patch
            if ref:
                assert (directory / ref).is_file(), f"{path}: patch {ref} does not exist"
        for gen in kust.get("configMapGenerator", []):
            for entry in gen.get("files", []) + gen.get("envs", []):
                assert (directory / _generator_source(entry)).is_file(), f"{path}: {entry} does not exist"


def test_no_manifest_is_orphaned():
    referenced: set[Path] = set()
    for path in kustomization_files():
        kust = yaml.safe_load(path.read_text())
        for ref in kust.get("resources", []):
            referenced.add((path.parent / ref).resolve())
        for patch in kust.get("patches", []):
            if isinstance(patch, dict) and patch.get("path"):
                referenced.add((path.parent / patch["path"]).resolve())
    for path in K8S.rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        if any(is_manifest(doc) for doc in load_docs(path)):
            assert path.resolve() in referenced, f"{path} is not referenced by any kustomization.yaml"


def test_object_names_are_valid_and_unique():
    seen = set()
    for doc in base_docs():
        name = doc["metadata"]["name"]
        assert len(name) <= 253 and DNS1123.match(name), f"{doc['kind']} {name!r} is not a valid name"
        key = (doc["apiVersion"].split("/")[0], doc["kind"], name)
        assert key not in seen, f"duplicate {key}"
        seen.add(key)


def test_no_secret_objects_or_plaintext_credentials_in_the_repository():
    for path in K8S.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".env"):
            text = path.read_text()
            assert not URL_WITH_PASSWORD.search(text), f"{path} contains a URL with a password"
            if path.suffix != ".env":
                for doc in load_docs(path):
                    assert not (is_manifest(doc) and doc["kind"] == "Secret"), f"{path} holds a Secret"


# --- every service ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_deployment_job_database_pdb_and_networkpolicy(service):
    deployment = deployment_for(service)
    selector = deployment["spec"]["selector"]["matchLabels"]
    clusters = {c["spec"]["bootstrap"]["initdb"]["database"]: c for c in of_kind("Cluster")}
    assert service in clusters, f"no CNPG Cluster for {service}"
    jobs = [job for job in of_kind("Job")
            if pod_spec(job)["containers"][0]["command"] == ["mailroom", "migrate", "--service", service]]
    assert len(jobs) == 1, f"{service} needs exactly one migration Job"
    pdbs = [p for p in of_kind("PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"] == selector]
    assert len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1
    policies = [n for n in of_kind("NetworkPolicy") if n["spec"]["podSelector"].get("matchLabels") == selector]
    assert len(policies) == 1
    assert set(policies[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    db_name = clusters[service]["metadata"]["name"]
    egress_pods = [peer.get("podSelector", {}).get("matchLabels", {})
                   for rule in policies[0]["spec"]["egress"] for peer in rule.get("to", [])]
    assert {"cnpg.io/cluster": db_name} in egress_pods, f"{service} may not reach its own database"
    other_dbs = {c["metadata"]["name"] for c in of_kind("Cluster")} - {db_name}
    assert not [p for p in egress_pods if p.get("cnpg.io/cluster") in other_dbs], "never another service's DB"


@pytest.mark.parametrize("service", SERVICES)
def test_database_url_comes_from_the_cnpg_app_secret(service):
    cluster = next(c for c in of_kind("Cluster") if c["spec"]["bootstrap"]["initdb"]["database"] == service)
    assert cluster["spec"]["bootstrap"]["initdb"]["owner"] == service
    assert cluster["spec"].get("enableSuperuserAccess") is False
    expected = {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    deployment = deployment_for(service)
    job = next(j for j in of_kind("Job") if pod_spec(j)["containers"][0]["command"][-1] == service)
    for workload in (deployment, job):
        for container in all_containers(workload):
            var = env_of(container).get(f"{service.upper()}_DATABASE_URL")
            assert var is not None, f"{workload['metadata']['name']}/{container['name']} has no database URL"
            assert var["valueFrom"]["secretKeyRef"] == expected


@pytest.mark.parametrize("service", SERVICES)
def test_nameko_runs_the_service_with_its_config(service):
    deployment = deployment_for(service)
    container = pod_spec(deployment)["containers"][0]
    assert container["command"] == ["mailroom-service", "--config", "/app/config/nameko.yaml", f"{service}.service"]
    scripts = tomllib.loads((ROOT / "shared/pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mailroom-service"] == "mailroom_shared.service_process:main"
    assert "--backdoor" not in " ".join(container["command"] + container.get("args", []))
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in container["ports"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/app/config")
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    config_text = base_configmaps()[volume["configMap"]["name"]]["nameko.yaml"]
    config = load_nameko_config(config_text, {"AMQP_URI": "amqp://u:p@broker:5672/mailroom"})
    assert config["AMQP_URI"] == "amqp://u:p@broker:5672/mailroom"
    assert config["WEB_SERVER_ADDRESS"] == "0.0.0.0:8000"
    assert isinstance(config["max_workers"], int)
    # probes and Prometheus on the metrics port, served by the kit without a nameko worker
    metrics_port = next(p for p in container["ports"] if p["name"] == "metrics")
    assert env_of(container)["MAILROOM_METRICS_PORT"]["value"] == str(metrics_port["containerPort"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health/ready", "port": "metrics"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "time for the migration Job"
    # JSON logs, with the formatters the image has
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert env["MAILROOM_LOG_FORMAT"] == "json" and env["MAILROOM_SERVICE"] == service
    assert int(env["MAILROOM_STOP_GRACE_SECONDS"]) + 10 <= pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert_logging_config_works(config_text, {"MAILROOM_LOG_FORMAT": "json"}, "JsonFormatter")


def migration_jobs(docs=None) -> dict[str, dict]:
    return {pod_spec(job)["containers"][0]["command"][-1]: job for job in of_kind("Job", docs)
            if job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"}


def test_no_deployment_migrates():
    for deployment in of_kind("Deployment"):
        assert not pod_spec(deployment).get("initContainers"), deployment["metadata"]["name"]
        for container in all_containers(deployment):
            assert "migrate" not in container["command"], deployment["metadata"]["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_migration_job_runs_once_per_release_before_the_deployments(service):
    job = migration_jobs()[service]
    assert job["metadata"]["name"] == f"mailroom-{service}-migrate-release", "the overlay fills in the release"
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
    assert "pre-upgrade" in annotations["helm.sh/hook"].split(",")
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    cluster = next(c for c in of_kind("Cluster") if c["spec"]["bootstrap"]["initdb"]["database"] == service)
    assert (int(cluster["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
            < int(annotations["argocd.argoproj.io/sync-wave"])), "the database exists before the Job runs"
    env = env_of(pod_spec(job)["containers"][0])
    assert int(env["MAILROOM_MIGRATE_WAIT_SECONDS"]["value"]) >= 300, "a first install waits for its database"
    assert job["spec"]["activeDeadlineSeconds"] > int(env["MAILROOM_MIGRATE_WAIT_SECONDS"]["value"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_name_migration_jobs_after_their_release(overlay):
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered(overlay)
    release = by_name("ConfigMap", docs)["mailroom-release"]["data"]["release"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", release), "a DNS label: it ends Job names"
    jobs = migration_jobs(docs)
    assert set(jobs) == set(SERVICES)
    for service, job in jobs.items():
        name = job["metadata"]["name"]
        assert name == f"mailroom-{service}-migrate-{release}" and len(name) <= 63


def assert_logging_config_works(text: str, env: dict[str, str], formatter: str) -> None:
    """Configure logging from a nameko config's LOGGING as mailroom-service does, and log a line."""
    code = textwrap.dedent("""
        import json, logging, logging.config, sys, yaml
        from nameko.cli.main import setup_yaml_parser
        setup_yaml_parser()
        logging.config.dictConfig(yaml.safe_load(sys.stdin.read())["LOGGING"])
        handler = logging.getLogger().handlers[0]
        print(type(handler.formatter).__name__)
        logging.getLogger("check").warning("amqp://u:hunter2@h/v")
    """)
    result = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == formatter
    assert "hunter2" not in result.stderr and "u:***@h" in result.stderr


def load_nameko_config(text: str, env: dict[str, str]) -> dict:
    """Load a nameko config the way `nameko run` does (it expands ${VAR} from the environment)."""
    code = textwrap.dedent("""
        import json, sys, yaml
        from nameko.cli.main import setup_yaml_parser
        setup_yaml_parser()
        print(json.dumps(yaml.safe_load(sys.stdin.read())))
    """)
    import json

    result = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("service", SERVICES)
def test_amqp_credentials_come_from_the_services_own_rabbitmq_user(service):
    container = pod_spec(deployment_for(service))["containers"][0]
    env = env_of(container)
    users = by_name("User")
    user = f"mailroom-{service}"
    assert user in users, f"no RabbitMQ User for {service}"
    secret = f"{user}-user-credentials"
    assert env["AMQP_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "username"}
    assert env["AMQP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "password"}
    uri = env["AMQP_URI"]["value"]
    names = [item["name"] for item in container["env"]]
    assert names.index("AMQP_URI") > names.index("AMQP_PASSWORD"), "$(VAR) only expands earlier variables"
    assert uri.startswith("amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@")
    assert uri.endswith("/" + the_vhost()["spec"]["name"])
    host = uri.split("@", 1)[1].split(":")[0]
    assert host == f"{the_rabbitmq_cluster()['metadata']['name']}.{rabbitmq_namespace()}.svc"
    permission = by_name("Permission")[user]["spec"]
    assert permission["userReference"] == {"name": user}
    assert permission["vhost"] == the_vhost()["spec"]["name"]


# --- workload conventions (base and rendered overlays) ------------------------------------------


def check_container(owner: str, container: dict, volumes: dict[str, dict]) -> None:
    where = f"{owner}/{container['name']}"
    assert isinstance(container.get("command"), list) and container["command"], f"{where}: exec-form command"
    assert container["command"][0] not in ("sh", "bash", "/bin/sh"), f"{where}: the process must be PID 1"
    image = container["image"]
    assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{where}: image without a tag"
    assert not image.endswith(":latest"), f"{where}: never :latest"
    resources = container.get("resources", {})
    assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: cpu and memory requests"
    assert "memory" in resources.get("limits", {}), f"{where}: a memory limit"
    sc = container.get("securityContext", {})
    assert sc.get("allowPrivilegeEscalation") is False, where
    assert sc.get("readOnlyRootFilesystem") is True, where
    assert sc.get("runAsNonRoot") is True, where
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
    assert not sc.get("capabilities", {}).get("add"), where
    assert sc.get("privileged") in (None, False), where
    assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: an emptyDir at /tmp"
    for item in container.get("env", []):
        if "value" in item and SECRETISH.search(item["name"]):
            raise AssertionError(f"{where}: {item['name']} is a literal; secrets come from Secrets")
    for source in container.get("envFrom", []):
        assert "secretRef" not in source or source["secretRef"]["name"] in operator_secrets(), where


def check_pod(owner: str, spec: dict) -> None:
    sc = spec.get("securityContext", {})
    assert sc.get("runAsNonRoot") is True, owner
    assert int(sc.get("runAsUser", 0)) >= 10000 and int(sc.get("runAsGroup", 0)) >= 10000, owner
    assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", owner
    assert spec.get("automountServiceAccountToken") is False, owner
    assert spec.get("hostNetwork") in (None, False) and spec.get("hostPID") in (None, False), owner
    assert int(spec.get("terminationGracePeriodSeconds", 30)) >= MIN_GRACE_SECONDS, owner
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert not [v for v in volumes.values() if "hostPath" in v], f"{owner}: no hostPath"
    for container in spec.get("initContainers", []) + spec["containers"]:
        check_container(owner, container, volumes)


def check_workloads(docs) -> None:
    deployments = of_kind("Deployment", docs)
    assert deployments
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        spec = pod_spec(deployment)
        check_pod(name, spec)
        assert "terminationGracePeriodSeconds" in spec, f"{name}: set the grace period explicitly"
        for container in spec["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{name}/{container['name']}: {probe}"
            liveness, readiness = container["livenessProbe"], container["readinessProbe"]
            if "httpGet" in liveness:
                # liveness never depends on the database or the broker: its own endpoint
                assert liveness["httpGet"]["path"] != readiness["httpGet"]["path"], name
            else:  # the SMTP listener: a TCP connect for both, so liveness must be more patient
                assert (liveness["periodSeconds"] * liveness["failureThreshold"]
                        >= 2 * readiness["periodSeconds"] * readiness["failureThreshold"]), name
        labels = deployment["metadata"]["labels"]
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for key in ("name", "instance", "component", "part-of", "version", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels, f"{name}: app.kubernetes.io/{key}"
            assert f"app.kubernetes.io/{key}" in template_labels, f"{name} template: app.kubernetes.io/{key}"
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template_labels.items(), f"{name}: selector must match its pods"
        assert "app.kubernetes.io/version" not in selector, f"{name}: a selector must never change"
        assert [p for p in of_kind("PodDisruptionBudget", docs) if p["spec"]["selector"]["matchLabels"] == selector]
        assert [n for n in of_kind("NetworkPolicy", docs) if n["spec"]["podSelector"].get("matchLabels") == selector]
        assert [s for s in of_kind("Service", docs) if s["spec"]["selector"] == selector], f"{name}: no Service"
        accounts = by_name("ServiceAccount", docs)
        assert spec["serviceAccountName"] in accounts, f"{name}: ServiceAccount missing"
    for job in of_kind("Job", docs):
        spec = pod_spec(job)
        check_pod(job["metadata"]["name"], spec)
        assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] <= 5
        assert "ttlSecondsAfterFinished" in job["spec"]


def test_base_workloads_follow_the_conventions():
    check_workloads(base_docs())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_follows_the_conventions(overlay):
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered(overlay)
    check_workloads(docs)
    configmaps = set(by_name("ConfigMap", docs))
    for deployment in of_kind("Deployment", docs) + of_kind("Job", docs):
        spec = pod_spec(deployment)
        names = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
        names += [s["configMapRef"]["name"] for c in all_containers(deployment) for s in c.get("envFrom", [])
                  if "configMapRef" in s]
        assert set(names) <= configmaps, f"{deployment['metadata']['name']}: unresolved ConfigMap"
    for doc in docs:
        if doc["kind"] not in ("Namespace",) and "namespace" not in doc["metadata"]:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']} has no namespace")
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o["spec"] for o in of_kind("ScaledObject", docs)}
    assert not of_kind("HorizontalPodAutoscaler", docs), "KEDA makes the HPAs; never both"
    replicas = {}
    for d in of_kind("Deployment", docs):
        name = d["metadata"]["name"]
        if name in scaled:
            assert "replicas" not in d["spec"], f"{name}: KEDA owns its replica count"
            replicas[name] = scaled[name]["minReplicaCount"]
        else:
            replicas[name] = d["spec"]["replicas"]
    if overlay == "production":
        assert min(replicas.values()) >= 2
        for deployment in of_kind("Deployment", docs):
            selector = deployment["spec"]["selector"]["matchLabels"]
            constraints = pod_spec(deployment).get("topologySpreadConstraints", [])
            assert {c["topologyKey"] for c in constraints} >= {"kubernetes.io/hostname"}
            assert all(c["labelSelector"]["matchLabels"] == selector for c in constraints)
        assert all(c["spec"]["instances"] >= 3 for c in of_kind("Cluster", docs))
        assert of_kind("RabbitmqCluster", docs)[0]["spec"]["replicas"] >= 3
    else:
        assert set(replicas.values()) == {1}


def operator_secrets() -> set[str]:
    """Secrets created by the operators from objects in the base: nothing else may be referenced."""
    names = {f"{c['metadata']['name']}-app" for c in of_kind("Cluster")}
    names |= {f"{u['metadata']['name']}-user-credentials" for u in of_kind("User")}
    names |= {f"{r['metadata']['name']}-default-user" for r in of_kind("RabbitmqCluster")}
    # the Secrets a platform team creates by hand (docs/operations.md): token and link signing
    # keys, and the outbound SMTP relay's login
    names |= HAND_MADE_SECRETS
    return names


def test_every_secret_reference_is_to_an_operator_generated_secret():
    allowed = operator_secrets()
    refs = []
    for workload in of_kind("Deployment") + of_kind("Job"):
        for container in all_containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    refs.append(ref["secretKeyRef"]["name"])
                assert "configMapKeyRef" not in ref or not SECRETISH.search(item["name"])
                if SECRETISH.search(item["name"]) or item["name"].endswith(("_URL", "_URI")):
                    assert "value" not in item or "$(" in item["value"] or "://" not in item["value"]
            refs += [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        refs += [v["secret"]["secretName"] for v in pod_spec(workload).get("volumes", []) if "secret" in v]
    assert refs
    assert set(refs) <= allowed, f"unknown secrets: {set(refs) - allowed}"


# --- outbound's SMTP relay ---------------------------------------------------------------------


def outbound_settings_source() -> str:
    return (ROOT / "services/outbound/outbound/settings.py").read_text()


def relay_variables() -> set[str]:
    """Every OUTBOUND_SMTP_* variable outbound's settings read (the relays file excepted)."""
    names = set(re.findall(r'"(OUTBOUND_SMTP_[A-Z_]+)"', outbound_settings_source()))
    assert {"OUTBOUND_SMTP_HOST", "OUTBOUND_SMTP_PORT", "OUTBOUND_SMTP_PASSWORD"} <= names
    return names - {"OUTBOUND_SMTP_RELAYS_FILE"}


def outbound_environment(docs=None, configmaps=None) -> tuple[dict, dict[str, str]]:
    container = pod_spec(deployment_for("outbound", docs))["containers"][0]
    configmaps = base_configmaps() if configmaps is None else configmaps
    settings = {}
    for source in container["envFrom"]:
        settings.update(configmaps[source["configMapRef"]["name"]])
    return env_of(container), settings


def test_outbound_relay_settings_are_all_configured():
    env, settings = outbound_environment()
    for name in relay_variables():
        assert name in env or name in settings, f"outbound: {name} is not configured"
    for name in ("OUTBOUND_SMTP_PASSWORD", "OUTBOUND_SMTP_USERNAME"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mailroom-outbound-smtp" and ref.get("optional") is True, name
        assert name not in settings, f"{name} belongs in the Secret, not the ConfigMap"
    assert settings["OUTBOUND_SMTP_HOST"] not in ("", "127.0.0.1", "localhost")
    assert not (settings["OUTBOUND_SMTP_STARTTLS"] == "true" and settings["OUTBOUND_SMTP_SSL"] == "true")
    assert float(settings["OUTBOUND_SEND_LEASE_SECONDS"]) > float(settings["OUTBOUND_SMTP_TIMEOUT"])


def test_outbound_relay_settings_load_with_outbounds_own_loader():
    """The ConfigMap's values, plus a login from the Secret, read by outbound's settings.load()."""
    _, settings = outbound_environment()
    env = {k: v for k, v in settings.items() if k.startswith(("OUTBOUND_", "MAILROOM_MESSAGE_ID"))}
    env.update({"OUTBOUND_SMTP_USERNAME": "mailer", "OUTBOUND_SMTP_PASSWORD": "s3cr3t-from-the-secret"})
    code = textwrap.dedent("""
        import json
        from outbound.settings import load
        relay = load().smtp
        print(json.dumps([relay.host, relay.port, relay.starttls, relay.ssl, relay.username,
                          relay.password, repr(relay)]))
    """)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOUND_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**clean, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    host, port, starttls, ssl, user, password, shown = json.loads(result.stdout)
    assert (host, port) == (settings["OUTBOUND_SMTP_HOST"], int(settings["OUTBOUND_SMTP_PORT"]))
    assert (starttls, ssl) == (settings["OUTBOUND_SMTP_STARTTLS"] == "true", settings["OUTBOUND_SMTP_SSL"] == "true")
    assert (user, password) == ("mailer", "s3cr3t-from-the-secret")
    assert "s3cr3t" not in shown


def test_outbound_is_the_only_workload_with_the_relay_login_and_smtp_egress():
    for workload in of_kind("Deployment") + of_kind("Job"):
        if workload["metadata"]["name"] == "mailroom-outbound":
            continue
        for container in all_containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef", {})
                assert ref.get("name") != "mailroom-outbound-smtp", workload["metadata"]["name"]
    for policy in of_kind("NetworkPolicy"):
        ports = {p.get("port") for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}
        if ports & {25, 465, 587}:
            assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "outbound", (
                policy["metadata"]["name"])


def render_with_components(tmp_path, overlay: str, *components: str) -> tuple[dict, ...]:
    """An overlay plus optional components, rendered the way a platform team would add them."""
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [f"{rel}/overlays/{overlay}"],
        "components": [f"{rel}/components/{c}" for c in components]}))
    result = subprocess.run([kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def test_outbound_smtp_ca_component_mounts_the_bundle_it_points_at(tmp_path):
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = render_with_components(tmp_path, "production", "outbound-smtp-ca")
    container = pod_spec(deployment_for("outbound", docs))["containers"][0]
    path = Path(env_of(container)["SSL_CERT_FILE"]["value"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec(deployment_for("outbound", docs))["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "mailroom-outbound-smtp-ca"
    others = [d for d in of_kind("Deployment", docs) if d["metadata"]["name"] != "mailroom-outbound"]
    assert all("SSL_CERT_FILE" not in env_of(c) for d in others for c in all_containers(d))


def test_production_overlay_sets_the_relay():
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered("production")
    configmaps = {name: doc.get("data", {}) for name, doc in by_name("ConfigMap", docs).items()}
    env, settings = outbound_environment(docs, configmaps)
    overlay = parse_env_file(K8S / "overlays/production/outbound-relay.env")
    assert overlay.keys() >= {"OUTBOUND_SMTP_HOST", "OUTBOUND_SMTP_PORT"}
    assert {k: settings[k] for k in overlay} == overlay
    assert env["OUTBOUND_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mailroom-outbound-smtp"


def test_configmaps_hold_no_secrets():
    for name, data in base_configmaps().items():
        for key, value in data.items():
            assert not (SECRETISH.search(key) and value.strip()), f"ConfigMap {name}: {key} looks like a secret"
            assert not URL_WITH_PASSWORD.search(value), f"ConfigMap {name}: {key} holds a URL with a password"
            if key.endswith((".yaml", ".yml")):
                for line in value.splitlines():
                    k, sep, v = line.partition(":")
                    if sep and SECRETISH.search(k) and v.strip() and not v.strip().startswith("${"):
                        raise AssertionError(f"ConfigMap {name}/{key}: {line.strip()!r}")


def test_namespace_and_every_object_in_it():
    namespaces = by_name("Namespace")
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(namespaces) == {base["namespace"], rabbitmq_namespace()}
    labels = namespaces[base["namespace"]]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # the broker's pods are baseline only: they live in a namespace of their own
    assert namespaces[rabbitmq_namespace()]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    base_kinds = {doc["kind"] for path in kustomize_tree(BASE)[0] for doc in load_docs(path) if is_manifest(doc)}
    assert "RabbitmqCluster" not in base_kinds


# --- ingest's SMTP listener and blob store -----------------------------------------------------


def test_smtp_listener_deployment():
    ingest = deployment_for("ingest")
    smtp = by_name("Deployment")["mailroom-smtp"]
    container = pod_spec(smtp)["containers"][0]
    assert container["command"] == ["mailroom-smtp"]
    scripts = tomllib.loads((ROOT / "services/ingest/pyproject.toml").read_text())["project"]["scripts"]
    assert "mailroom-smtp" in scripts
    ingest_container = pod_spec(ingest)["containers"][0]
    assert env_of(container)["INGEST_DATABASE_URL"] == env_of(ingest_container)["INGEST_DATABASE_URL"]
    assert container["envFrom"] == ingest_container["envFrom"]
    settings = base_configmaps()[container["envFrom"][0]["configMapRef"]["name"]]
    assert settings["INGEST_SMTP_HOST"] == "0.0.0.0"
    port = int(settings["INGEST_SMTP_PORT"])
    assert {"name": "smtp", "containerPort": port, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):  # its own HTTP health (metrics port)
        assert container[probe]["httpGet"]["port"] == "metrics"
    # the same blob volume, at INGEST_BLOB_DIR, in both
    blob_dir = settings["INGEST_BLOB_DIR"]
    claims = []
    for deployment, ctr in ((ingest, ingest_container), (smtp, container)):
        mount = next(m for m in ctr["volumeMounts"] if m["mountPath"] == blob_dir)
        volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
        claims.append(volume["persistentVolumeClaim"]["claimName"])
    assert claims[0] == claims[1]
    pvc = by_name("PersistentVolumeClaim")[claims[0]]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    service = by_name("Service")["mailroom-smtp"]
    assert service["spec"]["ports"][0]["targetPort"] == "smtp"
    policy = by_name("NetworkPolicy")["mailroom-smtp"]
    assert {"protocol": "TCP", "port": port} in policy["spec"]["ingress"][0]["ports"]
    assert "AMQP_URI" not in env_of(container), "the listener needs no broker"


def test_the_kit_gives_every_service_its_probes_and_metrics():
    code = textwrap.dedent("""
        import json
        from sqlalchemy import MetaData
        from mailroom_shared.kit import service_base
        from mailroom_shared.messaging.idempotency import processed_events_table
        from mailroom_shared.messaging.outbox import outbox_table
        metadata = MetaData()
        base = service_base("x", outbox_table(metadata), processed_events_table(metadata))
        routes = {}
        for name in dir(base):
            for entrypoint in getattr(getattr(base, name), "nameko_entrypoints", ()):
                routes[entrypoint.url] = entrypoint.method
        print(json.dumps(routes))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads(result.stdout) == {"/health/live": "GET", "/health/ready": "GET", "/metrics": "GET"}
    for service in SERVICES:
        source = (ROOT / "services" / service / service / "service.py").read_text()
        assert "service_base(" in source, f"{service}.service must be built on the kit's service_base"


@pytest.mark.parametrize("service", SERVICES)
def test_health_endpoint_exists_where_the_service_module_exists(service):
    module = ROOT / "services" / service / service / "service.py"
    if not module.exists():
        pytest.skip(f"services/{service} has no service module yet")
    source = module.read_text()
    assert re.search(rf"""@(http|endpoint)\(\s*["']GET["']\s*,\s*["']/health/{service}["']""", source), (
        f"{service}.service must answer GET /health/{service} (the probes use it)")


# --- messaging topology vs mailroom_shared.messaging.topology ----------------------------------


def the_vhost() -> dict:
    (vhost,) = of_kind("Vhost")
    return vhost


def the_rabbitmq_cluster() -> dict:
    (cluster,) = of_kind("RabbitmqCluster")
    return cluster


def topology_objects(kind: str) -> list[dict]:
    return [doc for doc in of_kind(kind) if doc["apiVersion"].startswith("rabbitmq.com/")]


def expected_queues() -> dict[str, object]:
    queues = {AUDIT_QUEUE: topology.audit_queue()}
    for sub in SUBSCRIPTIONS:
        main = topology.subscription_queue(sub)
        queues[main.name] = main
        for retry in topology.retry_queues(main.name):
            queues[retry.name] = retry
        dlq = topology.dead_letter_queue(main.name)
        queues[dlq.name] = dlq
    return queues


def load_generator(name: str):
    spec = importlib.util.spec_from_file_location(name, K8S / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_service_manifests_are_generated():
    module = load_generator("gen_services")
    assert set(module.SERVICES) == set(SERVICES)
    stale = [str(path.relative_to(ROOT)) for path, text in module.outputs().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, f"out of date: {stale}: run .venv/bin/python deploy/k8s/gen_services.py"


def test_topology_manifest_is_generated_from_the_code():
    spec = importlib.util.spec_from_file_location("gen_topology", K8S / "gen_topology.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUTPUT.read_text() == module.render(), (
        "deploy/k8s/base/rabbitmq/topology.yaml is out of date: run .venv/bin/python deploy/k8s/gen_topology.py")


def test_vhost_and_cluster_references():
    vhost = the_vhost()
    assert vhost["spec"]["defaultQueueType"] == "quorum"
    cluster = the_rabbitmq_cluster()
    assert cluster["spec"]["replicas"] >= 3
    assert "terminationGracePeriodSeconds" not in cluster["spec"], "keep the operator's default"
    assert "storage" in cluster["spec"]["persistence"]
    allowed = cluster["metadata"]["annotations"]["rabbitmq.com/topology-allowed-namespaces"].split(",")
    assert yaml.safe_load((BASE / "kustomization.yaml").read_text())["namespace"] in allowed
    for kind in ("Exchange", "Queue", "Binding", "Policy", "Permission", "User", "Vhost"):
        objects = topology_objects(kind)
        assert objects, kind
        for doc in objects:
            assert doc["spec"]["rabbitmqClusterReference"] == {"name": cluster["metadata"]["name"],
                                                               "namespace": rabbitmq_namespace()}
            if kind not in ("User", "Vhost"):
                assert doc["spec"]["vhost"] == vhost["spec"]["name"], doc["metadata"]["name"]


def test_exchanges_match_the_producers():
    exchanges = {doc["spec"]["name"]: doc["spec"] for doc in topology_objects("Exchange")}
    assert set(exchanges) == {topology.events_exchange(p).name for p in PRODUCERS}
    for producer in PRODUCERS:
        code = topology.events_exchange(producer)
        spec = exchanges[code.name]
        assert (spec["type"], spec["durable"], spec["autoDelete"]) == (code.type, code.durable, code.auto_delete)


def test_queues_match_the_subscriptions_with_identical_arguments():
    queues = {doc["spec"]["name"]: doc["spec"] for doc in topology_objects("Queue")}
    expected = expected_queues()
    assert set(queues) == set(expected), (
        f"missing: {sorted(set(expected) - set(queues))}, unexpected: {sorted(set(queues) - set(expected))}")
    for name, code in expected.items():
        spec = queues[name]
        # RabbitMQ refuses a redeclaration whose arguments differ (406 PRECONDITION_FAILED)
        assert spec.get("arguments", {}) == dict(code.queue_arguments or {}), name
        assert spec["durable"] is True and code.durable, name
        assert spec["autoDelete"] is False and not code.auto_delete, name
        assert spec["type"] == the_vhost()["spec"]["defaultQueueType"], name


def test_audit_queue_is_bounded():
    audit = next(doc["spec"] for doc in topology_objects("Queue") if doc["spec"]["name"] == AUDIT_QUEUE)
    assert audit["arguments"]["x-max-length"] == AUDIT_MAX_LENGTH


def test_bindings_match_the_subscriptions_and_the_audit_queue():
    bindings = {(d["spec"]["source"], d["spec"]["destination"], d["spec"]["routingKey"])
                for d in topology_objects("Binding")}
    expected = {(f"{sub.source}.events", sub.queue_name, sub.event_type) for sub in SUBSCRIPTIONS}
    expected |= {(exchange, AUDIT_QUEUE, key) for exchange, key in topology.audit_bindings(False)}
    assert all(key != "#" for _, _, key in bindings), "the audit copy of every event is opt-in"
    assert bindings == expected
    assert all(d["spec"]["destinationType"] == "queue" for d in topology_objects("Binding"))


def effective_policy(queue: str) -> dict | None:
    """The policy RabbitMQ applies to a queue: the matching one with the highest priority."""
    matching = [p["spec"] for p in topology_objects("Policy")
                if p["spec"]["applyTo"] in ("queues", "quorum_queues", "all")
                and re.search(p["spec"]["pattern"], queue)]
    if not matching:
        return None
    best = max(p.get("priority", 0) for p in matching)
    top = [p for p in matching if p.get("priority", 0) == best]
    assert len(top) == 1, f"{queue}: {len(top)} policies tie at priority {best}"
    return top[0]


def test_every_subscription_queue_has_a_delivery_limit_and_dead_letters_to_its_dlq():
    queue_names = {doc["spec"]["name"] for doc in topology_objects("Queue")}
    for sub in SUBSCRIPTIONS:
        policy = effective_policy(sub.queue_name)
        assert policy, f"no policy for {sub.queue_name}"
        definition = policy["definition"]
        assert isinstance(definition["delivery-limit"], int) and definition["delivery-limit"] > 0
        assert definition["dead-letter-exchange"] == ""
        assert definition["dead-letter-routing-key"] == topology.dead_letter_queue_name(sub.queue_name)
        assert definition["dead-letter-routing-key"] in queue_names
        # at-least-once dead-lettering only holds with reject-publish (RabbitMQ docs)
        assert definition["dead-letter-strategy"] == "at-least-once"
        assert definition["overflow"] == "reject-publish"
        assert definition["max-length"] > 0


def test_retry_and_dead_letter_queues_are_covered_and_never_drop():
    for sub in SUBSCRIPTIONS:
        for retry in topology.retry_queues(sub.queue_name):
            policy = effective_policy(retry.name)
            assert policy and "dead-letter-routing-key" not in policy["definition"], retry.name
            assert policy["definition"]["overflow"] == "reject-publish"
            # the code's own arguments send it back to the subscription queue after the TTL
            assert retry.queue_arguments["x-dead-letter-routing-key"] == sub.queue_name
        dlq = topology.dead_letter_queue_name(sub.queue_name)
        policy = effective_policy(dlq)
        assert policy, dlq
        assert "dead-letter-exchange" not in policy["definition"], "a DLQ dead-letters nowhere"
        assert policy["definition"]["overflow"] == "reject-publish"
    assert effective_policy(AUDIT_QUEUE) is None, "the audit queue is bounded by its own arguments"


# --- the container image -----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            result.append((instruction.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_on_python_311_slim():
    instructions = dockerfile_instructions()
    froms = [rest for ins, rest in instructions if ins == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    args = dict(rest.split("=", 1) for ins, rest in instructions if ins == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    runs = " ".join(rest for ins, rest in final_stage() if ins == "RUN")
    assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", runs), "no build tools in the final stage"
    assert [rest for ins, rest in final_stage() if ins == "COPY" and rest.startswith("--from=build")]


def test_dockerfile_runs_as_a_non_root_user():
    users = [rest for ins, rest in final_stage() if ins == "USER"]
    assert users, "the final stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    if user.isdigit():
        assert int(user) >= 10000
        pods = of_kind("Deployment") + of_kind("Job")
        assert {pod_spec(w)["securityContext"]["runAsUser"] for w in pods} == {int(user)}


def test_dockerfile_installs_with_the_constraints():
    instructions = dockerfile_instructions()
    installs = [command for ins, rest in instructions if ins == "RUN"
                for command in rest.split("&&") if "pip install" in command]
    assert installs
    for command in installs:
        if re.search(r"pip install\s+\"?pip==", command):
            continue
        assert "-c constraints.txt" in command, f"not pinned: {command.strip()}"
    copied = " ".join(rest for ins, rest in instructions if ins == "COPY")
    assert "constraints.txt" in copied
    for path in ("shared/", "cli/", "services/${SERVICE}/"):
        assert path in copied
    assert (ROOT / "constraints.txt").is_file()
    for service in SERVICES:
        assert (ROOT / "services" / service / "pyproject.toml").is_file()
    cmd = [rest for ins, rest in final_stage() if ins in ("CMD", "ENTRYPOINT")]
    assert cmd and cmd[-1].startswith("["), "exec form"
    assert "exec mailroom-service --config /app/config/nameko.yaml" in cmd[-1]


def test_image_default_nameko_config_expands_from_the_environment():
    config = load_nameko_config((DEPLOY / "docker" / "nameko.yaml").read_text(), {"AMQP_URI": "amqp://x@y/z"})
    assert config["AMQP_URI"] == "amqp://x@y/z"
    assert config["WEB_SERVER_ADDRESS"] == "0.0.0.0:8000"
    text = (DEPLOY / "docker" / "nameko.yaml").read_text()
    assert_logging_config_works(text, {}, "JsonFormatter")
    assert_logging_config_works(text, {"MAILROOM_LOG_FORMAT": "plain"}, "PlainFormatter")


def test_migration_command_works_in_a_single_service_image(tmp_path):
    """Each image holds one service (plus shared and the CLI): `mailroom migrate --service X`
    must not import the other services."""
    service = "contacts"
    others = [s for s in SERVICES if s != service]
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {others!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (not in this image)")
                return None

        sys.meta_path.insert(0, Block())
        from mailroom_cli.main import main
        sys.exit(main(["migrate", "--service", "{service}"]))
    """)
    env = {**os.environ, f"{service.upper()}_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "MAILROOM_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- monitoring --------------------------------------------------------------------------------

MONITORING = K8S / "components" / "monitoring"


def monitoring_docs() -> list[dict]:
    return [doc for name in ("podmonitors.yaml", "prometheusrule.yaml") for doc in load_docs(MONITORING / name)]


def alert_rules() -> list[dict]:
    (rule,) = of_kind("PrometheusRule", monitoring_docs())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:mailroom|rabbitmq)_[a-z_]+)\b", expr))


def known_metric_names() -> set[str]:
    code = ("import json; from mailroom_shared import observability as o; "
            "print(json.dumps(sorted(o.metric_sample_names())))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    return set(json.loads(result.stdout))


RABBITMQ_DETAILED = {"rabbitmq_detailed_queue_messages", "rabbitmq_detailed_queue_consumers"}


def test_alerts_and_dashboard_use_metrics_that_exist():
    import json

    known = known_metric_names() | RABBITMQ_DETAILED
    exprs = [rule["expr"] for rule in alert_rules()]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for expr in exprs:
        unknown = metric_names_in(expr) - known
        assert metric_names_in(expr) and not unknown, f"{expr}: unknown {unknown}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_alerts_the_issue_asks_for_exist_and_have_a_runbook_section():
    alerts = {rule["alert"]: rule for rule in alert_rules()}
    wanted = {"MailroomOutboxBacklogOld", "MailroomDeadLettersGrowing", "MailroomIntakeBacklog",
              "MailroomDeliveryFailureRate", "MailroomMailboxUnreachable", "MailroomQueueWithoutConsumer"}
    assert wanted <= set(alerts)
    runbook = (ROOT / "docs" / "operations.md").read_text()
    headings = {re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
                for line in runbook.splitlines() if line.startswith("#")}
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor == name.lower() and anchor in headings, name


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    (services,) = [m for m in of_kind("PodMonitor", monitoring_docs()) if m["metadata"]["name"] == "mailroom-services"]
    selector = services["spec"]["selector"]["matchLabels"]
    endpoint = services["spec"]["podMetricsEndpoints"][0]
    for service in SERVICES:
        deployment = deployment_for(service)
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), service
        container = pod_spec(deployment)["containers"][0]
        port = next(p for p in container["ports"] if p["name"] == endpoint["port"])
        policy = next(n for n in of_kind("NetworkPolicy")
                      if n["spec"]["podSelector"].get("matchLabels") == deployment["spec"]["selector"]["matchLabels"])
        allowed = [rule for rule in policy["spec"]["ingress"]
                   if {"protocol": "TCP", "port": port["containerPort"]} in rule.get("ports", [])]
        assert allowed and all(peer.get("namespaceSelector", {}).get("matchLabels") == {
            "mailroom.dev/allow-metrics": "true"} for rule in allowed for peer in rule["from"]), service


def test_prometheus_scrapes_the_smtp_listener():
    (smtp_monitor,) = [m for m in of_kind("PodMonitor", monitoring_docs()) if m["metadata"]["name"] == "mailroom-smtp"]
    deployment = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "mailroom-smtp")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert smtp_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = pod_spec(deployment)["containers"][0]
    port = next(p for p in container["ports"] if p["name"] == smtp_monitor["spec"]["podMetricsEndpoints"][0]["port"])
    assert {"name": "INGEST_SMTP_METRICS_PORT", "value": str(port["containerPort"])} in container["env"]
    # probes on the listener's own health endpoints (ingest.smtp_listener.ListenerHealth), not a TCP connect
    assert container["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port["name"]}
    policy = next(n for n in of_kind("NetworkPolicy") if n["metadata"]["name"] == "mailroom-smtp")
    allowed = [rule for rule in policy["spec"]["ingress"]
               if {"protocol": "TCP", "port": port["containerPort"]} in rule.get("ports", [])]
    assert allowed and all(peer.get("namespaceSelector", {}).get("matchLabels") == {
        "mailroom.dev/allow-metrics": "true"} for rule in allowed for peer in rule["from"])


def test_production_has_the_monitoring():
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered("production")
    assert {d["metadata"]["name"] for d in of_kind("PodMonitor", docs)} == {"mailroom-services", "mailroom-smtp",
                                                                            "mailroom-rabbitmq-queues"}
    assert of_kind("PrometheusRule", docs)
    dashboards = [c for c in of_kind("ConfigMap", docs) if c["metadata"].get("labels", {}).get("grafana_dashboard")]
    assert len(dashboards) == 1 and "mailroom.json" in dashboards[0]["data"]


# --- strict schema validation of everything an overlay renders ---------------------------------

KUBERNETES_VERSION = "1.31.0"  # the oldest Kubernetes the manifests target
CRD_SCHEMAS = K8S / "crd-schemas"
OPTIONAL_COMPONENTS = ("smtp-loadbalancer", "outbound-smtp-ca", "amqp-tls")


def strict_json_schema(schema: dict) -> dict:
    """An operator's openAPIV3Schema as strict JSON Schema (as kubeconform -strict): unknown fields
    are errors unless the schema keeps them (x-kubernetes-preserve-unknown-fields), `nullable`
    allows null, int-or-string takes both."""
    if not isinstance(schema, dict):
        return schema
    result = {key: value for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in result:
        result["type"] = [result["type"], "null"]
    result.pop("nullable", None)
    if "properties" in result:
        result["properties"] = {k: strict_json_schema(v) for k, v in result["properties"].items()}
        if "additionalProperties" not in result and not schema.get("x-kubernetes-preserve-unknown-fields"):
            result["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(result.get(key), dict):
            result[key] = strict_json_schema(result[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in result and key in schema:
            result[key] = [strict_json_schema(item) for item in result[key]]
    return result


@cache
def crd_validators() -> dict[tuple[str, str], object]:
    import json

    import jsonschema

    validators = {}
    for path in sorted(CRD_SCHEMAS.glob("*.json")):
        data = json.loads(path.read_text())
        schema = strict_json_schema(data["openAPIV3Schema"])
        # metadata is the API server's: checked by its own rules, not by the CRD
        schema["properties"]["metadata"] = {"type": "object"}
        validators[(f"{data['group']}/{data['version']}", data["kind"])] = jsonschema.Draft7Validator(schema)
    return validators


def schema_errors(doc: dict) -> list[str]:
    import kubernetes_validate

    where = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
    validator = crd_validators().get((doc["apiVersion"], doc["kind"]))
    if validator is not None:
        return [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: no schema for {doc['apiVersion']} {doc['kind']} (vendor its CRD in {CRD_SCHEMAS.name}/)"]
    except kubernetes_validate.ValidationError as error:
        return [f"{where}: {'.'.join(map(str, error.path))}: {error.message}"]
    return []


def test_crd_schemas_are_vendored_for_every_custom_kind():
    kinds = {key for key in crd_validators()}
    assert {("rabbitmq.com/v1beta1", k) for k in ("RabbitmqCluster", "Vhost", "User", "Permission", "Exchange",
                                                  "Queue", "Binding", "Policy")} <= kinds
    assert {("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "ScheduledBackup"),
            ("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"),
            ("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")} <= kinds


def test_the_strict_validation_catches_mistakes():
    cluster = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "x"},
               "spec": {"instances": 3, "storage": {"size": "1Gi"}}}
    assert schema_errors(cluster) == []
    assert schema_errors({**cluster, "spec": {**cluster["spec"], "instancez": 3}}), "an unknown field"
    assert schema_errors({**cluster, "spec": {**cluster["spec"], "instances": "three"}}), "a wrong type"
    job = next(iter(migration_jobs().values()))
    assert schema_errors(job) == []
    broken = yaml.safe_load(yaml.safe_dump(job))
    pod_spec(broken)["containers"][0]["readinessprobe"] = {}
    assert schema_errors(broken), "a misspelled field"
    assert schema_errors({"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay, tmp_path):
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered(overlay) + render_with_components(tmp_path, overlay, *OPTIONAL_COMPONENTS)
    errors = [error for doc in docs for error in schema_errors(doc)]
    assert not errors, "\n".join(errors[:30])


# --- scaling and isolation ---------------------------------------------------------------------


def test_the_namespace_denies_everything_not_allowed():
    deny = by_name("NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # every kind of pod in the namespace has a policy of its own selecting it
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in of_kind("Deployment") + of_kind("Job")]
    pods += [{"cnpg.io/cluster": c["metadata"]["name"]} for c in of_kind("Cluster")]
    policies = [p["spec"]["podSelector"].get("matchLabels", {}) for p in of_kind("NetworkPolicy")
                if p["metadata"]["name"] != "default-deny"]
    for labels in pods:
        assert [sel for sel in policies if sel and sel.items() <= labels.items()], f"no policy for {labels}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_database_admits_only_its_service_its_instances_and_the_operator(service):
    policy = by_name("NetworkPolicy")[f"mailroom-{service}-db"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"cnpg.io/cluster": f"mailroom-{service}-db"}
    peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
    apps = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p and "app.kubernetes.io/name"
            in p["podSelector"]["matchLabels"]]
    assert apps == [{"app.kubernetes.io/name": service, "app.kubernetes.io/instance": "mailroom"}]


def test_external_egress_only_where_needed():
    external = {}
    for policy in of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    ports = {p["port"] for p in rule["ports"]}
                    external.setdefault(policy["metadata"]["name"], set()).update(ports)
                    if ports & {80, 443} and "db" not in policy["metadata"]["name"]:
                        assert {"10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"} <= set(peer["ipBlock"]["except"])
    assert external == {"mailroom-ingest": {993, 143}, "mailroom-outbound": {25, 465, 587},
                        "mailroom-notifier": {443}, **{f"mailroom-{s}-db": {443, 6443} for s in SERVICES}}


def scaled_objects() -> list[dict]:
    module = load_generator("gen_services")
    return [doc for doc in yaml.safe_load_all(module.autoscaling_files()["scaledobjects.yaml"]) if doc]


def test_queue_consumers_scale_on_their_own_queues():
    objects = {o["metadata"]["name"]: o for o in scaled_objects() if o["kind"] == "ScaledObject"}
    (auth,) = [o for o in scaled_objects() if o["kind"] == "TriggerAuthentication"]
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"username", "password"}
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {"mailroom-keda-user-credentials"}
    assert by_name("User")["mailroom-keda"]["spec"]["tags"] == ["monitoring"]
    consumers = {sub.service for sub in SUBSCRIPTIONS}
    assert set(objects) <= {f"mailroom-{s}" for s in consumers}
    assert {"mailroom-contacts", "mailroom-conversations", "mailroom-outbound"} <= set(objects)
    for name, obj in objects.items():
        service = name.removeprefix("mailroom-")
        assert obj["spec"]["scaleTargetRef"] == {"name": name}
        assert 2 <= obj["spec"]["minReplicaCount"] < obj["spec"]["maxReplicaCount"]
        queues = {t["metadata"]["queueName"] for t in obj["spec"]["triggers"]}
        assert queues == {sub.queue_name for sub in SUBSCRIPTIONS if sub.service == service}
        for trigger in obj["spec"]["triggers"]:
            assert trigger["type"] == "rabbitmq" and trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
            meta = trigger["metadata"]
            assert (meta["protocol"], meta["mode"], meta["vhostName"]) == ("http", "QueueLength", "mailroom")
            assert "@" not in meta["host"], "credentials come from the TriggerAuthentication"


def permission_of(service: str) -> dict[str, re.Pattern]:
    return {k: re.compile(v) for k, v in by_name("Permission")[f"mailroom-{service}"]["spec"]["permissions"].items()}


@pytest.mark.parametrize("service", SERVICES)
def test_rabbitmq_permissions_are_the_services_own(service):
    perms = permission_of(service)
    own = [sub.queue_name for sub in SUBSCRIPTIONS if sub.service == service]
    others = [sub.queue_name for sub in SUBSCRIPTIONS if sub.service != service]
    assert perms["write"].fullmatch(f"{service}.events"), "publishes its own events"
    for producer in PRODUCERS:
        if producer != service:
            assert not perms["write"].fullmatch(f"{producer}.events"), f"{service} may publish as {producer}"
    assert all(perms["read"].fullmatch(q) for q in own), "consumes its own queues"
    assert not [q for q in others if perms["read"].fullmatch(q)], "never another service's queue"
    assert not perms["read"].fullmatch(f"rpc.reply-{'x' if service != 'x' else 'y'}-1"), "only its own RPC replies"
    assert perms["read"].fullmatch(f"rpc.reply-{service}-0f1e") and perms["configure"].fullmatch(
        f"rpc.reply-{service}-0f1e")
    # what declare_topology declares at start (every exchange, queue and binding)
    for name in [AUDIT_QUEUE, *own, *others, *(f"{p}.events" for p in PRODUCERS)]:
        assert perms["configure"].fullmatch(name), name


def test_rpc_permissions_follow_the_code():
    module = load_generator("gen_topology")
    servers = {s for s in SERVICES if "@rpc" in (ROOT / "services" / s / s / "service.py").read_text()}
    assert set(module.RPC_SERVERS) == servers
    for service in SERVICES:
        assert bool(permission_of(service)["read"].fullmatch(f"rpc-{service}")) == (service in servers)


def test_production_images_are_pinned_by_digest():
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    for workload in of_kind("Deployment", rendered("production")) + of_kind("Job", rendered("production")):
        for container in all_containers(workload):
            assert re.search(r"@sha256:[0-9a-f]{64}$", container["image"]), container["image"]


def test_production_backs_up_every_database():
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered("production")
    schedules = {b["spec"]["cluster"]["name"]: b["spec"] for b in of_kind("ScheduledBackup", docs)}
    for cluster in of_kind("Cluster", docs):
        name = cluster["metadata"]["name"]
        store = cluster["spec"]["backup"]["barmanObjectStore"]
        assert store["destinationPath"].startswith("s3://") and cluster["spec"]["backup"]["retentionPolicy"]
        assert {store["s3Credentials"][k]["name"] for k in ("accessKeyId", "secretAccessKey")} == {
            "mailroom-backup-s3"}
        assert schedules[name]["method"] == "barmanObjectStore" and schedules[name]["backupOwnerReference"] == "self"
    assert set(schedules) == {c["metadata"]["name"] for c in of_kind("Cluster", docs)}


# --- ingest's blob store in an S3 bucket (components/blobs-s3, in production) -------------------

BLOB_WORKLOADS = ("mailroom-ingest", "mailroom-smtp")


def test_production_keeps_blobs_in_a_bucket_not_on_a_shared_volume():
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered("production")
    assert not of_kind("PersistentVolumeClaim", docs), "no ReadWriteMany claim left to bind"
    configmaps = by_name("ConfigMap", docs)
    deployments = by_name("Deployment", docs)
    for name in BLOB_WORKLOADS:
        spec = pod_spec(deployments[name])
        assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v], name
        container = spec["containers"][0]
        assert not [m for m in container["volumeMounts"] if m["name"] == "blobs"], name
        settings = {}
        for source in container["envFrom"]:
            settings.update(configmaps[source["configMapRef"]["name"]]["data"])
        assert settings["INGEST_BLOB_STORE"] == "s3" and settings["INGEST_S3_BUCKET"], name
        env = env_of(container)
        for variable, key in (("AWS_ACCESS_KEY_ID", "access-key-id"), ("AWS_SECRET_ACCESS_KEY", "secret-access-key")):
            assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "mailroom-ingest-s3", "key": key}, name
    # nothing else gets the bucket's credentials
    for workload in of_kind("Deployment", docs) + of_kind("Job", docs):
        if workload["metadata"]["name"] in BLOB_WORKLOADS:
            continue
        for container in all_containers(workload):
            assert "AWS_SECRET_ACCESS_KEY" not in env_of(container), workload["metadata"]["name"]
    # both may reach the store over HTTPS (the namespace denies egress by default)
    policy = by_name("NetworkPolicy", docs)["mailroom-ingest-blob-store"]["spec"]
    assert policy["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                 "ports": [{"protocol": "TCP", "port": 443}]}]
    selected = {tuple(sorted(e["values"])) for e in policy["podSelector"]["matchExpressions"]
                if e["key"] == "app.kubernetes.io/component"}
    assert selected == {("service", "smtp-listener")}
    for name in BLOB_WORKLOADS:
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert all(labels[e["key"]] in e["values"] for e in policy["podSelector"]["matchExpressions"]), name


def test_production_blob_settings_load_with_ingests_own_loader():
    """The rendered ConfigMap's values, plus credentials as the Secret gives them, read by ingest's
    settings.load(): the bucket the overlay names, and no credential in what the settings hold."""
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = rendered("production")
    container = pod_spec(by_name("Deployment", docs)["mailroom-ingest"])["containers"][0]
    settings = {}
    for source in container["envFrom"]:
        settings.update(by_name("ConfigMap", docs)[source["configMapRef"]["name"]]["data"])
    env = {k: v for k, v in settings.items() if k.startswith("INGEST_")}
    env.update({"AWS_ACCESS_KEY_ID": "AKIAFROMTHESECRET", "AWS_SECRET_ACCESS_KEY": "s3cr3t-from-the-secret"})
    code = textwrap.dedent("""
        import json
        from ingest.settings import load
        settings = load(mailboxes=False)
        where = settings.blob_location
        print(json.dumps([where.bucket, where.prefix, where.server_side_encryption, repr(settings)]))
    """)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "AWS_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**clean, **env, "MAILROOM_VAR_DIR": "/tmp"}, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    bucket, prefix, encryption, shown = json.loads(result.stdout)
    assert (bucket, prefix) == (settings["INGEST_S3_BUCKET"], settings["INGEST_S3_PREFIX"])
    assert encryption == settings["INGEST_S3_SSE"]
    assert "s3cr3t" not in shown and "AKIAFROMTHESECRET" not in shown


def test_the_blob_store_component_renders_strictly_on_the_dev_overlay_too(tmp_path):
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    docs = render_with_components(tmp_path, "dev", "blobs-s3")
    assert not of_kind("PersistentVolumeClaim", docs)
    errors = [error for doc in docs for error in schema_errors(doc)]
    assert not errors, "\n".join(errors[:30])


def test_the_amqp_tls_component_points_every_service_at_the_tls_listener_and_its_ca(tmp_path):
    if not kubectl():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    from mailroom_shared.messaging import connection

    docs = render_with_components(tmp_path, "production", "amqp-tls")
    (cluster,) = of_kind("RabbitmqCluster", docs)
    assert cluster["spec"]["tls"] == {"secretName": "mailroom-rabbitmq-tls", "disableNonTLSListeners": True}
    for service in SERVICES:
        deployment = deployment_for(service, docs)
        container = pod_spec(deployment)["containers"][0]
        names = [item["name"] for item in container["env"]]
        env = env_of(container)
        assert env["AMQP_URI"]["value"].startswith("amqps://$(AMQP_USERNAME):$(AMQP_PASSWORD)@"), service
        assert ":5671/" in env["AMQP_URI"]["value"]
        assert names.index("AMQP_URI") > names.index("AMQP_PASSWORD") > -1, "$(VAR) only expands earlier variables"
        ca_file = Path(env[connection.CA_FILE]["value"])  # the variable the code reads
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(ca_file.parent))
        assert mount["readOnly"] is True
        volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == "mailroom-rabbitmq-ca" and ca_file.name == "ca.crt"
    smtp = pod_spec(by_name("Deployment", docs)["mailroom-smtp"])["containers"][0]
    assert "AMQP_URI" not in env_of(smtp)
