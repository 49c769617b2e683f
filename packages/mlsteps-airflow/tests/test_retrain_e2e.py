"""The retraining loop under Airflow, end to end, with the real scheduler code path.

The penguins example's own DAG file (``airflow_dag.py``: the ``penguins`` DAG
scheduled on the drift asset and the ``penguins_monitor`` DAG), with its data,
its next-batch generator and its specs (minus the Feast and serving steps, to
keep the test short), is copied into the DAGs folder. The training DAG runs
once, a drifted next batch is monitored, and the drift Asset event queues the
training DAG.
Airflow's own ``SchedulerJobRunner`` then turns that queue into an
asset-triggered DAG run (``_create_dagruns_for_dags`` and
``_start_queued_dagruns``, what one scheduler loop does), and the run is
executed task by task the way ``dag.test()`` executes its own run
(``dag.test()`` always creates a new manual run, so it cannot run this one).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow_testing import lineage_records, queued_asset_runs, task_states, unpause, xcoms

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "penguins"
TRAIN_STEPS = ["validate", "train", "evaluate", "register"]


def example_module(project: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"penguins_{name}", project / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def penguins_project(dest: Path) -> Path:
    """A copy of the example with its data; the spec without ``featurise`` (Feast) and ``deploy``."""
    shutil.copytree(
        EXAMPLE,
        dest,
        ignore=shutil.ignore_patterns(
            ".mlsteps",
            "data",
            "__pycache__",
            "dagster_project",
            "dagster_defs.py",
            "prefect_deployment",
            "prefect_*.py",
        ),
    )
    example_module(dest, "prepare_data").build(dest / "data")
    spec = yaml.safe_load((dest / "pipeline.yaml").read_text())
    del spec["steps"]["featurise"], spec["steps"]["deploy"]
    spec["steps"]["train"]["inputs"] = {"dataset": "validate.dataset"}
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


@pytest.fixture
def project_in_dags_folder(airflow_db: Path) -> Iterator[Path]:
    """The example copied into a subfolder of the DAGs folder, so its own DAG file is what runs.

    ``dag.test()`` only runs DAGs it finds in the DAGs-folder bundle (it parses the
    whole folder); the copy is removed afterwards so no other test sees its DAGs.
    """
    project = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"penguins_{uuid.uuid4().hex[:8]}"
    try:
        yield penguins_project(project)
    finally:
        shutil.rmtree(project, ignore_errors=True)


def land_batch_in_training_table(project: Path) -> None:
    """The labelled next batch joins the training table (the data platform's job in production)."""
    import pandas as pd

    table = project / "data" / "penguins.parquet"
    batch = pd.read_parquet(project / "data" / "next_batch.parquet")
    pd.concat([pd.read_parquet(table), batch], ignore_index=True).to_parquet(table, index=False)


def scheduler_pass() -> None:
    """One pass of the scheduler's run handling: create runs (asset-triggered from the queue), start queued."""
    from airflow import settings
    from airflow.executors.local_executor import LocalExecutor
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.utils.sqlalchemy import prohibit_commit

    assert settings.Session is not None, "Airflow ORM is not configured"
    # The executor is never started: only the scheduler's run-creation code runs here.
    runner = SchedulerJobRunner(job=Job(), executors=[LocalExecutor()])
    session = settings.Session()
    try:
        session.add(runner.job)
        session.flush()
        with prohibit_commit(session) as guard:
            runner._create_dagruns_for_dags(guard, session)
            runner._start_queued_dagruns(session)
            guard.commit()
    finally:
        session.close()


def schedule_until_running(dag_id: str) -> None:
    """Loop scheduler passes, as the scheduler does, until ``dag_id`` has a running asset-triggered run.

    A queued run starts once its ``run_after`` is not in the future by the database's
    clock (on SQLite ``CURRENT_TIMESTAMP``, whole seconds), so it can take a second pass.
    """
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    assert settings.Session is not None, "Airflow ORM is not configured"
    for _ in range(30):
        scheduler_pass()
        with settings.Session() as session:
            state = session.scalar(
                select(DagRun.state).where(
                    DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.ASSET_TRIGGERED
                )
            )
        if state == DagRunState.RUNNING:
            return
        time.sleep(0.5)
    pytest.fail(f"the scheduler did not start an asset-triggered run of {dag_id} (last state {state})")


def execute_run(dag: Any, run_id: str) -> Any:
    """Run the tasks of an existing DAG run in process, as ``dag.test()`` runs the run it creates."""
    from airflow import settings
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    assert settings.Session is not None, "Airflow ORM is not configured"
    session = settings.Session()
    dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    assert dag_run is not None and dag_run.state == DagRunState.RUNNING, dag_run
    dag_run.dag = DBDagBag().get_dag_for_run(dag_run, session=session)
    while dag_run.state == DagRunState.RUNNING:
        session.expire_all()
        schedulable, _ = dag_run.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        scheduled = [
            ti
            for ti in dag_run.get_task_instances(session=session)
            if ti.state == TaskInstanceState.SCHEDULED
        ]
        if not scheduled and dag_run.state == DagRunState.RUNNING:
            session.expire_all()
            dag_run.update_state(session=session)
            session.commit()
            break  # nothing runnable: the run is stuck, the state assertions below report it
        for ti in scheduled:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    session.close()
    with settings.Session() as fresh:
        return fresh.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))


