"""Render each service's workload manifests under deploy/k8s/base/<service>/ from one table.

The five services run the same way (one image each, `mailroom-service` as PID 1, the same probes,
security context, migration Job, PDB, NetworkPolicy, CloudNativePG cluster...); what differs is in
SERVICES below. Hand-written files stay hand-written: each service's `service.env` (its settings),
conversations' `inboxes.yaml`, ingest's `smtp.yaml` and `blobs-pvc.yaml`.

    .venv/bin/python deploy/k8s/gen_services.py          # rewrite the files
    .venv/bin/python deploy/k8s/gen_services.py --check  # exit 1 if one is out of date

tests/test_deploy.py fails when a committed file differs from what this renders.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

BASE = Path(__file__).resolve().parent / "base"
TMP = "/tmp"  # noqa: S108 - an emptyDir mounted there in every pod
VERSION = "0.1.0"
UID = 10001
HTTP_PORT = 8000
# /metrics, /health/live and /health/ready on a server of their own (MAILROOM_METRICS_PORT): it
# needs no free nameko worker, so a pod whose workers are all busy still answers its probes
METRICS_PORT = 9100
NAMESPACE = "mailroom"
RABBITMQ = {"name": "mailroom-rabbitmq", "namespace": "mailroom-rabbitmq"}
RABBITMQ_HOST = f"{RABBITMQ['name']}.{RABBITMQ['namespace']}.svc"
CNPG_OPERATOR_NAMESPACE = "cnpg-system"
# Outgoing webhooks and Slack: the internet, never the cluster's or the cloud's private ranges
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
                  "127.0.0.0/8")
# The release placeholder in migration Job names: each overlay replaces it with its `release`
# (kustomize `replacements`), so every release gets Jobs of its own (a Job cannot be changed).
RELEASE_PLACEHOLDER = "release"
# AMQP over TLS (components/amqp-tls): the CA the services verify the broker against
AMQP_CA_CONFIGMAP = "mailroom-rabbitmq-ca"
AMQP_CA_DIR = "/etc/mailroom/amqp-ca"


@dataclass(frozen=True)
class Egress:
    why: str
    ports: tuple[int, ...]
    cidr: str = "0.0.0.0/0"
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    memory: str = "384Mi"
    grace_seconds: int = 60
    egress: tuple[Egress, ...] = ()
    secret_env: tuple[tuple[str, str, str, bool], ...] = ()  # (variable, Secret, key, optional)
    mounts: tuple[dict, ...] = ()  # extra volumeMounts of the service container
    volumes: tuple[dict, ...] = ()
    configmaps: tuple[dict, ...] = ()  # extra configMapGenerator entries
    extra_resources: tuple[str, ...] = ()  # hand-written files in the service's folder


SERVICES: dict[str, Spec] = {
    "ingest": Spec(
        memory="1Gi",
        egress=(Egress("IMAP (connected mailboxes)", (993, 143)),),
        mounts=({"name": "blobs", "mountPath": "/var/lib/mailroom/blobs"},),
        volumes=({"name": "blobs", "persistentVolumeClaim": {"claimName": "mailroom-ingest-blobs"}},),
        extra_resources=("blobs-pvc.yaml", "smtp.yaml"),
    ),
    "contacts": Spec(),
    "conversations": Spec(
        memory="512Mi",
        mounts=({"name": "inboxes", "mountPath": "/app/inboxes", "readOnly": True},),
        volumes=({"name": "inboxes", "configMap": {"name": "mailroom-conversations-inboxes"}},),
        configmaps=({"name": "mailroom-conversations-inboxes", "files": ["inboxes.yaml"]},),
    ),
    "outbound": Spec(
        memory="512Mi",
        grace_seconds=120,  # a handler may wait on the SMTP relay (OUTBOUND_SMTP_TIMEOUT)
        egress=(Egress("the SMTP relay", (25, 465, 587)),),
        # the relay's login (host, port, STARTTLS/SSL are in service.env); optional: a relay
        # without AUTH needs none (docs/operations.md, "Outbound SMTP relay")
        secret_env=(("OUTBOUND_SMTP_USERNAME", "mailroom-outbound-smtp", "username", True),
                    ("OUTBOUND_SMTP_PASSWORD", "mailroom-outbound-smtp", "password", True)),
    ),
    "notifier": Spec(
        egress=(Egress("Slack API and webhook endpoints (HTTPS)", (443,), excluded=PRIVATE_RANGES),),
        # encrypts webhook signing secrets at rest; optional: without it webhooks cannot be created
        # (503) but everything else runs (docs/operations.md, "Webhooks")
        secret_env=(("NOTIFIER_SECRET_KEY", "mailroom-notifier", "secret-key", True),),
    ),
}


def labels(service: str, component: str, version: bool = True) -> dict:
    result = {"app.kubernetes.io/name": service, "app.kubernetes.io/instance": "mailroom",
              "app.kubernetes.io/component": component}
    if version:
        result.update({"app.kubernetes.io/part-of": "mailroom", "app.kubernetes.io/version": VERSION,
                       "app.kubernetes.io/managed-by": "kustomize"})
    return result


def metadata(name: str, service: str, component: str, **extra) -> dict:
    return {"name": name, "labels": labels(service, component), **extra}


def secret_ref(name: str, key: str, optional: bool = False) -> dict:
    ref = {"name": name, "key": key}
    if optional:
        ref["optional"] = True
    return {"secretKeyRef": ref}


RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"}}


def database_env(service: str) -> dict:
    return {"name": f"{service.upper()}_DATABASE_URL", "valueFrom": secret_ref(f"mailroom-{service}-db-app", "uri")}


def deployment(service: str, spec: Spec) -> dict:
    user = f"mailroom-{service}-user-credentials"
    env = [database_env(service),
           {"name": "MAILROOM_JWT_SECRET", "valueFrom": secret_ref("mailroom-auth", "jwt-secret", True)},
           {"name": "MAILROOM_URL_SIGNING_SECRET", "valueFrom": secret_ref("mailroom-auth", "url-signing-secret")}]
    env += [{"name": var, "valueFrom": secret_ref(secret, key, optional)}
            for var, secret, key, optional in spec.secret_env]
    env += [{"name": "AMQP_USERNAME", "valueFrom": secret_ref(user, "username")},
            {"name": "AMQP_PASSWORD", "valueFrom": secret_ref(user, "password")},
            # $(VAR) expands only variables defined above it
            {"name": "AMQP_URI", "value": f"amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@{RABBITMQ_HOST}:5672/mailroom"},
            {"name": "MAILROOM_SERVICE", "value": service},
            {"name": "MAILROOM_METRICS_PORT", "value": str(METRICS_PORT)},
            {"name": "MAILROOM_LOG_FORMAT", "value": "json"},
            # finish in-flight work within the grace period (minus the preStop sleep and a margin)
            {"name": "MAILROOM_STOP_GRACE_SECONDS", "value": str(spec.grace_seconds - 15)}]
    live = {"httpGet": {"path": "/health/live", "port": "metrics"}}
    ready = {"httpGet": {"path": "/health/ready", "port": "metrics"}}
    container = {
        "name": service,
        "image": f"mailroom-{service}:{VERSION}",
        "imagePullPolicy": "IfNotPresent",
        "command": ["mailroom-service", "--config", "/app/config/nameko.yaml", f"{service}.service"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "env": env,
        "envFrom": [{"configMapRef": {"name": f"mailroom-{service}-env"}}],
        "resources": {"requests": {"cpu": "100m", "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "securityContext": RESTRICTED,
        # startup: ready within 10 minutes (a new release waits for its migration Job)
        "startupProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 120},
        # ready: database, schema revision, broker connection, consumers attached
        "readinessProbe": {**ready, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        # live: the event loop turns (no I/O), so a database or broker outage restarts nothing
        "livenessProbe": {**live, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
        # let the Service's endpoints drop the pod before SIGTERM arrives
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "volumeMounts": [{"name": "config", "mountPath": "/app/config", "readOnly": True},
                         {"name": "tmp", "mountPath": TMP}, *spec.mounts],
    }
    selector = labels(service, "service", version=False)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(f"mailroom-{service}", service, "service"),
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(service, "service")},
                "spec": {
                    "serviceAccountName": f"mailroom-{service}",
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": spec.grace_seconds,
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": f"mailroom-{service}-config"}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, *spec.volumes],
                },
            },
        },
    }


def migration_job(service: str) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(f"mailroom-{service}-migrate-{RELEASE_PLACEHOLDER}", service, "migration", annotations={
            # Argo CD: a Sync hook in wave -1, after the databases (wave -2), before the
            # Deployments (wave 0). Not PreSync: on a first install the database does not exist
            # before the sync.
            "argocd.argoproj.io/hook": "Sync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            "argocd.argoproj.io/sync-wave": "-1",
            # Helm (when these manifests are wrapped in a chart): before an upgrade, and after
            # the first install has created the database.
            "helm.sh/hook": "post-install,pre-upgrade",
            "helm.sh/hook-weight": "-1",
            "helm.sh/hook-delete-policy": "before-hook-creation",
        }),
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 900,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels(service, "migration")},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": f"mailroom-{service}",
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": POD_SECURITY,
                    "containers": [{
                        "name": "migrate",
                        "image": f"mailroom-{service}:{VERSION}",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["mailroom", "migrate", "--service", service],
                        "env": [database_env(service),
                                # on a first install the database may still be being created
                                {"name": "MAILROOM_MIGRATE_WAIT_SECONDS", "value": "600"}],
                        "envFrom": [{"configMapRef": {"name": f"mailroom-{service}-env"}}],
                        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
                        "securityContext": RESTRICTED,
                        "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def service_objects(service: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(f"mailroom-{service}", service, "service"),
         "spec": {"type": "ClusterIP", "selector": labels(service, "service", version=False),
                  "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": metadata(f"mailroom-{service}", service, "service"), "automountServiceAccountToken": False},
    ]


def pdb(service: str) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(f"mailroom-{service}", service, "service"),
            "spec": {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                     "selector": {"matchLabels": labels(service, "service", version=False)}}}


DNS = {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def own_database(service: str) -> dict:
    return {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": f"mailroom-{service}-db"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]}


def network_policies(service: str, spec: Spec) -> list[dict]:
    egress = [DNS, own_database(service),
              {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": RABBITMQ["namespace"]}},
                       "podSelector": {"matchLabels": {"app.kubernetes.io/name": RABBITMQ["name"]}}}],
               "ports": [{"protocol": "TCP", "port": 5672}, {"protocol": "TCP", "port": 5671}]}]
    for rule in spec.egress:
        block = {"cidr": rule.cidr, **({"except": list(rule.excluded)} if rule.excluded else {})}
        egress.append({"to": [{"ipBlock": block}], "ports": [{"protocol": "TCP", "port": p} for p in rule.ports]})
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": metadata(f"mailroom-{service}", service, "service"),
         "spec": {"podSelector": {"matchLabels": labels(service, "service", version=False)},
                  "policyTypes": ["Ingress", "Egress"],
                  "ingress": [{"from": [{"podSelector": {}},
                                        {"namespaceSelector": {"matchLabels": {"mailroom.dev/allow-http": "true"}}}],
                               "ports": [{"protocol": "TCP", "port": HTTP_PORT}]},
                              {"from": [{"namespaceSelector": {"matchLabels": {"mailroom.dev/allow-metrics": "true"}}}],
                               "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
                  "egress": egress}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": metadata(f"mailroom-{service}-migrate", service, "migration"),
         "spec": {"podSelector": {"matchLabels": labels(service, "migration", version=False)},
                  "policyTypes": ["Ingress", "Egress"], "ingress": [],
                  "egress": [DNS, own_database(service)]}},
        database_policy(service),
    ]


def database_policy(service: str) -> dict:
    """The CloudNativePG instances of the service's cluster, under the namespace's default deny:
    its own pods (service, migration Job, SMTP listener) on 5432, the other instances
    (replication) and the operator (status on 8000), Prometheus on the exporter port; out to
    DNS, the other instances, the Kubernetes API and the backup object store (HTTPS)."""
    cluster = {"cnpg.io/cluster": f"mailroom-{service}-db"}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(f"mailroom-{service}-db", service, "database"),
        "spec": {
            "podSelector": {"matchLabels": cluster},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": service,
                                                           "app.kubernetes.io/instance": "mailroom"}}}],
                 "ports": [{"protocol": "TCP", "port": 5432}]},
                {"from": [{"podSelector": {"matchLabels": cluster}}],
                 "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
                {"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": CNPG_OPERATOR_NAMESPACE}}}],
                 "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"mailroom.dev/allow-metrics": "true"}}}],
                 "ports": [{"protocol": "TCP", "port": 9187}]},
            ],
            "egress": [
                DNS,
                {"to": [{"podSelector": {"matchLabels": cluster}}],
                 "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                 "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]},
            ],
        },
    }


def postgres(service: str) -> dict:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": metadata(f"mailroom-{service}-db", service, "database", annotations={
            "argocd.argoproj.io/sync-wave": "-2"}),
        "spec": {
            "instances": 3,
            "inheritedMetadata": {"labels": {"app.kubernetes.io/part-of": "mailroom", "app.kubernetes.io/name": service,
                                             "app.kubernetes.io/component": "database"}},
            "enableSuperuserAccess": False,
            "bootstrap": {"initdb": {"database": service, "owner": service}},
            "postgresql": {"parameters": {"max_connections": "200"}},
            "storage": {"size": "10Gi"},
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
            "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
            "enablePDB": True,
        },
    }


NAMEKO_CONFIG = """\
# GENERATED by deploy/k8s/gen_services.py: do not edit.
# nameko configuration of the {service} service, mounted at /app/config/nameko.yaml.
# ${{VAR}} is expanded from the environment by mailroom-service (as by nameko run): no secret lives here.
# Logs: one JSON object per line (MAILROOM_LOG_FORMAT=json), secrets redacted (docs/operations.md).
AMQP_URI: ${{AMQP_URI}}
WEB_SERVER_ADDRESS: 0.0.0.0:{port}
max_workers: ${{NAMEKO_MAX_WORKERS:10}}
LOGGING:
  version: 1
  disable_existing_loggers: false
  formatters:
    plain:
      "()": mailroom_shared.observability.PlainFormatter
      fmt: "%(asctime)s %(name)s %(levelname)s %(message)s"
    json:
      "()": mailroom_shared.observability.JsonFormatter
  handlers:
    console:
      class: logging.StreamHandler
      formatter: ${{MAILROOM_LOG_FORMAT:json}}
  root:
    level: ${{LOG_LEVEL:INFO}}
    handlers: [console]
