"""Planted secrets in the MLflow and Feast resources never reach any output of a Dagster run.

``MlflowResource`` gets an MLflow token (for the spec's embedded SQLite MLflow;
MLflow reads the token from the environment, where the steps set it) and
``FeastResource`` gets a Redis connection string with a password (both through
``dg.EnvVar``, as documented; Redis' password-less default user accepts any
password, so the value is really used). The penguins validate -> featurise (materialized
to Redis) -> train -> evaluate -> register pipeline is materialized on a real
``DagsterInstance`` in a temp directory. Then everything is scanned for the
planted values: every event log record of the run (serialized), the run itself,
the asset materialization and check metadata, every file under the instance
directory (event log and run DBs, compute logs, stored asset values) and the
project (artifact root, lineage, MLflow artifacts), the captured logs and
output, and every row of the MLflow database.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
from conftest import write_spec

from mlsteps.testing import drop_feast_keys, leaks, scan_database, scan_files
from mlsteps_dagster import (
    FEAST_RESOURCE_KEY,
    MLFLOW_RESOURCE_KEY,
    FeastResource,
    MlflowResource,
    build_definitions,
)

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"
REDIS_DB = 13  # a database of its own; only the keys this test adds are deleted

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
def test_planted_secrets_in_the_resources_appear_in_no_output(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import mlflow
    import redis
    from mlflow import MlflowClient

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
    spec = write_spec(project, SPEC)
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable on 127.0.0.1:6379: run scripts/ensure-services.sh")
    drop_feast_keys(client, "penguins")  # an interrupted earlier run's keys would hide this run's
    redis_before = set(client.keys("*"))

    # MLflow is the spec's embedded SQLite under the artifact root (no PostgreSQL driver in this env).
    uri = f"sqlite:///{project / '.mlsteps' / 'mlflow.db'}"
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        monkeypatch.setenv("MLSTEPS_TEST_SECRET_MLFLOW_TOKEN", TOKEN)
        monkeypatch.setenv(
            "MLSTEPS_TEST_SECRET_REDIS",
            f"127.0.0.1:6379,db={REDIS_DB},username=default,password={REDIS_PASSWORD}",
        )
        resources = {
            MLFLOW_RESOURCE_KEY: MlflowResource(
                token=dg.EnvVar("MLSTEPS_TEST_SECRET_MLFLOW_TOKEN"),
            ),
            FEAST_RESOURCE_KEY: FeastResource(
                online_store={"type": "redis"}, connection_string=dg.EnvVar("MLSTEPS_TEST_SECRET_REDIS")
            ),
        }
        defs = build_definitions(spec, resources=resources)
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
        try:
            result = dg.materialize(assets, resources=defs.resources, instance=instance)
            # The secrets were really used: MLflow got the token (it reads it from the environment
            # only; the steps run in this process), the embedded MLflow holds the
            # registered version, and Feast wrote the online store through the Redis connection.
            assert result.success
            assert os.environ.get("MLFLOW_TRACKING_TOKEN") == TOKEN
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
        mlflow_rows = scan_database(uri, "mlflow", PLANTED, found)
        assert mlflow_rows["params"] > 0
        assert mlflow_rows["model_versions"] == 1

        # Dagster: every event log record (materializations and their metadata, asset checks,
        # step logs), the run (config, tags), and the materialization metadata once more.
        records = instance.all_logs(result.run_id)
        assert len(records) > 20
        for i, entry in enumerate(records):
            leaks = _leaks(dg.serialize_value(entry))
            if leaks:
                found[f"event {i} {entry.dagster_event_type}"] = leaks
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        if _leaks(dg.serialize_value(run)):
            found["dagster run"] = _leaks(dg.serialize_value(run))
        materializations = result.get_asset_materialization_events()
        assert len(materializations) >= 5
        metadata = repr([ev.materialization.metadata for ev in materializations])
        assert "mlsteps/run_key" in metadata
        if _leaks(metadata):
            found["materialization metadata"] = _leaks(metadata)
        for key in result.asset_materializations_for_node("featurise"):
            if _leaks(repr(key)):
                found["featurise materialization"] = _leaks(repr(key))

    # The instance directory (run and event log DBs, compute logs, stored asset values) and the project.
    assert scan_files(tmp_path / "dagster_home", PLANTED, found) > 0
    assert scan_files(tmp_path, PLANTED, found) > 10
    assert any(project.rglob("MLmodel"))
    assert any((project / ".mlsteps" / "lineage").rglob("*.json"))
    out, err = capfd.readouterr()
    logs = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert "featurise" in logs + out + err
    for label, text in (("log records", logs), ("stdout", out), ("stderr", err)):
        if _leaks(text):
            found[label] = _leaks(text)
    assert found == {}, found
