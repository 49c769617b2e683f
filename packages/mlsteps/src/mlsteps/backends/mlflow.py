"""MLflow plumbing shared by the steps: one place that points MLflow at the context.

MLflow keeps its tracking URI in process-global state; steps call
:func:`configure` at the start of ``run`` so that two steps with different
contexts in one process (tests, the local runner) never cross wires.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlsteps._imports import require
from mlsteps.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlsteps.context import RunContext

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class RegisteredModelUri:
    """A parsed ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``: exactly one of version and alias."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str, *, field: str = "model") -> RegisteredModelUri:
    """Parse a registered-model URI; a :class:`ConfigError` on ``field`` otherwise."""
    m = _MODEL_URI.fullmatch(uri.strip())
    if m is None:
        raise ConfigError(f"{field}: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    return RegisteredModelUri(m["name"], m["version"], m["alias"])


def get_model_version(client: MlflowClient, model: RegisteredModelUri) -> ModelVersion:
    """The registry's version ``model`` points at (an alias resolved now)."""
    try:
        if model.alias is not None:
            return client.get_model_version_by_alias(model.name, model.alias)
        return client.get_model_version(model.name, str(model.version))
    except Exception as exc:
        raise wrap(exc, f"could not resolve {model}") from exc


def configure(ctx: RunContext) -> MlflowClient:
    """Point MLflow at ``ctx``'s tracking and registry URIs and return a client."""
    mlflow = require("mlflow")
    if ctx.mlflow.token is not None:
        # MLflow reads the bearer token from the environment only.
        os.environ["MLFLOW_TRACKING_TOKEN"] = ctx.mlflow.token.get_secret_value()
    mlflow.set_tracking_uri(ctx.tracking_uri)
    mlflow.set_registry_uri(ctx.registry_uri)
    client: MlflowClient = mlflow.MlflowClient(tracking_uri=ctx.tracking_uri, registry_uri=ctx.registry_uri)
    return client


def ensure_experiment(ctx: RunContext, client: MlflowClient) -> str:
    """The id of the context's experiment, created (with artifacts under the artifact root) if missing."""
    name = ctx.experiment_name
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = None
        if ctx.mlflow.tracking_uri is None and ctx.store.local:
            location = ctx.store.local_dir("mlartifacts").as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except Exception:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)
    except Exception as exc:
        raise wrap(exc, "could not get or create the MLflow experiment " + repr(name)) from exc


def wrap(exc: BaseException, doing: str) -> BackendError:
    """Turn an MLflow exception into a :class:`BackendError` that keeps its message."""
    return BackendError("mlflow", f"{doing}: {exc}", hint=_hint(str(exc)))


def _hint(message: str) -> str | None:
    lowered = message.lower()
    if "database is locked" in lowered:
        return "SQLite allows one writer; for parallel runs use `mlflow server` with PostgreSQL"
    if "connection refused" in lowered or "max retries exceeded" in lowered:
        return "is the MLflow server running and is the tracking URI right?"
    return None
