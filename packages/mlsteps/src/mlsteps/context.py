"""The run context every step receives.

The context carries what a step needs from its surroundings and nothing else:
who is running it (the run key from the orchestrator), where artifacts go, how
to reach MLflow, what compute it asked for, and where to record lineage.
Adapters build one from their orchestrator's own context.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from mlsteps.storage import ArtifactStore, is_local, resolve_root, to_local_path

if TYPE_CHECKING:
    from mlsteps.lineage import LineageRecorder

DEFAULT_ARTIFACT_ROOT = ".mlsteps"


class RunKey(BaseModel):
    """Identifies one attempt of one step in one pipeline run.

    ``idempotency_key`` leaves out the attempt number: a retry of the same step in
    the same run must find, not duplicate, what an earlier attempt created.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    orchestrator: str = Field("local", description="local, airflow, dagster or prefect.")
    pipeline: str = Field("pipeline", description="Pipeline (DAG, job, flow) name.")
    run_id: str = Field(description="The orchestrator's run id.")
    step: str = Field(description="The step's id in the pipeline (task id, asset key...).")
    attempt: int = Field(1, ge=1, description="1 for the first try, 2 for the first retry...")

    @property
    def idempotency_key(self) -> str:
        return f"{self.orchestrator}/{self.pipeline}/{self.run_id}/{self.step}"

    def __str__(self) -> str:
        return f"{self.idempotency_key}#{self.attempt}"


def new_run_id() -> str:
    """A sortable, unique local run id."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class Toleration(BaseModel):
    """A Kubernetes toleration, e.g. to land a step on spot or GPU nodes."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    operator: str = Field("Equal", pattern="^(Equal|Exists)$")
    value: str | None = None
    effect: str | None = Field(None, pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$")


class Resources(BaseModel):
    """Compute a step asks for; applied by every Kubernetes execution mode."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | None = Field(None, description="CPU request, Kubernetes quantity (e.g. '500m', '2').")
    memory: str | None = Field(None, description="Memory request, Kubernetes quantity (e.g. '2Gi').")
    gpu: int = Field(0, ge=0, le=64, description="Number of GPUs (nvidia.com/gpu).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Kubernetes node selector.")
    tolerations: list[Toleration] = Field(default_factory=list)

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?", value):
            raise ValueError(f"expected a Kubernetes quantity such as '500m', '2' or '4Gi', got {value!r}")
        return value


class MlflowSettings(BaseModel):
    """How to reach MLflow. ``None`` URIs mean the embedded SQLite default under the artifact root."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(None, description="MLflow tracking URI.")
    registry_uri: str | None = Field(None, description="Registry URI; defaults to the tracking URI.")
    experiment: str | None = Field(None, description="Experiment name; defaults to the pipeline name.")
    token: SecretStr | None = Field(None, description="Bearer token for a secured MLflow server.")

    def merged(self, override: MlflowSettings | None) -> MlflowSettings:
        """These settings with every field ``override`` sets (not ``None``) taking precedence."""
        if override is None:
            return self
        updates = {name: getattr(override, name) for name in type(self).model_fields}
        return self.model_copy(update={k: v for k, v in updates.items() if v is not None})


#: The :attr:`RunContext.secrets` key under which an adapter's Feast resource or block hands a
#: ``featurise`` step its online store's connection string; the step's config holds only
#: :data:`FEAST_CONNECTION_REF`, which ``featurise`` fills from the secrets at run time.
FEAST_CONNECTION_SECRET = "feast_online_store"
FEAST_CONNECTION_REF = "${" + FEAST_CONNECTION_SECRET + "}"


@dataclass
class RunContext:
    """Everything a step may use from its environment."""

    run_key: RunKey
    artifact_root: str = DEFAULT_ARTIFACT_ROOT
    base_dir: Path = field(default_factory=Path.cwd)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    resources: Resources = field(default_factory=Resources)
    secrets: dict[str, SecretStr] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("mlsteps"))
    lineage: LineageRecorder | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    #: The id of the lineage record this step run will write; steps tag MLflow with it.
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Why this run was started, when something other than a person started it (e.g. a drift report).
    trigger: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.artifact_root = resolve_root(os.fspath(self.artifact_root), self.base_dir)
        self.store = ArtifactStore(self.artifact_root)

    def set_trigger(self, trigger: dict[str, Any]) -> None:
        """Record what started this run (lineage ``trigger``; MLflow tag ``mlsteps.trigger``)."""
        self.trigger = dict(trigger)
        self.extra_tags["mlsteps.trigger"] = str(trigger.get("report") or trigger.get("kind", ""))

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI; the embedded default is SQLite under the artifact root."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if not self.store.local:
            raise ValueError("a remote artifact root needs an explicit mlflow.tracking_uri")
        return f"sqlite:///{self.store.local_dir()}/mlflow.db"

    @property
    def registry_uri(self) -> str:
        return self.mlflow.registry_uri or self.tracking_uri

    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or self.run_key.pipeline

    def step_dir(self) -> Path:
        """A local working directory for this step run's outputs (local roots only)."""
        return self.store.local_dir("runs", self.run_key.run_id, self.run_key.step)

    def resolve_path(self, path: str) -> str:
        """Resolve a user path relative to the spec's directory; URLs pass through."""
        if not is_local(path):
            return path
        p = to_local_path(path)
        return str(p if p.is_absolute() else (self.base_dir / p).resolve())

    def tags(self) -> dict[str, str]:
        """Tags that tie a backend object (MLflow run, model version) to this step run."""
        return {
            "mlsteps.run_key": self.run_key.idempotency_key,
            "mlsteps.attempt": str(self.run_key.attempt),
            "mlsteps.orchestrator": self.run_key.orchestrator,
            "mlsteps.lineage_record": self.record_id,
            **self.extra_tags,
        }

    def describe(self) -> dict[str, Any]:
        """A secret-free description of the context for logs and lineage."""
        return {
            "run_key": self.run_key.model_dump(),
            "artifact_root": self.artifact_root,
            "tracking_uri": self.mlflow.tracking_uri or "(embedded sqlite)",
            "resources": self.resources.model_dump(exclude_defaults=True),
        }


def build_context(
    run_key: RunKey,
    *,
    artifact_root: str | None = None,
    base_dir: Path | None = None,
    mlflow: MlflowSettings | None = None,
    resources: Resources | None = None,
) -> RunContext:
    """A run context that records lineage under its artifact root.

    What every runner hands a step: the local runner and the adapters call this
    (through :meth:`mlsteps.spec.PipelineSpec.context` for spec steps, directly
    for hand-composed tasks), so all of them resolve paths and record lineage alike.
    """
    from mlsteps.lineage import LineageRecorder

    ctx = RunContext(
        run_key=run_key,
        artifact_root=artifact_root or DEFAULT_ARTIFACT_ROOT,
        base_dir=base_dir or Path.cwd(),
        mlflow=mlflow or MlflowSettings(),
        resources=resources or Resources(),
    )
    ctx.lineage = LineageRecorder(ctx.store)
    return ctx
