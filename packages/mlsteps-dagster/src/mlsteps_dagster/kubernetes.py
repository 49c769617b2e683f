"""Run each spec step in its own Kubernetes pod with dagster-k8s's ``k8s_job_executor``.

``build_definitions(spec, execution="kubernetes", k8s=K8sSettings(image=...))`` sets
the executor on the pipeline's job (and as the code location's default), so every
step op is launched as a Kubernetes Job that runs ``dagster api execute_step`` in
the image; the op calls :func:`mlsteps.execute_step` in-process there, exactly as
in-process execution does. Each op carries a ``dagster-k8s/config`` tag built from
its spec step's ``resources`` (requests and limits, GPUs, node selector,
tolerations) and a locked-down security context: non-root, read-only root
filesystem with an ``emptyDir`` at ``/tmp``, no privilege escalation, every
capability dropped, the runtime's default seccomp profile, no service account token.

Importing this module is light (pydantic only); dagster-k8s and the Kubernetes
client are imported when an executor is built or a manifest rendered.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import dagster as dg

    from mlsteps.context import Resources

#: The op tag dagster-k8s reads a step's pod configuration from.
K8S_CONFIG_TAG = "dagster-k8s/config"
#: Where the writable ``emptyDir`` is mounted (the root filesystem is read-only).
TMP_MOUNT = "/tmp"  # an emptyDir volume, private to the pod
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretEnv(BaseModel):
    """An environment variable taken from a key of a Kubernetes Secret."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(description="Name of the Secret in the pods' namespace.")
    key: str = Field(description="Key inside the Secret.")


class K8sSettings(BaseModel):
    """Where and how the step pods of a ``kubernetes``-executed pipeline run.

    The image must hold the Dagster code location (with the spec and mlsteps, the
    step backends and this package) and reach the Dagster instance (its
    ``dagster.yaml``, usually PostgreSQL storage, as set up by the Dagster Helm chart).
    """

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(
        None,
        description="Image of the step pods, pinned by tag or digest; unset means the code location's "
        "image (DAGSTER_CURRENT_IMAGE, set by the Helm chart).",
    )
    namespace: str | None = Field(None, description="Namespace of the step Jobs; unset: the run's namespace.")
    env_secrets: dict[str, SecretEnv] = Field(
        default_factory=dict,
        description="Env var -> Secret key, e.g. MLFLOW_TRACKING_TOKEN or AWS credentials (secretKeyRef).",
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Plain (non-secret) environment variables, e.g. MLFLOW_TRACKING_URI.",
    )
    service_account_name: str | None = Field(
        None, description="Service account of the pods; its token is mounted only when one is named."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "Always", description="'Always' re-checks the registry, so a re-pushed tag cannot run stale code."
    )
    image_pull_secrets: list[str] = Field(default_factory=list, description="Names of image pull Secrets.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the Jobs and pods.")
    run_as_user: int = Field(
        10001, ge=1, description="Non-root UID (and GID); high, so it matches no user on the node."
    )
    tmp_size_limit: str = Field("1Gi", description="Size limit of the /tmp emptyDir.")
    max_concurrent: int | None = Field(None, ge=1, description="Most step pods running at once per run.")
    load_incluster_config: bool = Field(
        True, description="The run worker runs in the cluster (the Helm chart's default)."
    )
    kubeconfig_file: str | None = Field(
        None, description="Kubeconfig of the cluster when the run worker runs outside it."
    )

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name = value.rsplit("/", 1)[-1]
        if "@sha256:" not in value and (":" not in name or name.endswith(":latest")):
            raise ValueError("expected an image pinned by tag or digest (not ':latest' or untagged)")
        return value

    @field_validator("env_secrets", "env_vars")
    @classmethod
    def _env_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [name for name in value if not _ENV_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"not valid environment variable names: {bad}")
        return value

    def executor_config(self) -> dict[str, Any]:
        """The ``k8s_job_executor`` config for these settings (deployment-wide, not per step)."""
        env: list[dict[str, Any]] = [{"name": n, "value": v} for n, v in sorted(self.env_vars.items())]
        env += [
            {"name": name, "value_from": {"secret_key_ref": {"name": ref.secret, "key": ref.key}}}
            for name, ref in sorted(self.env_secrets.items())
        ]
        config: dict[str, Any] = {
            "image_pull_policy": self.image_pull_policy,
            "load_incluster_config": self.load_incluster_config,
            "labels": {"app.kubernetes.io/managed-by": "mlsteps", **self.labels},
        }
        if not self.load_incluster_config:
            config["kubeconfig_file"] = self.kubeconfig_file
        if self.image:
            config["job_image"] = self.image
        if self.namespace:
            config["job_namespace"] = self.namespace
        if self.service_account_name:
            config["service_account_name"] = self.service_account_name
        if self.image_pull_secrets:
            config["image_pull_secrets"] = [{"name": name} for name in self.image_pull_secrets]
        if self.max_concurrent:
            config["max_concurrent"] = self.max_concurrent
        if env:
            config["step_k8s_config"] = {"container_config": {"env": env}}
        return config


