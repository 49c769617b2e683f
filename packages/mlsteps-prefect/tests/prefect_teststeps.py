"""A test step that consumes a gate's report, so a failed gate has a downstream step."""

from __future__ import annotations

from typing import ClassVar

from mlsteps.context import RunContext
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, RefKind
from mlsteps.step import InputSpec, Step, StepResult
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
