"""Kubernetes manifests for the ``kubernetes`` and ``kserve`` targets: rendering and validation.

Everything here is pure (dicts in, dicts out, no cluster): the targets apply what
these functions return, ``mlsteps deploy render`` prints it for GitOps, and the
tests validate and security-scan it. Built-in kinds are validated against the
upstream Kubernetes schemas shipped by ``kubernetes-validate``; the custom
resources (KServe ``InferenceService``, Istio ``VirtualService`` and
``DestinationRule``) against the subset of their CRDs' own OpenAPI schemas
vendored under ``schemas/`` (see its README), made strict: a field the schema
does not know is an error, as with ``kubectl apply --validate=strict``.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsteps.errors import ConfigError, Problem
from mlsteps.hashing import hash_value

if TYPE_CHECKING:
    from mlsteps.deploy.base import ModelSpec
    from mlsteps.deploy.kserve import KServeTargetConfig
    from mlsteps.deploy.kubernetes import KubernetesTargetConfig

Manifest = dict[str, Any]

MANAGER = "mlsteps"
#: Labels on every object and pod (the ``app.kubernetes.io`` ones are the recommended common labels).
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
MODEL_LABEL = "mlsteps.io/model"
VERSION_LABEL = "mlsteps.io/model-version"
TRACK_LABEL = "mlsteps.io/track"
RUN_KEY_LABEL = "mlsteps.io/run-key"
#: Annotations: the unabridged values (label values are limited to 63 characters of [-A-Za-z0-9_.]).
RUN_KEY_ANNOTATION = "mlsteps.io/run-key"
MODEL_URI_ANNOTATION = "mlsteps.io/model-uri"
ACTOR_ANNOTATION = "mlsteps.io/actor"

#: The two Deployments of a deployment ``D``: ``D`` serves stable traffic; ``D-candidate`` is the
#: canary (while it steps), the B side of an A/B test, or the shadow receiving mirrored traffic.
STABLE = "stable"
CANDIDATE = "candidate"
TRACKS = (STABLE, CANDIDATE)

CONTAINER_NAME = "model"
#: The init container that downloads the version and verifies it against the registered hash.
VERIFY_CONTAINER_NAME = "verify-model"
#: The emptyDir holding the verified copy: written by the init container, read-only to the server.
MODEL_VOLUME = "model"
#: Where that copy is mounted (the path KServe's runtimes load a model from).
MODEL_DIR = "/mnt/models"
CONTAINER_PORT = 8080
PORT_NAME = "http"
#: The MLflow scoring server's endpoints (``mlflow models serve``).
PING_PATH = "/ping"
INVOCATIONS_PATH = "/invocations"

ISTIO_API = "networking.istio.io/v1"
KSERVE_API = "serving.kserve.io/v1beta1"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# --------------------------------------------------------------------------- labels


def label_value(text: str) -> str:
    """``text`` as a valid label value: unchanged when it already is one, else cleaned and hashed."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    cleaned = re.sub(r"[^-A-Za-z0-9_.]+", ".", text).strip("-_.")
    # A hash suffix keeps two long values that share a prefix apart.
    digest = hash_value(text).rpartition(":")[2][:10]
    return f"{cleaned[:52].strip('-_.')}-{digest}".strip("-")


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label/annotation key (``[prefix/]name``), or ``None``."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"the prefix {prefix!r} of {key!r} is not a DNS subdomain"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (
            f"{key!r}: the name part must be 1-63 characters of letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_problem(key: str, value: str) -> str | None:
    """Why ``key: value`` is not a valid Kubernetes label, or ``None``."""
    problem = label_key_problem(key)
    if problem:
        return problem
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        return f"the value {value!r} of label {key!r} must be at most 63 letters, digits, '-', '_', '.'"
    return None


def selector_labels(deployment: str, track: str | None = None) -> dict[str, str]:
    """The labels that select a deployment's pods (all of them, or one track's)."""
    labels = {INSTANCE_LABEL: deployment}
    if track is not None:
        labels[TRACK_LABEL] = track
    return labels


