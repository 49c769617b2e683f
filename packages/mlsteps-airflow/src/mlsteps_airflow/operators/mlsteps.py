"""Operators that run one mlsteps step as one Airflow task.

The operators are thin: ``execute`` builds the mlsteps run context from the
Airflow context, calls :func:`mlsteps.execute_step` (which validates, runs and
records lineage) and maps the result back onto Airflow:

* every output ref is pushed to XCom under its output name (``dataset``,
  ``model``, ``report``...), so a downstream task takes it with
  ``inputs={"dataset": validate.output["dataset"]}``; assigning the XComArg also
  creates the task dependency;
* the return value (XCom ``return_value``) is
  ``{"outputs": {name: ref}, "metrics": {name: float}, "passed": bool | None, "message": str}``;
* a failed gate (:class:`~mlsteps.errors.GateFailure`) and a configuration error
  (:class:`~mlsteps.errors.ConfigError`) raise ``AirflowFailException``: the task
  fails without retries and downstream tasks end ``upstream_failed``; the failed
  gate's report ref is still pushed to XCom under ``report``;
* any other error propagates unchanged, so the task's ``retries`` apply.

``__init__`` only stores its arguments (it runs on every DAG parse); the step
type, config and inputs are validated in ``execute``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlsteps.context import MlflowSettings, RunContext, RunKey, build_context
from mlsteps.errors import ConfigError, GateFailure
from mlsteps.refs import dump_ref
from mlsteps.step import execute_step

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from mlsteps.step import Step

#: The orchestrator name written into every run key and lineage record.
ORCHESTRATOR = "airflow"


class MlstepsOperator(BaseOperator):
    """Run one mlsteps step (built in or from a plugin) as an Airflow task.

    Two ways to use it:

    * **Hand-composed**: give ``step`` (a step type name), ``config`` and
      ``inputs``. Relative paths in the config and a relative ``artifact_root``
      resolve against ``base_dir``, which defaults to the DAG file's directory.
    * **From a spec** (what :func:`mlsteps_airflow.dag.build_dag` does): give
      ``spec_path`` (and ``spec_step`` if the task id differs from the step id).
      Step type, config, artifact root, MLflow defaults and resources come from
      the spec, exactly as for ``mlsteps run``; ``config`` given here overrides
      the spec's config for this step.

    Args:
        step: Step type name (``validate``, ``train``, a plugin's step...).
            Optional with ``spec_path``; if both are given they must agree.
        config: The step's config as a dict (templated: Jinja such as
            ``{{ ds }}`` in any string is rendered before the step runs).
        inputs: Input name -> ref, usually an upstream operator's
            ``.output["<output name>"]`` (templated; XComArgs are resolved).
        spec_path: A ``pipeline.yaml`` to take the step from.
        spec_step: The step id in the spec; defaults to the task id.
        artifact_root: Where outputs and lineage go (templated). Default: the
            spec's ``defaults.artifact_root``, else ``.mlsteps`` under ``base_dir``.
        base_dir: Directory that relative paths resolve against when no spec is
            given. Default: the directory of the DAG file.
        mlflow: MLflow settings (an ``MlflowSettings`` or a dict of its fields);
            fields set here win over the connection and the spec defaults.
        mlflow_conn_id: An Airflow connection of type ``mlflow`` to take the
            tracking URI and token from (see :class:`~mlsteps_airflow.hooks.mlflow.MlflowHook`).
        trigger_from: Task id of a :class:`~mlsteps_airflow.sensors.drift.DriftSensor`
            whose drift report this run records as its lineage ``trigger``.
        **kwargs: Passed to ``BaseOperator`` (``task_id``, ``retries``, ``pool``...).

    Example:
        ::

            source = MlstepsOperator(task_id="source", step="toy_source", config={"count": 10})
            total = MlstepsOperator(
                task_id="total", step="toy_sum", inputs={"dataset": source.output["dataset"]}
            )
    """

    template_fields: Sequence[str] = ("config", "inputs", "artifact_root")
    template_fields_renderers: ClassVar[dict[str, str]] = {"config": "json", "inputs": "json"}
    ui_color = "#e3f2e1"

    #: Step type fixed by a subclass (``ValidateOperator`` -> ``validate``).
    step_type: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        step: str | None = None,
        config: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        spec_path: str | os.PathLike[str] | None = None,
        spec_step: str | None = None,
        artifact_root: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        mlflow: MlflowSettings | Mapping[str, Any] | None = None,
        mlflow_conn_id: str | None = None,
        trigger_from: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trigger_from = trigger_from
        self.step = step if step is not None else self.step_type
        self.config = config
        self.inputs = inputs if inputs is not None else {}
        self.spec_path = os.fspath(spec_path) if spec_path is not None else None
        self.spec_step = spec_step
        self.artifact_root = artifact_root
        self.base_dir = os.fspath(base_dir) if base_dir is not None else None
        self.mlflow = mlflow
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the step; push output refs to XCom; fail the task on a failed gate or bad config."""
        ti = context["ti"]
        run_key = RunKey(
            orchestrator=ORCHESTRATOR,
            pipeline=self.dag_id,
            run_id=context["run_id"],
            step=self.task_id,
            attempt=max(1, int(ti.try_number or 1)),
        )
        try:
            step_cls, config, ctx = self._prepare(run_key, context)
            from mlsteps_airflow.assets import drift_trigger

            trigger = drift_trigger(context)
            if trigger is None and self.trigger_from:
                found = ti.xcom_pull(task_ids=self.trigger_from)
                trigger = found.get("trigger") if isinstance(found, dict) else None
            if trigger is not None:
                ctx.set_trigger(trigger)
            self.log.info("running mlsteps step %r (%s) as %s", step_cls.name, self.task_id, run_key)
            result = execute_step(step_cls, ctx, config, dict(self.inputs or {}))
        except GateFailure as exc:
            if exc.report is not None:
                ti.xcom_push(key="report", value=dump_ref(exc.report))
            raise AirflowFailException(str(exc)) from exc
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        payload = result.to_dict()
        for name, ref in payload["outputs"].items():
            ti.xcom_push(key=name, value=ref)
        if self.outlets:
            from mlsteps_airflow.assets import asset_events, drift_events

            for asset, extra in asset_events(self.outlets, result.outputs).items():
                context["outlet_events"][asset].extra = {**extra, "run_key": str(run_key)}
            for alias, (asset, extra) in drift_events(self.outlets, result.outputs).items():
                context["outlet_events"][alias].add(asset, extra={**extra, "run_key": str(run_key)})
        if result.metrics:
            self.log.info("metrics: %s", result.metrics)
        return payload

    def _prepare(self, run_key: RunKey, context: Context) -> tuple[type[Step[Any]], Any, RunContext]:
        """Resolve the step class, its config and the run context (spec-driven or hand-composed)."""
        if self.spec_path is not None:
            from mlsteps.spec import load_spec

            spec = load_spec(self.spec_path)
            step_id = self.spec_step or self.task_id
            resolved = spec.steps.get(step_id)
            if resolved is None:
                raise ConfigError(
                    f"spec {spec.path} has no step {step_id!r}; expected one of {sorted(spec.steps)}",
                    file=str(spec.path),
                )
            if self.step is not None and self.step != resolved.step_cls.name:
                raise ConfigError(
                    f"task {self.task_id!r} runs step type {self.step!r} but spec step {step_id!r} "
                    f"is of type {resolved.step_cls.name!r}",
                    file=str(spec.path),
                )
            mlflow = self._mlflow_settings(spec.model.defaults.mlflow)
            ctx = spec.context(step_id, run_key, artifact_root=self.artifact_root, mlflow=mlflow)
            config = self.config if self.config is not None else resolved.config
            return resolved.step_cls, config, ctx
        if self.step is None:
            raise ConfigError(f"task {self.task_id!r}: give 'step' (a step type name) or 'spec_path'")
        from mlsteps.registry import get_step

        step_cls = get_step(self.step)
        ctx = build_context(
            run_key,
            artifact_root=self.artifact_root,
            base_dir=self._base_dir(context),
            mlflow=self._mlflow_settings(MlflowSettings()),
        )
        return step_cls, self.config, ctx

    def _base_dir(self, context: Context) -> Path:
        if self.base_dir is not None:
            return Path(self.base_dir).resolve()
        fileloc = getattr(context.get("dag"), "fileloc", None)
        return Path(fileloc).resolve().parent if fileloc else Path.cwd()

    def _mlflow_settings(self, base: MlflowSettings) -> MlflowSettings:
        return layered_mlflow_settings(base, self.mlflow_conn_id, self.mlflow)


