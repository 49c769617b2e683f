"""The penguins example end to end through the local runner, as `make demo` runs it.

Real GX, Feast, scikit-learn and MLflow (SQLite under the artifact root). The
example directory is copied to a temp dir so the test leaves the checkout clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "penguins"
BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def servers_under(root: Path) -> list[int]:
    """Pids of running processes whose working directory is under ``root`` (the deploy step's servers)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cwd", "status"]):
        cwd = proc.info.get("cwd")
        if cwd and str(cwd).startswith(str(root)) and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            pids.append(proc.info["pid"])
    return pids


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("example") / "penguins"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    out = run(str(BIN / "python"), "prepare_data.py", cwd=target)
    assert out.returncode == 0, out.stderr
    yield target
    # The deploy step leaves the model served (as `make demo` does until its last line): stop it.
    if (target / ".mlsteps" / "deployments" / "penguins" / "state.json").exists():
        stop = run(str(BIN / "mlsteps"), "deploy", "stop", "--spec", "pipeline.yaml", cwd=target)
        assert stop.returncode == 0, stop.stdout + stop.stderr
    assert servers_under(target / ".mlsteps") == []


@pytest.fixture(scope="module")
def first_run(example: Path) -> dict[str, object]:
    out = run(str(BIN / "mlsteps"), "run", "pipeline.yaml", "--json", "--run-id", "first", cwd=example)
    assert out.returncode == 0, out.stdout + out.stderr
    summary: dict[str, object] = json.loads(out.stdout)
    return summary


def steps_of(summary: dict[str, object]) -> dict[str, dict[str, object]]:
    return {s["step"]: s for s in summary["steps"]}  # type: ignore[attr-defined,index]


def test_every_step_succeeds_registers_a_champion_and_serves_it(
    example: Path, first_run: dict[str, object]
) -> None:
    steps = steps_of(first_run)
    assert list(steps) == ["validate", "featurise", "train", "evaluate", "register", "deploy"]
    assert {s["status"] for s in steps.values()} == {"succeeded"}
    assert steps["evaluate"]["metrics"]["accuracy"] >= 0.9  # type: ignore[index]
    version = steps["register"]["outputs"]["model_version"]  # type: ignore[index]
    assert version["name"] == "penguins"
    assert "champion" in version["aliases"]
    deployment = steps["deploy"]["outputs"]["deployment"]  # type: ignore[index]
    assert deployment["status"] == "healthy"
    assert deployment["model_uri"] == f"models:/penguins/{version['version']}"
    assert deployment["endpoint"].startswith("http://127.0.0.1:")

    # One real prediction on the model's input example, as `make demo` prints it.
    out = run(
        str(BIN / "mlsteps"), "deploy", "predict", "--spec", "pipeline.yaml", "--input-example", cwd=example
    )
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("predictions:"))
    predictions = json.loads(line.partition(":")[2])
    assert predictions
    assert set(predictions) <= {"Adelie", "Chinstrap", "Gentoo"}


def test_second_run_reuses_cache_and_the_registered_version(
    example: Path, first_run: dict[str, object]
) -> None:
    out = run(str(BIN / "mlsteps"), "run", "pipeline.yaml", "--json", "--run-id", "second", cwd=example)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = steps_of(json.loads(out.stdout))
    assert steps["validate"]["status"] == "cached"
    assert steps["featurise"]["status"] == "cached"
    assert steps["train"]["status"] == "cached"
    first_version = steps_of(first_run)["register"]["outputs"]["model_version"]  # type: ignore[index]
    assert steps["register"]["outputs"]["model_version"]["version"] == first_version["version"]  # type: ignore[index]
    # The same version is already served: the deploy step reuses that server instead of starting another.
    first_deployment = steps_of(first_run)["deploy"]["outputs"]["deployment"]  # type: ignore[index]
    deployment = steps["deploy"]["outputs"]["deployment"]  # type: ignore[index]
    assert steps["deploy"]["status"] == "succeeded"
    assert deployment["metadata"]["reused"] is True
    assert deployment["endpoint"] == first_deployment["endpoint"]
    assert len(servers_under(example / ".mlsteps")) == 1