def common_labels(deployment: str, extra: dict[str, str]) -> dict[str, str]:
    """Labels on every object of ``deployment``; the user's ``extra`` cannot override mlsteps' own."""
    return {
        **extra,
        NAME_LABEL: "mlsteps-model",
        INSTANCE_LABEL: deployment,
        MANAGED_BY_LABEL: MANAGER,
    }


def model_labels(model: ModelSpec) -> dict[str, str]:
    return {MODEL_LABEL: label_value(model.name), VERSION_LABEL: label_value(model.version)}


def _metadata(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    run_key: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    notes = dict(annotations or {})
    if run_key is not None:
        meta["labels"][RUN_KEY_LABEL] = label_value(run_key)
        notes[RUN_KEY_ANNOTATION] = run_key
    if notes:
        meta["annotations"] = notes
    return meta


def object_name(deployment: str, track: str) -> str:
    """The Deployment name of ``track``: ``D`` for stable, ``D-candidate`` for the other one."""
    return deployment if track == STABLE else f"{deployment}-{track}"


def service_host(deployment: str, namespace: str) -> str:
    """The cluster DNS name of the deployment's Service."""
    return f"{deployment}.{namespace}.svc.cluster.local"


# --------------------------------------------------------------------------- kubernetes target


def _env(cfg: KubernetesTargetConfig | KServeTargetConfig, *, tracking: bool = True) -> list[dict[str, Any]]:
    """Plain values first, then values read from Secrets (``secretKeyRef``: never inlined).

    ``tracking``: include ``MLFLOW_TRACKING_URI`` from ``tracking_uri_secret`` (the
    init container needs it to download the version; KServe's runtime does not).
    """
    plain = dict(cfg.env)
    if "/tmp" in cfg.writable_dirs and "HOME" not in plain:
        # The non-root UID has no home directory in most images; MLflow and pip caches write under it.
        plain["HOME"] = "/tmp"
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(plain.items())]
    refs = list(cfg.secret_env)
    secret = cfg.tracking_uri_secret if tracking else None
    if secret is not None:
        refs.insert(0, secret.as_env("MLFLOW_TRACKING_URI"))
    for ref in refs:
        env.append(
            {
                "name": ref.name,
                "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key, "optional": ref.optional}},
            }
        )
    return env


def _container_security(read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security(cfg: KubernetesTargetConfig | KServeTargetConfig) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": cfg.run_as_user,
        "runAsGroup": cfg.run_as_user,
        "fsGroup": cfg.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _scratch(cfg: KubernetesTargetConfig | KServeTargetConfig) -> tuple[list[Manifest], list[Manifest]]:
    """emptyDir volumes and their mounts for every writable directory (the root filesystem is read-only)."""
    volumes, mounts = [], []
    for i, path in enumerate(cfg.writable_dirs):
        name = f"scratch-{i}"
        volumes.append({"name": name, "emptyDir": {"sizeLimit": cfg.scratch_size}})
        mounts.append({"name": name, "mountPath": path})
    return volumes, mounts


def verify_command(model: ModelSpec) -> list[str]:
    """The init container's command: download ``model`` into :data:`MODEL_DIR` and check its hash.

    The hash is the one ``deploy`` read from the registry (``mlsteps.artifact_hash``)
    and checked the artifacts against; the pod checks its own download against it
    again, so artifacts changed after ``deploy`` are never served. A version without
    a recorded hash (registered outside mlsteps) is downloaded unverified, as ``deploy``
    lets it through unverified.
    """
    command = ["python", "-m", "mlsteps.verify_model", "--model-uri", model.model_uri, "--dest", MODEL_DIR]
    if model.artifact_hash:
        command += ["--expected-hash", model.artifact_hash]
    return command


def _model_volume(cfg: KubernetesTargetConfig | KServeTargetConfig) -> Manifest:
    return {"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": cfg.model_volume_size}}


