"""The penguins example through Airflow, end to end, with the real built-in steps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import asset_events, lineage_records, queued_asset_runs, task_states, unpause, xcoms

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "penguins"


@pytest.mark.slow
def test_penguins_example_runs_under_airflow(tmp_path: Path, dag_file: Any) -> None:
    example = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    subprocess.run([sys.executable, "prepare_data.py"], cwd=example, check=True, timeout=300)
    consumer = dag_file(
        """
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG

        from mlsteps_airflow import model_asset

        with DAG("on_new_penguins_model", schedule=[model_asset("penguins")]) as dag:
            EmptyOperator(task_id="noop")
        """
    )
    consumer.test()  # serialises the consumer (and its asset schedule) into the metadata DB
    unpause("on_new_penguins_model")
    dag = dag_file(
        f"""
        from mlsteps_airflow.dag import build_dag

        dag = build_dag({str(example / "pipeline.yaml")!r}, dag_id="penguins_e2e")
        """
    )

    try:
        dag_run = dag.test()
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

    steps = ["validate", "featurise", "train", "evaluate", "register", "deploy"]
    assert task_states(dag_run) == dict.fromkeys(steps, "success")
    values = xcoms("penguins_e2e", dag_run.run_id)
    assert values[("evaluate", "return_value")]["passed"] is True
    (version,) = [
        ref
        for ref in values[("register", "return_value")]["outputs"].values()
        if ref["kind"] == "model_version"
    ]
    assert version["name"] == "penguins"
    deployment = values[("deploy", "deployment")]
    assert deployment["status"] == "healthy"
    assert deployment["model_uri"] == f"models:/penguins/{version['version']}"
    records = lineage_records(example / ".mlsteps", dag_run.run_id)
    assert [r.run_key.step for r in records] == steps
    assert {(r.run_key.orchestrator, r.status) for r in records} == {("airflow", "succeeded")}

    # Data-aware scheduling: register emitted an event on the model's asset, with the
    # version in its extra, and queued a run of the DAG scheduled on that asset.
    events = asset_events("x-mlsteps://models/penguins")
    assert [(e["source_dag_id"], e["source_task_id"]) for e in events] == [("penguins_e2e", "register")]
    assert events[0]["extra"]["version"] == version["version"]
    assert events[0]["extra"]["aliases"] == version["aliases"]
    assert events[0]["extra"]["run_key"] == f"airflow/penguins_e2e/{dag_run.run_id}/register#1"
    assert "on_new_penguins_model" in queued_asset_runs()
