"""Extra toy steps for the Dagster tests: a two-output gate and steps downstream of a report.

They complement ``mlsteps.testing`` with the shapes the
Dagster mapping must handle: a gate with a dataset and a report (like
``validate``), a step consuming a gate's report (like ``register``), and a probe
that reports the run context it was given.
"""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import Field

from mlsteps.context import RunContext
from mlsteps.errors import GateFailure
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, RefKind, ReportRef
from mlsteps.step import InputSpec, NoConfig, Step, StepConfig, StepResult
from mlsteps.storage import atomic_write_bytes, to_local_path


class GateConfig(StepConfig):
    max_rows: int = Field(description="The gate: the dataset may have at most this many rows.")


class ToyGate(Step[GateConfig]):
    """Passes a dataset through and gates on its row count, like ``validate``."""

    name = "toy_gate"
    config_model = GateConfig
    gate = True
    inputs: ClassVar[dict[str, InputSpec]] = {"dataset": InputSpec("dataset")}
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset", "report": "report"}

    def run(self, ctx: RunContext, config: GateConfig, inputs: dict[str, BaseRef]) -> StepResult:
        dataset = inputs["dataset"]
        rows = int(getattr(dataset, "rows", 0) or 0)
        passed = rows <= config.max_rows
        path = ctx.step_dir() / "gate.json"
        atomic_write_bytes(path, json.dumps({"rows": rows}).encode())
        report = ReportRef(uri=str(path), content_hash=hash_file(path), passed=passed, summary={"rows": rows})
        if not passed:
            raise GateFailure("toy_gate", [f"{rows} rows > max_rows {config.max_rows}"], report=report)
        return StepResult(outputs={"dataset": dataset, "report": report}, metrics={"rows": rows}, passed=True)


class ToyAfter(Step[NoConfig]):
    """Reads a gate's report and writes a note, as ``register`` reads ``evaluate``'s report."""

    name = "toy_after"
    config_model = NoConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"report": InputSpec("report")}
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        upstream = json.loads(to_local_path(inputs["report"].uri).read_text())
        path = ctx.step_dir() / "note.json"
        atomic_write_bytes(path, json.dumps({"seen": upstream}).encode())
        return StepResult(
            outputs={"report": ReportRef(uri=str(path), content_hash=hash_file(path), passed=True)}
        )


class ToyProbe(Step[NoConfig]):
    """Reports the MLflow settings and run key it was given (never a secret's value)."""

    name = "toy_probe"
    config_model = NoConfig
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        token = ctx.mlflow.token.get_secret_value() if ctx.mlflow.token else None
        summary = {
            "tracking_uri": ctx.mlflow.tracking_uri,
            "experiment": ctx.experiment_name,
            "token_length": len(token) if token else 0,
            "artifact_root": ctx.artifact_root,
            "run_key": ctx.run_key.model_dump(),
        }
        path = ctx.step_dir() / "probe.json"
        atomic_write_bytes(path, json.dumps(summary).encode())
        return StepResult(
            outputs={
                "report": ReportRef(uri=str(path), content_hash=hash_file(path), passed=True, summary=summary)
            }
        )
