"""``mlsteps monitor``: check a production batch for drift and, optionally, retrain on drift.

The monitor step of a spec runs through the local runner (so lineage records it);
on drift, ``--on-drift retrain`` runs the training spec with the local runner,
whose lineage records then name the drift report that triggered them. Orchestrators
react to the same report (``summary["verdict"]``) in their adapters.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlsteps.errors import ConfigError, MlstepsError

if TYPE_CHECKING:
    from mlsteps.refs import ReportRef
    from mlsteps.runner import RunSummary
    from mlsteps.spec import PipelineSpec


def _absolute(value: str | None) -> str | None:
    """A CLI path made absolute (the step resolves relative paths against the spec's directory)."""
    if value is None or "://" in value or value.startswith("models:/"):
        return value
    return str(Path(value).resolve())


def _monitor_step(spec: PipelineSpec, step_id: str | None) -> str:
    found = [sid for sid, s in spec.steps.items() if s.step_cls.name == "monitor"]
    if step_id is not None:
        if step_id not in found:
            raise ConfigError(f"{spec.path}: {step_id!r} is not a monitor step; monitor steps: {found}")
        return step_id
    if len(found) != 1:
        raise ConfigError(
            f"{spec.path}: expected exactly one step using 'monitor', found {found or 'none'}; pick one with --step"
        )
    return found[0]


@click.command("monitor")
@click.argument("spec_path", type=click.Path(path_type=Path))
@click.option("--current", help="Current data (parquet/CSV); overrides the step's config.current.")
@click.option("--reference", help="Reference data path or models:/ URI; overrides config.reference.")
@click.option("--model", "model_uri", help="models:/NAME@ALIAS; overrides config.model.")
@click.option("--step", "step_id", help="The monitor step's id (default: the spec's only monitor step).")
@click.option(
    "--on-drift",
    type=click.Choice(["report", "fail", "retrain"]),
    default="report",
    show_default=True,
    help="On drift: only report (exit 0), fail (exit 1), or run the training spec.",
)
@click.option(
    "--train-spec",
    type=click.Path(path_type=Path),
    help="Training pipeline run on drift (default: pipeline.yaml next to SPEC_PATH).",
)
@click.option("--run-id", help="Run id of the monitor run (default: new).")
@click.option("--no-cache", is_flag=True, help="Retrain every step instead of reusing cached ones.")
@click.option("--artifact-root", help="Override defaults.artifact_root of both specs.")
@click.option("--tracking-uri", help="Override the MLflow tracking URI of both specs.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def monitor(
    spec_path: Path,
    current: str | None,
    reference: str | None,
    model_uri: str | None,
    step_id: str | None,
    on_drift: str,
    train_spec: Path | None,
    run_id: str | None,
    no_cache: bool,
    artifact_root: str | None,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Compare a production batch with the reference (by default the champion's training data)."""
    from mlsteps.cli import _console, _fail, _print_summary, _summary_dict
    from mlsteps.refs import ReportRef
    from mlsteps.runner import LocalRunner
    from mlsteps.spec import load_spec

    console = _console(stderr=as_json)
    try:
        spec = load_spec(spec_path)
        sid = _monitor_step(spec, step_id)
        overrides = {
            k: v
            for k, v in {
                "current": _absolute(current),
                "reference": _absolute(reference),
                "model": model_uri,
            }.items()
            if v is not None
        }
        if overrides:
            step = spec.steps[sid]
            step.config = step.step_cls.parse_config({**step.spec.config, **overrides}, file=str(spec_path))
        root = _absolute(artifact_root)
        settings = spec.model.defaults.mlflow
        if tracking_uri:
            settings = settings.model_copy(update={"tracking_uri": tracking_uri})
        summary = LocalRunner(spec, run_id=run_id, artifact_root=root, mlflow=settings).run([sid])
        outcome = summary.outcome(sid)
        report = outcome.result.outputs.get("report") if outcome.result else None
        if not isinstance(report, ReportRef):
            for o in summary.outcomes:
                if o.error:
                    console.print(f"{o.step_id}: {o.error}", markup=False, style="red")
            sys.exit(1)
        drift = report.summary.get("verdict") == "drift"
        retrain: RunSummary | None = None
        if drift and on_drift == "retrain":
            train_path = train_spec or spec_path.parent / "pipeline.yaml"
            train = load_spec(train_path)
            train_settings = train.model.defaults.mlflow
            if tracking_uri:
                train_settings = train_settings.model_copy(update={"tracking_uri": tracking_uri})
            trigger = _trigger(report, summary, outcome.record_id, spec.name)
            if not as_json:
                console.print(f"drift detected: retraining with {train_path}")
            retrain = LocalRunner(
                train, use_cache=not no_cache, artifact_root=root, mlflow=train_settings, trigger=trigger
            ).run()
    except MlstepsError as exc:
        _fail(exc)
    if as_json:
        payload: dict[str, Any] = {
            "verdict": report.summary.get("verdict"),
            "report": report.model_dump(mode="json"),
            "monitor": _summary_dict(summary),
            "retrain": _summary_dict(retrain) if retrain else None,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_report(console, report)
        if retrain is not None:
            _print_summary(console, retrain)
    if retrain is not None:
        sys.exit(0 if retrain.ok else 1)
    sys.exit(1 if drift and on_drift == "fail" else 0)


def _trigger(report: ReportRef, summary: RunSummary, record_id: str | None, pipeline: str) -> dict[str, Any]:
    """What the retraining run records as the reason it ran."""
    from mlsteps.triggers import drift_trigger

    return drift_trigger(
        report, monitor_pipeline=pipeline, monitor_run_id=summary.run_id, monitor_record=record_id
    )


def _print_report(console: Any, report: ReportRef) -> None:
    s = report.summary
    style = "bold red" if s.get("verdict") == "drift" else "bold green"
    console.print(f"verdict: [{style}]{s.get('verdict')}[/]")
    console.print(
        f"{len(s.get('drifted_features', []))} of {s.get('features')} features drifted "
        f"(share {s.get('drift_share', 0):.2f})"
    )
    for reason in s.get("reasons", []):
        console.print(f"  - {reason}", markup=False, soft_wrap=True)
    console.print(f"report: {report.uri}", markup=False, soft_wrap=True)
    if report.html_uri:
        console.print(f"html:   {report.html_uri}", markup=False, soft_wrap=True)
