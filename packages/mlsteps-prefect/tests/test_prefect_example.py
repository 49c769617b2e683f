"""The penguins example through build_flow with the real built-in steps (MLflow on SQLite)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect_helpers import artifacts, lineage, state_names

from mlsteps.refs import ModelVersionRef, parse_ref
from mlsteps_prefect import build_flow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "penguins"


@pytest.mark.slow
def test_penguins_example_runs_under_prefect(tmp_path: Path) -> None:
    example = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    subprocess.run([sys.executable, str(example / "prepare_data.py")], check=True, timeout=300, cwd=example)

    try:
        state = build_flow(example / "pipeline.yaml")(return_state=True)
    finally:
        # The example ends by serving the model (deploy step): stop it, whatever happened.
        subprocess.run(
            [
                str(Path(sys.executable).parent / "mlsteps"),
                "deploy",
                "stop",
                "--spec",
                str(example / "pipeline.yaml"),
            ],
            check=False,
            timeout=120,
            capture_output=True,
        )

    assert state.is_completed(), state.message
    assert set(state_names(state).values()) == {"Completed"}
    version = parse_ref(state.result()["register"]["model_version"])
    assert isinstance(version, ModelVersionRef)
    assert version.name == "penguins"
    records = lineage(example / ".mlsteps", state)
    assert sorted(r.run_key.step for r in records) == sorted(
        ["validate", "featurise", "train", "evaluate", "register", "deploy"]
    )
    assert state.result()["deploy"]["deployment"]["status"] == "healthy"
    assert {r.run_key.orchestrator for r in records} == {"prefect"}
    keys = {a.key for a in artifacts(state)}
    assert {"penguins-validate-report", "penguins-evaluate-report"} <= keys
