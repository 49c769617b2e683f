"""The monitor step against a real registered champion: reference from lineage, MLflow logging,
predictions and performance, and ``mlsteps monitor --on-drift retrain``.

A tiny classifier is trained, evaluated and registered (promoted to champion) through
the local runner with real MLflow (SQLite) once per module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pydantic import Field

from mlsteps.cli import main
from mlsteps.context import MlflowSettings, RunContext, RunKey, build_context
from mlsteps.data import describe_dataset
from mlsteps.errors import BackendError, MlstepsError
from mlsteps.lineage import LineageRecorder
from mlsteps.refs import BaseRef, RefKind, ReportRef
from mlsteps.runner import LocalRunner
from mlsteps.spec import load_spec
from mlsteps.step import Step, StepConfig, StepResult, execute_step
from mlsteps.steps.monitor import MonitorStep, resolve_model_lineage
from mlsteps.storage import ArtifactStore
from mlsteps.testing import registered_steps

FEATURES = ["x1", "x2", "colour"]


class ParquetConfig(StepConfig):
    path: str = Field(description="A parquet file.")


class ParquetSource(Step[ParquetConfig]):
    """Hands a parquet file on as a dataset ref (a stand-in for validate/featurise)."""

    name = "parquet_source"
    config_model = ParquetConfig
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: ParquetConfig, inputs: dict[str, BaseRef]) -> StepResult:
        return StepResult(outputs={"dataset": describe_dataset(ctx.resolve_path(config.path))})


def sample(n: int, seed: int, *, drift: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(1.5 if drift else 0.0, 1.0, n)
    x2 = rng.normal(0.0, 2.5 if drift else 1.0, n)
    colours = ["red", "green", "blue", "violet"] if drift else ["red", "green", "blue"]
    colour = rng.choice(colours, n)
    y = np.where(x1 + x2 + 0.5 * (colour == "red") > 0.2, "pos", "neg")
    if drift:
        y = np.where(rng.random(n) < 0.35, np.where(y == "pos", "neg", "pos"), y)  # the concept moved too
    return pd.DataFrame({"id": range(n), "x1": x1, "x2": x2, "colour": colour, "y": y})


TRAIN_SPEC = """\
name: tiny
defaults:
  artifact_root: art
  mlflow: {experiment: tiny}
steps:
  source:
    uses: parquet_source
    config: {path: data/train.parquet}
  train:
    config:
      estimator: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 15, max_depth: 4}
      target: y
      exclude: [id]
      seed: 1
    inputs: {dataset: source.dataset}
  evaluate:
    config:
      thresholds: {accuracy: ">= 0.6"}
    inputs: {model: train.model, dataset: train.test_data}
  register:
    config: {name: tiny, promote: true}
    inputs: {model: train.model, evaluation: evaluate.report}
"""

MONITOR_SPEC = """\
name: tiny_monitor
defaults:
  artifact_root: art
  mlflow: {experiment: tiny}
steps:
  monitor:
    config:
      model: models:/tiny@champion
      predict: true
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tiny")
    (root / "data").mkdir()
    sample(600, 0).to_parquet(root / "data" / "train.parquet", index=False)
    sample(400, 1).to_parquet(root / "data" / "same.parquet", index=False)
    sample(400, 2, drift=True).to_parquet(root / "data" / "drifted.parquet", index=False)
    (root / "pipeline.yaml").write_text(TRAIN_SPEC)
    (root / "monitor.yaml").write_text(MONITOR_SPEC)
    with registered_steps(ParquetSource):
        summary = LocalRunner(load_spec(root / "pipeline.yaml"), run_id="train1").run()
        assert summary.ok, [(o.step_id, o.error) for o in summary.outcomes]
        yield root


def ctx_for(root: Path, step: str = "monitor", run_id: str = "mon1", attempt: int = 1) -> RunContext:
    return build_context(
        RunKey(pipeline="tiny_monitor", run_id=run_id, step=step, attempt=attempt),
        artifact_root=str(root / "art"),
        base_dir=root,
        mlflow=MlflowSettings(experiment="tiny"),
    )


def train_record(root: Path) -> Any:
    records = LineageRecorder(ArtifactStore(str(root / "art"))).records("train1")
    return next(r for r in records if r.step_type == "train")


def test_resolves_the_champions_training_data_through_lineage(project: Path) -> None:
    found = resolve_model_lineage(ctx_for(project), "models:/tiny@champion")
    train = train_record(project)
    assert found.version == "1" and found.alias == "champion"
    assert found.train_record_id == train.record_id
    assert found.dataset.uri == train.outputs["train_data"].ref["uri"]
    assert found.model is not None and found.model.metadata["features"] == FEATURES
    assert "accuracy" in found.recorded_metrics()


