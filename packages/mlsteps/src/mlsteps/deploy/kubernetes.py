"""The ``kubernetes`` target: MLflow's scoring server as a Deployment + Service, traffic split by Istio.

An init container (``python -m mlsteps.verify_model``, same image) downloads
``models:/NAME/VERSION`` into an emptyDir and fails the pod when the files differ
from the hash recorded at registration; the server container then runs ``mlflow
models serve -m /mnt/models --env-manager local`` on that verified copy (mounted
read-only). The image needs MLflow, mlsteps and the model's dependencies; the
tracking URI comes from a Secret, and ``/ping`` gates readiness. Objects are
applied with server-side apply (field manager ``mlsteps``), so a retry re-applies
the same declarative objects; every object is labelled with the deployment,
model version and run key, and the state file keeps each healthy version's
manifest for rollbacks.

Strategies: ``replace`` rolls the stable Deployment; ``canary``, ``ab`` and
``shadow`` add a ``<name>-candidate`` Deployment behind an Istio VirtualService
(weights stepping with an analysis hook, a fixed split, or a mirror). A failed
rollout re-applies the last healthy manifest. Nothing here imports the
``kubernetes`` client at import time.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from mlsteps._imports import require
from mlsteps.deploy import manifests as m
from mlsteps.deploy.base import (
    AnalysisContext,
    DeploymentState,
    ModelSpec,
    StateFile,
    StrategyKind,
    Target,
)
from mlsteps.errors import BackendError, ConfigError, Problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlsteps.context import RunContext
    from mlsteps.deploy.base import DeployRequest
    from mlsteps.refs import DeploymentRef

QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: Environment variable names that hold credentials: their values must come from a Secret.
SECRET_LIKE = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY|API_KEY|AUTH", re.IGNORECASE
)
#: ``scheme://user:password@host``: a URL carrying a password.
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
#: Reasons a pod of a new rollout will not recover from by waiting.
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


# --------------------------------------------------------------------------- configuration


class SecretEnv(BaseModel):
    """An environment variable read from a key of a Kubernetes Secret (``secretKeyRef``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Environment variable name.")
    secret: str = Field(description="Name of the Secret (in the deployment's namespace).")
    key: str = Field(description="Key within the Secret.")
    optional: bool = Field(False, description="Start the pod even if the Secret or key is missing.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value):
            raise ValueError(f"{value!r} is not a Secret name (a lower-case DNS subdomain)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not SECRET_KEY.fullmatch(value):
            raise ValueError(f"{value!r} is not a Secret key (letters, digits, '-', '_', '.')")
        return value


class SecretKeyRef(BaseModel):
    """A key of a Kubernetes Secret."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(description="Name of the Secret (in the deployment's namespace).")
    key: str = Field("uri", description="Key within the Secret.")

    def as_env(self, name: str) -> SecretEnv:
        return SecretEnv(name=name, secret=self.secret, key=self.key)

    @model_validator(mode="after")
    def _valid(self) -> SecretKeyRef:
        self.as_env("CHECK")  # the same rules as SecretEnv
        return self


class Quantities(BaseModel):
    """CPU and memory as Kubernetes quantities."""

    model_config = ConfigDict(extra="forbid")

    cpu: str
    memory: str

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.fullmatch(value):
            raise ValueError(f"expected a Kubernetes quantity such as '500m', '2' or '4Gi', got {value!r}")
        return value


class ContainerResources(BaseModel):
    """Requests and limits of the model container: both are required (unbounded pods are refused)."""

    model_config = ConfigDict(extra="forbid")

    requests: Quantities = Field(default_factory=lambda: Quantities(cpu="250m", memory="512Mi"))
    limits: Quantities = Field(default_factory=lambda: Quantities(cpu="1", memory="1Gi"))

    def manifest(self) -> dict[str, dict[str, str]]:
        return {"requests": self.requests.model_dump(), "limits": self.limits.model_dump()}


def image_problem(image: str) -> str | None:
    """Why ``image`` is not pinned (a tag other than ``latest``, or a digest), or ``None``."""
    if not image or any(c.isspace() for c in image):
        return "expected an image reference such as 'registry/model-server:1.4.2'"
    name, _, digest = image.partition("@")
    if digest and not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
        return f"the digest {digest!r} is not sha256:<64 hex digits>"
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else None
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        return f"the tag {tag!r} is not a valid image tag"
    if not digest and tag is None:
        return "the image has no tag or digest: pin it (e.g. ':1.4.2' or '@sha256:...')"
    if not digest and tag == "latest":
        return "':latest' is not a pinned version: use a fixed tag or a digest"
    return None


def _pinned(image: str) -> str:
    problem = image_problem(image)
    if problem:
        raise ValueError(problem)
    return image


#: An image reference pinned by tag (not ``latest``) or digest; anything else fails validation.
PinnedImage = Annotated[str, AfterValidator(_pinned)]


class ClusterTargetConfig(BaseModel):
    """What the ``kubernetes`` and ``kserve`` targets share: where, as whom, with which secrets."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field("mlsteps", description="Namespace of every object (it must exist).")
    resources: ContainerResources = Field(
        default_factory=ContainerResources, description="Container requests and limits (cpu, memory)."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Plain, non-secret environment variables. Names that look like credentials are refused: "
        "use secret_env.",
    )
    secret_env: list[SecretEnv] = Field(
        default_factory=list, description="Environment variables read from Secrets (secretKeyRef)."
    )
    tracking_uri_secret: SecretKeyRef | None = Field(
        None,
        description="Secret key holding MLFLOW_TRACKING_URI, which the pods' init container needs to download "
        "models:/NAME/VERSION and verify it. Required.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on every object.")
    service_account: str | None = Field(
        None, description="ServiceAccount of the pods (e.g. for workload identity to the artifact store)."
    )
    automount_service_account_token: bool = Field(
        False, description="Mount the ServiceAccount token into the pods (the server does not need it)."
    )
    run_as_user: int = Field(
        10001, ge=10000, le=2_147_483_647, description="Non-root UID/GID of the container (>= 10000)."
    )
    writable_dirs: list[str] = Field(
        default_factory=lambda: ["/tmp"],
        description="Directories mounted as emptyDir volumes: the root filesystem is read-only.",
    )
    scratch_size: str = Field("1Gi", description="Size limit of each writable emptyDir.")
    model_volume_size: str = Field(
        "2Gi",
        description="Size limit of the emptyDir holding the verified model copy (at /mnt/models): at least "
        "the size of the version's artifacts.",
    )
    kubeconfig: str | None = Field(
        None, description="kubeconfig file (default: $KUBECONFIG, then in-cluster)."
    )
    context: str | None = Field(None, description="kubeconfig context (default: the current one).")
    kubernetes_version: str = Field(
        "1.33", pattern=r"^1\.\d+$", description="Kubernetes version the manifests are validated against."
    )
    poll_s: float = Field(2.0, gt=0, le=60, description="Seconds between status polls.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not m.DNS_LABEL.fullmatch(value):
            raise ValueError(f"{value!r} is not a namespace name (a lower-case DNS label)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if SECRET_LIKE.search(name):
                raise ValueError(
                    f"{name!r} looks like a credential: put its value in a Kubernetes Secret and list it "
                    "under secret_env (plain env values are visible to anyone who can read the Deployment)"
                )
            if URL_WITH_PASSWORD.search(text):
                raise ValueError(f"the value of {name!r} embeds a password: move it to a Secret (secret_env)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            problem = m.label_problem(key, text)
            if problem:
                raise ValueError(problem)
            if key.startswith(("app.kubernetes.io/", "mlsteps.io/")):
                raise ValueError(f"label {key!r} is set by mlsteps; pick another key")
        return value

    @field_validator("writable_dirs")
    @classmethod
    def _dirs(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or path == "/":
                raise ValueError(f"{path!r} must be an absolute directory other than /")
            if path.rstrip("/") == m.MODEL_DIR or path.startswith(m.MODEL_DIR + "/"):
                raise ValueError(f"{path!r}: {m.MODEL_DIR} holds the verified model copy")
        if len(set(value)) != len(value):
            raise ValueError("writable_dirs lists a directory twice")
        return value

    @field_validator("scratch_size", "model_volume_size")
    @classmethod
    def _size(cls, value: str) -> str:
        return Quantities._quantity(value)

    @model_validator(mode="after")
    def _tracking(self) -> Self:
        if self.tracking_uri_secret is None:
            raise ValueError(
                "tracking_uri_secret is required: the pods' init container downloads models:/NAME/VERSION "
                "through the MLflow registry and verifies it before the server starts; create a Secret "
                "holding the tracking URI, e.g. `kubectl create secret generic mlflow-tracking "
                "--from-literal=uri=http://mlflow.mlflow:5000`, and set "
                "tracking_uri_secret: {secret: mlflow-tracking, key: uri}"
            )
        names = [e.name for e in self.secret_env] + list(self.env)
        if "MLFLOW_TRACKING_URI" in names:
            raise ValueError(
                "MLFLOW_TRACKING_URI is set by tracking_uri_secret; do not set it in env/secret_env"
            )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"environment variables set twice: {duplicates}")
        return self

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value)):
            raise ValueError(f"{value!r} is not a ServiceAccount name")
        return value


class Autoscaling(BaseModel):
    """A HorizontalPodAutoscaler on CPU utilisation (replaces ``replicas``)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(2, ge=1, le=1000)
    max_replicas: int = Field(10, ge=1, le=1000)
    cpu_utilization: int = Field(70, ge=1, le=100, description="Target average CPU utilisation, percent.")

    @model_validator(mode="after")
    def _range(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class NetworkPolicyConfig(BaseModel):
    """Ingress restriction of the model pods."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Render a NetworkPolicy: ingress only on the serving port.")
    allow_from_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces allowed in (default: any pod may call the port)."
    )


class IstioConfig(BaseModel):
    """How the Istio VirtualService (canary, ab, shadow) is exposed."""

    model_config = ConfigDict(extra="forbid")

    gateways: list[str] = Field(
        default_factory=list, description="Gateways the route applies to (default: the mesh only)."
    )
    hosts: list[str] = Field(
        default_factory=list, description="Extra hosts (e.g. the external name served by a gateway)."
    )


class KubernetesTargetConfig(ClusterTargetConfig):
    """Configuration of the ``kubernetes`` target."""

    type: Literal["kubernetes"] = "kubernetes"
    image: PinnedImage = Field(
        description="Model server image with MLflow and the model's dependencies, pinned by tag or digest."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "Always", description="Always re-checks the registry; IfNotPresent suits images loaded into kind."
    )
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets for a private registry.")
    replicas: int = Field(
        2, ge=1, le=1000, description="Replicas of the stable Deployment (without autoscaling)."
    )
    candidate_replicas: int = Field(
        1, ge=1, le=1000, description="Replicas of the canary/ab/shadow Deployment."
    )
    workers: int = Field(1, ge=1, le=64, description="Scoring server worker processes per pod.")
    service_port: int = Field(80, ge=1, le=65535, description="Port of the Service.")
    autoscaling: Autoscaling | None = Field(None, description="Add a HorizontalPodAutoscaler.")
    network_policy: NetworkPolicyConfig = Field(default_factory=NetworkPolicyConfig)
    istio: IstioConfig = Field(default_factory=IstioConfig)
    rollout_timeout_s: float = Field(
        600.0, ge=30, le=86_400, description="Seconds a rollout may take (also progressDeadlineSeconds)."
    )
    startup_timeout_s: float = Field(
        300.0, ge=10, le=3600, description="Seconds a pod has to load the model (startup probe)."
    )
    fail_fast: bool = Field(
        True,
        description="Fail a rollout as soon as a new pod cannot pull its image, misses a Secret or "
        "crash-loops, instead of waiting for the deadline.",
    )
    max_restarts: int = Field(
        2, ge=0, le=100, description="fail_fast: restarts before a crash loop is fatal."
    )


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """The few API calls the targets make, through the official client's dynamic API."""

    def __init__(self, config: ClusterTargetConfig) -> None:
        self.config = config
        self._dynamic: Any = None

    @property
    def dynamic(self) -> Any:
        if self._dynamic is None:
            client = api_client(self.config)
            with self._errors("reach the API server"):
                # The constructor already asks the server for its version and API groups.
                self._dynamic = require("kubernetes.dynamic").DynamicClient(client)
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        errors = require("kubernetes.dynamic.exceptions")
        try:
            with self._errors(f"discover {kind} ({api_version})"):
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except BackendError as exc:
            if not isinstance(exc.__cause__, errors.ResourceNotFoundError):
                raise
            raise BackendError(
                "kubernetes",
                f"the cluster does not serve {kind} ({api_version})",
                hint="install the CRDs this strategy needs (Istio for canary/ab/shadow, KServe for kserve)",
            ) from None

    def apply(self, manifest: m.Manifest, *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply ``manifest`` as field manager ``mlsteps``; the object the server returns."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        kwargs: dict[str, Any] = {"field_manager": m.MANAGER, "force_conflicts": True}
        if dry_run:
            kwargs["dry_run"] = "All"
        with self._errors(f"apply {m.describe(manifest)}"):
            result = self.dynamic.server_side_apply(
                resource, body=manifest, namespace=manifest["metadata"]["namespace"], **kwargs
            )
        return _as_dict(result)

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        errors = require("kubernetes.dynamic.exceptions")
        resource = self._resource(api_version, kind)
        try:
            with self._errors(f"read {kind}/{name}"):
                return _as_dict(resource.get(name=name, namespace=self.config.namespace))
        except BackendError as exc:
            if isinstance(exc.__cause__, errors.NotFoundError):
                return None
            raise

    def list(self, api_version: str, kind: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        resource = self._resource(api_version, kind)
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        with self._errors(f"list {kind}"):
            result = _as_dict(resource.get(namespace=self.config.namespace, label_selector=label_selector))
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    def delete(self, api_version: str, kind: str, name: str) -> bool:
        """Delete an object; False if it did not exist."""
        errors = require("kubernetes.dynamic.exceptions")
        resource = self._resource(api_version, kind)
        try:
            with self._errors(f"delete {kind}/{name}"):
                resource.delete(name=name, namespace=self.config.namespace, propagation_policy="Foreground")
        except BackendError as exc:
            if isinstance(exc.__cause__, errors.NotFoundError):
                return False
            raise
        return True

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster knows ``kind`` (e.g. whether Istio's CRDs are installed)."""
        try:
            self._resource(api_version, kind)
        except BackendError as exc:
            if "does not serve" not in exc.backend_message:
                raise
            return False
        return True

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Any:
        errors = require("kubernetes.dynamic.exceptions")
        try:
            yield
        except errors.ResourceNotFoundError as exc:
            raise BackendError("kubernetes", f"could not {doing}: {exc}") from exc
        except errors.DynamicApiError as exc:
            raise BackendError("kubernetes", f"could not {doing}: {_api_message(exc)}") from exc
        except (OSError, require("urllib3.exceptions").HTTPError) as exc:
            raise BackendError(
                "kubernetes",
                f"could not {doing}: {exc}",
                hint="is the cluster reachable with this kubeconfig/context?",
            ) from exc


def api_client(config: ClusterTargetConfig) -> Any:
    """A Kubernetes ApiClient from the kubeconfig (``config.kubeconfig``, ``$KUBECONFIG``) or in-cluster."""
    import os

    k8s_config = require("kubernetes.config")
    client = require("kubernetes.client")
    try:
        if (
            config.kubeconfig
            or os.environ.get("KUBECONFIG")
            or os.path.exists(os.path.expanduser("~/.kube/config"))
        ):
            return k8s_config.new_client_from_config(config_file=config.kubeconfig, context=config.context)
        configuration = client.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        raise BackendError(
            "kubernetes",
            f"no usable cluster configuration: {exc}",
            hint="set target.kubeconfig / target.context, or $KUBECONFIG",
        ) from exc


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    result: dict[str, Any] = to_dict() if callable(to_dict) else dict(obj)
    return result


def _api_message(exc: Any) -> str:
    import json

    body = getattr(exc, "body", None)
    try:
        message = json.loads(body)["message"] if body else None
    except (ValueError, KeyError, TypeError):
        message = None
    status = getattr(exc, "status", "")
    return f"HTTP {status}: {message or getattr(exc, 'reason', None) or exc}"


# --------------------------------------------------------------------------- rollout status (pure)


def rollout_status(deployment: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether a Deployment's rollout is complete, and why it failed (``None`` while it may still finish).

    Complete means what ``kubectl rollout status`` checks: the controller observed
    the latest generation, every desired replica is updated and available, and no
    old replica remains.
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {condition.get('message', '')}".strip()
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False, None
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    return updated >= desired and total <= updated and available >= desired, None


def current_replicaset(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The ReplicaSet of the Deployment's current revision (the one a rollout creates)."""
    revision = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
        "deployment.kubernetes.io/revision"
    )
    uid = (deployment.get("metadata") or {}).get("uid")
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
        if (
            uid in owners
            and (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision
        ):
            return rs
    return None


def pod_problem(pod: dict[str, Any], *, max_restarts: int) -> str | None:
    """Why a pod will not become ready by waiting (a bad image, a missing Secret, a crash loop), or None.

    Init containers count too: the one verifying the model fails for good when the
    artifacts differ from the registered hash, and its last words (the termination
    message, from its log) say so.
    """
    name = (pod.get("metadata") or {}).get("name", "?")
    pod_status = pod.get("status") or {}
    statuses = [
        (f"init container {s.get('name')}: ", s) for s in pod_status.get("initContainerStatuses") or []
    ]
    statuses += [("", s) for s in pod_status.get("containerStatuses") or []]
    for what, status in statuses:
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        detail = waiting.get("message") or ""
        if reason in FATAL_WAITING:
            return f"pod {name}: {what}{reason}: {detail}".rstrip(": ")
        if reason == "CrashLoopBackOff" and int(status.get("restartCount") or 0) >= max_restarts:
            terminated = (status.get("lastState") or {}).get("terminated") or {}
            why = terminated.get("reason") or ""
            code = terminated.get("exitCode")
            said = " ".join(str(terminated.get("message") or "").split())
            return (
                f"pod {name}: {what}CrashLoopBackOff after {status.get('restartCount')} restarts ({why} exit {code})"
                + (f": {said}" if what and said else "")
            )
    return None


# --------------------------------------------------------------------------- analysis hook


def run_analysis(hook: str | None, context: AnalysisContext) -> tuple[bool, str]:
    """Call the canary analysis hook (``module:function``); (continue?, what it said)."""
    if hook is None:
        return True, "no analysis hook"
    from mlsteps.steps._common import import_object

    function = import_object(hook, config_path="deploy.config.strategy.analysis")
    if not callable(function):
        raise ConfigError([Problem(None, "deploy.config.strategy.analysis", f"{hook!r} is not callable")])
    try:
        verdict = function(context)
    except Exception as exc:  # noqa: BLE001 - the hook's failure is a verdict: roll back
        return False, f"analysis {hook} raised {type(exc).__name__}: {exc}"
    return bool(verdict), f"analysis {hook} returned {verdict!r}"


# --------------------------------------------------------------------------- shared bookkeeping


class ClusterTarget(Target):
    """State-file bookkeeping shared by the cluster targets."""

    config: ClusterTargetConfig

    def __init__(self, config: ClusterTargetConfig, cluster: Cluster | None = None) -> None:
        super().__init__(config)
        self.cluster = cluster or Cluster(config)
        #: Injectable for tests of the waiting logic; ``time.sleep`` otherwise.
        self.sleep: Callable[[float], None] = time.sleep

    def _load(self, state_file: StateFile, deployment: str, model_name: str | None) -> DeploymentState:
        state = state_file.load()
        if state is None:
            return DeploymentState(
                deployment=deployment,
                target=self.name,
                model_name=model_name,
                runtime={"namespace": self.config.namespace},
            )
        self._check(state)
        return state

    def _existing(self, ctx: RunContext, deployment: str) -> tuple[StateFile, DeploymentState]:
        state_file = StateFile(ctx, deployment)
        state = state_file.load()
        if state is None:
            raise ConfigError(
                [Problem(None, "deploy.config.name", f"no deployment {deployment!r} under {ctx.store.root}")]
            )
        self._check(state)
        return state_file, state

    def _check(self, state: DeploymentState) -> None:
        if state.target != self.name:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "deploy.config.name",
                        f"deployment {state.deployment!r} is served by target {state.target!r}, not "
                        f"{self.name!r}; pick another deployment name",
                    )
                ]
            )
        recorded = state.runtime.get("namespace")
        if recorded and recorded != self.config.namespace:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "deploy.config.target.namespace",
                        f"deployment {state.deployment!r} lives in namespace {recorded!r}, not "
                        f"{self.config.namespace!r}; pick another deployment name to move it",
                    )
                ]
            )

    def _ref_metadata(self, state: DeploymentState) -> dict[str, Any]:
        return {"namespace": self.config.namespace, "shadow_version": state.shadow_version}

    @staticmethod
    def _retried(ctx: RunContext, state: DeploymentState, action: str, version: str) -> bool:
        """Whether this run key already completed ``action`` of ``version`` (a retry must not redo it)."""
        last = state.history[-1] if state.history else None
        return (
            last is not None
            and last.action == action
            and last.status == "healthy"
            and last.version == version
            and last.details.get("run_key") == ctx.run_key.idempotency_key
        )

    def _rollback_target(self, state: DeploymentState, to_version: str | None) -> str:
        healthy = {e.version for e in state.history if e.status == "healthy" and e.version}
        target = to_version or state.previous_version()
        if target is None:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "deploy.config.to_version",
                        f"deployment {state.deployment!r} has no earlier healthy version to roll back to "
                        f"(live: v{state.live_version})",
                    )
                ]
            )
        if target not in healthy:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "deploy.config.to_version",
                        f"v{target} never served deployment {state.deployment!r} healthily; roll back to one "
                        f"of {sorted(healthy, key=lambda v: (len(v), v))} or deploy it",
                    )
                ]
            )
        return target