def verify_container(
    cfg: KubernetesTargetConfig | KServeTargetConfig,
    model: ModelSpec,
    *,
    image: str,
    pull_policy: str,
    scratch_mounts: list[Manifest],
) -> Manifest:
    """The init container: as hardened and bounded as the server (the restricted profile covers it too)."""
    return {
        "name": VERIFY_CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": verify_command(model),
        "env": _env(cfg),
        "resources": cfg.resources.manifest(),
        "securityContext": _container_security(True),
        "volumeMounts": [*copy.deepcopy(scratch_mounts), {"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
    }


def _served_model_mount() -> Manifest:
    return {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}


def serve_command(cfg: KubernetesTargetConfig, model: ModelSpec) -> list[str]:
    """The container's command: MLflow's scoring server on the verified local copy, in the image's env."""
    return [
        "mlflow",
        "models",
        "serve",
        "--model-uri",
        MODEL_DIR,
        "--host",
        "0.0.0.0",
        "--port",
        str(CONTAINER_PORT),
        "--workers",
        str(cfg.workers),
        "--env-manager",
        "local",
    ]


def deployment_manifest(
    cfg: KubernetesTargetConfig,
    deployment: str,
    model: ModelSpec,
    *,
    track: str,
    run_key: str | None = None,
    actor: str | None = None,
) -> Manifest:
    """The Deployment running ``model`` on ``track`` (its pods carry the model and version labels)."""
    labels = {**common_labels(deployment, cfg.labels), COMPONENT_LABEL: "predictor"}
    pod_labels = {**labels, **model_labels(model), TRACK_LABEL: track}
    volumes, mounts = _scratch(cfg)

    def probe(period: int, failures: int) -> dict[str, Any]:
        # A fresh dict per probe: shared ones would come out as YAML anchors in `render`.
        return {
            "httpGet": {"path": PING_PATH, "port": PORT_NAME},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": serve_command(cfg, model),
        "ports": [{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(cfg),
        "resources": cfg.resources.manifest(),
        "securityContext": _container_security(True),
        # /ping answers 200 only once the model is loaded: the startup probe covers loading,
        # then readiness gates traffic and liveness restarts a wedged server.
        "startupProbe": probe(5, max(1, int(cfg.startup_timeout_s // 5))),
        "readinessProbe": probe(5, 3),
        "livenessProbe": probe(20, 3),
        "volumeMounts": [*mounts, _served_model_mount()],
    }
    init = verify_container(
        cfg, model, image=cfg.image, pull_policy=cfg.image_pull_policy, scratch_mounts=mounts
    )
    # Its log's tail becomes the termination message, which a failed rollout reports (pod_problem).
    init["terminationMessagePolicy"] = "FallbackToLogsOnError"
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(deployment, track)},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": int(cfg.rollout_timeout_s),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {MODEL_URI_ANNOTATION: model.model_uri},
            },
            "spec": {
                "automountServiceAccountToken": cfg.automount_service_account_token,
                "securityContext": _pod_security(cfg),
                "initContainers": [init],
                "containers": [container],
                "volumes": [*volumes, _model_volume(cfg)],
                "terminationGracePeriodSeconds": 30,
            },
        },
    }
    if cfg.autoscaling is None:
        spec["replicas"] = cfg.replicas if track == STABLE else cfg.candidate_replicas
    pod_spec = spec["template"]["spec"]
    if cfg.service_account:
        pod_spec["serviceAccountName"] = cfg.service_account
    if cfg.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    annotations = {MODEL_URI_ANNOTATION: model.model_uri}
    if actor:
        annotations[ACTOR_ANNOTATION] = actor
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            object_name(deployment, track),
            cfg.namespace,
            {**labels, **model_labels(model), TRACK_LABEL: track},
            run_key=run_key,
            annotations=annotations,
        ),
        "spec": spec,
    }


def service_manifest(cfg: KubernetesTargetConfig, deployment: str) -> Manifest:
    """The ClusterIP Service in front of every track's pods (Istio splits traffic between tracks)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(deployment, cfg.namespace, common_labels(deployment, cfg.labels)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(deployment),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": cfg.service_port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    # Tells Istio the protocol explicitly (mirroring and weights need HTTP routing).
                    "appProtocol": "http",
                }
            ],
        },
    }


def hpa_manifest(cfg: KubernetesTargetConfig, deployment: str, track: str) -> Manifest:
    """A HorizontalPodAutoscaler (autoscaling/v2) on CPU for the Deployment of ``track``."""
    assert cfg.autoscaling is not None
    auto = cfg.autoscaling
    name = object_name(deployment, track)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(
            name, cfg.namespace, {**common_labels(deployment, cfg.labels), TRACK_LABEL: track}
        ),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": auto.cpu_utilization},
                    },
                }
            ],
        },
    }


def network_policy_manifest(cfg: KubernetesTargetConfig, deployment: str) -> Manifest:
    """Ingress to the model pods only on the serving port (from ``allow_from`` namespaces, or any)."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": CONTAINER_PORT}]}
    if cfg.network_policy.allow_from_namespaces:
        rule["from"] = [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
            for ns in cfg.network_policy.allow_from_namespaces
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(deployment, cfg.namespace, common_labels(deployment, cfg.labels)),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(deployment)},
            "policyTypes": ["Ingress"],
            "ingress": [rule],
        },
    }