def step_k8s_config(resources: Resources, settings: K8sSettings) -> dict[str, Any]:
    """The ``dagster-k8s/config`` of one step's pod: its spec ``resources`` and the hardening.

    CPU and memory requests equal the limits (Guaranteed QoS when both are set), so a
    step gets what it asked for and cannot starve its neighbours.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = limits["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = limits["memory"] = resources.memory
    if resources.gpu:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(resources.gpu)
    container: dict[str, Any] = {
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": settings.run_as_user,
            "run_as_group": settings.run_as_user,
            "allow_privilege_escalation": False,
            "read_only_root_filesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "volume_mounts": [{"name": "tmp", "mount_path": TMP_MOUNT}],
        # Python, MLflow and friends write caches under $HOME and $TMPDIR: keep both on the emptyDir.
        "env": [{"name": "HOME", "value": TMP_MOUNT}, {"name": "TMPDIR", "value": TMP_MOUNT}],
    }
    if requests:
        container["resources"] = {"requests": requests, "limits": limits}
    pod: dict[str, Any] = {
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": settings.run_as_user,
            "run_as_group": settings.run_as_user,
            "fs_group": settings.run_as_user,
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "automount_service_account_token": settings.service_account_name is not None,
        "volumes": [{"name": "tmp", "empty_dir": {"size_limit": settings.tmp_size_limit}}],
    }
    if resources.node_selector:
        pod["node_selector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in resources.tolerations]
    return {"container_config": container, "pod_spec_config": pod}


@functools.cache
def _executor(config_json: str) -> dg.ExecutorDefinition:
    # One executor object per distinct config, so the definitions of several pipelines
    # with the same settings merge into one code location (Dagster compares by identity).
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(json.loads(config_json), name="mlsteps_k8s")


def k8s_executor(settings: K8sSettings) -> dg.ExecutorDefinition:
    """dagster-k8s's ``k8s_job_executor`` configured with ``settings``."""
    return _executor(json.dumps(settings.executor_config(), sort_keys=True))


def render_step_job(
    defs: dg.Definitions,
    step_key: str,
    *,
    job_name: str | None = None,
    run_id: str = "00000000-0000-0000-0000-000000000000",
) -> dict[str, Any]:
    """The Kubernetes Job the ``k8s_job_executor`` would create for one step, as a manifest dict.

    Built by dagster-k8s's own code, the way its step handler does it: the executor's
    config merged with the op's ``dagster-k8s/config`` tag, then
    ``construct_dagster_k8s_job``. Nothing is sent to a cluster, so it can be checked
    (``kubectl apply --dry-run=server -f``, a schema validator, a policy scanner)
    anywhere. Settings a ``K8sRunLauncher`` would add (instance config map, PostgreSQL
    password secret) are not included.

    Args:
        defs: Definitions built with ``execution="kubernetes"``.
        step_key: The step's op name (its step id in the spec).
        job_name: The Dagster job; defaults to the only (explicit) job with the mlsteps Kubernetes executor.
        run_id: The run id used in the Job's name and labels.
    """
    import kubernetes.client
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_k8s_job_name,
        get_user_defined_k8s_config,
    )

    jobs = [j for j in defs.resolve_all_job_defs() if j.executor_def.name == "mlsteps_k8s"]
    # Dagster's implicit asset job (``__ASSET_JOB``) shares the executor; pick the pipeline's job.
    jobs = (
        [j for j in jobs if j.name == job_name]
        if job_name
        else [j for j in jobs if not j.name.startswith("__")]
    )
    if len(jobs) != 1:
        raise ValueError(
            f"expected one job with the mlsteps Kubernetes executor{f' named {job_name!r}' if job_name else ''}, "
            f"found {sorted(j.name for j in jobs)}"
        )
    job = jobs[0]
    executor = job.executor_def
    # The configured values with the schema's defaults filled in, as Dagster hands them to the executor.
    processed = executor.config_schema.resolve_config({})  # type: ignore[attr-defined]
    if not processed.success:
        raise ValueError(f"invalid executor config: {processed.errors}")
    cfg: dict[str, Any] = dict((processed.value or {}).get("config") or {})
    node = job.graph.node_named(step_key)
    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in node.tags.items()}

    # Mirrors dagster_k8s.executor.k8s_job_executor and K8sStepHandler.launch_step (0.29.x).
    context = K8sContainerContext(
        image_pull_policy=cfg.get("image_pull_policy"),
        image_pull_secrets=cfg.get("image_pull_secrets"),
        service_account_name=cfg.get("service_account_name"),
        env_config_maps=cfg.get("env_config_maps"),
        env_secrets=cfg.get("env_secrets"),
        env_vars=cfg.get("env_vars"),
        volume_mounts=cfg.get("volume_mounts"),
        volumes=cfg.get("volumes"),
        labels=cfg.get("labels"),
        namespace=cfg.get("job_namespace"),
        resources=cfg.get("resources"),
        scheduler_name=cfg.get("scheduler_name"),
        security_context=cfg.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg.get("step_k8s_config", {})),  # type: ignore[no-untyped-call]
    )
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    image = cfg.get("job_image") or "<code location image>"
    k8s_job_name = f"dagster-step-{get_k8s_job_name(run_id, step_key)}"  # type: ignore[no-untyped-call]
    manifest = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image=image),
        args=["dagster", "api", "execute_step"],
        job_name=k8s_job_name,
        pod_name=k8s_job_name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": job.name, "dagster/op": step_key, "dagster/run-id": run_id},
        env_vars=[
            {"name": "DAGSTER_RUN_JOB_NAME", "value": job.name},
            {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key},
        ],
    )
    if context.namespace:
        manifest.metadata.namespace = context.namespace
    rendered: dict[str, Any] = kubernetes.client.ApiClient().sanitize_for_serialization(manifest)
    return rendered