def layered_mlflow_settings(
    base: MlflowSettings,
    conn_id: str | None,
    explicit: MlflowSettings | Mapping[str, Any] | None,
) -> MlflowSettings:
    """Spec defaults, overridden by the ``mlflow`` connection, overridden by explicit settings."""
    settings = base
    if conn_id:
        from mlsteps_airflow.hooks.mlflow import MlflowHook

        settings = settings.merged(MlflowHook(conn_id).get_settings())
    if explicit is not None:
        given = (
            explicit
            if isinstance(explicit, MlflowSettings)
            else MlflowSettings.model_validate(dict(explicit))
        )
        settings = settings.merged(given)
    return settings


class _FixedStepOperator(MlstepsOperator):
    """Base of the per-step operators: the step type is fixed by the class."""

    def __init__(self, **kwargs: Any) -> None:
        if "step" in kwargs:
            raise TypeError(f"{type(self).__name__} always runs step {self.step_type!r}; do not pass 'step'")
        super().__init__(step=self.step_type, **kwargs)


class ValidateOperator(_FixedStepOperator):
    """Run the built-in ``validate`` step (a data-quality gate); see :class:`MlstepsOperator`."""

    step_type = "validate"


class FeaturiseOperator(_FixedStepOperator):
    """Run the built-in ``featurise`` step; see :class:`MlstepsOperator`."""

    step_type = "featurise"


