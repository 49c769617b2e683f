"""The penguins example through Airflow, end to end, with the real built-in steps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import lineage_records, task_states, xcoms

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "penguins"


@pytest.mark.slow
def test_penguins_example_runs_under_airflow(tmp_path: Path, dag_file: Any) -> None:
    example = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    subprocess.run([sys.executable, "prepare_data.py"], cwd=example, check=True, timeout=300)
    dag = dag_file(
        f"""
        from mlsteps_airflow.dag import build_dag

        dag = build_dag({str(example / "pipeline.yaml")!r}, dag_id="penguins_e2e")
        """
    )

    dag_run = dag.test()

    steps = ["validate", "featurise", "train", "evaluate", "register"]
    assert task_states(dag_run) == dict.fromkeys(steps, "success")
    values = xcoms("penguins_e2e", dag_run.run_id)
    assert values[("evaluate", "return_value")]["passed"] is True
    (version,) = [
        ref
        for ref in values[("register", "return_value")]["outputs"].values()
        if ref["kind"] == "model_version"
    ]
    assert version["name"] == "penguins"
    records = lineage_records(example / ".mlsteps", dag_run.run_id)
    assert [r.run_key.step for r in records] == steps
    assert {(r.run_key.orchestrator, r.status) for r in records} == {("airflow", "succeeded")}
