"""Small real steps used only by the Airflow adapter's tests (besides the core's toysteps).

They are exposed as an entry-point plugin by ``conftest.py``, so DAG files parsed
in-process and Airflow CLI subprocesses find them exactly as an installed plugin.
"""

from __future__ import annotations

import csv
import json
from typing import ClassVar

from pydantic import Field

from mlsteps.context import RunContext
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import atomic_write_bytes, to_local_path


class FileConfig(StepConfig):
    path: str = Field(description="A CSV file with a column 'n', relative to the base directory.")


class ToyFile(Step[FileConfig]):
    """Turns an existing CSV file (a templated path, e.g. one per ``ds``) into a dataset ref."""

    name = "toy_file"
    config_model = FileConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: FileConfig, inputs: dict[str, BaseRef]) -> StepResult:
        path = to_local_path(ctx.resolve_path(config.path))
        with open(path, newline="") as fh:
            rows = sum(1 for _ in csv.DictReader(fh))
        ref = DatasetRef(
            uri=str(path), format="csv", content_hash=hash_file(path), rows=rows, columns={"n": "int64"}
        )
        return StepResult(outputs={"dataset": ref}, metrics={"rows": float(rows)})


class NoConfig(StepConfig):
    pass


class ToyPublish(Step[NoConfig]):
    """Consumes a report (runs after a gate); copies it."""

    name = "toy_publish"
    config_model = NoConfig
    inputs: ClassVar[dict[str, InputSpec]] = {"report": InputSpec("report")}
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        return StepResult(outputs={"report": inputs["report"]})


class ToyProbe(Step[NoConfig]):
    """Reports what MLflow settings reached the run context, without revealing the token."""

    name = "toy_probe"
    config_model = NoConfig
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: NoConfig, inputs: dict[str, BaseRef]) -> StepResult:
        token = ctx.mlflow.token
        summary = {
            "tracking_uri": ctx.tracking_uri,
            "registry_uri": ctx.registry_uri,
            "experiment": ctx.experiment_name,
            "token_len": len(token.get_secret_value()) if token is not None else 0,
            "attempt": ctx.run_key.attempt,
        }
        path = ctx.step_dir() / "probe.json"
        atomic_write_bytes(path, json.dumps(summary).encode())
        ref = ReportRef(uri=str(path), content_hash=hash_file(path), passed=True, summary=summary)
        return StepResult(outputs={"report": ref}, passed=True)
