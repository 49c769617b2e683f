"""Build an Airflow DAG from a pipeline spec: one task per step, refs over XCom.

``build_dag`` is what a DAG file calls. It runs on every parse of that file, so
it only loads and validates the spec (cheap: no ML backend is imported) and
creates operators; the steps' work happens in the tasks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, XComArg

from mlsteps.spec import load_spec
from mlsteps_airflow.operators.mlsteps import OPERATOR_FOR_STEP, MlstepsOperator

if TYPE_CHECKING:
    from mlsteps.spec import PipelineSpec


def build_dag(
    spec_path: str | os.PathLike[str],
    dag_id: str | None = None,
    *,
    artifact_root: str | None = None,
    mlflow_conn_id: str | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """Turn ``pipeline.yaml`` into a DAG with one task per step.

    * task id = step id; a built-in step gets its own operator class
      (``ValidateOperator``...), any other step type ``MlstepsOperator``;
    * each wired input (``inputs: {dataset: validate.dataset}``) becomes
      ``validate.output["dataset"]``, i.e. an XCom pull that also sets the
      dependency;
    * a step's ``retries`` in the spec becomes the task's ``retries`` (when the
      spec sets it; otherwise the DAG's ``default_args`` apply);
    * artifact root (relative to the spec file), MLflow defaults, resources and
      config are read from the spec when the task runs, as ``mlsteps run`` does.

    Args:
        spec_path: Path of the pipeline spec.
        dag_id: The DAG id; defaults to the spec's ``name``.
        artifact_root: Overrides the spec's ``defaults.artifact_root``.
        mlflow_conn_id: An ``mlflow`` connection whose tracking URI and token
            override the spec's MLflow defaults in every task.
        **dag_kwargs: Passed to ``airflow.sdk.DAG`` (``schedule`` defaults to
            ``None``, ``description`` to the spec's, ``tags`` to ``["mlsteps"]``).

    Returns:
        The DAG. Assign it to a module-level name in a file in the DAGs folder.

    Raises:
        mlsteps.errors.ConfigError: The spec is invalid (every problem listed);
            Airflow shows it as the DAG file's import error.
    """
    spec = load_spec(os.fspath(spec_path))
    dag_kwargs.setdefault("schedule", None)
    if spec.model.description:
        dag_kwargs.setdefault("description", spec.model.description)
    dag_kwargs.setdefault("tags", ["mlsteps"])
    dag = DAG(dag_id or spec.name, **dag_kwargs)
    with dag:
        add_spec_tasks(spec, artifact_root=artifact_root, mlflow_conn_id=mlflow_conn_id)
    return dag


def add_spec_tasks(
    spec: PipelineSpec,
    *,
    artifact_root: str | None = None,
    mlflow_conn_id: str | None = None,
) -> dict[str, MlstepsOperator]:
    """Create one operator per spec step in the current DAG context; return them by step id."""
    tasks: dict[str, MlstepsOperator] = {}
    for step_id in spec.order:
        resolved = spec.steps[step_id]
        operator_cls = OPERATOR_FOR_STEP.get(resolved.step_cls.name, MlstepsOperator)
        extra: dict[str, Any] = {}
        if operator_cls is MlstepsOperator:
            extra["step"] = resolved.step_cls.name
        if "retries" in resolved.spec.model_fields_set:
            extra["retries"] = resolved.spec.retries
        tasks[step_id] = operator_cls(
            task_id=step_id,
            spec_path=str(spec.path),
            inputs={name: XComArg(tasks[up], key=output) for name, (up, output) in resolved.inputs.items()},
            artifact_root=artifact_root,
            mlflow_conn_id=mlflow_conn_id,
            doc_md=resolved.step_cls.description or None,
            **extra,
        )
    return tasks
