"""A test step that consumes a gate's report, so a failed gate has a downstream step."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

from mlsteps.context import RunContext
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
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