def model_of(state: DeploymentState, version: str | None) -> ModelSpec | None:
    """The recorded model version ``version`` of a deployment, as a spec."""
    if version is None or state.model_name is None:
        return None
    storage = (state.runtime.get("storage_uris") or {}).get(version)
    return ModelSpec(
        name=state.model_name,
        version=version,
        model_uri=f"models:/{state.model_name}/{version}",
        storage_uri=storage,
        # So a stable Deployment or a rollback rendered later verifies what deploy verified.
        artifact_hash=(state.runtime.get("artifact_hashes") or {}).get(version),
    )


def remember_model(state: DeploymentState, model: ModelSpec) -> None:
    """Record what :func:`model_of` needs to render ``model`` again (artifact location and hash)."""
    if model.storage_uri:
        state.runtime.setdefault("storage_uris", {})[model.version] = model.storage_uri
    if model.artifact_hash:
        state.runtime.setdefault("artifact_hashes", {})[model.version] = model.artifact_hash


# --------------------------------------------------------------------------- the target


class RolloutFailed(Exception):
    """A rollout did not complete; the message says why."""


class KubernetesTarget(ClusterTarget):
    """Serve registered MLflow models as Kubernetes Deployments, with Istio for traffic splitting."""

    name: ClassVar[str] = "kubernetes"
    strategies: ClassVar[frozenset[StrategyKind]] = frozenset({"replace", "canary", "shadow", "ab"})
    config: KubernetesTargetConfig

    def __init__(self, config: KubernetesTargetConfig, cluster: Cluster | None = None) -> None:
        super().__init__(config, cluster)

    # ----------------------------------------------------------------- rendering

    def render(self, request: DeployRequest) -> list[dict[str, Any]]:
        """The objects the deploy applies first (for a canary: its first step), schema-validated."""
        strategy = request.strategy
        percent = None
        if strategy.kind == "canary":
            percent = strategy.steps[0] if strategy.steps else 0
        elif strategy.kind == "ab":
            percent = strategy.weight
        elif strategy.kind == "shadow":
            percent = strategy.mirror_percent
        objects = m.render_kubernetes(
            self.config,
            request.deployment,
            request.model,
            strategy=strategy.kind,
            percent=percent,
            actor=request.actor,
        )
        m.validate_manifests(objects, kubernetes_version=self.config.kubernetes_version)
        return objects

    def _validated(self, objects: list[m.Manifest]) -> list[m.Manifest]:
        m.validate_manifests(objects, kubernetes_version=self.config.kubernetes_version)
        return objects

    # ----------------------------------------------------------------- Target API

    def deploy(self, ctx: RunContext, request: DeployRequest) -> DeploymentRef:
        check_strategy(request)
        state_file = StateFile(ctx, request.deployment)
        with state_file.locked():
            state = self._load(state_file, request.deployment, request.model.name)
            if state.model_name not in (None, request.model.name):
                raise ConfigError(
                    [
                        Problem(
                            None,
                            "deploy.config.model",
                            f"deployment {request.deployment!r} serves model {state.model_name!r}, not "
                            f"{request.model.name!r}; use another deployment name",
                        )
                    ]
                )
            stable = model_of(state, state.live_version)
            kind = request.strategy.kind
            if stable is None and kind != "replace":
                ctx.logger.info(
                    "deploy: nothing serves %s yet: the first version rolls out directly", request.deployment
                )
                kind = "replace"
            if request.dry_run:
                return self._dry_run(state_file, state, request, kind, stable)
            if self._retried(ctx, state, "deploy", request.model.version) and self._still_serving(
                state, request.model.version
            ):
                return self._ref(
                    state_file,
                    state,
                    model_uri=request.model.model_uri,
                    status="healthy",
                    extra={"reused": True},
                )
            state.model_name = request.model.name
            remember_model(state, request.model)
            if kind == "replace":
                return self._replace(ctx, state_file, state, request, action="deploy")
            assert stable is not None
            if kind == "canary":
                return self._canary(ctx, state_file, state, request, stable)
            return self._side_by_side(ctx, state_file, state, request, stable)

    def rollback(
        self, ctx: RunContext, deployment: str, *, to_version: str | None, actor: str, reason: str
    ) -> DeploymentRef:
        state_file = StateFile(ctx, deployment)
        with state_file.locked():
            state_file, state = self._existing(ctx, deployment)
            last = state.history[-1] if state.history else None
            if (
                last is not None
                and last.action == "rollback"
                and last.status == "healthy"
                and last.details.get("run_key") == ctx.run_key.idempotency_key
                and last.version == state.live_version
            ):
                return self._ref(
                    state_file,
                    state,
                    model_uri=f"models:/{state.model_name}/{last.version}",
                    status="healthy",
                    extra={"reused": True},
                )
            target = self._rollback_target(state, to_version)
            model = model_of(state, target)
            assert model is not None
            from mlsteps.deploy.base import DeployRequest, StrategyConfig

            request = DeployRequest(
                deployment=deployment, model=model, strategy=StrategyConfig(), actor=actor, reason=reason
            )
            return self._replace(ctx, state_file, state, request, action="rollback")

    def status(self, ctx: RunContext, deployment: str) -> DeploymentState | None:
        state = StateFile(ctx, deployment).load()
        if state is None:
            return None
        # Not persisted: what the cluster says right now (the state file is what mlsteps did).
        try:
            observed = self.cluster.get("apps/v1", "Deployment", deployment)
        except BackendError as exc:
            state.runtime["observed"] = {"error": exc.backend_message}
            return state
        if observed is not None:
            status = observed.get("status") or {}
            labels = (observed.get("metadata") or {}).get("labels") or {}
            state.runtime["observed"] = {
                "version": labels.get(m.VERSION_LABEL),
                "replicas": (observed.get("spec") or {}).get("replicas"),
                "available": status.get("availableReplicas", 0),
                "updated": status.get("updatedReplicas", 0),
                "complete": rollout_status(observed)[0],
            }
        else:
            state.runtime["observed"] = {"error": f"Deployment {deployment} not found"}
        return state

    def stop(self, ctx: RunContext, deployment: str, *, actor: str, reason: str) -> DeploymentRef | None:
        """Delete every object of the deployment (Deployments, HPAs, Service, NetworkPolicy, Istio routes)."""
        state_file = StateFile(ctx, deployment)
        with state_file.locked():
            state = state_file.load()
            if state is None:
                return None
            self._check(state)
            deleted = []
            for api_version, kind, name in self._objects(deployment, state):
                if self.cluster.delete(api_version, kind, name):
                    deleted.append(f"{kind}/{name}")
            previous = state.live_version
            state.history.append(
                self._entry(ctx, "stop", previous, previous, "stopped", actor, reason, deleted=deleted)
            )
            state.live_version = None
            state.shadow_version = None
            state.endpoint = None
            state.traffic = {}
            state.runtime["candidate"] = None
            # Nothing to fall back to any more: a failed next deploy must not resurrect this one.
            state.runtime["stable"] = None
            state_file.save(state)
            return self._ref(
                state_file, state, model_uri=f"models:/{state.model_name}/{previous}", status="stopped"
            )

    # ----------------------------------------------------------------- strategies

    def _replace(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        *,
        action: Literal["deploy", "rollback"],
        details: dict[str, Any] | None = None,
    ) -> DeploymentRef:
        """Roll the stable Deployment to the version; on failure re-apply the last healthy manifest."""
        model, key = request.model, ctx.run_key.idempotency_key
        objects = m.render_kubernetes(
            self.config, request.deployment, model, strategy="replace", run_key=key, actor=request.actor
        )
        stable = next(o for o in objects if o["kind"] == "Deployment")
        recorded = (state.runtime.get("manifests") or {}).get(model.version)
        if action == "rollback" and recorded:
            # The exact spec that served this version before, re-labelled with who rolled back.
            stable["spec"] = recorded["spec"]
        self._validated(objects)
        previous_manifest = state.runtime.get("stable")
        previous = state.live_version
        started = time.monotonic()
        for obj in objects:
            self.cluster.apply(obj)
        try:
            self._await_rollout(m.object_name(request.deployment, m.STABLE))
        except RolloutFailed as exc:
            return self._recover(
                ctx,
                state_file,
                state,
                request,
                action=action,
                problem=str(exc),
                previous_manifest=previous_manifest,
                promoting=bool(details),
            )
        self._retire_candidate(ctx, state)
        state.live_version = model.version
        state.shadow_version = None
        state.traffic = {model.version: 100}
        state.endpoint = self._endpoint(request.deployment)
        state.runtime["stable"] = stable
        state.runtime.setdefault("manifests", {})[model.version] = {"spec": stable["spec"]}
        state.runtime["candidate"] = None
        rollout_s = round(time.monotonic() - started, 3)
        state.history.append(
            self._entry(
                ctx,
                action,
                model.version,
                previous,
                "healthy",
                request.actor,
                request.reason,
                **{"strategy": "replace", **(details or {})},
                rollout_s=rollout_s,
                namespace=self.config.namespace,
            )
        )
        state_file.save(state)
        ctx.logger.info("deploy: %s v%s rolled out in %.1f s", model.name, model.version, rollout_s)
        return self._ref(
            state_file, state, model_uri=model.model_uri, status="healthy", extra={"rollout_s": rollout_s}
        )

    def _recover(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        *,
        action: Literal["deploy", "rollback"],
        problem: str,
        previous_manifest: m.Manifest | None,
        promoting: bool = False,
    ) -> DeploymentRef:
        """A stable rollout failed: re-apply the last healthy manifest and wait for it.

        ``promoting``: the failed rollout promoted a canary, whose Deployment still
        carries all traffic; it goes too once stable serves again.
        """
        model = request.model
        name = m.object_name(request.deployment, m.STABLE)
        if previous_manifest is None:
            error = (
                f"{model.name} v{model.version} did not roll out: {problem}; nothing served this deployment "
                f"before, so nothing was rolled back (kubectl -n {self.config.namespace} describe deployment {name})"
            )
            state.history.append(
                self._entry(
                    ctx,
                    action,
                    model.version,
                    state.live_version,
                    "failed",
                    request.actor,
                    request.reason,
                    error=problem,
                )
            )
            state_file.save(state)
            return self._ref(
                state_file, state, model_uri=model.model_uri, status="failed", extra={"error": error}
            )
        ctx.logger.error(
            "deploy: %s v%s failed (%s); re-applying v%s",
            model.name,
            model.version,
            problem,
            state.live_version,
        )
        self.cluster.apply(previous_manifest)
        try:
            self._await_rollout(name)
        except RolloutFailed as again:
            error = (
                f"{model.name} v{model.version} did not roll out: {problem}; re-applying v{state.live_version} "
                f"did not complete either: {again}"
            )
            state.history.append(
                self._entry(
                    ctx,
                    "auto_rollback",
                    model.version,
                    state.live_version,
                    "failed",
                    request.actor,
                    request.reason,
                    error=error,
                    requested=action,
                )
            )
            state_file.save(state)
            return self._ref(
                state_file, state, model_uri=model.model_uri, status="failed", extra={"error": error}
            )
        if promoting:
            self._retire_candidate(ctx, state)
            state.traffic = {str(state.live_version): 100}
        error = (
            f"{model.name} v{model.version} did not roll out: {problem}; v{state.live_version} serves again"
        )
        state.history.append(
            self._entry(
                ctx,
                "auto_rollback",
                model.version,
                state.live_version,
                "rolled_back",
                request.actor,
                request.reason,
                error=problem,
                requested=action,
            )
        )
        state_file.save(state)
        return self._ref(
            state_file, state, model_uri=model.model_uri, status="rolled_back", extra={"error": error}
        )

    def _canary(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        stable: ModelSpec,
    ) -> DeploymentRef:
        """Candidate beside stable; Istio weights step through ``strategy.steps`` with the analysis hook
        between steps; at 100 % the stable Deployment is rolled to the candidate's version."""
        model, strategy = request.model, request.strategy
        self._start_candidate(ctx, state_file, state, request, stable)
        if isinstance(state.runtime.get("candidate_error"), str):
            return self._candidate_failed(ctx, state_file, state, request)
        steps: list[dict[str, Any]] = []
        for percent in strategy.steps:
            self.cluster.apply(self._route(request.deployment, candidate_percent=percent))
            state.traffic = (
                {stable.version: 100 - percent, model.version: percent}
                if percent < 100
                else {model.version: 100}
            )
            state_file.save(state)
            if strategy.pause_s:
                self.sleep(strategy.pause_s)
            ok, said = run_analysis(
                strategy.analysis,
                AnalysisContext(
                    deployment=request.deployment,
                    candidate=model,
                    stable=stable,
                    percent=percent,
                    endpoint=self._endpoint(request.deployment),
                    extra={
                        "namespace": self.config.namespace,
                        "target": self.name,
                        "steps": list(strategy.steps),
                    },
                ),
            )
            steps.append({"percent": percent, "ok": ok, "analysis": said})
            ctx.logger.info("deploy: canary at %s%%: %s", percent, said)
            if not ok:
                self.cluster.apply(self._route(request.deployment, candidate_percent=0))
                self._retire_candidate(ctx, state)
                state.traffic = {stable.version: 100}
                error = f"canary of v{model.version} stopped at {percent}%: {said}; v{stable.version} serves all traffic"
                state.history.append(
                    self._entry(
                        ctx,
                        "auto_rollback",
                        model.version,
                        stable.version,
                        "rolled_back",
                        request.actor,
                        request.reason,
                        strategy="canary",
                        steps=steps,
                        error=said,
                    )
                )
                state_file.save(state)
                return self._ref(
                    state_file, state, model_uri=model.model_uri, status="rolled_back", extra={"error": error}
                )
        # Promotion: the candidate carries 100 % while the stable Deployment rolls to its version.
        return self._replace(
            ctx, state_file, state, request, action="deploy", details={"strategy": "canary", "steps": steps}
        )

    def _side_by_side(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        stable: ModelSpec,
    ) -> DeploymentRef:
        """``ab``: a fixed weighted split; ``shadow``: stable serves, the candidate gets a mirror."""
        model, strategy = request.model, request.strategy
        self._start_candidate(ctx, state_file, state, request, stable)
        if isinstance(state.runtime.get("candidate_error"), str):
            return self._candidate_failed(ctx, state_file, state, request)
        if strategy.kind == "ab":
            route = self._route(request.deployment, candidate_percent=strategy.weight)
            state.traffic = {stable.version: 100 - strategy.weight, model.version: strategy.weight}
            state.shadow_version = None
        else:
            route = self._route(request.deployment, mirror_percent=strategy.mirror_percent)
            state.traffic = {stable.version: 100}
            state.shadow_version = model.version
        self.cluster.apply(route)
        state.endpoint = self._endpoint(request.deployment)
        state.history.append(
            self._entry(
                ctx,
                "deploy",
                model.version,
                stable.version,
                "healthy",
                request.actor,
                request.reason,
                strategy=strategy.kind,
                traffic=dict(state.traffic),
                shadow=state.shadow_version,
            )
        )
        state_file.save(state)
        return self._ref(state_file, state, model_uri=model.model_uri, status="healthy")

    def _start_candidate(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        stable: ModelSpec,
    ) -> None:
        """Apply the routing objects (all traffic on stable) and the candidate; wait for its rollout."""
        key = ctx.run_key.idempotency_key
        objects = m.render_kubernetes(
            self.config,
            request.deployment,
            request.model,
            strategy=request.strategy.kind,
            stable=None,
            percent=None,
            run_key=key,
            actor=request.actor,
        )
        # Routes first, pinned to stable, so the new pods get no traffic until the rollout is done.
        objects = [o for o in objects if o["kind"] != "VirtualService"]
        objects.insert(0, self._route(request.deployment, candidate_percent=0))
        order = ["NetworkPolicy", "Service", "DestinationRule", "VirtualService", "Deployment"]
        objects.sort(key=lambda o: order.index(o["kind"]) if o["kind"] in order else len(order))
        self._validated(objects)
        for obj in objects:
            self.cluster.apply(obj)
        state.runtime["istio"] = True
        state.runtime["candidate"] = {"version": request.model.version, "strategy": request.strategy.kind}
        state.runtime["candidate_error"] = None
        state_file.save(state)
        try:
            self._await_rollout(m.object_name(request.deployment, m.CANDIDATE))
        except RolloutFailed as exc:
            state.runtime["candidate_error"] = str(exc)

    def _candidate_failed(
        self, ctx: RunContext, state_file: StateFile, state: DeploymentState, request: DeployRequest
    ) -> DeploymentRef:
        problem = str(state.runtime.pop("candidate_error"))
        self._retire_candidate(ctx, state)
        model = request.model
        error = f"{model.name} v{model.version} did not roll out as the candidate: {problem}; v{state.live_version} keeps serving"
        state.history.append(
            self._entry(
                ctx,
                "auto_rollback",
                model.version,
                state.live_version,
                "rolled_back",
                request.actor,
                request.reason,
                strategy=request.strategy.kind,
                error=problem,
            )
        )
        state_file.save(state)
        return self._ref(
            state_file, state, model_uri=model.model_uri, status="rolled_back", extra={"error": error}
        )

    def _retire_candidate(self, ctx: RunContext, state: DeploymentState) -> None:
        """All traffic back on stable and the candidate Deployment (and its HPA) deleted."""
        if not state.runtime.get("istio") and not state.runtime.get("candidate"):
            return
        if state.runtime.get("istio"):
            self.cluster.apply(self._route(state.deployment, candidate_percent=0))
        name = m.object_name(state.deployment, m.CANDIDATE)
        self.cluster.delete("apps/v1", "Deployment", name)
        if self.config.autoscaling is not None:
            self.cluster.delete("autoscaling/v2", "HorizontalPodAutoscaler", name)
        state.runtime["candidate"] = None
        state.shadow_version = None
        ctx.logger.info("deploy: removed candidate %s", name)

    def _route(self, deployment: str, *, candidate_percent: int = 0, mirror_percent: int = 0) -> m.Manifest:
        return m.virtual_service_manifest(
            self.config, deployment, candidate_percent=candidate_percent, mirror_percent=mirror_percent
        )

    # ----------------------------------------------------------------- waiting

    def _await_rollout(self, name: str) -> None:
        """Wait until Deployment ``name`` rolled out; :class:`RolloutFailed` on a fatal pod problem or timeout."""
        deadline = time.monotonic() + self.config.rollout_timeout_s
        last = "no status yet"
        while True:
            dep = self.cluster.get("apps/v1", "Deployment", name)
            if dep is None:
                raise RolloutFailed(f"Deployment {name} disappeared")
            done, failure = rollout_status(dep)
            if done:
                return
            if failure:
                raise RolloutFailed(failure)
            if self.config.fail_fast:
                problem = self._pods_problem(dep)
                if problem:
                    raise RolloutFailed(problem)
            status = dep.get("status") or {}
            last = (
                f"{status.get('updatedReplicas', 0)} updated, {status.get('availableReplicas', 0)} available "
                f"of {(dep.get('spec') or {}).get('replicas', 1)}"
            )
            if time.monotonic() >= deadline:
                raise RolloutFailed(f"not rolled out within {self.config.rollout_timeout_s:.0f} s ({last})")
            self.sleep(self.config.poll_s)

    def _pods_problem(self, dep: dict[str, Any]) -> str | None:
        selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        rs = current_replicaset(dep, self.cluster.list("apps/v1", "ReplicaSet", selector))
        if rs is None:
            return None
        template_hash = ((rs.get("metadata") or {}).get("labels") or {}).get("pod-template-hash")
        if not template_hash:
            return None
        for pod in self.cluster.list("v1", "Pod", {**selector, "pod-template-hash": template_hash}):
            problem = pod_problem(pod, max_restarts=self.config.max_restarts)
            if problem:
                return problem
        return None

    # ----------------------------------------------------------------- helpers

    def _dry_run(
        self,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        kind: str,
        stable: ModelSpec | None,
    ) -> DeploymentRef:
        """Every object sent to the API server with ``dryRun=All``: admission and schema checks, no change."""
        objects = self._validated(
            m.render_kubernetes(
                self.config,
                request.deployment,
                request.model,
                strategy=kind,
                stable=None,
                actor=request.actor,
            )
        )
        checked = []
        for obj in objects:
            self.cluster.apply(obj, dry_run=True)
            checked.append(m.describe(obj))
        plan = (
            f"{kind}: roll {request.model.name} v{request.model.version} onto "
            + (
                f"the candidate beside v{stable.version}"
                if kind != "replace" and stable
                else "the stable Deployment"
            )
            + f" in namespace {self.config.namespace}"
        )
        return self._ref(
            state_file,
            state,
            model_uri=request.model.model_uri,
            status="pending",
            extra={"dry_run": True, "plan": plan, "checked": checked},
        )

    def _still_serving(self, state: DeploymentState, version: str) -> bool:
        """Whether the cluster's stable Deployment (or candidate) still runs ``version``, rolled out."""
        for track in (m.STABLE, m.CANDIDATE):
            dep = self.cluster.get("apps/v1", "Deployment", m.object_name(state.deployment, track))
            labels = ((dep or {}).get("metadata") or {}).get("labels") or {}
            if (
                dep is not None
                and labels.get(m.VERSION_LABEL) == m.label_value(version)
                and rollout_status(dep)[0]
            ):
                return True
        return False

    def _endpoint(self, deployment: str) -> str:
        return f"http://{m.service_host(deployment, self.config.namespace)}:{self.config.service_port}{m.INVOCATIONS_PATH}"

    def _objects(self, deployment: str, state: DeploymentState) -> list[tuple[str, str, str]]:
        objects = [("apps/v1", "Deployment", m.object_name(deployment, t)) for t in m.TRACKS]
        objects += [
            ("autoscaling/v2", "HorizontalPodAutoscaler", m.object_name(deployment, t)) for t in m.TRACKS
        ]
        objects += [("v1", "Service", deployment), ("networking.k8s.io/v1", "NetworkPolicy", deployment)]
        if state.runtime.get("istio"):
            objects += [
                (m.ISTIO_API, "VirtualService", deployment),
                (m.ISTIO_API, "DestinationRule", deployment),
            ]
        return objects


def check_strategy(request: DeployRequest) -> None:
    steps = request.strategy.steps
    if request.strategy.kind == "canary":
        problems = []
        if not steps or steps[-1] != 100:
            problems.append("the last canary step must be 100 (full promotion)")
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            problems.append(f"canary steps must increase strictly within 1..100, got {steps}")
        if problems:
            raise ConfigError([Problem(None, "deploy.config.strategy.steps", p) for p in problems])