"""


def kustomization(service: str, spec: Spec, files: list[str]) -> dict:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files + list(spec.extra_resources),
        "configMapGenerator": [{"name": f"mailroom-{service}-config", "files": ["nameko.yaml"]},
                               {"name": f"mailroom-{service}-env", "envs": ["service.env"]},
                               *spec.configmaps],
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # shared dicts (security contexts) are written out each time
        return True


def dump(docs: list[dict], comment: str) -> str:
    header = "# GENERATED by deploy/k8s/gen_services.py: do not edit.\n" + "".join(
        f"# {line}\n" if line else "#\n" for line in comment.splitlines())
    body = "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120) for doc in docs)
    return header + body


def render(service: str) -> dict[str, str]:
    """File name → content for one service."""
    spec = SERVICES[service]
    files = {
        "deployment.yaml": dump([deployment(service, spec)], (
            f"mailroom {service}: the nameko service (consumers, outbox relay, HTTP on :{HTTP_PORT}),\n"
            "run by mailroom-service as PID 1. It never migrates: its migration Job does, once per release.")),
        "migration-job.yaml": dump([migration_job(service)], (
            f"mailroom {service}: `mailroom migrate --service {service}`, once per release: the name ends in\n"
            "the overlay's release (kustomize replacements), and concurrent runs serialise on an advisory lock.")),
        "service.yaml": dump(service_objects(service), f"mailroom {service}: HTTP Service and ServiceAccount."),
        "pdb.yaml": dump([pdb(service)], f"mailroom {service}: at most one pod voluntarily disrupted at a time."),
        "networkpolicy.yaml": dump(network_policies(service, spec), (
            f"mailroom {service}: who may reach its pods and what they may reach.")),
        "postgres.yaml": dump([postgres(service)], (
            f"mailroom {service}: its own PostgreSQL cluster (CloudNativePG). The operator creates the Secret\n"
            f"mailroom-{service}-db-app (keys username, password, host, port, dbname, uri) and the Services\n"
            f"mailroom-{service}-db-rw / -ro / -r.")),
        "nameko.yaml": NAMEKO_CONFIG.format(service=service, port=HTTP_PORT),
    }
    manifest_files = [name for name in files if name != "nameko.yaml"]
    files["kustomization.yaml"] = dump([kustomization(service, spec, manifest_files)], (
        f"mailroom {service}: generated manifests, plus its hand-written settings (service.env)."))
    return files


COMPONENTS = BASE.parent / "components"
# Scaling on queue length (KEDA), per Deployment whose work arrives on queues
SCALING = {"contacts": (3, 12), "conversations": (3, 12), "outbound": (3, 8)}  # service: (min, max)
BACKLOG_PER_REPLICA = 100  # ready + unacked messages of one queue per pod before KEDA adds one


def subscription_queues(service: str) -> list[str]:
    from mailroom_shared.messaging.topology import SUBSCRIPTIONS

    return [sub.queue_name for sub in SUBSCRIPTIONS if sub.service == service]


def scaled_object(service: str) -> dict:
    minimum, maximum = SCALING[service]
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": metadata(f"mailroom-{service}", service, "service"),
        "spec": {
            "scaleTargetRef": {"name": f"mailroom-{service}"},
            "minReplicaCount": minimum,
            "maxReplicaCount": maximum,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}},
            "triggers": [{"type": "rabbitmq", "authenticationRef": {"name": "mailroom-rabbitmq"},
                          "metadata": {"protocol": "http", "host": f"http://{RABBITMQ_HOST}:15672",
                                       "vhostName": "mailroom", "mode": "QueueLength",
                                       "value": str(BACKLOG_PER_REPLICA), "queueName": queue}}
                         for queue in subscription_queues(service)],
        },
    }


def autoscaling_files() -> dict[str, str]:
    auth = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
            "metadata": {"name": "mailroom-rabbitmq", "namespace": NAMESPACE,
                         "labels": {"app.kubernetes.io/part-of": "mailroom",
                                    "app.kubernetes.io/component": "autoscaling"}},
            "spec": {"secretTargetRef": [
                {"parameter": "username", "name": "mailroom-keda-user-credentials", "key": "username"},
                {"parameter": "password", "name": "mailroom-keda-user-credentials", "key": "password"}]}}
    objects = []
    for service in SCALING:
        obj = scaled_object(service)
        obj["metadata"]["namespace"] = NAMESPACE
        objects.append(obj)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
        "resources": ["scaledobjects.yaml"],
        # KEDA owns their replica count (through its HPA): the Deployments no longer set one
        "patches": [{"target": {"kind": "Deployment", "name": f"mailroom-{service}"},
                     "patch": "- op: remove\n  path: /spec/replicas\n"} for service in SCALING],
    }
    return {
        "kustomization.yaml": dump([kustomization], (
            "KEDA autoscaling on queue length (install KEDA >= 2.16 first). The production overlay includes it.\n"
            "Each queue-driven service gets a ScaledObject with one rabbitmq trigger per subscription queue\n"
            "(protocol http: ready + unacked messages); KEDA reads them as the RabbitMQ user mailroom-keda.")),
        "scaledobjects.yaml": dump([auth, *objects], "ScaledObjects and the TriggerAuthentication they share."),
    }


def backups_files() -> dict[str, str]:
    barman = {"destinationPath": "s3://mailroom-backups/",
              "s3Credentials": {"accessKeyId": {"name": "mailroom-backup-s3", "key": "ACCESS_KEY_ID"},
                                "secretAccessKey": {"name": "mailroom-backup-s3", "key": "ACCESS_SECRET_KEY"}},
              "wal": {"compression": "gzip"}, "data": {"compression": "gzip"}}
    patch = [{"op": "add", "path": "/spec/backup", "value": {"retentionPolicy": "30d", "barmanObjectStore": barman}}]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
        "resources": ["scheduledbackups.yaml"],
        "patches": [{"target": {"group": "postgresql.cnpg.io", "kind": "Cluster"},
                     "patch": yaml.dump(patch, Dumper=_Dumper, sort_keys=False, width=120)}],
    }
    schedules = []
    for service in SERVICES:
        schedules.append({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup",
            "metadata": {**metadata(f"mailroom-{service}-db-daily", service, "database"), "namespace": NAMESPACE},
            # six fields (seconds first): every day at 02:15
            "spec": {"schedule": "0 15 2 * * *", "backupOwnerReference": "self", "method": "barmanObjectStore",
                     "cluster": {"name": f"mailroom-{service}-db"}, "immediate": True}})
    return {
        "kustomization.yaml": dump([kustomization], (
            "CloudNativePG backups: base backups and WAL archiving of every service's cluster to an S3-compatible\n"
            "object store (barman), kept 30 days, and a daily ScheduledBackup. Each cluster is stored under\n"
            "<destinationPath>/<cluster name>/. Create the Secret mailroom-backup-s3 (ACCESS_KEY_ID,\n"
            "ACCESS_SECRET_KEY) and set destinationPath (and endpointURL for a non-AWS store) in your overlay.\n"
            "Restore: docs/operations.md, \"Backup and restore\".")),
        "scheduledbackups.yaml": dump(schedules, "A daily backup of every service's database."),
    }


def amqp_tls_files() -> dict[str, str]:
    patches = [{"target": {"group": "rabbitmq.com", "kind": "RabbitmqCluster", "name": RABBITMQ["name"]},
                "patch": yaml.dump([{"op": "add", "path": "/spec/tls", "value": {
                    "secretName": "mailroom-rabbitmq-tls", "disableNonTLSListeners": True}}], Dumper=_Dumper)}]
    for service, spec in SERVICES.items():
        # A strategic merge puts the patch's list items first: the login variables come along, in
        # order, so AMQP_URI stays below the $(AMQP_USERNAME)/$(AMQP_PASSWORD) it expands
        env = deployment(service, spec)["spec"]["template"]["spec"]["containers"][0]["env"]
        login = [item for item in env if item["name"] in ("AMQP_USERNAME", "AMQP_PASSWORD")]
        patches.append({"target": {"kind": "Deployment", "name": f"mailroom-{service}"}, "patch": yaml.dump({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"mailroom-{service}"},
            "spec": {"template": {"spec": {
                "containers": [{"name": service, "env": [
                    *login,
                    {"name": "AMQP_URI",
                     "value": f"amqps://$(AMQP_USERNAME):$(AMQP_PASSWORD)@{RABBITMQ_HOST}:5671/mailroom"},
                    {"name": "MAILROOM_AMQP_CA_FILE", "value": f"{AMQP_CA_DIR}/ca.crt"}],
                    "volumeMounts": [{"name": "amqp-ca", "mountPath": AMQP_CA_DIR, "readOnly": True}]}],
                "volumes": [{"name": "amqp-ca", "configMap": {"name": AMQP_CA_CONFIGMAP}}]}}}},
            Dumper=_Dumper, sort_keys=False)})
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "patches": patches}
    return {"kustomization.yaml": dump([kustomization], (
        "AMQP over TLS: RabbitMQ listens with the certificate in the Secret mailroom-rabbitmq-tls (tls.crt,\n"
        "tls.key, ca.crt: e.g. from cert-manager) on 5671 only, and the services connect with amqps://,\n"
        f"verifying the broker against the CA in the ConfigMap {AMQP_CA_CONFIGMAP} (key ca.crt, in the mailroom\n"
        "namespace: a CA certificate is no secret; copy it from the Secret or let trust-manager do it), and\n"
        "its name, mailroom-rabbitmq.mailroom-rabbitmq.svc (docs/operations.md, \"AMQP over TLS\")."))}


DEFAULT_DENY = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "default-deny", "labels": {"app.kubernetes.io/part-of": "mailroom",
                                                    "app.kubernetes.io/managed-by": "kustomize"}},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
}


def outputs() -> dict[Path, str]:
    files = {BASE / service / name: text for service in SERVICES for name, text in render(service).items()}
    files[BASE / "networkpolicy-default-deny.yaml"] = dump([DEFAULT_DENY], (
        "Nothing goes in or out of a pod in the mailroom namespace unless a NetworkPolicy of its own allows it\n"
        "(each workload's networkpolicy.yaml, each database's, the SMTP listener's)."))
    for component, make in (("autoscaling", autoscaling_files), ("backups", backups_files),
                            ("amqp-tls", amqp_tls_files)):
        files.update({COMPONENTS / component / name: text for name, text in make().items()})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = [path for path, text in outputs().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs()[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