def test_lineage_walks_from_the_model_back_to_the_raw_data(
    example: Path, first_run: dict[str, object]
) -> None:
    out = run(
        str(BIN / "mlsteps"),
        "lineage",
        "--spec",
        "pipeline.yaml",
        "--model",
        "penguins",
        "--json",
        cwd=example,
    )
    assert out.returncode == 0, out.stderr
    node = json.loads(out.stdout)
    chain = []
    while node:
        chain.append(node["record"]["step_type"])
        parents = node["parents"]
        node = parents.get("model") or parents.get("dataset") or None
    assert chain == ["register", "train", "featurise", "validate"]


def test_reproduce_matches_every_metric_then_refuses_changed_data(
    example: Path, first_run: dict[str, object]
) -> None:
    out = run(
        str(BIN / "mlsteps"), "reproduce", "models:/penguins@champion", "--spec", "pipeline.yaml", cwd=example
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reproduced: every metric matches" in out.stdout
    for step in ("validate", "featurise", "train", "evaluate"):
        assert step in out.stdout
    assert "accuracy" in out.stdout
    assert " NO " not in out.stdout

    data = example / "data" / "penguins.parquet"
    original = data.read_bytes()
    try:
        import pandas as pd

        frame = pd.read_parquet(data)
        frame.loc[0, "body_mass_g"] = 9999.0
        frame.to_parquet(data, index=False)
        refused = run(
            str(BIN / "mlsteps"), "reproduce", "models:/penguins/1", "--spec", "pipeline.yaml", cwd=example
        )
    finally:
        data.write_bytes(original)
    assert refused.returncode == 1
    assert str(data) in refused.stderr
    assert "changed since the model was trained: recorded sha256:" in refused.stderr
    assert ", now sha256:" in refused.stderr


def test_regression_example_runs_end_to_end(tmp_path: Path) -> None:
    target = tmp_path / "diabetes"
    shutil.copytree(ROOT / "examples" / "diabetes", target, ignore=shutil.ignore_patterns(".mlsteps", "data"))
    assert run(str(BIN / "python"), "prepare_data.py", cwd=target).returncode == 0
    out = run(str(BIN / "mlsteps"), "run", "pipeline.yaml", "--json", cwd=target)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = steps_of(json.loads(out.stdout))
    assert list(steps) == ["validate", "train", "evaluate", "register"]
    assert steps["evaluate"]["metrics"]["r2"] >= 0.3  # type: ignore[index]
    assert steps["register"]["outputs"]["model_version"]["aliases"] == ["challenger", "champion"]  # type: ignore[index]


def test_failing_validation_stops_the_run_before_anything_is_registered(tmp_path: Path) -> None:
    target = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    assert run(str(BIN / "python"), "prepare_data.py", cwd=target).returncode == 0
    spec = target / "pipeline.yaml"
    spec.write_text(
        spec.read_text().replace(
            "{type: row_count_between, min: 300,", "{type: row_count_between, min: 5000,"
        )
    )
    out = run(str(BIN / "mlsteps"), "run", "pipeline.yaml", "--json", cwd=target)
    assert out.returncode == 1, out.stdout + out.stderr
    steps = steps_of(json.loads(out.stdout))
    assert steps["validate"]["status"] == "gate_failed"
    assert "row_count_between" in str(steps["validate"]["error"])
    assert {steps[s]["status"] for s in ("featurise", "train", "evaluate", "register", "deploy")} == {
        "skipped"
    }
    # Nothing reached the registry: the embedded MLflow DB has no registered model.
    import sqlite3

    db = target / ".mlsteps" / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("select count(*) from registered_models").fetchone() == (0,)
