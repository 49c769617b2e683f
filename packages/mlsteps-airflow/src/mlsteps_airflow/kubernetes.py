"""Run each spec step in its own pod: ``build_dag(..., execution="kubernetes")``.

Each task is a ``KubernetesPodOperator`` whose container runs
``mlsteps step <step id> --spec <spec in the image>``: the pod takes the step's
type, config, artifact root and MLflow defaults from the spec baked into the
image, exactly as ``mlsteps run`` would, and gets its input refs from upstream
tasks' XComs (rendered by Jinja when the task runs). It writes its result to
``/airflow/xcom/return.json``, which the operator's XCom sidecar returns, so
downstream pods get the same ``{"outputs": ..., "metrics": ...}`` payload as
in-process tasks.

The pods are locked down by default: non-root, read-only root filesystem (an
``emptyDir`` at ``/tmp``), no privilege escalation, every capability dropped,
the runtime's default seccomp profile, and requests/limits from the step's
``resources`` in the spec. Secrets reach the container only as
``secretKeyRef`` environment variables.

The artifact root must be storage every pod reaches (``s3://...``, ``gs://...``
or a volume mounted at the same path in every pod), and MLflow a tracking
server, not the embedded SQLite default.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from mlsteps.spec import PipelineSpec

#: Where ``KubernetesPodOperator``'s XCom sidecar reads a pod's result from.
XCOM_RETURN = "/airflow/xcom/return.json"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretEnv(BaseModel):
    """An environment variable taken from a key of a Kubernetes Secret."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(description="Name of the Secret in the pod's namespace.")
    key: str = Field(description="Key inside the Secret.")


class PodSettings(BaseModel):
    """How the pods of a ``kubernetes``-executed DAG are built."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image with mlsteps, the step backends and the project (spec, code).")
    spec_path: str = Field("/app/pipeline.yaml", description="Path of the pipeline spec inside the image.")
    namespace: str = "default"
    artifact_root: str | None = Field(
        None, description="Overrides the spec's artifact root in the pods (shared storage, e.g. s3://...)."
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (not a secret; else use env_secrets)."
    )
    env_secrets: dict[str, SecretEnv] = Field(
        default_factory=dict,
        description="Env var -> Secret key, e.g. MLFLOW_TRACKING_TOKEN or AWS credentials.",
    )
    service_account_name: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    kubernetes_conn_id: str | None = Field(None, description="Airflow connection of the cluster.")
    labels: dict[str, str] = Field(default_factory=dict)
    run_as_user: int = Field(1000, ge=1, description="Non-root UID the container runs as.")
    startup_timeout_seconds: int = Field(300, ge=1)

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        name = value.rsplit("/", 1)[-1]
        if "@sha256:" not in value and (":" not in name or name.endswith(":latest")):
            raise ValueError("expected an image pinned by tag or digest (not ':latest' or untagged)")
        return value

    @field_validator("env_secrets")
    @classmethod
    def _env_names(cls, value: dict[str, SecretEnv]) -> dict[str, SecretEnv]:
        bad = [name for name in value if not _ENV_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"not valid environment variable names: {bad}")
        return value


def input_template(upstream: str, output: str) -> str:
    """Jinja that renders to the JSON ref ``output`` of task ``upstream`` (its XCom return value)."""
    return f"{{{{ ti.xcom_pull(task_ids={upstream!r})['outputs'][{output!r}] | tojson }}}}"


def pod_arguments(spec: PipelineSpec, step_id: str, settings: PodSettings, dag_id: str) -> list[str]:
    """The ``mlsteps step`` command line of one step's pod (Jinja templates for the run values)."""
    args = [
        "step",
        step_id,
        "--spec",
        settings.spec_path,
        "--run-id",
        "{{ run_id }}",
        "--pipeline",
        dag_id,
        "--orchestrator",
        "airflow",
        "--attempt",
        "{{ ti.try_number }}",
        "--output",
        XCOM_RETURN,
    ]
    if settings.artifact_root:
        args += ["--artifact-root", settings.artifact_root]
    for name, (upstream, output) in sorted(spec.steps[step_id].inputs.items()):
        args += ["--input", f"{name}={input_template(upstream, output)}"]
    return args


def pod_operator(
    spec: PipelineSpec, step_id: str, settings: PodSettings, dag_id: str, **kwargs: Any
) -> KubernetesPodOperator:
    """A ``KubernetesPodOperator`` running spec step ``step_id`` in a locked-down pod."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    resources = spec.steps[step_id].spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = limits["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = limits["memory"] = resources.memory
    if resources.gpu:
        limits["nvidia.com/gpu"] = str(resources.gpu)
    env = (
        [k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value=settings.tracking_uri)]
        if settings.tracking_uri
        else []
    )
    env += [
        k8s.V1EnvVar(
            name=name,
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=ref.secret, key=ref.key)
            ),
        )
        for name, ref in sorted(settings.env_secrets.items())
    ]
    extra: dict[str, Any] = {}
    if settings.kubernetes_conn_id:
        extra["kubernetes_conn_id"] = settings.kubernetes_conn_id
    locked_down = k8s.V1SecurityContext(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        privileged=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )
    return KubernetesPodOperator(
        task_id=step_id,
        name=f"mlsteps-{step_id}",
        namespace=settings.namespace,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        cmds=["mlsteps"],
        arguments=pod_arguments(spec, step_id, settings, dag_id),
        env_vars=env,
        labels={
            "app.kubernetes.io/managed-by": "mlsteps",
            "mlsteps.dev/pipeline": spec.name,
            "mlsteps.dev/step": step_id,
            **settings.labels,
        },
        container_resources=k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None),
        node_selector=dict(resources.node_selector) or None,
        tolerations=[k8s.V1Toleration(**t.model_dump(exclude_none=True)) for t in resources.tolerations]
        or None,
        service_account_name=settings.service_account_name,
        automount_service_account_token=settings.service_account_name is not None,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=settings.run_as_user,
            run_as_group=settings.run_as_user,
            fs_group=settings.run_as_user,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=locked_down,
        # The provider's XCom sidecar gets no security context by default, which a namespace
        # enforcing the restricted Pod Security Standard rejects.
        xcom_sidecar_container_security_context=locked_down,
        volumes=[k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())],
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=settings.startup_timeout_seconds,
        doc_md=spec.steps[step_id].step_cls.description or None,
        **extra,
        **kwargs,
    )
