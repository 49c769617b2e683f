"""Test steps: a gate's consumer, live and drift sources, and a ``register`` whose process dies once."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, ClassVar, Literal

from mlsteps.context import RunContext
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.steps import register as register_module
from mlsteps.steps.register import RegisterConfig, RegisterStep
from mlsteps.storage import atomic_write_bytes
from mlsteps.testing import SumConfig, ToySource


class ToyAfterGate(Step[SumConfig]):
    """Writes a marker file; runs only after the gate whose report it takes."""

    name = "toy_after_gate"
    config_model = SumConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"report": InputSpec("report")}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        path = ctx.step_dir() / "after.csv"
        atomic_write_bytes(path, b"n\n1\n")
        return StepResult(
            outputs={"dataset": DatasetRef(uri=str(path), format="csv", content_hash=hash_file(path), rows=1)}
        )


class ToyLiveSource(ToySource):
    """Like toy_source, but talks to a 'live system', so it must never be served from cache."""

    name = "toy_live_source"
    cacheable = False


class DriftConfig(StepConfig):
    verdict: Literal["drift", "no_drift"] = "drift"
    model: str | None = None


class ToyDriftReport(Step[DriftConfig]):
    """Writes a drift report as the monitor step does (``summary["verdict"]``), without the statistics."""

    name = "toy_drift_report"
    config_model = DriftConfig
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}
    cacheable = False

    def run(self, ctx: RunContext, config: DriftConfig, inputs: dict[str, BaseRef]) -> StepResult:
        summary: dict[str, object] = {"verdict": config.verdict, "reasons": [f"toy says {config.verdict}"]}
        if config.model:
            summary["model"] = config.model
        path = ctx.step_dir() / "drift_report.json"
        atomic_write_bytes(path, json.dumps(summary).encode())
        report = ReportRef(
            uri=str(path), content_hash=hash_file(path), passed=config.verdict == "no_drift", summary=summary
        )
        return StepResult(outputs={"report": report})


class FileConfig(StepConfig):
    path: str


class ToyDatasetFile(Step[FileConfig]):
    """Hands an existing parquet file on as a dataset: a pipeline's source without a validation backend."""

    name = "toy_dataset_file"
    config_model = FileConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: FileConfig, inputs: dict[str, BaseRef]) -> StepResult:
        path = Path(ctx.resolve_path(config.path))
        return StepResult(outputs={"dataset": DatasetRef(uri=str(path), content_hash=hash_file(path))})


#: Written in the step's run directory (the same for every attempt of the run key) before the kill.
KILL_MARKER = "killed-after-create.json"


class KilledMidRegister(RegisterStep):
    """The real ``register``, whose process SIGKILLs itself once, right after creating the version.

    The kill comes after MLflow created the version (tagged with the run key) and
    before its tags, model card and aliases are set, so nothing can be recorded: the
    orchestrator only sees its worker process die (``mlsteps.testing.KilledRegister``
    dies later, after the whole registration). Whether an attempt is the first is told
    by :data:`KILL_MARKER` in the step's run directory, which also tells the test the
    killed attempt's version, pid and run key. The hook is the step module's
    ``_create_version``, wrapped for this one call and restored after.
    """

    name = "killed_mid_register"

    def run(self, ctx: RunContext, config: RegisterConfig, inputs: dict[str, BaseRef]) -> StepResult:
        marker = ctx.step_dir() / KILL_MARKER
        if marker.exists():
            return super().run(ctx, config, inputs)
        create = register_module._create_version

        def create_then_die(*args: Any, **kwargs: Any) -> str:
            version = create(*args, **kwargs)
            info = {"version": version, "pid": os.getpid(), "run_key": str(ctx.run_key)}
            atomic_write_bytes(marker, json.dumps(info).encode())
            os.kill(os.getpid(), signal.SIGKILL)
            raise AssertionError("unreachable: the process was killed")

        register_module._create_version = create_then_die
        try:
            return super().run(ctx, config, inputs)
        finally:
            register_module._create_version = create
