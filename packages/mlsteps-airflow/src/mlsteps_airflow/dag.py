"""Build an Airflow DAG from a pipeline spec: one task per step, refs over XCom.

``build_dag`` is what a DAG file calls. It runs on every parse of that file, so
it only loads and validates the spec (cheap: no ML backend is imported) and
creates operators; the steps' work happens in the tasks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import DAG, XComArg

from mlsteps.spec import load_spec
from mlsteps_airflow.assets import drift_alias, model_asset, model_name_of
from mlsteps_airflow.operators.mlsteps import OPERATOR_FOR_STEP, MlstepsOperator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import BaseOperator

    from mlsteps.spec import PipelineSpec
    from mlsteps_airflow.kubernetes import PodSettings


def build_dag(
    spec_path: str | os.PathLike[str],
    dag_id: str | None = None,
    *,
    artifact_root: str | None = None,
    mlflow_conn_id: str | None = None,
    execution: Literal["local", "kubernetes"] = "local",
    pod: PodSettings | Mapping[str, Any] | None = None,
    wait_for_drift: Mapping[str, Any] | None = None,
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
    * a ``register`` task's outlet is its model's asset
      (:func:`~mlsteps_airflow.assets.model_asset`), so other DAGs can be
      scheduled on new model versions, and a ``monitor`` task's outlet is the
      drift alias of its model (:func:`~mlsteps_airflow.assets.drift_alias`);
    * artifact root (relative to the spec file), MLflow defaults, resources and
      config are read from the spec when the task runs, as ``mlsteps run`` does.

    Args:
        spec_path: Path of the pipeline spec.
        dag_id: The DAG id; defaults to the spec's ``name``.
        artifact_root: Overrides the spec's ``defaults.artifact_root``.
        mlflow_conn_id: An ``mlflow`` connection whose tracking URI and token
            override the spec's MLflow defaults in every task (``local`` execution).
        execution: ``local`` runs each step inside the Airflow worker;
            ``kubernetes`` runs each step in its own pod with
            ``KubernetesPodOperator`` (needs ``mlsteps-airflow[kubernetes]``).
        wait_for_drift: Start each run with a
            :class:`~mlsteps_airflow.sensors.drift.DriftSensor` (task ``wait_for_drift``)
            built from these arguments (``model``, ``poke_interval``, ``mode``...);
            every step waits for it and records its drift report as the
            lineage trigger. The sensor variant of ``schedule=[drift_asset(name)]``.
        pod: With ``execution="kubernetes"``: a
            :class:`~mlsteps_airflow.kubernetes.PodSettings` (or its fields as a
            dict): image, spec path in the image, namespace, secrets...
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
    settings = None
    if execution == "kubernetes":
        from mlsteps_airflow.kubernetes import PodSettings

        if pod is None:
            raise ValueError("execution='kubernetes' needs pod settings (at least the image)")
        settings = pod if isinstance(pod, PodSettings) else PodSettings.model_validate(dict(pod))
    elif execution != "local":
        raise ValueError(f"execution must be 'local' or 'kubernetes', got {execution!r}")
    dag = DAG(dag_id or spec.name, **dag_kwargs)
    with dag:
        tasks = add_spec_tasks(
            spec,
            artifact_root=artifact_root,
            mlflow_conn_id=mlflow_conn_id,
            pod=settings,
            trigger_from="wait_for_drift" if wait_for_drift is not None else None,
        )
        if wait_for_drift is not None:
            from mlsteps_airflow.sensors.drift import DriftSensor

            options = {"spec_path": str(spec.path), "artifact_root": artifact_root, **dict(wait_for_drift)}
            sensor = DriftSensor(task_id="wait_for_drift", **options)
            for step_id, task in tasks.items():
                if not spec.steps[step_id].upstream:
                    sensor >> task
    return dag


def add_spec_tasks(
    spec: PipelineSpec,
    *,
    artifact_root: str | None = None,
    mlflow_conn_id: str | None = None,
    pod: PodSettings | None = None,
    trigger_from: str | None = None,
) -> dict[str, BaseOperator]:
    """Create one operator per spec step in the current DAG context; return them by step id.

    With ``pod`` settings each step becomes a pod (see :mod:`mlsteps_airflow.kubernetes`).
    """
    tasks: dict[str, BaseOperator] = {}
    for step_id in spec.order:
        resolved = spec.steps[step_id]
        operator_cls = OPERATOR_FOR_STEP.get(resolved.step_cls.name, MlstepsOperator)
        extra: dict[str, Any] = {}
        if operator_cls is MlstepsOperator:
            extra["step"] = resolved.step_cls.name
        if "retries" in resolved.spec.model_fields_set:
            extra["retries"] = resolved.spec.retries
        model_name = getattr(resolved.config, "name", None) if resolved.step_cls.name == "register" else None
        if isinstance(model_name, str):
            extra["outlets"] = [model_asset(model_name)]
        monitored = model_name_of(getattr(resolved.config, "model", None))
        if resolved.step_cls.name == "monitor" and monitored is not None:
            extra["outlets"] = [drift_alias(monitored)]
        if pod is not None:
            from mlsteps_airflow.kubernetes import pod_operator

            extra.pop("step", None)
            tasks[step_id] = pod_operator(spec, step_id, pod, dag_id=_current_dag_id(), **extra)
            for upstream in resolved.upstream:
                tasks[upstream] >> tasks[step_id]
            continue
        if trigger_from is not None:
            extra["trigger_from"] = trigger_from
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


def _current_dag_id() -> str:
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    dag = DagContext.get_current()
    if dag is None:
        raise RuntimeError("add_spec_tasks must be called inside a DAG context")
    return dag.dag_id
