"""Why a retraining run starts: drift reports, found in lineage, as triggers.

The ``monitor`` step's report says ``drift`` or ``no_drift``; every runner that
retrains on drift (``mlsteps monitor --on-drift retrain``, an Airflow sensor, a
Dagster sensor, a Prefect automation) records the same ``trigger`` in the
retraining run's lineage, built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsteps.refs import ReportRef

if TYPE_CHECKING:
    from datetime import datetime


def drift_trigger(
    report: ReportRef, *, monitor_pipeline: str, monitor_run_id: str, monitor_record: str | None
) -> dict[str, Any]:
    """The lineage ``trigger`` of a run started because ``report`` says drift."""
    return {
        "kind": "drift",
        "report": report.uri,
        "report_hash": report.content_hash,
        "html": report.html_uri,
        "monitor_pipeline": monitor_pipeline,
        "monitor_run_id": monitor_run_id,
        "monitor_record": monitor_record,
        "reasons": list(report.summary.get("reasons", [])),
    }


@dataclass(frozen=True)
class DriftReport:
    """A ``monitor`` step run whose report said drift."""

    record_id: str
    pipeline: str
    run_id: str
    finished_at: datetime
    model: str | None
    report: ReportRef

    def trigger(self) -> dict[str, Any]:
        return drift_trigger(
            self.report,
            monitor_pipeline=self.pipeline,
            monitor_run_id=self.run_id,
            monitor_record=self.record_id,
        )


def drift_reports(
    artifact_root: str, *, model: str | None = None, after: datetime | None = None
) -> list[DriftReport]:
    """Drift reports recorded under ``artifact_root``, oldest first.

    Args:
        artifact_root: The artifact root the monitor runs write lineage to.
        model: Only reports of this registered model (the monitor's ``model:`` config).
        after: Only reports of monitor runs that finished after this time.
    """
    from mlsteps.backends.mlflow import parse_model_uri
    from mlsteps.errors import ConfigError
    from mlsteps.lineage import LineageRecorder
    from mlsteps.storage import ArtifactStore

    found: list[DriftReport] = []
    for record in LineageRecorder(ArtifactStore(artifact_root)).records():
        if record.step_type != "monitor" or record.status != "succeeded" or "report" not in record.outputs:
            continue
        if after is not None and record.finished_at <= after:
            continue
        report = ReportRef.model_validate(record.outputs["report"].ref)
        if report.summary.get("verdict") != "drift":
            continue
        name = None
        uri = record.config.get("model")
        if isinstance(uri, str):
            try:
                name = parse_model_uri(uri).name
            except ConfigError:
                name = None
        if model is not None and name != model:
            continue
        found.append(
            DriftReport(
                record_id=record.record_id,
                pipeline=record.run_key.pipeline,
                run_id=record.run_key.run_id,
                finished_at=record.finished_at,
                model=name,
                report=report,
            )
        )
    return found
