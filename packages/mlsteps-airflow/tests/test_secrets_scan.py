"""Planted secrets in the ``mlflow`` connection never reach any output of an Airflow run.

The connection carries an MLflow token (its password) and a tracking URI to a
fresh PostgreSQL database with a database password in it (trust auth ignores
it, the URI is really used). A source -> train -> evaluate -> register pipeline
runs under ``dag.test()`` on the real metadata DB. Then everything is scanned for the
planted values: every row of every table of the Airflow metadata DB (XComs,
rendered template fields, task instances, logs, serialized DAGs...), the
deserialized XComs, every file under AIRFLOW_HOME (task logs included) and
under the test's directory (artifact root, MLflow artifacts, lineage), the
captured log records and output, and every row of the MLflow database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import task_states, write_spec, xcoms

from mlsteps.testing import leaks, scan_database, scan_files

PASSWORD = f"pw-{uuid.uuid4().hex}"
TOKEN = f"tok-{uuid.uuid4().hex}"
PLANTED = (PASSWORD, TOKEN)
POSTGRES = os.environ.get("MLSTEPS_TEST_POSTGRES", "127.0.0.1:5432")


def _leaks(text: str) -> list[str]:
    return leaks(text, PLANTED)


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"mlsteps_secrets_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        f"postgresql+psycopg2://postgres@{POSTGRES}/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield name
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.mark.integration
@pytest.mark.slow
def test_planted_secrets_in_the_mlflow_connection_appear_in_no_output(
    tmp_path: Path,
    dag_file: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import mlflow
    from airflow.configuration import conf
    from mlflow import MlflowClient

    from mlsteps_airflow.hooks.mlflow import MlflowHook

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)  # configure() sets it; restored after
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    rows = ["x1,x2,y"] + [
        f"{i % 7},{(i * 3) % 5},{'a' if (i % 7) + (i * 3) % 5 > 5 else 'b'}" for i in range(120)
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = write_spec(
        tmp_path,
        """\
        name: secrets
        defaults: {artifact_root: art}
        steps:
          source: {uses: toy_file, config: {path: train.csv}}
          train:
            config: {estimator: sklearn.tree.DecisionTreeClassifier, target: y, seed: 0}
            inputs: {dataset: source.dataset}
          evaluate:
            config: {target: y, thresholds: {accuracy: ">= 0.5"}}
            inputs: {model: train.model, dataset: train.test_data}
          register:
            config: {name: secret-model, promote: true}
            inputs: {model: train.model, evaluation: evaluate.report}
        """,
    )

    with _fresh_database() as database:
        uri = f"postgresql+psycopg2://postgres:{PASSWORD}@{POSTGRES}/{database}"
        # The experiment's artifacts go under the test directory (not ./mlruns), so they are scanned.
        MlflowClient(tracking_uri=uri).create_experiment(
            "secrets", artifact_location=(tmp_path / "mlartifacts").as_uri()
        )
        conn = {"conn_type": "mlflow", "host": uri, "password": TOKEN, "extra": {"experiment": "secrets"}}
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SECRETS", json.dumps(conn))
        # The scan would see the secrets: they really are in the connection the DAG reads.
        settings = MlflowHook("mlflow_secrets").get_settings()
        assert settings.token is not None
        assert _leaks(settings.token.get_secret_value() + " " + str(settings.tracking_uri)) == list(PLANTED)
        dag = dag_file(
            f"""
            from mlsteps_airflow.dag import build_dag

            dag = build_dag({str(spec)!r}, dag_id="secrets_scan", mlflow_conn_id="mlflow_secrets")
            """
        )
        try:
            dag_run = dag.test()
        finally:
            mlflow.set_tracking_uri(before[0])
            mlflow.set_registry_uri(before[1])

        assert task_states(dag_run) == dict.fromkeys(["source", "train", "evaluate", "register"], "success")
        values = xcoms("secrets_scan", dag_run.run_id)
        # The token reached MLflow's configuration (tasks run in-process; MLflow reads it from the
        # environment only), and the URI with the password is the one MLflow used.
        assert os.environ.get("MLFLOW_TRACKING_TOKEN") == TOKEN
        versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(
            "name='secret-model'"
        )
        assert [str(v.version) for v in versions] == ["1"]

        found: dict[str, list[str]] = {}
        # MLflow: runs, params, tags, metrics, model versions, registered models... every row.
        mlflow_rows = scan_database(uri, "mlflow", PLANTED, found)
        assert mlflow_rows["params"] > 0
        assert mlflow_rows["model_versions"] == 1

    # Airflow metadata DB: XComs, rendered template fields, task instances, logs, serialized DAGs.
    airflow_rows = scan_database(conf.get("database", "sql_alchemy_conn"), "airflow", PLANTED, found)
    assert airflow_rows["xcom"] > 0
    assert airflow_rows["rendered_task_instance_fields"] > 0
    for key, value in values.items():
        leaks = _leaks(json.dumps(value, default=str))
        if leaks:
            found[f"xcom {key}"] = leaks
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    assert scan_files(airflow_home, PLANTED, found) > 0  # airflow.db, config, task logs when written
    assert scan_files(tmp_path, PLANTED, found) > 10  # lineage, cache, reports, model files, MLflow artifacts
    assert any((tmp_path / "mlartifacts").rglob("MLmodel"))
    assert any((tmp_path / "art" / "lineage").rglob("*.json"))
    out, err = capfd.readouterr()
    logs = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    # dag.test() runs the tasks in-process and logs them (structlog) to stdout or stderr, depending
    # on how logging was configured before: whichever it was, the task logs are among what is scanned.
    assert "task_id=register" in out + err + logs
    for label, text in (("log records", logs), ("stdout", out), ("stderr", err)):
        leaks = _leaks(text)
        if leaks:
            found[label] = leaks
    assert found == {}, found
