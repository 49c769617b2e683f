"""Dagster resources: where mlsteps writes artifacts, how it reaches MLflow and Feast.

All are ``ConfigurableResource``s, so they show up (secret-free) in the Dagster
UI and can be set per deployment through Dagster's own config and environment
variables, e.g. ``MlflowResource(token=dg.EnvVar("MLFLOW_TRACKING_TOKEN"))``.
A field left unset falls back to the pipeline spec, so the spec stays the single
source of truth and a resource only overrides what differs in a deployment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, SecretStr

from mlsteps.context import FEAST_CONNECTION_REF, MlflowSettings

if TYPE_CHECKING:
    from mlsteps.spec import PipelineSpec

#: Resource key of :class:`MlstepsResource` in the definitions built from a spec.
MLSTEPS_RESOURCE_KEY = "mlsteps"
#: Resource key of :class:`MlflowResource`; not ``mlflow``, which dagster-mlflow uses.
MLFLOW_RESOURCE_KEY = "mlsteps_mlflow"
#: Resource key of :class:`FeastResource`, required by ``featurise`` steps only.
FEAST_RESOURCE_KEY = "mlsteps_feast"
#: The step type whose config :class:`FeastResource` overrides.
FEATURISE_STEP = "featurise"


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


class FeastResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where ``featurise`` steps find their Feast repo and online store in this deployment.

    It overrides the step's config at run time (the lineage record shows the config
    actually used); Feast itself still does all the work. The connection string is a
    secret: set it with ``dg.EnvVar`` so Dagster reads it at run time and never shows it;
    the step's config carries only the reference ``${feast_online_store}``, which the
    step fills from ``RunContext.secrets`` at run time.

    Example:
        ```python
        FeastResource(
            online_store={"type": "redis"},
            connection_string=dg.EnvVar("FEAST_REDIS_URL"),  # e.g. "redis:6379,password=..."
        )
        ```
    """

    repo_path: str | None = Field(
        default=None,
        description="Feast repo directory replacing the step's `repo_path` (relative: to the spec's "
        "directory); unset means the spec's value. Not allowed for steps declaring an `inline` repo.",
    )
    online_store: dict[str, Any] | None = Field(
        default=None,
        description="Replaces the online store section (with `type`), e.g. {type: sqlite, path: /data/online.db}; "
        "with an `inline` repo it replaces `inline.online_store`. Unset means the spec's store.",
    )
    connection_string: str | None = Field(
        default=None,
        description="Added to the online store section as `connection_string` (Redis); set it with dg.EnvVar.",
    )

    def overrides(self, config: dict[str, Any]) -> dict[str, Any]:
        """The ``featurise`` config (as a dict) with this resource's settings applied.

        Raises:
            ConfigError: The resource's settings do not fit the step's config.
        """
        from mlsteps.errors import ConfigError, Problem

        out = dict(config)
        inline = out.get("inline")
        if self.repo_path is not None:
            if inline is not None:
                raise ConfigError(
                    [
                        Problem(
                            None,
                            f"resources.{FEAST_RESOURCE_KEY}.repo_path",
                            "the step declares an `inline` repo: a repo path cannot replace it",
                        )
                    ]
                )
            out["repo_path"] = self.repo_path
        store: dict[str, Any] | None = dict(self.online_store) if self.online_store is not None else None
        if self.connection_string is not None:
            if store is None:
                current = inline.get("online_store") if isinstance(inline, dict) else out.get("online_store")
                if not isinstance(current, dict):
                    raise ConfigError(
                        [
                            Problem(
                                None,
                                f"resources.{FEAST_RESOURCE_KEY}.connection_string",
                                "set `online_store` (e.g. {type: redis}) too: the step's repo_path "
                                "keeps its store in feature_store.yaml",
                            )
                        ]
                    )
                store = dict(current)
            # Only a reference: the step fills it from RunContext.secrets, so lineage never sees the value.
            store["connection_string"] = FEAST_CONNECTION_REF
        if store is not None:
            if isinstance(inline, dict):
                out["inline"] = {**inline, "online_store": store}
            else:
                out["online_store"] = store
        return out


#: The resources every pipeline gets unless told otherwise: all fields unset, so each
#: pipeline's own spec decides. Shared instances, so the definitions of several
#: pipelines (several Components) merge into one code location without conflicts.
DEFAULT_MLSTEPS = MlstepsResource()
DEFAULT_MLFLOW = MlflowResource()
DEFAULT_FEAST = FeastResource()


def default_resources(spec: PipelineSpec) -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    """The resources :func:`~mlsteps_dagster.build_definitions` wires by default for ``spec``.

    Unconfigured shared instances: each asset falls back to its own spec's artifact
    root, MLflow settings and Feast repo at run time (materialization metadata shows
    the artifact root used). ``mlsteps_feast`` is added only if a step uses Feast.
    """
    out: dict[str, dg.ConfigurableResource] = {  # type: ignore[type-arg]
        MLSTEPS_RESOURCE_KEY: DEFAULT_MLSTEPS,
        MLFLOW_RESOURCE_KEY: DEFAULT_MLFLOW,
    }
    if any(step.step_cls.name == FEATURISE_STEP for step in spec.steps.values()):
        out[FEAST_RESOURCE_KEY] = DEFAULT_FEAST
    return out