def destination_rule_manifest(cfg: KubernetesTargetConfig, deployment: str) -> Manifest:
    """Istio subsets ``stable`` and ``candidate``, one per track label."""
    return {
        "apiVersion": ISTIO_API,
        "kind": "DestinationRule",
        "metadata": _metadata(deployment, cfg.namespace, common_labels(deployment, cfg.labels)),
        "spec": {
            "host": service_host(deployment, cfg.namespace),
            "subsets": [{"name": track, "labels": {TRACK_LABEL: track}} for track in TRACKS],
        },
    }


def virtual_service_manifest(
    cfg: KubernetesTargetConfig,
    deployment: str,
    *,
    candidate_percent: int = 0,
    mirror_percent: int = 0,
) -> Manifest:
    """The Istio route: ``candidate_percent`` of requests to the candidate (canary/ab), the rest to
    stable; or, with ``mirror_percent``, everything to stable and a copy to the candidate (shadow),
    whose responses Envoy discards."""
    if not 0 <= candidate_percent <= 100 or not 0 <= mirror_percent <= 100:
        raise ValueError("percentages must be within 0..100")
    if candidate_percent and mirror_percent:
        raise ValueError("a route either splits or mirrors traffic, not both")
    host = service_host(deployment, cfg.namespace)
    port = {"number": cfg.service_port}
    route: list[dict[str, Any]] = [
        {"destination": {"host": host, "subset": STABLE, "port": port}, "weight": 100 - candidate_percent}
    ]
    if candidate_percent:
        route.append(
            {"destination": {"host": host, "subset": CANDIDATE, "port": port}, "weight": candidate_percent}
        )
    http: dict[str, Any] = {"name": "model", "route": route}
    if mirror_percent:
        http["mirror"] = {"host": host, "subset": CANDIDATE, "port": port}
        http["mirrorPercentage"] = {"value": float(mirror_percent)}
    spec: dict[str, Any] = {"hosts": [host, *cfg.istio.hosts], "http": [http]}
    if cfg.istio.gateways:
        spec["gateways"] = list(cfg.istio.gateways)
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _metadata(deployment, cfg.namespace, common_labels(deployment, cfg.labels)),
        "spec": spec,
    }