def registry(project: Path) -> Any:
    from mlflow import MlflowClient

    db = f"sqlite:///{project / '.mlsteps' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=db, registry_uri=db)


@pytest.mark.slow
def test_drift_in_the_next_batch_retrains_through_the_scheduler(project_in_dags_folder: Path) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    project = project_in_dags_folder
    dags = example_module(project, "airflow_dag")  # the example's DAG file, unchanged
    retrain, monitor = dags.dag, dags.monitor_dag
    assert (retrain.dag_id, monitor.dag_id) == ("penguins", "penguins_monitor")
    first = retrain.test()  # the first champion; also serialises both DAGs and the asset schedule
    assert task_states(first) == dict.fromkeys(TRAIN_STEPS, "success")
    client = registry(project)
    assert str(client.get_model_version_by_alias("penguins", "champion").version) == "1"
    unpause("penguins")

    example_module(project, "make_drift_batch").build(
        project / "data" / "penguins.parquet", project / "data" / "next_batch.parquet", drift=True
    )
    watched = monitor.test()
    assert task_states(watched) == {"monitor": "success"}
    report = xcoms("penguins_monitor", watched.run_id)[("monitor", "report")]
    assert report["summary"]["verdict"] == "drift", report["summary"]
    assert report["summary"]["model"] == "models:/penguins/1"
    assert "penguins" in queued_asset_runs()

    land_batch_in_training_table(project)
    schedule_until_running("penguins")

    from airflow import settings
    from sqlalchemy import select

    assert settings.Session is not None
    with settings.Session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == "penguins", DagRun.run_type == DagRunType.ASSET_TRIGGERED)
        ).all()
        assert len(runs) == 1, [r.run_id for r in runs]
        (created,) = runs
        assert created.triggered_by == DagRunTriggeredByType.ASSET
        consumed = [(e.source_dag_id, e.source_run_id, dict(e.extra)) for e in created.consumed_asset_events]
        run_id = created.run_id
    assert "penguins" not in queued_asset_runs()  # the scheduler consumed the queue
    assert [(dag_id, source_run) for dag_id, source_run, _ in consumed] == [
        ("penguins_monitor", watched.run_id)
    ]
    assert consumed[0][2]["report"] == report["uri"]

    run = execute_run(retrain, run_id)
    assert task_states(run) == dict.fromkeys(TRAIN_STEPS, "success")

    # Every step of the asset-triggered run records the drift report as its trigger.
    records = lineage_records(project / ".mlsteps", run_id)
    assert [r.run_key.step for r in records] == TRAIN_STEPS
    for record in records:
        assert record.trigger is not None
        assert (record.trigger["kind"], record.trigger["report"], record.trigger["model"]) == (
            "drift",
            report["uri"],
            "penguins",
        )
        assert record.trigger["monitor_run_key"] == f"airflow/penguins_monitor/{watched.run_id}/monitor#1"

    # A new version, trained on the landed batch, tagged with the report; the champion
    # alias is on it if and only if it beats the champion (register's compare-and-set).
    values = xcoms("penguins", run_id)
    new = values[("register", "model_version")]
    assert new["version"] == "2"
    version = client.get_model_version("penguins", "2")
    assert version.tags["mlsteps.trigger"] == report["uri"]
    assert_champion_iff_it_beats(client, values, new_version="2", old_version="1")


def assert_champion_iff_it_beats(
    client: Any, values: dict[tuple[str, str], Any], *, new_version: str, old_version: str
) -> None:
    """The champion alias moved to the new version exactly when register says it beat the champion."""
    evaluation = values[("evaluate", "report")]["summary"]
    (comparison,) = evaluation["champion"]["comparisons"]
    assert evaluation["champion"]["version"] == old_version
    # v1 scored by evaluate on the same rows; register compares with that while v1 holds the alias.
    recorded = comparison["champion"]
    beats = comparison["challenger"] >= recorded  # ties go to the newer version
    assert beats, comparison  # retrained on the drifted data, it wins: the promotion path runs
    register = values[("register", "return_value")]
    assert register["metrics"]["promoted"] == float(beats), register
    champion = str(client.get_model_version_by_alias("penguins", "champion").version)
    assert champion == (new_version if beats else old_version)
