"""drift_sensor and data_file_sensor, evaluated by Dagster on real lineage records and real files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import TOY_SPEC, write_spec
from pydantic import Field

from mlsteps.context import RunKey, build_context
from mlsteps.hashing import hash_file
from mlsteps.lineage import LineageRecorder
from mlsteps.refs import ReportRef
from mlsteps.step import StepConfig, StepResult
from mlsteps.storage import ArtifactStore
from mlsteps.triggers import drift_reports
from mlsteps_dagster import TRIGGER_TAG, build_definitions, data_file_sensor, drift_sensor
from mlsteps_dagster.sensors import TRIGGER_KIND_TAG, TRIGGER_REPORT_TAG


class MonitorishConfig(StepConfig):
    """The part of the monitor step's config the sensor reads: which registered model it watches."""

    model: str = Field(description="models:/<name>@<alias>")


def record_monitor_run(root: Path, *, verdict: str, model: str = "models:/penguins@champion") -> str:
    """Write the lineage record a ``monitor`` step run leaves, with the core's own recorder."""
    run_id = f"monitor-{time.time_ns()}"
    ctx = build_context(
        RunKey(orchestrator="local", pipeline="penguins_monitor", run_id=run_id, step="monitor"),
        artifact_root=str(root),
    )
    report_path = root / "reports" / f"{run_id}.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "verdict": verdict,
        "reasons": ["body_mass_g drifted"] if verdict == "drift" else [],
    }
    report_path.write_text(json.dumps(summary))
    report = ReportRef(
        uri=str(report_path), content_hash=hash_file(report_path), passed=verdict != "drift", summary=summary
    )
    started = time.time()
    LineageRecorder(ArtifactStore(root)).record(
        ctx,
        step_type="monitor",
        step_version="1",
        config=MonitorishConfig(model=model),
        inputs={},
        result=StepResult(outputs={"report": report}, passed=report.passed),
        status="succeeded",
        error=None,
        started=started,
        finished=started + 0.01,
        cache_key="k",
    )
    return ctx.record_id


def tick(
    sensor: dg.SensorDefinition, cursor: str | None
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """Evaluate one tick like the daemon: (run requests, new cursor, skip message)."""
    data = sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor))
    return list(data.run_requests or []), data.cursor, data.skip_message


def test_drift_report_starts_the_job_once_with_the_report_in_its_tags(tmp_path: Path) -> None:
    root = tmp_path / "art"
    sensor = drift_sensor("penguins", root)

    requests, cursor, skipped = tick(sensor, None)
    assert requests == []
    assert skipped is not None and "no new drift report" in skipped

    record_monitor_run(root, verdict="no_drift")
    requests, cursor, skipped = tick(sensor, cursor)
    assert requests == [], "a no_drift report must not retrain"

    record_id = record_monitor_run(root, verdict="drift")
    requests, cursor, skipped = tick(sensor, cursor)
    assert len(requests) == 1
    request = requests[0]
    assert request.run_key == f"drift:{record_id}"
    (report,) = drift_reports(str(root))
    assert request.tags[TRIGGER_REPORT_TAG] == report.report.uri
    assert request.tags[TRIGGER_KIND_TAG] == "drift"
    assert json.loads(request.tags[TRIGGER_TAG]) == report.trigger()
    assert report.trigger()["reasons"] == ["body_mass_g drifted"]

    # The same report never triggers twice.
    requests, _, skipped = tick(sensor, cursor)
    assert requests == []
    assert skipped is not None

    # Two new reports between ticks: one retraining run, for the newest.
    record_monitor_run(root, verdict="drift")
    newest = record_monitor_run(root, verdict="drift")
    requests, _, _ = tick(sensor, cursor)
    assert [r.run_key for r in requests] == [f"drift:{newest}"]
    assert requests[0].tags["mlsteps/trigger_batched_reports"] == "2"


def test_drift_sensor_filters_by_model(tmp_path: Path) -> None:
    root = tmp_path / "art"
    record_monitor_run(root, verdict="drift", model="models:/other@champion")

    requests, _, skipped = tick(drift_sensor("penguins", root, model="penguins"), None)
    assert requests == []
    assert skipped is not None and "'penguins'" in skipped

    mine = record_monitor_run(root, verdict="drift", model="models:/penguins@champion")
    requests, _, _ = tick(drift_sensor("penguins", root, model="penguins"), None)
    assert [r.run_key for r in requests] == [f"drift:{mine}"]


@pytest.mark.usefixtures("toy_steps")
def test_the_triggered_run_records_its_trigger_in_lineage(tmp_path: Path) -> None:
    monitor_root = tmp_path / "monitor-art"
    record_monitor_run(monitor_root, verdict="drift")
    sensor = drift_sensor("toy", monitor_root, name="retrain_toy")
    defs = build_definitions(write_spec(tmp_path, TOY_SPEC), sensors=[sensor])
    assert defs.resolve_sensor_def("retrain_toy").job_name == "toy"
    (request,), _, _ = tick(sensor, None)

    # What the daemon does with the request: launch the job with its tags.
    result = defs.resolve_job_def("toy").execute_in_process(tags=request.tags)

    assert result.success
    assert result.dagster_run.tags[TRIGGER_REPORT_TAG] == request.tags[TRIGGER_REPORT_TAG]
    recs = LineageRecorder(ArtifactStore(tmp_path / "art")).records(result.run_id)
    assert len(recs) == 5
    for rec in recs:
        assert rec.trigger is not None
        assert rec.trigger["kind"] == "drift"
        assert rec.trigger["report"] == request.tags[TRIGGER_REPORT_TAG]


def test_data_file_sensor_starts_a_run_per_new_version(tmp_path: Path) -> None:
    data = tmp_path / "data" / "penguins.csv"
    sensor = data_file_sensor("penguins", data)

    requests, cursor, skipped = tick(sensor, None)
    assert requests == []
    assert skipped is not None and "does not exist" in skipped

    data.parent.mkdir()
    data.write_text("a,b\n1,2\n")
    first = hash_file(data)
    requests, cursor, _ = tick(sensor, cursor)
    assert [r.run_key for r in requests] == [f"data:{first}"]
    assert json.loads(requests[0].tags[TRIGGER_TAG]) == {
        "kind": "data",
        "path": str(data),
        "content_hash": first,
        "previous": None,
    }
    assert cursor == first

    data.touch()  # a new mtime, the same content: not a new version
    requests, cursor, skipped = tick(sensor, cursor)
    assert requests == []
    assert skipped is not None and "no new version" in skipped

    data.write_text("a,b\n1,2\n3,4\n")
    requests, cursor, _ = tick(sensor, cursor)
    assert [r.run_key for r in requests] == [f"data:{hash_file(data)}"]
    assert json.loads(requests[0].tags[TRIGGER_TAG])["previous"] == first


def test_data_file_sensor_watches_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "batches"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"one")
    sensor = data_file_sensor("penguins", folder, name="batches")

    _, cursor, _ = tick(sensor, None)
    (folder / "b.parquet").write_bytes(b"two")
    requests, _, _ = tick(sensor, cursor)

    assert len(requests) == 1
    assert requests[0].tags[TRIGGER_KIND_TAG] == "data"
