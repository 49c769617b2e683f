"""Sensors that start a retraining run: on a drift report, or on a new version of a data file.

``drift_sensor`` reads the lineage records under an artifact root (the ``monitor``
step's ``report`` with ``summary.verdict == "drift"``, via :func:`mlsteps.triggers.drift_reports`);
``data_file_sensor`` hashes a file or directory. Each new report or version starts
the job once: the sensor's cursor remembers what it handled and the run key
(the lineage record id, or the content hash) lets Dagster drop a repeat. The run
carries its reason in the ``mlsteps/trigger`` run tag (JSON), which every step of
the run records as its lineage ``trigger``, so ``mlsteps lineage`` can say why a
model was retrained.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlsteps.storage import is_local
from mlsteps_dagster.assets import TRIGGER_TAG

if TYPE_CHECKING:
    from typing import TypeAlias

    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

    from mlsteps.triggers import DriftReport

    #: A job to start: a job definition, an asset job from ``define_asset_job``, or a job's name.
    Job: TypeAlias = dg.JobDefinition | UnresolvedAssetJobDefinition | str

#: Run tag with the trigger's kind (``drift`` or ``data``), for filtering runs in the UI.
TRIGGER_KIND_TAG = "mlsteps/trigger_kind"
#: Run tag with the URI of the drift report that started the run.
TRIGGER_REPORT_TAG = "mlsteps/trigger_report"
#: Run tag with the content hash of the data version that started the run.
TRIGGER_DATA_TAG = "mlsteps/trigger_data_hash"


def _job_kwargs(job: Job) -> tuple[str, dict[str, Any]]:
    if isinstance(job, str):
        return job, {"job_name": job}
    return job.name, {"job": job}


def _absolute(root: str | Path) -> str:
    """A local root made absolute now, so ticks do not depend on the daemon's working directory."""
    text = str(root)
    return str(Path(text).expanduser().resolve()) if is_local(text) else text


def drift_run_request(report: DriftReport, *, batched: int = 1) -> dg.RunRequest:
    """The run request for one drift report: run key = its lineage record, trigger in the tags."""
    trigger = report.trigger()
    tags = {
        TRIGGER_TAG: json.dumps(trigger, sort_keys=True),
        TRIGGER_KIND_TAG: "drift",
        TRIGGER_REPORT_TAG: report.report.uri,
        "mlsteps/trigger_record": report.record_id,
    }
    if batched > 1:
        tags["mlsteps/trigger_batched_reports"] = str(batched)
    return dg.RunRequest(run_key=f"drift:{report.record_id}", tags=tags)


def drift_sensor(
    job: Job,
    artifact_root: str | Path,
    *,
    model: str | None = None,
    name: str | None = None,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that starts ``job`` when a ``monitor`` step reports drift.

    Each tick reads the lineage records under ``artifact_root`` written since the
    cursor. New drift reports start one run (for the newest; older ones in the same
    tick are counted in the ``mlsteps/trigger_batched_reports`` tag, since one
    retraining answers them all); ``no_drift`` reports never do.

    Args:
        job: The retraining job (e.g. ``defs.resolve_job_def("penguins")``, or its name).
        artifact_root: The artifact root the monitor runs write lineage to (the monitor
            spec's; a relative local path is made absolute when the sensor is built).
        model: Only reports of monitors of this registered model (their ``model:`` config).
        name: The sensor's name; defaults to ``<job name>_drift_sensor``.
        minimum_interval_seconds: Seconds between ticks.
        default_status: Whether the sensor runs as soon as the code location loads.

    Example:
        ```python
        defs = build_definitions("pipeline.yaml")
        sensor = drift_sensor("penguins", load_spec("monitor.yaml").artifact_root(), model="penguins")
        defs = dg.Definitions.merge(defs, dg.Definitions(sensors=[sensor]))
        ```
    """
    job_name, target = _job_kwargs(job)
    root = _absolute(artifact_root)

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        from mlsteps.triggers import drift_reports

        cursor = json.loads(context.cursor) if context.cursor else {}
        after = datetime.fromisoformat(cursor["after"]) if cursor.get("after") else None
        seen = set(cursor.get("seen", []))
        # Strictly-after plus the ids seen at the boundary: two reports finishing at the
        # same instant are both handled, and none twice.
        candidates = drift_reports(
            root, model=model, after=after - timedelta(microseconds=1) if after else None
        )
        new = [r for r in candidates if r.record_id not in seen]
        if not new:
            where = f" for model {model!r}" if model else ""
            return dg.SkipReason(f"no new drift report{where} under {root}")
        newest = new[-1]
        boundary = [r.record_id for r in candidates if r.finished_at == newest.finished_at]
        next_cursor = json.dumps({"after": newest.finished_at.isoformat(), "seen": boundary})
        context.log.info(
            "drift reported by %s (record %s): starting %s", newest.report.uri, newest.record_id, job_name
        )
        return dg.SensorResult(run_requests=[drift_run_request(newest, batched=len(new))], cursor=next_cursor)

    return dg.SensorDefinition(
        name=name or f"{job_name}_drift_sensor",
        evaluation_fn=evaluate,
        minimum_interval_seconds=minimum_interval_seconds,
        description=f"Start {job_name} when a monitor under {root} reports drift"
        + (f" for model {model!r}." if model else "."),
        default_status=default_status,
        **target,
    )


def data_file_sensor(
    job: Job,
    path: str | Path,
    *,
    name: str | None = None,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that starts ``job`` when the content of a data file (or directory) changes.

    Each tick hashes ``path`` (sha256 of the file, or of a directory's file names and
    contents); a hash not seen at the last tick starts one run, keyed by the hash, so
    the same version never starts two. The first tick starts a run for the version it
    finds: the sensor has not seen any yet.

    Args:
        job: The training job (or its name).
        path: A local file or directory (a relative path is made absolute when built).
        name: The sensor's name; defaults to ``<job name>_data_sensor``.
        minimum_interval_seconds: Seconds between ticks.
        default_status: Whether the sensor runs as soon as the code location loads.
    """
    job_name, target = _job_kwargs(job)
    target_path = Path(path).expanduser().resolve()

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        from mlsteps.hashing import hash_path

        try:
            digest = hash_path(target_path)
        except FileNotFoundError:
            return dg.SkipReason(f"{target_path} does not exist")
        if digest == context.cursor:
            return dg.SkipReason(f"no new version of {target_path} ({digest})")
        trigger = {
            "kind": "data",
            "path": str(target_path),
            "content_hash": digest,
            "previous": context.cursor,
        }
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"data:{digest}",
                    tags={
                        TRIGGER_TAG: json.dumps(trigger, sort_keys=True),
                        TRIGGER_KIND_TAG: "data",
                        TRIGGER_DATA_TAG: digest,
                    },
                )
            ],
            cursor=digest,
        )

    return dg.SensorDefinition(
        name=name or f"{job_name}_data_sensor",
        evaluation_fn=evaluate,
        minimum_interval_seconds=minimum_interval_seconds,
        description=f"Start {job_name} when {target_path} changes.",
        default_status=default_status,
        **target,
    )