class TrainOperator(_FixedStepOperator):
    """Run the built-in ``train`` step; see :class:`MlstepsOperator`."""

    step_type = "train"


class EvaluateOperator(_FixedStepOperator):
    """Run the built-in ``evaluate`` step (a model-quality gate); see :class:`MlstepsOperator`."""

    step_type = "evaluate"


class RegisterOperator(_FixedStepOperator):
    """Run the built-in ``register`` step; see :class:`MlstepsOperator`.

    Unless ``outlets`` is given, the task's outlet is the registered model's
    asset (:func:`mlsteps_airflow.assets.model_asset` of ``config["name"]``), so
    every successful registration emits an asset event that DAGs can be
    scheduled on; the event's ``extra`` holds the version, aliases and run key.
    """

    step_type = "register"

    def __init__(self, **kwargs: Any) -> None:
        name = (kwargs.get("config") or {}).get("name")
        if "outlets" not in kwargs and isinstance(name, str) and "{{" not in name:
            from mlsteps_airflow.assets import model_asset

            kwargs["outlets"] = [model_asset(name)]
        super().__init__(**kwargs)


class DeployOperator(_FixedStepOperator):
    """Run the built-in ``deploy`` step (serve a registered version); see :class:`MlstepsOperator`."""

    step_type = "deploy"


class MonitorOperator(_FixedStepOperator):
    """Run the built-in ``monitor`` step (drift); see :class:`MlstepsOperator`.

    Unless ``outlets`` is given, the task's outlet is the drift alias of the
    monitored model (``config["model"]``, ``models:/NAME@...``): when the report
    says drift, the task emits an event on :func:`mlsteps_airflow.assets.drift_asset`,
    which a retraining DAG can be scheduled on; no drift emits nothing.
    """

    step_type = "monitor"

    def __init__(self, **kwargs: Any) -> None:
        from mlsteps_airflow.assets import drift_alias, model_name_of

        name = model_name_of((kwargs.get("config") or {}).get("model"))
        if "outlets" not in kwargs and name is not None:
            kwargs["outlets"] = [drift_alias(name)]
        super().__init__(**kwargs)


#: Operator class per built-in step type; other step types use :class:`MlstepsOperator`.
OPERATOR_FOR_STEP: dict[str, type[MlstepsOperator]] = {
    cls.step_type: cls
    for cls in (
        ValidateOperator,
        FeaturiseOperator,
        TrainOperator,
        EvaluateOperator,
        RegisterOperator,
        DeployOperator,
        MonitorOperator,
    )
    if cls.step_type is not None
}
