"""Small but real steps for testing the runner, spec and CLI without heavy backends.

They read and write real files under the artifact root, so caching, lineage and
failure handling are exercised exactly as with the built-in steps.
"""

from __future__ import annotations

import csv
from typing import ClassVar

from pydantic import Field

from mlsteps.context import RunContext
from mlsteps.errors import GateFailure
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import atomic_write_bytes, to_local_path


class SourceConfig(StepConfig):
    count: int = Field(ge=0, le=1_000_000, description="How many numbers to write.")
    start: int = Field(0, description="First number.")


class ToySource(Step[SourceConfig]):
    """Writes the numbers start..start+count-1 to a CSV file."""

    name = "toy_source"
    description = "write a CSV of consecutive integers"
    config_model = SourceConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SourceConfig, inputs: dict[str, BaseRef]) -> StepResult:
        path = ctx.step_dir() / "numbers.csv"
        rows = "\n".join(["n", *(str(config.start + i) for i in range(config.count))]) + "\n"
        atomic_write_bytes(path, rows.encode())
        ref = DatasetRef(
            uri=str(path),
            format="csv",
            content_hash=hash_file(path),
            rows=config.count,
            columns={"n": "int64"},
        )
        return StepResult(outputs={"dataset": ref}, metrics={"rows": float(config.count)})


class SumConfig(StepConfig):
    min_sum: float = Field(0, description="The gate: the sum must be at least this.")


class ToySum(Step[SumConfig]):
    """Sums the numbers of a dataset; a gate on the sum."""

    name = "toy_sum"
    description = "sum a CSV column, gate on a minimum"
    config_model = SumConfig
    gate = True
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        with open(to_local_path(inputs["dataset"].uri), newline="") as fh:
            total = float(sum(int(row["n"]) for row in csv.DictReader(fh)))
        passed = total >= config.min_sum
        path = ctx.step_dir() / "sum.json"
        atomic_write_bytes(path, f'{{"sum": {total}}}'.encode())
        report = ReportRef(uri=str(path), content_hash=hash_file(path), passed=passed, summary={"sum": total})
        if not passed:
            raise GateFailure("toy_sum", [f"sum {total} < min_sum {config.min_sum}"], report=report)
        return StepResult(outputs={"report": report}, metrics={"sum": total}, passed=True)


class ToyCopy(Step[SumConfig]):
    """Copies a dataset file (used to build longer chains and cycles)."""

    name = "toy_copy"
    config_model = SumConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        src = to_local_path(inputs["dataset"].uri)
        path = ctx.step_dir() / src.name
        atomic_write_bytes(path, src.read_bytes())
        ref = inputs["dataset"].model_copy(update={"uri": str(path)})
        return StepResult(outputs={"dataset": ref})


class ToyCrash(Step[SumConfig]):
    """Fails with an unexpected exception, as buggy user code would."""

    name = "toy_crash"
    config_model = SumConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset", required=False)}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: SumConfig, inputs: dict[str, BaseRef]) -> StepResult:
        raise ZeroDivisionError("boom")
