"""Dagster resources: where mlsteps writes artifacts and how it reaches MLflow.

Both are ``ConfigurableResource``s, so they show up (secret-free) in the Dagster
UI and can be set per deployment through Dagster's own config and environment
variables, e.g. ``MlflowResource(token=dg.EnvVar("MLFLOW_TRACKING_TOKEN"))``.
A field left unset falls back to the pipeline spec's ``defaults``, so the spec
stays the single source of truth and a resource only overrides what differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, SecretStr

from mlsteps.context import MlflowSettings

if TYPE_CHECKING:
    from mlsteps.spec import PipelineSpec

#: Resource key of :class:`MlstepsResource` in the definitions built from a spec.
MLSTEPS_RESOURCE_KEY = "mlsteps"
#: Resource key of :class:`MlflowResource`; not ``mlflow``, which dagster-mlflow uses.
MLFLOW_RESOURCE_KEY = "mlsteps_mlflow"


class MlstepsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where mlsteps writes step outputs, lineage records and its embedded MLflow store.

    Example:
        ```python
        defs = build_definitions(
            "pipeline.yaml",
            resources={"mlsteps": MlstepsResource(artifact_root="s3://bucket/mlsteps")},
        )
        ```
    """

    artifact_root: str | None = Field(
        default=None,
        description=(
            "Local path or fsspec URL for step outputs and lineage. A relative path is "
            "resolved against the spec's directory; unset means the spec's defaults.artifact_root."
        ),
    )

    def resolve_root(self, spec: PipelineSpec) -> str:
        """The artifact root to use for ``spec``, resolved exactly as the local runner does."""
        return spec.artifact_root(self.artifact_root)


class MlflowResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How mlsteps steps reach MLflow; unset fields fall back to the spec's ``defaults.mlflow``.

    The token is a secret: pass it as ``dg.EnvVar("MLFLOW_TRACKING_TOKEN")`` so Dagster
    reads it from the environment at run time and never shows its value.

    Example:
        ```python
        MlflowResource(
            tracking_uri="https://mlflow.example.com",
            token=dg.EnvVar("MLFLOW_TRACKING_TOKEN"),
        )
        ```
    """

    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; unset means the spec's value or the embedded SQLite."
    )
    registry_uri: str | None = Field(
        default=None, description="MLflow registry URI; unset means the spec's value or the tracking URI."
    )
    experiment: str | None = Field(
        default=None, description="Experiment name; unset means the spec's value or the pipeline name."
    )
    token: str | None = Field(
        default=None, description="Bearer token for a secured MLflow server; set it with dg.EnvVar."
    )

    def settings(self, spec: PipelineSpec) -> MlflowSettings:
        """The spec's MLflow settings with every field set on this resource taking precedence."""
        base = spec.model.defaults.mlflow
        return MlflowSettings(
            tracking_uri=self.tracking_uri or base.tracking_uri,
            registry_uri=self.registry_uri or base.registry_uri,
            experiment=self.experiment or base.experiment,
            token=SecretStr(self.token) if self.token else base.token,
        )


def default_resources(spec: PipelineSpec) -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    """The resources :func:`~mlsteps_dagster.build_definitions` wires by default for ``spec``.

    They carry the spec's non-secret defaults so the Dagster UI shows the values in use;
    a spec's MLflow token (if any) is not copied into resource config but still applies.
    """
    mlflow = spec.model.defaults.mlflow
    return {
        MLSTEPS_RESOURCE_KEY: MlstepsResource(artifact_root=spec.artifact_root()),
        MLFLOW_RESOURCE_KEY: MlflowResource(
            tracking_uri=mlflow.tracking_uri, registry_uri=mlflow.registry_uri, experiment=mlflow.experiment
        ),
    }
