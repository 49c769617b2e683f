"""Planted secrets never leave the process: not in logs, outputs, lineage, artifacts or MLflow.

A full train -> evaluate -> register (promote) run against MLflow on PostgreSQL
with a database password in the tracking URI and an MLflow bearer token, plus a
secret in the context's ``secrets``. Then every output is scanned for the planted
values: each file under the test's directory (artifact root, MLflow artifacts,
reports, model card, lineage, cache), every log record and everything printed,
the step results (what an orchestrator pushes to XCom / metadata / results), and
MLflow's runs (params, tags, metric names), model versions and registered models.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

PASSWORD = f"pw-{uuid.uuid4().hex}"
TOKEN = f"tok-{uuid.uuid4().hex}"
SECRET = f"sec-{uuid.uuid4().hex}"
PLANTED = (PASSWORD, TOKEN, SECRET)


def _leaks(text: str) -> list[str]:
    return [p for p in PLANTED if p in text]


@pytest.mark.integration
@pytest.mark.slow
def test_planted_secrets_appear_in_no_output(
    pg_mlflow_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    from sklearn.datasets import load_iris

    from mlsteps.backends.mlflow import configure
    from mlsteps.context import MlflowSettings, RunKey, build_context
    from mlsteps.data import describe_dataset
    from mlsteps.refs import dump_ref
    from mlsteps.step import execute_step
    from mlsteps.steps.evaluate import EvaluateStep
    from mlsteps.steps.register import RegisterStep
    from mlsteps.steps.train import TrainStep

    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)  # restored after the test
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    caplog.set_level(logging.DEBUG)
    # The server's already-migrated database, reached directly with a password (trust auth ignores it).
    uri = pg_mlflow_server.backend_store_uri.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in uri
    settings = MlflowSettings(tracking_uri=uri, experiment="secrets", token=SecretStr(TOKEN))
    data = tmp_path / "iris.parquet"
    load_iris(as_frame=True).frame.to_parquet(data, index=False)

    def ctx(step: str) -> Any:
        c = build_context(
            RunKey(pipeline="secrets", run_id="s1", step=step),
            artifact_root=str(tmp_path / "art"),
            base_dir=tmp_path,
            mlflow=settings,
        )
        c.secrets["db_password"] = SecretStr(SECRET)
        return c

    try:
        client = configure(ctx("setup"))
        client.create_experiment("secrets", artifact_location=(tmp_path / "mlartifacts").as_uri())
        train = execute_step(
            TrainStep,
            ctx("train"),
            {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 300},
                "target": "target",
                "seed": 1,
            },
            {"dataset": dump_ref(describe_dataset(str(data)))},
        )
        evaluate = execute_step(
            EvaluateStep,
            ctx("evaluate"),
            {
                "target": "target",
                "thresholds": {"accuracy": ">= 0.5"},
                "champion": {"model_name": "secret-iris"},
            },
            {"model": train.outputs["model"], "dataset": train.outputs["test_data"]},
        )
        register = execute_step(
            RegisterStep,
            ctx("register"),
            {"name": "secret-iris", "promote": True},
            {"model": train.outputs["model"], "evaluation": evaluate.outputs["report"]},
        )

        found: dict[str, list[str]] = {}
        scanned = 0
        for path in tmp_path.rglob("*"):
            if path.is_file():
                scanned += 1
                text = path.read_bytes().decode("utf-8", errors="replace")
                if _leaks(text):
                    found[str(path)] = _leaks(text)
        assert scanned > 10  # lineage, cache, reports, model files, model card...
        results = json.dumps([r.to_dict() for r in (train, evaluate, register)])
        if _leaks(results):
            found["step results"] = _leaks(results)
        logs = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
        out, err = capfd.readouterr()
        for label, text in (("logs", logs), ("stdout", out), ("stderr", err)):
            if _leaks(text):
                found[label] = _leaks(text)

        experiment = client.get_experiment_by_name("secrets")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert runs
        for run in runs:
            blob = json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)])
            if _leaks(blob):
                found[f"run {run.info.run_id}"] = _leaks(blob)
        versions = client.search_model_versions("name='secret-iris'")
        assert versions
        for mv in versions:
            blob = json.dumps([mv.tags, mv.description, mv.source])
            if _leaks(blob):
                found[f"version {mv.version}"] = _leaks(blob)
        model = client.get_registered_model("secret-iris")
        if _leaks(json.dumps([model.tags, model.description, model.aliases])):
            found["registered model"] = ["..."]
        assert found == {}, found
        assert str(client.get_model_version_by_alias("secret-iris", "champion").version) == str(
            register.outputs["model_version"].version  # type: ignore[attr-defined]
        )
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
