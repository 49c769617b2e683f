"""Helpers of the bad-data and backends-down tests: specs on the penguins example, a run, state checks.

A case writes its data (or breaks a backend) under ``tmp_path``, runs ``mlsteps run
--json`` in-process and checks what is left behind: the failing step's lineage record,
the run cache, the embedded MLflow database and the steps' output directories.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _rel_support import REPO
from click.testing import CliRunner

from mlsteps.cli import main

EXAMPLE = REPO / "examples" / "penguins"
#: Small settings so a pipeline trains in a second.
TRAIN: dict[str, Any] = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 10, "max_depth": 4},
    "target": "species",
    "exclude": ["penguin_id", "event_timestamp"],
    "seed": 1,
}
EVALUATE: dict[str, Any] = {"target": "species", "thresholds": {"accuracy": ">= 0.5"}}
REGISTER: dict[str, Any] = {"name": "penguins_rel", "aliases": ["challenger"]}
FEATURISE: dict[str, Any] = {
    "repo_path": "feature_repo",
    "feature_service": "penguin_features",
    "entity_columns": ["penguin_id"],
    "event_timestamp_column": "event_timestamp",
    "label_columns": ["species"],
}
#: The only expectation the generic pipelines run: the data's problems must be caught by the steps.
EXPECTATIONS: list[dict[str, Any]] = [{"type": "column_exists", "column": "species"}]


def build_penguins(out_dir: Path) -> Path:
    """``examples/penguins/prepare_data.py``'s data (Palmer penguins + derived id and time)."""
    spec = importlib.util.spec_from_file_location("rel_prepare_penguins", EXAMPLE / "prepare_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.build(out_dir)
    return path


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def copy_feature_repo(root: Path, penguins: Path) -> Path:
    """The example's Feast repo with its data next to it, as the repo's relative paths expect."""
    repo = root / "feature_repo"
    shutil.copytree(EXAMPLE / "feature_repo", repo)
    (root / "data").mkdir(exist_ok=True)
    shutil.copy(penguins, root / "data" / "penguins.parquet")
    return repo


def write_spec(
    root: Path,
    *,
    data: str,
    steps: tuple[str, ...],
    expectations: list[dict[str, Any]] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    mlflow: dict[str, Any] | None = None,
) -> Path:
    """A pipeline of ``steps`` (from validate, featurise, train, evaluate, register) on ``data``."""
    configs: dict[str, dict[str, Any]] = {
        "validate": {"data": data, "expectations": expectations or EXPECTATIONS},
        "featurise": dict(FEATURISE),
        "train": dict(TRAIN),
        "evaluate": dict(EVALUATE),
        "register": dict(REGISTER),
    }
    for step, update in (overrides or {}).items():
        configs[step].update(update)
    upstream = {
        "featurise": {"dataset": "validate.dataset"},
        "train": {"dataset": "featurise.dataset" if "featurise" in steps else "validate.dataset"},
        "evaluate": {"model": "train.model", "dataset": "train.test_data"},
        "register": {"model": "train.model", "evaluation": "evaluate.report"},
    }
    body: dict[str, Any] = {
        "name": "rel_data",
        "defaults": {"artifact_root": "art", **({"mlflow": mlflow} if mlflow else {})},
        "steps": {
            step: {"config": configs[step], **({"inputs": upstream[step]} if step in upstream else {})}
            for step in steps
        },
    }
    spec = root / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    return spec


@dataclass
class Run:
    """``mlsteps run --json``: its exit code, summary and output."""

    exit_code: int
    summary: dict[str, Any]
    output: str

    def step(self, step_id: str) -> dict[str, Any]:
        found: dict[str, Any] = next(s for s in self.summary["steps"] if s["step"] == step_id)
        return found


def run_pipeline(spec: Path, *args: str) -> Run:
    result = CliRunner().invoke(main, ["run", str(spec), "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout.strip(), f"no JSON summary (exit {result.exit_code}):\n{result.output}"
    return Run(result.exit_code, json.loads(result.stdout), result.output)


def lineage_records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "lineage").glob("*/*.json"))]


def check_failed_run_left_nothing(root: Path, run: Run, *, failed: str, status: str, error_type: str) -> str:
    """The state a failed run must leave: returns the failing step's recorded error.

    - the failing step's lineage record has ``status`` and an error of ``error_type``; no
      step downstream of it has a record;
    - every run-cache entry was written by a succeeded step (none by the failing one);
    - the failing step wrote no outputs into its directory;
    - the embedded MLflow database, if any, holds no run of the failing step, no
      registered model and no model version.
    """
    records = lineage_records(root)
    order = [s["step"] for s in run.summary["steps"]]
    mine = [r for r in records if r["run_key"]["step"] == failed]
    assert [r["status"] for r in mine] == [status], [(r["run_key"]["step"], r["status"]) for r in records]
    error = str(mine[0]["error"])
    # Errors are recorded as "<type>: <message>"; a failed gate as its message, "gate '<step>' failed: ...".
    prefix = f"gate '{failed}' failed: " if error_type == "GateFailure" else f"{error_type}: "
    assert error.startswith(prefix), error
    # A failed gate keeps its report (what adapters publish); anything else keeps no output.
    kept = {"report"} if status == "gate_failed" else set()
    assert set(mine[0]["outputs"]) == kept, mine[0]["outputs"]
    report_files = {
        Path(str(mine[0]["outputs"]["report"]["ref"][key])).name
        for key in ("uri", "html_uri")
        if "report" in mine[0]["outputs"] and mine[0]["outputs"]["report"]["ref"].get(key)
    }
    later = set(order[order.index(failed) + 1 :])
    assert not [r for r in records if r["run_key"]["step"] in later]
    assert all(s["status"] == "skipped" for s in run.summary["steps"] if s["step"] in later)

    succeeded = {r["record_id"] for r in records if r["status"] == "succeeded"}
    for entry in (root / "cache").glob("*.json"):
        assert json.loads(entry.read_text())["record_id"] in succeeded, entry
    assert mine[0]["record_id"] not in {
        json.loads(e.read_text())["record_id"] for e in (root / "cache").glob("*.json")
    }
    step_dir = root / "runs" / run.summary["run_id"] / failed
    left = sorted(p.name for p in step_dir.rglob("*") if p.is_file()) if step_dir.exists() else []
    assert set(left) <= report_files, left

    db = root / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            for table in ("registered_models", "model_versions"):
                assert conn.execute(f"select count(*) from {table}").fetchone() == (0,), table
            runs = conn.execute("select name from runs").fetchall()
            assert (failed,) not in runs, runs
    return error


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip()