def render_kubernetes(
    cfg: KubernetesTargetConfig,
    deployment: str,
    model: ModelSpec,
    *,
    strategy: str,
    stable: ModelSpec | None = None,
    percent: int | None = None,
    run_key: str | None = None,
    actor: str | None = None,
) -> list[Manifest]:
    """Every object a deploy of ``model`` with ``strategy`` applies, in apply order.

    ``replace`` rolls the stable Deployment to ``model``. ``canary``, ``ab`` and
    ``shadow`` put ``model`` on the candidate Deployment behind an Istio
    VirtualService (``percent``: the candidate's share, default the strategy's
    first step or weight); ``stable`` adds the stable Deployment when its version
    is known (the target knows it from its state; a pure render may not).
    """
    objects: list[Manifest] = []
    if cfg.network_policy.enabled:
        objects.append(network_policy_manifest(cfg, deployment))
    objects.append(service_manifest(cfg, deployment))
    if strategy == "replace":
        objects.append(
            deployment_manifest(cfg, deployment, model, track=STABLE, run_key=run_key, actor=actor)
        )
        if cfg.autoscaling is not None:
            objects.append(hpa_manifest(cfg, deployment, STABLE))
        return objects
    if stable is not None:
        objects.append(
            deployment_manifest(cfg, deployment, stable, track=STABLE, run_key=run_key, actor=actor)
        )
        if cfg.autoscaling is not None:
            objects.append(hpa_manifest(cfg, deployment, STABLE))
    objects.append(deployment_manifest(cfg, deployment, model, track=CANDIDATE, run_key=run_key, actor=actor))
    if cfg.autoscaling is not None:
        objects.append(hpa_manifest(cfg, deployment, CANDIDATE))
    objects.append(destination_rule_manifest(cfg, deployment))
    if strategy == "shadow":
        objects.append(virtual_service_manifest(cfg, deployment, mirror_percent=percent or 100))
    else:
        objects.append(virtual_service_manifest(cfg, deployment, candidate_percent=percent or 0))
    return objects


# --------------------------------------------------------------------------- kserve target


def inference_service_manifest(
    cfg: KServeTargetConfig,
    deployment: str,
    model: ModelSpec,
    *,
    canary_percent: int | None = None,
    run_key: str | None = None,
    actor: str | None = None,
) -> Manifest:
    """An InferenceService serving the version's verified artifacts with the MLflow format.

    No ``storageUri``: instead of KServe's storage initializer, the predictor's init
    container (``verify_image``) downloads the version into an emptyDir at
    :data:`MODEL_DIR`, where the runtime loads models from, and fails the pod when the
    files differ from the hash recorded at registration.

    ``canary_percent`` sends that share to the new revision while the previous
    rolled-out revision keeps the rest; leaving it out promotes the new revision.
    """
    volumes, mounts = _scratch(cfg)
    container: dict[str, Any] = {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": cfg.protocol_version,
        "resources": cfg.resources.manifest(),
        "securityContext": _container_security(True),
        "volumeMounts": [*mounts, _served_model_mount()],
    }
    if cfg.runtime:
        container["runtime"] = cfg.runtime
    env = _env(cfg, tracking=False)
    if env:
        container["env"] = env
    init = verify_container(
        cfg, model, image=cfg.verify_image, pull_policy=cfg.verify_image_pull_policy, scratch_mounts=mounts
    )
    predictor: dict[str, Any] = {
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "automountServiceAccountToken": cfg.automount_service_account_token,
        "securityContext": _pod_security(cfg),
        "initContainers": [init],
        "model": container,
        "volumes": [*volumes, _model_volume(cfg)],
    }
    if cfg.service_account:
        predictor["serviceAccountName"] = cfg.service_account
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    annotations = {MODEL_URI_ANNOTATION: model.model_uri, **cfg.annotations}
    if actor:
        annotations[ACTOR_ANNOTATION] = actor
    return {
        "apiVersion": KSERVE_API,
        "kind": "InferenceService",
        "metadata": _metadata(
            deployment,
            cfg.namespace,
            {**common_labels(deployment, cfg.labels), **model_labels(model)},
            run_key=run_key,
            annotations=annotations,
        ),
        "spec": {"predictor": predictor},
    }


# --------------------------------------------------------------------------- validation

SCHEMA_DIR = Path(__file__).parent / "schemas"
#: (apiVersion, kind) -> the vendored CRD schema subset (see schemas/README.md).
CRD_SCHEMAS: dict[tuple[str, str], str] = {
    (KSERVE_API, "InferenceService"): "inferenceservices.serving.kserve.io.v1beta1.yaml",
    (ISTIO_API, "VirtualService"): "virtualservices.networking.istio.io.v1.yaml",
    (ISTIO_API, "DestinationRule"): "destinationrules.networking.istio.io.v1.yaml",
}


