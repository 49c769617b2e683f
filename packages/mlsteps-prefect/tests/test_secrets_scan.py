"""Planted secrets in the MLflow and Feast blocks never reach any output of a Prefect run.

``MlflowSettingsBlock`` holds an MLflow token (for the embedded SQLite MLflow
under the artifact root; MLflow reads the token from the environment, where the
steps set it) and ``FeastSettings`` a Redis connection string with a password
(Redis' password-less default user accepts any password, so it is really used).
The penguins validate -> featurise (materialized to Redis) -> train -> evaluate
-> register pipeline runs as a flow built with ``build_flow`` on the session's
real Prefect server. Then everything is scanned for the planted values: the
flow and task runs (parameters, states, results), the run's logs and artifacts
read through the API, every row of the server's database (block documents
included: Prefect encrypts them at rest), every file of the persisted results
and of the project (artifact root, lineage, MLflow), and the captured logs and
output.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect_helpers import artifacts, flow_run_id, lineage, state_names, task_runs
from pydantic import SecretStr

from mlsteps.testing import drop_feast_keys, leaks, scan_database, scan_files
from mlsteps_prefect import FeastSettings, MlflowSettingsBlock, build_flow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "penguins"
REDIS_DB = 12  # a database of its own; only the keys this test adds are deleted

TOKEN = f"tok-{uuid.uuid4().hex}"
REDIS_PASSWORD = f"rpw-{uuid.uuid4().hex}"
PLANTED = (TOKEN, REDIS_PASSWORD)

SPEC = """\
name: secrets
defaults: {artifact_root: .mlsteps}
steps:
  validate:
    config:
      data: data/penguins.parquet
      expectations: [{type: column_exists, column: species}]
  featurise:
    config:
      repo_path: feature_repo
      feature_service: penguin_features
      entity_columns: [penguin_id]
      event_timestamp_column: event_timestamp
      label_columns: [species]
      materialize: true
      materialize_end: max_event_time
    inputs: {dataset: validate.dataset}
  train:
    config:
      estimator: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 20, max_depth: 4}
      target: species
      exclude: [penguin_id, event_timestamp]
      seed: 1
    inputs: {dataset: featurise.dataset}
  evaluate:
    config:
      target: species
      thresholds: {accuracy: ">= 0.5"}
    inputs: {model: train.model, dataset: train.test_data}
  register:
    config: {name: secret_penguins, promote: true}
    inputs: {model: train.model, evaluation: evaluate.report}
"""


def _leaks(text: str) -> list[str]:
    return leaks(text, PLANTED)


@pytest.mark.integration
@pytest.mark.slow
def test_planted_secrets_in_the_blocks_appear_in_no_output(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import mlflow
    import redis
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, PREFECT_SERVER_DATABASE_CONNECTION_URL

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)  # configure() sets it; restored after
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    project = tmp_path / "p"
    shutil.copytree(
        EXAMPLE / "feature_repo", project / "feature_repo", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare_data.py"), "--out", str(project / "data")],
        check=True,
        timeout=300,
        capture_output=True,
    )
    spec = project / "pipeline.yaml"
    spec.write_text(SPEC)
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable on 127.0.0.1:6379: run scripts/ensure-services.sh")
    drop_feast_keys(client, "penguins")  # an interrupted earlier run's keys would hide this run's
    redis_before = set(client.keys("*"))
    suffix = uuid.uuid4().hex[:8]
    MlflowSettingsBlock(experiment="secrets", token=SecretStr(TOKEN)).save(f"mlflow-secrets-{suffix}")
    FeastSettings(
        online_store={"type": "redis"},
        online_store_connection_string=SecretStr(
            f"127.0.0.1:6379,db={REDIS_DB},username=default,password={REDIS_PASSWORD}"
        ),
    ).save(f"feast-secrets-{suffix}")
    # The scan would see the secrets: they really are in the blocks the flow loads.
    loaded = MlflowSettingsBlock.load(f"mlflow-secrets-{suffix}")
    assert loaded.token is not None and _leaks(loaded.token.get_secret_value()) == [TOKEN]
    pipeline = build_flow(
        spec, mlflow_block=f"mlflow-secrets-{suffix}", feast_block=f"feast-secrets-{suffix}"
    )
    try:
        state = pipeline(return_state=True)
        # The secrets were really used: MLflow got the token (it reads it from the environment
        # only; the tasks run in this process), the embedded MLflow holds the registered
        # version, and Feast wrote the online store through the Redis connection.
        assert state.is_completed(), state.message
        assert os.environ.get("MLFLOW_TRACKING_TOKEN") == TOKEN
        uri = f"sqlite:///{project / '.mlsteps' / 'mlflow.db'}"
        versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(
            "name='secret_penguins'"
        )
        assert [str(v.version) for v in versions] == ["1"]
        assert set(client.keys("*")) - redis_before, "nothing was written to Redis"
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        added = set(client.keys("*")) - redis_before
        if added:
            client.delete(*added)

    found: dict[str, list[str]] = {}
    steps = ["validate", "featurise", "train", "evaluate", "register"]
    assert state_names(state) == dict.fromkeys(steps, "Completed")
    # The flow's result (every step's output refs) and each task run with its state as stored.
    if _leaks(repr(state.result())):
        found["flow result"] = _leaks(repr(state.result()))
    for sid, run in task_runs(state).items():
        if _leaks(run.model_dump_json()):
            found[f"task run {sid}"] = _leaks(run.model_dump_json())
    with get_client(sync_client=True) as api:
        flow_run = api.read_flow_run(flow_run_id(state))
        assert flow_run.parameters["mlflow_block"] == f"mlflow-secrets-{suffix}"
        if _leaks(flow_run.model_dump_json()):
            found["flow run"] = _leaks(flow_run.model_dump_json())
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id(state)])))
    assert len(logs) > 5
    assert any(log.task_run_id is not None for log in logs)
    for log in logs:
        if _leaks(log.model_dump_json()):
            found[f"log {log.id}"] = _leaks(log.model_dump_json())
    run_artifacts = artifacts(state)
    assert run_artifacts
    for artifact in run_artifacts:
        if _leaks(artifact.model_dump_json()):
            found[f"artifact {artifact.key or artifact.id}"] = _leaks(artifact.model_dump_json())
    records = lineage(project / ".mlsteps", state)
    assert [r.run_key.step for r in records] == steps

    # Every row the server stored: flow/task runs, states, logs, artifacts, events, and the block
    # documents themselves (Prefect encrypts block data at rest, so not even they hold it in clear).
    db_url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).replace("+aiosqlite", "")
    rows = scan_database(db_url, "prefect", PLANTED, found)
    assert rows["task_run"] >= 5 and rows["log"] > 5 and rows["block_document"] >= 2
    results_dir = Path(str(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()))
    assert results_dir.is_dir()
    scan_files(results_dir, PLANTED, found)
    assert scan_files(tmp_path, PLANTED, found) > 10  # lineage, cache, reports, model files, MLflow artifacts
    assert any(project.rglob("MLmodel"))
    out, err = capfd.readouterr()
    captured = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert "featurise" in captured + out + err
    for label, text in (("log records", captured), ("stdout", out), ("stderr", err)):
        if _leaks(text):
            found[label] = _leaks(text)
    assert found == {}, found
