"""Prefect tasks that run mlsteps steps: one generic factory and one task per built-in step.

Each task is thin: it builds the run context from the Prefect runtime (flow run
id, task run count as the attempt), calls :func:`mlsteps.execute_step`, and
returns the output refs as JSON dicts, which is all Prefect passes on. A failed
gate raises :class:`mlsteps.GateFailure`, so the task run ends ``Failed`` and
every task that takes its result stays ``NotReady``; configuration and gate
failures are never retried, anything else is retried per ``retries``. A report
output saying ``verdict: drift`` emits the ``mlsteps.drift.detected`` event
(:mod:`mlsteps_prefect.events`).

Example:
    ```python
    from prefect import flow
    from mlsteps_prefect import train_task, validate_task

    @flow
    def pipeline() -> None:
        checked = validate_task(config={"data": "data/penguins.parquet", "expectations": []})
        train_task(config={"target": "species"}, inputs={"dataset": checked["dataset"]})
    ```
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.utilities.collections import visit_collection

from mlsteps.errors import ConfigError, GateFailure, MissingDependencyError
from mlsteps.refs import BaseRef, ReportRef, dump_ref
from mlsteps.step import StepResult, execute_step
from mlsteps_prefect._call import StepCall, parse_outputs
from mlsteps_prefect.cache_policies import StepCachePolicy
from mlsteps_prefect.events import emit_drift_events

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from prefect.client.schemas.objects import State, TaskRun

    from mlsteps.step import Step

log = logging.getLogger("mlsteps.prefect")

#: A task's result: output name -> ref as a JSON dict.
Outputs = dict[str, dict[str, Any]]

#: Errors a retry cannot fix: bad configuration, a failed quality gate, a missing package.
NOT_RETRIED: tuple[type[BaseException], ...] = (ConfigError, GateFailure, MissingDependencyError)

#: Report summaries larger than this many entries are cut in the Prefect artifact.
MAX_SUMMARY_ROWS = 50
MAX_VALUE_CHARS = 200


def retry_unless_config_or_gate(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry unless the failure is a config error or a failed gate."""
    try:
        state.result()
    except NOT_RETRIED:
        return False
    except Exception:  # noqa: BLE001 - every other failure is worth the configured retries
        return True
    return True


def _resolve_futures(value: Any) -> Any:
    """Replace Prefect futures (in nested parameters) by their results."""
    return visit_collection(
        value,
        visit_fn=lambda item: item.result() if isinstance(item, PrefectFuture) else item,
        return_data=True,
    )


def _artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def report_markdown(step_id: str, name: str, report: ReportRef) -> str:
    """A short markdown summary of a report ref (its ``summary``, never the report itself)."""
    verdict = "passed" if report.passed else "FAILED"
    lines = [f"### `{step_id}`: {name} {verdict}", "", f"Report: `{report.uri}`", ""]
    items = list(report.summary.items())
    if items:
        lines += ["| key | value |", "|---|---|"]
        for key, value in items[:MAX_SUMMARY_ROWS]:
            text = str(value).replace("|", "\\|").replace("\n", " ")
            if len(text) > MAX_VALUE_CHARS:
                text = text[: MAX_VALUE_CHARS - 3] + "..."
            lines.append(f"| {key} | {text} |")
        if len(items) > MAX_SUMMARY_ROWS:
            lines.append(f"| ... | {len(items) - MAX_SUMMARY_ROWS} more entries in the report |")
    return "\n".join(lines)


def publish_reports(call: StepCall, outputs: Mapping[str, BaseRef]) -> None:
    """Publish each report output's summary as a markdown artifact on the task and flow run."""
    from prefect.artifacts import create_markdown_artifact

    for name, ref in outputs.items():
        if not isinstance(ref, ReportRef):
            continue
        create_markdown_artifact(
            markdown=report_markdown(call.step_id, name, ref),
            key=_artifact_key(call.pipeline or "mlsteps", call.step_id, name),
            description=f"mlsteps {call.step_cls.name} report of step {call.step_id!r}",
        )