def strict_schema(node: Any, *, root: bool = True) -> Any:
    """A CRD's structural OpenAPI schema as a JSON schema that refuses unknown fields.

    The API server prunes (or, with strict field validation, rejects) fields a
    structural schema does not declare; JSON schema allows them unless told, so
    every object with ``properties`` and no ``x-kubernetes-preserve-unknown-fields``
    gets ``additionalProperties: false``. ``nullable`` becomes a null type; the
    ``x-kubernetes-*`` markers are dropped (``int-or-string`` is already an ``anyOf``).
    """
    if isinstance(node, list):
        return [strict_schema(item, root=False) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "default"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strict_schema(sub, root=False) for name, sub in value.items()}
        else:
            out[key] = strict_schema(value, root=False)
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        out.pop("nullable", None)
    if root:
        # Every object has these, whatever its CRD declares.
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "properties" in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The strict JSON schema of a vendored custom resource kind."""
    import yaml

    filename = CRD_SCHEMAS.get((api_version, kind))
    if filename is None:
        raise KeyError(f"no vendored schema for {kind} ({api_version})")
    raw = yaml.safe_load((SCHEMA_DIR / filename).read_text())
    schema: dict[str, Any] = strict_schema(raw)
    return schema


def describe(manifest: Manifest) -> str:
    meta = manifest.get("metadata") or {}
    return f"{manifest.get('kind', '?')}/{meta.get('name', '?')}"


def _path(parts: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "(top level)"


def manifest_problems(manifest: Manifest, *, kubernetes_version: str) -> list[str]:
    """What is wrong with ``manifest`` against its schema (empty when valid).

    Built-in kinds: ``kubernetes_validate`` (strict) for ``kubernetes_version``;
    the vendored custom resources: their CRD schema, with every error reported.
    """
    key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
    problems: list[str] = []
    meta = manifest.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not DNS_LABEL.fullmatch(name):
        problems.append(f"{describe(manifest)}: metadata.name {name!r} is not a DNS-1123 label")
    for label, value in (meta.get("labels") or {}).items():
        problem = label_problem(str(label), str(value))
        if problem:
            problems.append(f"{describe(manifest)}: metadata.labels: {problem}")
    if key in CRD_SCHEMAS:
        from mlsteps._imports import require

        # jsonschema comes with kubernetes-validate (the k8s extra); it ships no type stubs.
        validator = require("jsonschema").Draft202012Validator(crd_schema(*key))
        for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
            problems.append(f"{describe(manifest)}: {_path(error.absolute_path)}: {error.message}")
        return problems
    kv = _kubernetes_validate()
    try:
        kv.validate(copy.deepcopy(manifest), kubernetes_version, strict=True)
    except kv.ValidationError as exc:
        problems.append(f"{describe(manifest)}: {_path(exc.absolute_path)}: {exc.message}")
    except kv.SchemaNotFoundError as exc:
        problems.append(f"{describe(manifest)}: {exc.message}")
    except kv.VersionNotSupportedError as exc:
        problems.append(f"kubernetes-validate has no schemas for Kubernetes {exc.version}")
    return problems


def _kubernetes_validate() -> Any:
    from mlsteps._imports import require

    kv = require("kubernetes_validate")
    return kv


def validate_manifests(
    manifests: list[Manifest], *, kubernetes_version: str, config_path: str = "deploy.config.target"
) -> None:
    """Raise :class:`ConfigError` listing every schema problem of ``manifests`` (none: return)."""
    problems = [
        Problem(None, config_path, message)
        for manifest in manifests
        for message in manifest_problems(manifest, kubernetes_version=kubernetes_version)
    ]
    if problems:
        raise ConfigError(problems)


def manifest_hash(manifest: Manifest) -> str:
    """A hash of what a manifest asks for, ignoring who asked (run key, actor)."""
    clean = copy.deepcopy(manifest)
    meta = clean.get("metadata") or {}
    (meta.get("labels") or {}).pop(RUN_KEY_LABEL, None)
    for key in (RUN_KEY_ANNOTATION, ACTOR_ANNOTATION):
        (meta.get("annotations") or {}).pop(key, None)
    return hash_value(clean)
