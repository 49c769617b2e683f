"""The retraining loop under Dagster, end to end, on one real Dagster instance.

The penguins example's own definitions (``dagster_defs.py``: the training and
monitor pipelines merged, with the drift sensor), with its data, its next-batch
generator and its specs (minus the Feast and serving steps, to keep the test
short): the ``penguins`` job trains; the ``penguins_monitor`` job runs on a
drifted next batch; the example's ``drift_sensor`` is evaluated against the same instance and the run request it yields is executed
with its run key, tags and run config, as the sensor daemon would launch it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlsteps.lineage import LineageRecorder
from mlsteps.refs import ModelVersionRef, ReportRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps_dagster import TRIGGER_TAG
from mlsteps_dagster.sensors import TRIGGER_KIND_TAG, TRIGGER_REPORT_TAG

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"
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
            ".mlsteps", "data", "__pycache__", "dagster_project", "prefect_deployment"
        ),
    )
    example_module(dest, "prepare_data").build(dest / "data")
    spec = yaml.safe_load((dest / "pipeline.yaml").read_text())
    del spec["steps"]["featurise"], spec["steps"]["deploy"]
    spec["steps"]["train"]["inputs"] = {"dataset": "validate.dataset"}
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def land_batch_in_training_table(project: Path) -> None:
    """The labelled next batch joins the training table (the data platform's job in production)."""
    import pandas as pd

    table = project / "data" / "penguins.parquet"
    batch = pd.read_parquet(project / "data" / "next_batch.parquet")
    pd.concat([pd.read_parquet(table), batch], ignore_index=True).to_parquet(table, index=False)


def registry(project: Path) -> Any:
    from mlflow import MlflowClient

    db = f"sqlite:///{project / '.mlsteps' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=db, registry_uri=db)


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        ev.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in ev.materialization.metadata.items()
        }
        for ev in result.get_asset_materialization_events()
    }


@pytest.mark.slow
def test_drift_in_the_next_batch_retrains_through_the_sensor(tmp_path: Path) -> None:
    project = penguins_project(tmp_path / "penguins")
    art = project / ".mlsteps"
    defs = example_module(project, "dagster_defs").defs  # the example's file, unchanged
    sensor = defs.resolve_sensor_def("penguins_drift_sensor")
    assert sensor.job_name == "penguins"
    assert defs.resolve_schedule_def("penguins_monitor_daily").job_name == "penguins_monitor"
    job = defs.resolve_job_def("penguins")

    with dg.instance_for_test() as instance:
        first = job.execute_in_process(instance=instance)
        assert first.success
        client = registry(project)
        assert str(client.get_model_version_by_alias("penguins", "champion").version) == "1"

        # No drift report yet: the sensor skips.
        idle = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not idle.run_requests and idle.skip_message is not None

        example_module(project, "make_drift_batch").build(
            project / "data" / "penguins.parquet", project / "data" / "next_batch.parquet", drift=True
        )
        watched = defs.resolve_job_def("penguins_monitor").execute_in_process(instance=instance)
        assert watched.success  # drift is a finding, not a failure
        report = parse_ref(watched.asset_value(["monitor", "report"]))
        assert isinstance(report, ReportRef)
        assert report.summary["verdict"] == "drift", report.summary
        assert report.summary["model"] == "models:/penguins/1"
        (monitor_record,) = LineageRecorder(ArtifactStore(art)).records(watched.run_id)
        assert monitor_record.run_key.orchestrator == "dagster"

        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        (request,) = tick.run_requests or []
        assert request.run_key == f"drift:{monitor_record.record_id}"
        assert request.tags[TRIGGER_KIND_TAG] == "drift"
        assert request.tags[TRIGGER_REPORT_TAG] == report.uri
        # The next tick, with the cursor the daemon stores, does not retrain again.
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor))
        assert not again.run_requests

        land_batch_in_training_table(project)
        target = defs.resolve_job_def(request.job_name or sensor.job_name)
        run_config = request.run_config if isinstance(request.run_config, dict) else {}
        retrain = target.execute_in_process(
            instance=instance,
            tags={**request.tags, "dagster/run_key": request.run_key},
            run_config=run_config,
        )
        assert retrain.success

    assert retrain.dagster_run.tags[TRIGGER_REPORT_TAG] == report.uri
    trigger = json.loads(request.tags[TRIGGER_TAG])
    assert (trigger["kind"], trigger["report"], trigger["monitor_run_id"]) == (
        "drift",
        report.uri,
        watched.run_id,
    )
    assert trigger["monitor_record"] == monitor_record.record_id
    records = LineageRecorder(ArtifactStore(art)).records(retrain.run_id)
    assert sorted(r.run_key.step for r in records) == sorted(TRAIN_STEPS)
    assert all(r.trigger == trigger for r in records)

    # A new version, tagged with the report; the champion alias is on it if and
    # only if it beats the champion (register's compare-and-set).
    new = parse_ref(retrain.asset_value(["register", "model_version"]))
    assert isinstance(new, ModelVersionRef)
    assert new.version == "2"
    assert client.get_model_version("penguins", "2").tags["mlsteps.trigger"] == report.uri
    evaluation = parse_ref(retrain.asset_value(["evaluate", "report"]))
    assert isinstance(evaluation, ReportRef)
    assert evaluation.summary["champion"]["version"] == "1"
    (comparison,) = evaluation.summary["champion"]["comparisons"]
    # v1 scored by evaluate on the same rows; register compares with that while v1 holds the alias.
    recorded = comparison["champion"]
    beats = comparison["challenger"] >= recorded  # ties go to the newer version
    assert beats, comparison  # retrained on the drifted data, it wins: the promotion path runs
    assert materialized(retrain)["register/model_version"]["metric/promoted"] == float(beats)
    champion = str(client.get_model_version_by_alias("penguins", "champion").version)
    assert champion == ("2" if beats else "1")