def cached_run_recorder(step: str | type[Step[Any]]) -> Callable[[Task[..., Any], TaskRun, State[Any]], None]:
    """An ``on_completion`` hook giving a run served from Prefect's cache a ``cached`` lineage record.

    The local runner records cache hits the same way, so lineage shows every step
    of every run, with ``cached_from`` naming the record that made the outputs.
    """

    def record_cached_run(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> None:
        if state.name != "Cached":
            return
        ctx = TaskRunContext.get()
        if ctx is None:
            raise RuntimeError("no Prefect task run context in an on_completion hook")
        started = time.time()
        call = StepCall.from_parameters(step, _resolve_futures(ctx.parameters))
        run_ctx = call.context(call.run_key())
        lineage = run_ctx.lineage
        assert lineage is not None  # build_context always attaches a recorder
        key = call.cache_key()
        sources = [r.record_id for r in lineage.records() if r.cache_key == key and r.status == "succeeded"]
        lineage.record(
            run_ctx,
            step_type=call.step_cls.name,
            step_version=call.step_cls.version,
            config=call.config,
            inputs=call.inputs,
            result=StepResult(outputs=parse_outputs(state.result())),
            status="cached",
            error=None,
            started=started,
            cache_key=key,
            cached_from=sources[-1] if sources else None,
        )

    return record_cached_run


def _step_function(step: str | type[Step[Any]]) -> Callable[..., Outputs]:
    """The task function for ``step``: parameters in, output refs (JSON dicts) out."""

    def run_step(
        config: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        *,
        step_id: str | None = None,
        upstream: Mapping[str, Mapping[str, Any]] | None = None,
        wiring: Mapping[str, str] | None = None,
        artifact_root: str | None = None,
        base_dir: str | None = None,
        mlflow: Any = None,
        resources: Any = None,
        pipeline: str | None = None,
        feast: Any = None,
        trigger: Mapping[str, Any] | None = None,
    ) -> Outputs:
        """Run one mlsteps step and return its output refs.

        Args:
            config: The step's config (a dict or the step's config model).
            inputs: Input name -> ref (dict or ref object), passed directly.
            step_id: The step's id in the pipeline (default: the step type's name).
            upstream: Upstream step id -> its task result (futures are resolved by Prefect).
            wiring: Input name -> ``'<upstream step id>.<output>'``, picked from ``upstream``.
            artifact_root: Local path (relative to ``base_dir``) or fsspec URL for outputs.
            base_dir: Directory relative paths are resolved against (the spec's directory).
            mlflow: ``mlsteps.MlflowSettings``, an ``MlflowSettingsBlock`` or a dict.
            resources: ``mlsteps.Resources`` or a dict.
            pipeline: Pipeline name for the run key (default: the flow's name).
            feast: For ``featurise``: a :class:`~mlsteps_prefect.FeastSettings` block or a
                saved block's name; its repo path and online store replace the config's.
            trigger: Why this run started (recorded as the lineage ``trigger``), e.g. the
                drift report's trigger passed by :func:`~mlsteps_prefect.drift_automation`.

        Returns:
            Output name -> ref as a JSON-compatible dict.

        Raises:
            GateFailure: The step is a gate and did not pass (the run ends Failed, not retried).
            ConfigError: Invalid config or inputs (not retried).
        """
        call = StepCall.from_parameters(
            step,
            {
                "config": config,
                "inputs": inputs,
                "step_id": step_id,
                "upstream": upstream,
                "wiring": wiring,
                "artifact_root": artifact_root,
                "base_dir": base_dir,
                "mlflow": mlflow,
                "resources": resources,
                "pipeline": pipeline,
                "feast": feast,
                "trigger": trigger,
            },
        )
        ctx = call.context(call.run_key())
        try:
            result = execute_step(call.step_cls, ctx, call.config, call.inputs)
        except GateFailure as exc:
            if isinstance(exc.report, BaseRef):
                publish_reports(call, {"report": exc.report})
            raise
        publish_reports(call, result.outputs)
        emit_drift_events(result.outputs, run_key=ctx.run_key, record_id=ctx.record_id)
        return {name: dump_ref(ref) for name, ref in result.outputs.items()}

    return run_step


def mlsteps_task(
    step: str | type[Step[Any]],
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
    cache: bool = True,
    **task_options: Any,
) -> Task[..., Outputs]:
    """A Prefect task that runs the mlsteps step ``step``.

    The step class is looked up when the task runs, so creating the task imports
    nothing and works for any registered step, built in or plugin.

    Args:
        step: Step type name (``"train"``, a plugin's name) or a :class:`mlsteps.Step` class.
        name: Task name (default: the step type's name).
        retries: Retries for failures other than config errors and failed gates.
        retry_delay_seconds: Delay between retries.
        cache: Reuse an unchanged earlier run's outputs (:class:`StepCachePolicy`);
            ``False`` uses Prefect's ``NO_CACHE``. Steps with ``cacheable = False``
            never cache either way.
        **task_options: Other :class:`prefect.Task` options (``tags``, ``timeout_seconds``...).

    Returns:
        A task returning output name -> ref dict.
    """
    step_name = step if isinstance(step, str) else step.name
    task: Task[..., Outputs] = Task(
        fn=_step_function(step),
        name=name or step_name,
        description=f"Run the mlsteps step {step_name!r}.",
        retries=retries,
        retry_delay_seconds=retry_delay_seconds,
        retry_condition_fn=retry_unless_config_or_gate,
        cache_policy=StepCachePolicy(step=step) if cache else NO_CACHE,
        result_serializer="json",
        on_completion=[cached_run_recorder(step)],
        **task_options,
    )
    return task


validate_task = mlsteps_task("validate")
featurise_task = mlsteps_task("featurise")
train_task = mlsteps_task("train")
evaluate_task = mlsteps_task("evaluate")
register_task = mlsteps_task("register")
deploy_task = mlsteps_task("deploy")
monitor_task = mlsteps_task("monitor")

__all__ = [
    "NOT_RETRIED",
    "cached_run_recorder",
    "deploy_task",
    "evaluate_task",
    "featurise_task",
    "mlsteps_task",
    "monitor_task",
    "publish_reports",
    "register_task",
    "retry_unless_config_or_gate",
    "train_task",
    "validate_task",
]