def test_monitor_uses_the_champion_lineage_predicts_and_logs_to_mlflow(project: Path) -> None:
    ctx = ctx_for(project, run_id="mon_drift")
    config = {"model": "models:/tiny@champion", "current": "data/drifted.parquet", "predict": True}
    result = execute_step(MonitorStep, ctx, config, {})
    report = result.outputs["report"]
    assert isinstance(report, ReportRef) and result.passed is False
    body = json.loads(Path(report.uri).read_text())
    assert body["verdict"] == "drift"
    assert body["reference"]["uri"] == train_record(project).outputs["train_data"].ref["uri"]
    assert "lineage record" in body["reference"]["source"]
    assert body["model"] == {
        "name": "tiny",
        "version": "1",
        "alias": "champion",
        "run_id": body["model"]["run_id"],
    }
    assert {n for n, c in body["columns"].items() if c["role"] == "feature"} == set(FEATURES)
    assert body["columns"]["y"]["role"] == "target"
    assert body["columns"]["prediction"]["role"] == "prediction"
    perf = body["performance"]
    assert perf["rows"] == 400 and perf["comparisons"] and perf["degraded"]
    assert any(r.startswith("performance drift") for r in body["reasons"])
    assert report.summary["model"] == "models:/tiny/1"

    # A retry of the same step run reuses its MLflow run instead of adding one.
    execute_step(MonitorStep, ctx_for(project, run_id="mon_drift", attempt=2), config, {})
    import mlflow

    client = mlflow.MlflowClient(ctx.tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`mlsteps.monitor.model` = 'tiny'")
    runs = [r for r in runs if r.data.tags["mlsteps.run_key"] == ctx.run_key.idempotency_key]
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["mlsteps.monitor.model_version"] == "1"
    assert run.data.tags["mlsteps.monitor.verdict"] == "drift"
    assert run.data.metrics["drifted.x1"] == 1.0 and "drift_score.colour" in run.data.metrics
    names = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert names == {"drift/drift_report.json", "drift/drift_report.html"}


def test_no_drift_on_fresh_data_from_the_training_distribution(project: Path) -> None:
    config = {"model": "models:/tiny@champion", "current": "data/same.parquet", "log_to_mlflow": False}
    result = execute_step(MonitorStep, ctx_for(project, run_id="mon_same"), config, {})
    report = result.outputs["report"]
    assert isinstance(report, ReportRef)
    assert report.summary["verdict"] == "no_drift", report.summary["reasons"]
    assert result.passed is True


def test_clear_errors_when_the_reference_cannot_be_found(project: Path, tmp_path: Path) -> None:
    config = {"model": "models:/nope@champion", "current": "data/same.parquet", "log_to_mlflow": False}
    with pytest.raises(BackendError, match=r"models:/nope@champion does not exist"):
        execute_step(MonitorStep, ctx_for(project), config, {})
    # The same registry, but lineage recorded under another artifact root.
    other = build_context(
        RunKey(run_id="x", step="monitor"),
        artifact_root=str(tmp_path / "elsewhere"),
        base_dir=project,
        mlflow=MlflowSettings(tracking_uri=ctx_for(project).tracking_uri),
    )
    with pytest.raises(MlstepsError, match=r"no lineage record under .*elsewhere"):
        resolve_model_lineage(other, "models:/tiny@champion")


def invoke(root: Path, current: str) -> dict[str, Any]:
    args = ["monitor", str(root / "monitor.yaml"), "--current", str(root / "data" / current)]
    args += ["--on-drift", "retrain", "--train-spec", str(root / "pipeline.yaml"), "--json"]
    with registered_steps(ParquetSource):
        out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    payload: dict[str, Any] = json.loads(out.stdout)
    return payload


def test_cli_retrains_only_on_drift_and_lineage_names_the_report(project: Path) -> None:
    recorder = LineageRecorder(ArtifactStore(str(project / "art")))
    calm = invoke(project, "same.parquet")
    assert calm["verdict"] == "no_drift" and calm["retrain"] is None
    assert {r.run_key.pipeline for r in recorder.records(calm["monitor"]["run_id"])} == {"tiny_monitor"}

    before = set(recorder.runs())
    # The labelled drifted batch lands in the training table (the data platform's job),
    # so the retraining run trains on it; with unchanged data it would reproduce v1.
    train = project / "data" / "train.parquet"
    pd.concat([pd.read_parquet(train), pd.read_parquet(project / "data" / "drifted.parquet")]).to_parquet(
        train, index=False
    )
    drifted = invoke(project, "drifted.parquet")
    assert drifted["verdict"] == "drift"
    retrain = drifted["retrain"]
    assert retrain is not None and retrain["ok"] is True
    new_runs = set(recorder.runs()) - before
    assert new_runs == {drifted["monitor"]["run_id"], retrain["run_id"]}
    records = recorder.records(retrain["run_id"])
    assert [r.run_key.step for r in records] == ["source", "train", "evaluate", "register"]
    for record in records:
        assert record.trigger is not None
        assert record.trigger["kind"] == "drift"
        assert record.trigger["report"] == drifted["report"]["uri"]
        assert record.trigger["monitor_run_id"] == drifted["monitor"]["run_id"]
    # The monitor run's own record is the one whose report triggered the retraining.
    monitor_record = recorder.records(drifted["monitor"]["run_id"])[0]
    assert monitor_record.outputs["report"].ref["uri"] == drifted["report"]["uri"]
    assert records[0].trigger["monitor_record"] == monitor_record.record_id

    # Sensors find the same report in lineage and build the same trigger.
    from mlsteps.triggers import drift_reports

    found = drift_reports(str(project / "art"), model="tiny")
    assert found[-1].report.uri == drifted["report"]["uri"]
    assert found[-1].trigger() == records[0].trigger
    assert calm["report"]["uri"] not in {d.report.uri for d in found}
    assert drift_reports(str(project / "art"), model="other") == []
    assert drift_reports(str(project / "art"), after=found[-1].finished_at) == []

    # The retraining run registered a new version and (promote: true, thresholds met)
    # moved the champion alias onto it; the version is tagged with the drift report.
    from mlflow import MlflowClient

    db = f"sqlite:///{project / 'art' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    register = next(r for r in records if r.step_type == "register")
    new_version = register.outputs["model_version"].ref["version"]
    assert new_version != "1"
    champion = client.get_model_version_by_alias("tiny", "champion")
    assert str(champion.version) == new_version
    assert champion.tags["mlsteps.trigger"] == drifted["report"]["uri"]
