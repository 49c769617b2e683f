"""Drift -> Asset event -> retraining DAG queued, with the real ``monitor`` step under ``dag.test()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from airflow_testing import asset_events, queued_asset_runs, task_states, unpause, xcoms

DRIFT_URI = "x-mlsteps://drift/penguins"


def write(path: Path, shift: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "bill_length_mm": rng.normal(44 + shift, 5, 1500),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], 1500),
        }
    ).to_parquet(path, index=False)
    return path


def monitor_dag(dag_file: Any, dag_id: str, reference: Path, current: Path, root: Path) -> Any:
    return dag_file(
        f"""
        from airflow.sdk import DAG
        from mlsteps_airflow import MonitorOperator
        from mlsteps_airflow.assets import drift_alias

        with DAG({dag_id!r}, schedule=None) as dag:
            MonitorOperator(
                task_id="monitor",
                config={{"reference": {str(reference)!r}, "current": {str(current)!r}, "drift_share": 0.5}},
                artifact_root={str(root)!r},
                outlets=[drift_alias("penguins")],
            )
        """
    )


def test_drift_emits_an_event_that_queues_the_retraining_dag(tmp_path: Path, dag_file: Any) -> None:
    reference = write(tmp_path / "reference.parquet", 0.0, 1)
    retrain = dag_file(
        """
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG
        from mlsteps_airflow import drift_asset

        with DAG("retrain_penguins_on_drift", schedule=[drift_asset("penguins")]) as dag:
            EmptyOperator(task_id="retrain")
        """
    )
    retrain.test()  # serialise the consumer and its asset schedule
    unpause("retrain_penguins_on_drift")
    before = len(asset_events(DRIFT_URI))

    calm = monitor_dag(
        dag_file, "monitor_calm", reference, write(tmp_path / "calm.parquet", 0.0, 2), tmp_path / "art"
    )
    calm_run = calm.test()
    assert task_states(calm_run) == {"monitor": "success"}
    report = xcoms("monitor_calm", calm_run.run_id)[("monitor", "report")]
    assert report["summary"]["verdict"] == "no_drift"
    assert len(asset_events(DRIFT_URI)) == before  # no drift, no event
    assert "retrain_penguins_on_drift" not in queued_asset_runs()

    drifted = monitor_dag(
        dag_file, "monitor_drift", reference, write(tmp_path / "drift.parquet", 8.0, 3), tmp_path / "art"
    )
    drift_run = drifted.test()
    assert task_states(drift_run) == {"monitor": "success"}  # drift is news, not a task failure
    report = xcoms("monitor_drift", drift_run.run_id)[("monitor", "report")]
    assert report["summary"]["verdict"] == "drift"
    events = asset_events(DRIFT_URI)
    assert len(events) == before + 1
    extra = events[-1]["extra"]
    assert (events[-1]["source_dag_id"], extra["model"], extra["report"]) == (
        "monitor_drift",
        "penguins",
        report["uri"],
    )
    assert "bill_length_mm" in extra["drifted_features"]
    assert "retrain_penguins_on_drift" in queued_asset_runs()

    # The run the scheduler creates from that queue sees the event in its context's
    # triggering_asset_events; every mlsteps task of it records the report as its trigger.
    from airflow.sdk.api.datamodels._generated import AssetEventDagRunReference

    from mlsteps_airflow import drift_asset
    from mlsteps_airflow.assets import drift_trigger

    event = AssetEventDagRunReference.model_validate(
        {
            "asset": {"name": "mlsteps.drift.penguins", "uri": DRIFT_URI, "extra": {}},
            "extra": extra,
            "source_task_id": "monitor",
            "source_dag_id": "monitor_drift",
            "source_run_id": drift_run.run_id,
            "source_map_index": -1,
            "source_aliases": [{"name": "mlsteps.drift-alias.penguins"}],
            "timestamp": "2026-11-28T12:00:00Z",
        }
    )
    trigger = drift_trigger({"triggering_asset_events": {drift_asset("penguins"): [event]}})
    assert trigger is not None
    assert (trigger["kind"], trigger["report"], trigger["model"]) == ("drift", report["uri"], "penguins")
    assert trigger["monitor_run_key"] == f"airflow/monitor_drift/{drift_run.run_id}/monitor#1"
    assert drift_trigger({"triggering_asset_events": {}}) is None


def test_build_dag_gives_monitor_steps_the_drift_alias(tmp_path: Path) -> None:
    from airflow_testing import write_spec

    from mlsteps_airflow.dag import build_dag

    spec = write_spec(
        tmp_path,
        """\
        name: watch
        steps:
          monitor:
            config: {model: "models:/penguins@champion", current: batch.parquet}
        """,
    )
    dag = build_dag(spec)
    (outlet,) = dag.task_dict["monitor"].outlets
    assert outlet.name == "mlsteps.drift-alias.penguins"
    assert type(dag.task_dict["monitor"]).__name__ == "MonitorOperator"


def test_drift_sensor_starts_the_run_and_steps_record_the_report(tmp_path: Path, dag_file: Any) -> None:
    """The sensor variant: a drift report in lineage (written by the real monitor step) releases the DAG."""
    from airflow_testing import lineage_records, write_spec

    from mlsteps.context import RunKey, build_context
    from mlsteps.step import execute_step
    from mlsteps.steps.monitor import MonitorStep

    art = tmp_path / "art"
    reference = write(tmp_path / "reference.parquet", 0.0, 1)
    ctx = build_context(RunKey(pipeline="cron_monitor", run_id="m1", step="monitor"), artifact_root=str(art))
    result = execute_step(
        MonitorStep,
        ctx,
        {"reference": str(reference), "current": str(write(tmp_path / "d.parquet", 8.0, 4))},
        {},
    )
    report = result.outputs["report"]
    spec = write_spec(
        tmp_path,
        f"""\
        name: toy_retrain
        defaults:
          artifact_root: {art}
        steps:
          source:
            uses: toy_source
            config: {{count: 10}}
          total:
            uses: toy_sum
            config: {{min_sum: 40}}
            inputs: {{dataset: source.dataset}}
        """,
    )
    dag = dag_file(
        f"""
        from mlsteps_airflow import build_dag

        dag = build_dag(
            {str(spec)!r},
            wait_for_drift={{"after": "2000-01-01T00:00:00+00:00", "poke_interval": 1, "timeout": 30}},
        )
        """
    )
    sensor = dag.task_dict["wait_for_drift"]
    assert dag.task_dict["source"].upstream_task_ids == {"wait_for_drift"}
    # A report older than `after` does not count.
    sensor.after = "2999-01-01T00:00:00+00:00"
    assert sensor.poke({"run_id": "manual__t"}).is_done is False
    sensor.after = "2000-01-01T00:00:00+00:00"

    run = dag.test()

    assert task_states(run) == {"wait_for_drift": "success", "source": "success", "total": "success"}
    released = xcoms("toy_retrain", run.run_id)[("wait_for_drift", "return_value")]
    assert released["report"]["uri"] == report.uri
    records = lineage_records(art, run.run_id)
    assert [r.run_key.step for r in records] == ["source", "total"]
    for record in records:
        assert record.trigger is not None
        assert (record.trigger["kind"], record.trigger["report"], record.trigger["monitor_run_id"]) == (
            "drift",
            report.uri,
            "m1",
        )
