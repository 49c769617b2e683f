"""Wait for a registered model alias, e.g. for a new champion before deploying or scoring."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from mlsteps.context import MlflowSettings, RunKey, build_context
from mlsteps_airflow.operators.mlsteps import ORCHESTRATOR, layered_mlflow_settings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context


class ModelAliasSensor(BaseSensorOperator):
    """Succeed once ``alias`` of registered model ``model`` points at a version (other than ``not_version``).

    The sensor's XCom value is the version's ``model_version`` ref, so a
    downstream task can take it as an input. MLflow settings are layered as for
    the operators: the spec's defaults (``spec_path``), then the ``mlflow``
    connection, then ``mlflow=``; without any, the spec's (or ``.mlsteps``)
    embedded SQLite registry is used.

    Args:
        model: Registered model name (templated).
        alias: The alias to wait for (templated), ``champion`` by default.
        not_version: Keep waiting while the alias points at this version
            (templated), e.g. the version deployed now, to wait for a new one.
        spec_path: A pipeline spec to take the artifact root and MLflow defaults from.
        artifact_root: Artifact root when no spec is given (default ``.mlsteps``).
        mlflow: MLflow settings (an ``MlflowSettings`` or a dict of its fields).
        mlflow_conn_id: An ``mlflow`` connection.
        **kwargs: ``BaseSensorOperator`` arguments (``poke_interval``, ``timeout``, ``mode``...).
    """

    template_fields: Sequence[str] = ("model", "alias", "not_version")
    ui_color = "#e3f2e1"

    def __init__(
        self,
        *,
        model: str,
        alias: str = "champion",
        not_version: str | None = None,
        spec_path: str | os.PathLike[str] | None = None,
        artifact_root: str | None = None,
        mlflow: MlflowSettings | Mapping[str, Any] | None = None,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.alias = alias
        self.not_version = not_version
        self.spec_path = os.fspath(spec_path) if spec_path is not None else None
        self.artifact_root = artifact_root
        self.mlflow = mlflow
        self.mlflow_conn_id = mlflow_conn_id

    def poke(self, context: Context) -> PokeReturnValue:
        from mlsteps.backends.mlflow import RegisteredModelUri, configure, get_model_version
        from mlsteps.errors import BackendError
        from mlsteps.refs import ModelVersionRef, dump_ref

        key = RunKey(
            orchestrator=ORCHESTRATOR, pipeline=self.dag_id, run_id=context["run_id"], step=self.task_id
        )
        if self.spec_path is not None:
            from mlsteps.spec import load_spec

            spec = load_spec(self.spec_path)
            settings = layered_mlflow_settings(spec.model.defaults.mlflow, self.mlflow_conn_id, self.mlflow)
            ctx = build_context(
                key,
                artifact_root=spec.artifact_root(self.artifact_root),
                base_dir=spec.base_dir,
                mlflow=settings,
            )
        else:
            settings = layered_mlflow_settings(MlflowSettings(), self.mlflow_conn_id, self.mlflow)
            ctx = build_context(key, artifact_root=self.artifact_root, base_dir=Path.cwd(), mlflow=settings)
        uri = RegisteredModelUri(self.model, alias=self.alias)
        try:
            mv = get_model_version(configure(ctx), uri)
        except BackendError as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                self.log.info("%s does not exist yet", uri)
                return PokeReturnValue(is_done=False)
            raise
        version = str(mv.version)
        if self.not_version is not None and version == str(self.not_version):
            self.log.info("%s still points at version %s", uri, version)
            return PokeReturnValue(is_done=False)
        ref = ModelVersionRef(
            uri=f"models:/{self.model}/{version}",
            name=self.model,
            version=version,
            aliases=sorted(mv.aliases),
            source_run_id=mv.run_id,
        )
        self.log.info("%s -> version %s", uri, version)
        return PokeReturnValue(is_done=True, xcom_value=dump_ref(ref))
