"""Artifact references: the small JSON values passed between steps.

Orchestrators carry refs (Airflow XCom, Dagster outputs, Prefect results), never
data or models. A ref is a URI plus a content hash plus a little metadata, and
is versioned by ``schema_version`` so stored refs stay readable as they evolve.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from mlsteps.hashing import hash_value

JsonScalar = str | int | float | bool | None


class BaseRef(BaseModel):
    """Fields common to every ref."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(1, description="Version of this ref's schema.")
    uri: str = Field(description="Where the artifact lives (path, fsspec URL or models:/ URI).")
    content_hash: str | None = Field(
        None, description="sha256 of the artifact's content; the identity used for caching and lineage."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Small, JSON-serialisable extras.")

    def fingerprint(self) -> str:
        """The identity of the artifact: its content hash, else a hash of the ref itself."""
        return self.content_hash or hash_value(self.model_dump(mode="json"))


class DatasetRef(BaseRef):
    """A tabular dataset file (parquet or CSV)."""

    kind: Literal["dataset"] = "dataset"
    format: Literal["parquet", "csv"] = "parquet"
    rows: int | None = Field(None, description="Number of rows.")
    columns: dict[str, str] = Field(default_factory=dict, description="Column name -> dtype.")


class ModelRef(BaseRef):
    """A trained model logged to MLflow."""

    kind: Literal["model"] = "model"
    flavour: str = Field("sklearn", description="MLflow flavour the model was logged with.")
    run_id: str | None = Field(None, description="MLflow run that produced the model.")
    model_id: str | None = Field(None, description="MLflow LoggedModel id (m-...).")


class ModelVersionRef(BaseRef):
    """A version of a registered model in the MLflow Model Registry."""

    kind: Literal["model_version"] = "model_version"
    name: str
    version: str
    aliases: list[str] = Field(default_factory=list)
    source_run_id: str | None = None


class ReportRef(BaseRef):
    """A report written by a gate step (validation, evaluation, drift)."""

    kind: Literal["report"] = "report"
    passed: bool
    summary: dict[str, Any] = Field(default_factory=dict)
    html_uri: str | None = None


class DeploymentRef(BaseRef):
    """A model deployment on a serving target."""

    kind: Literal["deployment"] = "deployment"
    target: str
    endpoint: str | None = None
    model_uri: str
    traffic: dict[str, int] = Field(default_factory=dict, description="Version -> percent of traffic.")
    status: Literal["pending", "healthy", "failed", "rolled_back", "stopped"] = "pending"


Ref = Annotated[
    DatasetRef | ModelRef | ModelVersionRef | ReportRef | DeploymentRef,
    Field(discriminator="kind"),
]
RefKind = Literal["dataset", "model", "model_version", "report", "deployment"]

_REF_ADAPTER: TypeAdapter[Ref] = TypeAdapter(Ref)
REF_TYPES: dict[str, type[BaseRef]] = {
    "dataset": DatasetRef,
    "model": ModelRef,
    "model_version": ModelVersionRef,
    "report": ReportRef,
    "deployment": DeploymentRef,
}


def parse_ref(data: dict[str, Any] | str | BaseRef) -> BaseRef:
    """Turn a dict or a JSON string (as an orchestrator stores it) back into a ref."""
    if isinstance(data, BaseRef):
        return data
    if isinstance(data, str):
        return _REF_ADAPTER.validate_json(data)
    return _REF_ADAPTER.validate_python(data)


def dump_ref(ref: BaseRef) -> dict[str, Any]:
    """A JSON-compatible dict of ``ref``, the form orchestrators store."""
    return ref.model_dump(mode="json")
