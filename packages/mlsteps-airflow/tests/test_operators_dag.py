"""Hand-composed DAGs: operators, XCom wiring, Jinja templating and the mlflow connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import lineage_records, task_states, xcoms

SECRET = "tok-3c9f1e-do-not-leak"


def test_hand_composed_dag_with_jinja_and_xcom_inputs(tmp_path: Path, dag_file: Any) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "2026-11-01.csv").write_text("n\n1\n2\n3\n")
    (data / "2026-11-02.csv").write_text("n\n100\n")
    dag = dag_file(
        f"""
        from airflow.sdk import DAG
        from mlsteps_airflow.operators.mlsteps import MlstepsOperator

        with DAG("hand_jinja", schedule=None) as dag:
            load = MlstepsOperator(
                task_id="load",
                step="toy_file",
                config={{"path": "data/{{{{ ds }}}}.csv"}},
                artifact_root="art",
                base_dir={str(tmp_path)!r},
            )
            total = MlstepsOperator(
                task_id="total",
                step="toy_sum",
                config={{"min_sum": 5}},
                inputs={{"dataset": load.output["dataset"]}},
                artifact_root="art",
                base_dir={str(tmp_path)!r},
            )
        """
    )
    # Assigning the XComArg created the dependency.
    assert dag.get_task("total").upstream_task_ids == {"load"}

    dag_run = dag.test(logical_date=datetime(2026, 11, 1, tzinfo=UTC))

    assert task_states(dag_run) == {"load": "success", "total": "success"}
    values = xcoms("hand_jinja", dag_run.run_id)
    assert values[("load", "dataset")]["uri"] == str(data / "2026-11-01.csv")
    assert values[("total", "return_value")]["metrics"] == {"sum": 6.0}
    records = lineage_records(tmp_path / "art", dag_run.run_id)
    assert [r.run_key.step for r in records] == ["load", "total"]
    assert records[0].config == {"path": "data/2026-11-01.csv"}
    assert {r.run_key.orchestrator for r in records} == {"airflow"}
    assert {r.run_key.pipeline for r in records} == {"hand_jinja"}


def test_bad_config_fails_without_retry(tmp_path: Path, dag_file: Any) -> None:
    dag = dag_file(
        f"""
        from datetime import timedelta
        from airflow.sdk import DAG
        from mlsteps_airflow.operators.mlsteps import MlstepsOperator

        with DAG("hand_bad_config", schedule=None,
                 default_args={{"retries": 3, "retry_delay": timedelta(seconds=0)}}) as dag:
            MlstepsOperator(task_id="source", step="toy_source", config={{"count": -1, "colour": "red"}},
                            base_dir={str(tmp_path)!r})
            MlstepsOperator(task_id="unknown", step="no_such_step", base_dir={str(tmp_path)!r})
        """
    )

    dag_run = dag.test()

    assert task_states(dag_run) == {"source": "failed", "unknown": "failed"}
    assert dag_run.get_task_instance("source").try_number == 1
    assert dag_run.get_task_instance("unknown").try_number == 1


def test_mlflow_connection_reaches_the_step_and_the_token_does_not_leak(
    tmp_path: Path, dag_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {
        "conn_type": "mlflow",
        "host": "http://mlflow.internal:5000",
        "password": SECRET,
        "extra": {"registry_uri": "http://registry.internal:5000"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_TEST", json.dumps(conn))
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        "name: probe\n"
        "defaults: {artifact_root: art, mlflow: {experiment: from_spec}}\n"
        "steps:\n  probe: {uses: toy_probe}\n"
    )
    dag = dag_file(
        f"""
        from airflow.sdk import DAG
        from mlsteps_airflow.dag import build_dag
        from mlsteps_airflow.operators.mlsteps import MlstepsOperator

        dag = build_dag({str(spec)!r}, dag_id="probe_conn", mlflow_conn_id="mlflow_test")
        with dag:
            MlstepsOperator(task_id="hand_probe", step="toy_probe", artifact_root={str(tmp_path / "art")!r},
                            mlflow_conn_id="mlflow_test", mlflow={{"experiment": "explicit"}})
        """
    )

    dag_run = dag.test()

    assert task_states(dag_run) == {"probe": "success", "hand_probe": "success"}
    values = xcoms("probe_conn", dag_run.run_id)
    from_spec = values[("probe", "report")]["summary"]
    assert from_spec["tracking_uri"] == "http://mlflow.internal:5000"
    assert from_spec["registry_uri"] == "http://registry.internal:5000"
    assert from_spec["experiment"] == "from_spec"  # spec default kept, connection merged over it
    assert from_spec["token_len"] == len(SECRET)
    hand = values[("hand_probe", "report")]["summary"]
    assert hand["experiment"] == "explicit"
    assert hand["token_len"] == len(SECRET)

    assert SECRET not in json.dumps(list(values.values()), default=str)
    lineage_dir = tmp_path / "art" / "lineage"
    files = list(lineage_dir.rglob("*.json"))
    assert len(files) == 2
    for path in files:
        assert SECRET not in path.read_text()
    assert all(SECRET not in p.read_text() for p in (tmp_path / "art" / "runs").rglob("*.json"))
