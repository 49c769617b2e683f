"""build_dag end to end with real Airflow: dag.test() against a migrated SQLite metadata DB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow_testing import lineage_records, task_states, write_spec, xcoms

from mlsteps.testing import check_retried_deploy, stop_deployments

TOY_SPEC = """\
name: toy
defaults:
  artifact_root: art
steps:
  source:
    uses: toy_source
    config: {count: 10}
  total:
    uses: toy_sum
    config: {min_sum: 40}
    inputs: {dataset: source.dataset}
    retries: 2
  publish:
    uses: toy_publish
    inputs: {report: total.report}
"""


def _dag_source(spec: Path, dag_id: str, extra: str = "") -> str:
    return f"""
from datetime import timedelta
from mlsteps_airflow.dag import build_dag

dag = build_dag({str(spec)!r}, dag_id={dag_id!r}{extra})
"""


def test_toy_spec_runs_end_to_end(tmp_path: Path, dag_file: Any) -> None:
    spec = write_spec(tmp_path, TOY_SPEC)
    dag = dag_file(_dag_source(spec, "toy_e2e"))

    dag_run = dag.test()

    assert dag_run.state == "success"
    assert task_states(dag_run) == {"source": "success", "total": "success", "publish": "success"}
    values = xcoms("toy_e2e", dag_run.run_id)
    dataset = values[("source", "dataset")]
    assert dataset["kind"] == "dataset"
    assert dataset["rows"] == 10
    assert Path(dataset["uri"]).is_file()
    # Artifacts land under the spec's artifact root, resolved against the spec's directory.
    assert Path(dataset["uri"]).is_relative_to(tmp_path / "art" / "runs")
    total = values[("total", "return_value")]
    assert total["passed"] is True
    assert total["metrics"] == {"sum": 45.0}
    assert total["outputs"]["report"] == values[("total", "report")]
    # The report went downstream over XCom.
    assert values[("publish", "report")] == values[("total", "report")]

    records = lineage_records(tmp_path / "art", dag_run.run_id)
    assert [r.run_key.step for r in records] == ["source", "total", "publish"]
    assert {r.status for r in records} == {"succeeded"}
    for record in records:
        assert record.run_key.orchestrator == "airflow"
        assert record.run_key.pipeline == "toy_e2e"
        assert record.run_key.run_id == dag_run.run_id
        assert record.run_key.attempt == 1
    source, total_record, _ = records
    assert total_record.inputs["dataset"].fingerprint == source.outputs["dataset"].fingerprint


def test_failed_gate_fails_the_task_and_blocks_downstream(tmp_path: Path, dag_file: Any) -> None:
    spec = write_spec(tmp_path, TOY_SPEC.replace("min_sum: 40", "min_sum: 1000"))
    # retry_delay 0: were the gate retried, the test would see it instead of waiting 5 minutes.
    dag = dag_file(_dag_source(spec, "toy_gate", ", default_args={'retry_delay': timedelta(seconds=0)}"))
    assert dag.get_task("total").retries == 2

    dag_run = dag.test()

    assert dag_run.state == "failed"
    assert task_states(dag_run) == {"source": "success", "total": "failed", "publish": "upstream_failed"}
    total_ti = dag_run.get_task_instance("total")
    # A failed gate is not retried even though the spec asks for 2 retries.
    assert total_ti.try_number == 1
    values = xcoms("toy_gate", dag_run.run_id)
    assert values[("total", "report")]["passed"] is False
    assert ("total", "return_value") not in values
    assert not any(task == "publish" for task, _ in values)

    records = lineage_records(tmp_path / "art", dag_run.run_id)
    assert [(r.run_key.step, r.status) for r in records] == [
        ("source", "succeeded"),
        ("total", "gate_failed"),
    ]
    assert "min_sum 1000" in (records[1].error or "")


def test_unexpected_errors_are_retried(tmp_path: Path, dag_file: Any) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: toy_crashing
        defaults: {artifact_root: art}
        steps:
          crash: {uses: toy_crash, retries: 1}
        """,
    )
    dag = dag_file(_dag_source(spec, "toy_crash", ", default_args={'retry_delay': timedelta(seconds=0)}"))

    dag_run = dag.test()

    assert task_states(dag_run) == {"crash": "failed"}
    assert dag_run.get_task_instance("crash").try_number == 2
    records = lineage_records(tmp_path / "art", dag_run.run_id)
    assert [(r.run_key.attempt, r.status) for r in records] == [(1, "failed"), (2, "failed")]
    assert "ZeroDivisionError: boom" in (records[0].error or "")


@pytest.mark.slow
def test_retried_register_and_deploy_tasks_do_not_duplicate_their_work(tmp_path: Path, dag_file: Any) -> None:
    """Try 1 registers (deploys) and then dies; Airflow's try 2 finds that version (server) and reuses it."""
    rows = ["x1,x2,y"] + [
        f"{i % 7},{(i * 3) % 5},{'a' if (i % 7) + (i * 3) % 5 > 5 else 'b'}" for i in range(120)
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = write_spec(
        tmp_path,
        """\
        name: flaky_registry
        defaults: {artifact_root: art}
        steps:
          source: {uses: toy_file, config: {path: train.csv}}
          train:
            config: {estimator: sklearn.tree.DecisionTreeClassifier, target: y, seed: 0}
            inputs: {dataset: source.dataset}
          evaluate:
            config: {target: y, thresholds: {accuracy: ">= 0.5"}}
            inputs: {model: train.model, dataset: train.test_data}
          register:
            uses: flaky_register
            retries: 1
            config: {name: flaky, promote: true}
            inputs: {model: train.model, evaluation: evaluate.report}
          deploy:
            uses: flaky_deploy
            retries: 1
            config: {name: flaky-svc}
            inputs: {model_version: register.model_version}
        """,
    )
    dag = dag_file(
        f"""
        from datetime import timedelta
        from mlsteps_airflow.dag import build_dag

        dag = build_dag({str(spec)!r}, default_args={{"retry_delay": timedelta(seconds=0)}})
        """
    )

    try:
        dag_run = dag.test()
        steps = ["source", "train", "evaluate", "register", "deploy"]
        assert task_states(dag_run) == dict.fromkeys(steps, "success")
        deployed = check_retried_deploy(tmp_path / "art", dag_run.run_id, "flaky-svc")
    finally:
        stop_deployments(tmp_path / "art")
    assert dag_run.get_task_instance("deploy").try_number == 2
    assert deployed.traffic == {"1": 100}
    assert dag_run.get_task_instance("register").try_number == 2
    records = [r for r in lineage_records(tmp_path / "art", dag_run.run_id) if r.run_key.step == "register"]
    assert [(r.run_key.attempt, r.status) for r in records] == [(1, "failed"), (2, "succeeded")]
    assert "worker lost after register did its work" in (records[0].error or "")
    from mlflow import MlflowClient

    db = f"sqlite:///{tmp_path / 'art' / 'mlflow.db'}"
    versions = MlflowClient(tracking_uri=db, registry_uri=db).search_model_versions("name='flaky'")
    assert [str(v.version) for v in versions] == ["1"]
    assert records[1].outputs["model_version"].ref["version"] == "1"
    assert records[1].outputs["model_version"].ref["metadata"]["reused"] is True
