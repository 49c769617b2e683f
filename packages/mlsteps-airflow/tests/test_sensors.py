"""``ModelAliasSensor`` against a real MLflow registry (SQLite) under ``dag.test()``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import task_states, xcoms


def registry(root: Path) -> Any:
    """A client on the embedded registry an mlsteps context with artifact root ``root`` uses."""
    from mlsteps.backends.mlflow import configure
    from mlsteps.context import RunKey, build_context

    return configure(build_context(RunKey(run_id="t", step="t"), artifact_root=str(root)))


def add_version(client: Any, tmp_path: Path, name: str) -> str:
    source = tmp_path / f"artifacts-{name}"
    source.mkdir(exist_ok=True)
    with contextlib.suppress(Exception):  # already there
        client.create_registered_model(name)
    return str(client.create_model_version(name, source=str(source)).version)


def sensor_dag(dag_file: Any, root: Path, dag_id: str, **sensor: Any) -> Any:
    args = ", ".join(f"{k}={v!r}" for k, v in sensor.items())
    return dag_file(
        f"""
        from airflow.sdk import DAG
        from mlsteps_airflow import ModelAliasSensor

        with DAG({dag_id!r}, schedule=None) as dag:
            ModelAliasSensor(task_id="wait", artifact_root={str(root)!r}, poke_interval=1, timeout=3, {args})
        """
    )


def test_sensor_returns_the_version_the_alias_points_at(tmp_path: Path, dag_file: Any) -> None:
    root = tmp_path / "art"
    client = registry(root)
    add_version(client, tmp_path, "penguins")
    v2 = add_version(client, tmp_path, "penguins")
    client.set_registered_model_alias("penguins", "champion", v2)
    dag = sensor_dag(dag_file, root, "alias_found", model="penguins")

    run = dag.test()

    assert task_states(run) == {"wait": "success"}
    ref = xcoms("alias_found", run.run_id)[("wait", "return_value")]
    assert ref["kind"] == "model_version"
    assert (ref["name"], ref["version"], ref["aliases"]) == ("penguins", v2, ["champion"])


@pytest.mark.parametrize(
    ("setup", "sensor"),
    [
        ("none", {"model": "nobody"}),  # no such model
        ("v1", {"model": "penguins", "alias": "champion"}),  # model, but no alias yet
        ("alias_v1", {"model": "penguins", "not_version": "1"}),  # alias still on the deployed version
    ],
)
def test_sensor_keeps_waiting_and_times_out(
    tmp_path: Path, dag_file: Any, setup: str, sensor: dict[str, Any]
) -> None:
    root = tmp_path / "art"
    client = registry(root)
    if setup != "none":
        v1 = add_version(client, tmp_path, "penguins")
        if setup == "alias_v1":
            client.set_registered_model_alias("penguins", "champion", v1)
    dag = sensor_dag(dag_file, root, f"alias_wait_{setup}", **sensor)

    # A poke says "not yet" (it does not raise) ...
    poke = dag.task_dict["wait"].poke({"run_id": "manual__t"})
    assert poke.is_done is False
    # ... so under Airflow the sensor pokes until its timeout fails the task.
    run = dag.test()
    assert task_states(run) == {"wait": "failed"}


def test_sensor_surfaces_other_registry_errors(
    tmp_path: Path, dag_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlsteps.errors import BackendError

    # Nothing listens on port 9; fail fast instead of MLflow's minutes of back-off.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    dag = sensor_dag(
        dag_file, tmp_path, "alias_bad_uri", model="m", mlflow={"tracking_uri": "http://127.0.0.1:9"}
    )
    # The MLflow backend checks the server is reachable before MLflow retries: the error names it.
    with pytest.raises(BackendError, match=r"MLflow tracking server at http://127\.0\.0\.1:9 is unreachable"):
        dag.task_dict["wait"].poke({"run_id": "manual__t"})
