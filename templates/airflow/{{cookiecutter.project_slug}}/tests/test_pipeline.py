"""The pipeline end to end on Airflow: the project's own DAG file, run by ``dag.test()``."""

from __future__ import annotations

from pathlib import Path

from helpers import PACKAGE, STEPS, assert_registered_with_lineage, load_module, stop_deployment


def test_dag_has_one_task_per_step(project: Path) -> None:
    dag = load_module(project / "dags" / f"{PACKAGE}_dag.py", f"{PACKAGE}_dag_shape").dag

    assert dag.dag_id == PACKAGE
    assert sorted(dag.task_ids) == sorted(STEPS)
    assert dag.get_task("train").upstream_task_ids == {"featurise"}


def test_pipeline_runs_on_airflow_and_registers_a_model(project: Path) -> None:
    dag = load_module(project / "dags" / f"{PACKAGE}_dag.py", f"{PACKAGE}_dag").dag

    try:
        dag_run = dag.test()
    finally:
        stop_deployment(project)

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == dict.fromkeys(STEPS, "success")
    assert_registered_with_lineage(project, dag_run.run_id, "airflow")
