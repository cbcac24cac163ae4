"""deploy/docker/compose.yaml, the local full stack, checked offline (no Docker daemon):
`docker compose config` when the Compose v2 client is installed, the Compose Specification's own
JSON schema (deploy/docker/compose-spec.json) always, and the stack against the code it runs: every
service, its settings read by the code's own loaders, pinned images."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
import yaml

from mailroom_shared.config import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "deploy" / "docker"
COMPOSE = DOCKER / "compose.yaml"
INFRASTRUCTURE = {"rabbitmq", "postgres", "minio", "mailpit"}


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def compose_client() -> list[str] | None:
    """`docker compose` (the v2 plugin) when this machine has it; no daemon is needed for `config`."""
    if not shutil.which("docker"):
        return None
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ["docker", "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_the_file():
    client = compose_client()
    if client is None:
        pytest.skip("the Docker Compose v2 client (`docker compose`) is not installed here; "
                    "the file is still checked against the Compose Specification's schema below")
    result = subprocess.run([*client, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_file_follows_the_compose_specification():
    import jsonschema

    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose())]
    assert not errors, "\n".join(errors[:20])


def test_the_schema_catches_mistakes():
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads((DOCKER / "compose-spec.json").read_text()))
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["ingest"]["depend_on"] = ["rabbitmq"]  # misspelled
    assert list(validator.iter_errors(broken))
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["ingest"]["ports"] = "127.0.0.1:8001:8000"  # a list of them
    assert list(validator.iter_errors(broken))


def test_every_service_the_smtp_listener_and_the_infrastructure_run():
    names = set(services())
    assert set(SERVICE_NAMES) | {"smtp"} | INFRASTRUCTURE <= names
    for service in SERVICE_NAMES:
        spec = services()[service]
        assert spec["image"] == f"mailroom-{service}:dev"
        assert "command" not in spec, "the image's own command: mailroom-service <service>.service"
        migration = services()[f"migrate-{service}"]
        assert migration["command"] == ["mailroom", "migrate", "--service", service]
        assert spec["depends_on"][f"migrate-{service}"] == {"condition": "service_completed_successfully"}
        assert spec["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    assert services()["smtp"]["command"] == ["mailroom-smtp"]
    # every image the stack runs is built here with the service argument it needs, once
    built = {s["image"]: s["build"]["args"]["SERVICE"] for s in services().values() if "build" in s}
    assert built == {f"mailroom-{s}:dev": s for s in SERVICE_NAMES}
    for name, spec in services().items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in names, f"{name} depends on {dependency}"


def test_third_party_images_are_pinned_to_a_release():
    for name in INFRASTRUCTURE:
        image = services()[name]["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", image
        assert re.search(r"\d+\.\d+|RELEASE\.\d{4}", tag), f"{image}: a release tag, not a moving one"


def test_ports_are_published_on_loopback_only():
    for name, spec in services().items():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} would listen on every interface"


def settings_of(service: str) -> dict[str, str]:
    environment = services()[service]["environment"]
    return {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)) for key, value in environment.items()}


def load_in_subprocess(code: str, environment: dict[str, str]) -> list:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "OUTBOUND_", "AWS_", "AMQP_"))}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**clean, **environment, "MAILROOM_VAR_DIR": "/tmp"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ingest_keeps_its_blobs_in_the_stacks_bucket_and_the_listener_shares_them():
    ingest = settings_of("ingest")
    bucket, endpoint, style = load_in_subprocess("""
        import json
        from ingest.settings import load
        where = load(mailboxes=False).blob_location
        print(json.dumps([where.bucket, where.endpoint_url, where.addressing_style]))
    """, ingest)
    assert endpoint == "http://minio:9000" and style == "path"
    assert bucket == settings_of("minio-bucket")["INGEST_S3_BUCKET"]
    assert ingest["AWS_SECRET_ACCESS_KEY"] == settings_of("minio")["MINIO_ROOT_PASSWORD"]
    smtp = settings_of("smtp")
    assert {k: v for k, v in smtp.items() if k.startswith(("INGEST_S3", "INGEST_BLOB", "AWS_"))} == {
        k: v for k, v in ingest.items() if k.startswith(("INGEST_S3", "INGEST_BLOB", "AWS_"))}
    assert smtp["INGEST_DATABASE_URL"] == ingest["INGEST_DATABASE_URL"]


def test_outbound_delivers_to_the_smtp_sink():
    host, port, starttls = load_in_subprocess("""
        import json
        from outbound.settings import load
        relay = load().smtp
        print(json.dumps([relay.host, relay.port, relay.starttls]))
    """, settings_of("outbound"))
    assert (host, port, starttls) == ("mailpit", 1025, False)


def test_every_service_reaches_its_own_database_and_the_broker():
    databases = re.findall(r"CREATE DATABASE (\w+)", (DOCKER / "postgres-init.sql").read_text())
    assert sorted(databases) == sorted(SERVICE_NAMES)
    rabbit = services()["rabbitmq"]["environment"]
    for service in SERVICE_NAMES:
        env = settings_of(service)
        assert env[f"{service.upper()}_DATABASE_URL"].endswith(f"@postgres:5432/{service}")
        assert env["AMQP_URI"] == (f"amqp://{rabbit['RABBITMQ_DEFAULT_USER']}:mailroom-dev@rabbitmq:5672/"
                                   f"{rabbit['RABBITMQ_DEFAULT_VHOST']}")
        assert env["MAILROOM_DEV_AUTH"] == "false" and env["MAILROOM_JWT_SECRET"], "one secret for every service"


def test_every_mailroom_setting_in_the_file_is_one_the_code_reads():
    readme = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    for name in [*SERVICE_NAMES, "smtp", "minio-bucket"] + [f"migrate-{s}" for s in SERVICE_NAMES]:
        for variable in services()[name].get("environment", {}):
            if variable.startswith("AWS_"):
                continue  # read by the AWS SDK itself
            if variable.endswith("_DATABASE_URL") and variable.split("_")[0].lower() in SERVICE_NAMES:
                continue  # the README's `<SERVICE>_DATABASE_URL` row
            assert variable in documented, f"{name}: {variable} is not in README.md's configuration table"
