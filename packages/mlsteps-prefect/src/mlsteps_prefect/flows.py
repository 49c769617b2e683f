"""``build_flow``: a Prefect flow that runs a whole ``pipeline.yaml``.

The spec is loaded and validated when the flow is built, so a broken spec fails
at import (deployment, ``prefect deploy``), not halfway through a run. Each step
becomes one task run, submitted in dependency order with its upstream task
futures as parameters: Prefect runs independent steps concurrently and leaves
every step downstream of a failure ``NotReady``. Artifact root and MLflow
settings come from the spec's defaults, relative to the spec file, as with
``mlsteps run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import Flow
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from mlsteps.errors import MlstepsError
from mlsteps.registry import BUILTIN_STEPS
from mlsteps.spec import load_spec
from mlsteps_prefect import tasks as _tasks
from mlsteps_prefect.feast import FEAST_STEPS
from mlsteps_prefect.tasks import Outputs, mlsteps_task

if TYPE_CHECKING:
    import os

    from prefect import Task
    from prefect.futures import PrefectFuture

    from mlsteps.spec import PipelineSpec, ResolvedStep

#: Flow result: step id -> that step's outputs (output name -> ref dict).
FlowResult = dict[str, Outputs]


class PipelineFailed(MlstepsError):
    """Some steps of a flow run failed (and the steps downstream of them did not run)."""

    def __init__(self, pipeline: str, failed: dict[str, str], not_run: list[str]) -> None:
        self.failed = failed
        self.not_run = not_run
        lines = [f"pipeline {pipeline!r}: {len(failed)} step(s) failed"]
        lines += [f"  - {sid}: {message}" for sid, message in failed.items()]
        if not_run:
            lines.append(f"  not run (upstream failed): {', '.join(not_run)}")
        super().__init__("\n".join(lines))


def step_task(step: ResolvedStep) -> Task[..., Outputs]:
    """The task for one spec step: the built-in step's task or a generic one, with the spec's options."""
    step_type = step.spec.uses or step.id
    base = getattr(_tasks, f"{step_type}_task") if step_type in BUILTIN_STEPS else mlsteps_task(step_type)
    options: dict[str, Any] = {"name": step.id, "retries": step.spec.retries}
    if not step.spec.cache:
        options["cache_policy"] = NO_CACHE
    return base.with_options(**options)


def build_flow(
    spec_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    artifact_root: str | None = None,
    mlflow_block: str | None = None,
    feast_block: str | None = None,
    **flow_options: Any,
) -> Flow[..., FlowResult]:
    """Build a Prefect flow that runs the pipeline in ``spec_path``.

    Args:
        spec_path: The ``pipeline.yaml``; relative paths in it are resolved against its directory.
        name: Flow name (default: the pipeline's name).
        artifact_root: Default for the flow's ``artifact_root`` parameter (default: the spec's).
        mlflow_block: Default for the flow's ``mlflow_block`` parameter: the name of a saved
            :class:`~mlsteps_prefect.blocks.MlflowSettingsBlock` replacing the spec's
            ``defaults.mlflow`` (default: none, use the spec).
        feast_block: Default for the flow's ``feast_block`` parameter: the name of a saved
            :class:`~mlsteps_prefect.blocks.FeastSettings` applied to every ``featurise`` step
            (repo path, online store and its secret connection string).
        **flow_options: Other :class:`prefect.Flow` options (``retries``, ``task_runner``...).

    Returns:
        A flow whose parameters are ``artifact_root``, ``mlflow_block``, ``feast_block`` and
        ``trigger`` (why the run started, recorded in each step's lineage; set by
        :func:`~mlsteps_prefect.drift_automation`) and whose result
        maps each step id to its output refs. It fails (raising :class:`PipelineFailed`)
        when any step fails; steps downstream of a failure do not run.

    Raises:
        ConfigError: The spec is invalid (every problem is listed).

    Example:
        ```python
        from mlsteps_prefect import build_flow

        flow = build_flow("examples/penguins/pipeline.yaml")
        if __name__ == "__main__":
            flow()
        ```
    """
    spec = load_spec(Path(spec_path))
    step_tasks = {sid: step_task(spec.steps[sid]) for sid in spec.order}

    def run_pipeline(
        artifact_root: str | None = artifact_root,
        mlflow_block: str | None = mlflow_block,
        feast_block: str | None = feast_block,
        trigger: dict[str, Any] | None = None,
    ) -> FlowResult:
        return _run(
            spec,
            step_tasks,
            artifact_root=artifact_root,
            mlflow_block=mlflow_block,
            feast_block=feast_block,
            trigger=trigger,
        )

    run_pipeline.__doc__ = spec.model.description or f"Run the mlsteps pipeline {spec.name!r}."
    return Flow(
        fn=run_pipeline,
        name=name or spec.name,
        description=spec.model.description or None,
        **flow_options,
    )


def _run(
    spec: PipelineSpec,
    step_tasks: dict[str, Task[..., Outputs]],
    *,
    artifact_root: str | None,
    mlflow_block: str | None,
    feast_block: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> FlowResult:
    """The flow body: submit every step with its upstream futures, then collect the outcome."""
    if mlflow_block:
        from mlsteps_prefect.blocks import MlflowSettingsBlock

        block = MlflowSettingsBlock.load(mlflow_block)
        if not isinstance(block, MlflowSettingsBlock):  # load is sync here: the flow function is sync
            raise TypeError(f"block {mlflow_block!r} is a {type(block).__name__}, not an MlflowSettingsBlock")
        mlflow = block.to_settings()
    else:
        mlflow = spec.model.defaults.mlflow
    root = spec.artifact_root(artifact_root)
    futures: dict[str, PrefectFuture[Outputs]] = {}
    for sid in spec.order:
        step = spec.steps[sid]
        extra: dict[str, Any] = {"trigger": trigger}
        if feast_block and step.step_cls.name in FEAST_STEPS:
            extra["feast"] = feast_block
        futures[sid] = step_tasks[sid].submit(
            config=step.spec.config,
            step_id=sid,
            upstream={up: futures[up] for up in step.upstream},
            wiring={name: f"{up}.{out}" for name, (up, out) in step.inputs.items()},
            artifact_root=root,
            base_dir=str(spec.base_dir),
            mlflow=mlflow,
            resources=step.spec.resources,
            pipeline=spec.name,
            **extra,
        )
    wait(list(futures.values()))
    results: FlowResult = {}
    failed: dict[str, str] = {}
    not_run: list[str] = []
    for sid, future in futures.items():
        state = future.state
        if state.is_completed():
            results[sid] = future.result()
        elif state.is_failed() or state.is_crashed():
            failed[sid] = state.message or state.name or "failed"
        else:
            not_run.append(sid)
    if failed or not_run:
        raise PipelineFailed(spec.name, failed, not_run)
    return results
