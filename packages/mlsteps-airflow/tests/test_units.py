"""Operators, hook and DAG builder without running a DAG (no metadata DB needed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from airflow.sdk import Connection
from airflow_testing import write_spec

from mlsteps.context import MlflowSettings
from mlsteps.errors import ConfigError
from mlsteps_airflow.dag import build_dag
from mlsteps_airflow.get_provider_info import get_provider_info
from mlsteps_airflow.hooks.mlflow import MlflowHook, settings_from_connection
from mlsteps_airflow.operators.mlsteps import (
    EvaluateOperator,
    FeaturiseOperator,
    MlstepsOperator,
    RegisterOperator,
    TrainOperator,
    ValidateOperator,
)

SPEC = """\
name: toy_units
description: A toy pipeline.
steps:
  source: {uses: toy_source, config: {count: 3}}
  total: {uses: toy_sum, inputs: {dataset: source.dataset}, retries: 3}
  copy: {uses: toy_copy, inputs: {dataset: source.dataset}}
"""


def test_init_stores_arguments_without_validating() -> None:
    # An unknown step type and an invalid config are only detected in execute().
    op = MlstepsOperator(
        task_id="t", step="no_such_step", config={"count": "{{ ds }}", "bogus": 1}, inputs={"x": 1}
    )
    assert op.step == "no_such_step"
    assert op.config == {"count": "{{ ds }}", "bogus": 1}
    assert op.inputs == {"x": 1}
    assert {"config", "inputs"} <= set(MlstepsOperator.template_fields)


@pytest.mark.parametrize(
    ("cls", "step"),
    [
        (ValidateOperator, "validate"),
        (FeaturiseOperator, "featurise"),
        (TrainOperator, "train"),
        (EvaluateOperator, "evaluate"),
        (RegisterOperator, "register"),
    ],
)
def test_step_operators_fix_their_step(cls: type[MlstepsOperator], step: str) -> None:
    assert cls(task_id="t", config={"a": 1}).step == step
    with pytest.raises(TypeError, match="do not pass 'step'"):
        cls(task_id="t", step="other")


def test_build_dag_maps_the_spec(tmp_path: Path) -> None:
    dag = build_dag(write_spec(tmp_path, SPEC))
    assert dag.dag_id == "toy_units"
    assert dag.description == "A toy pipeline."
    assert set(dag.task_ids) == {"source", "total", "copy"}
    assert dag.get_task("total").upstream_task_ids == {"source"}
    assert dag.get_task("copy").upstream_task_ids == {"source"}
    assert dag.get_task("total").retries == 3
    source = dag.get_task("source")
    assert isinstance(source, MlstepsOperator)
    assert source.step == "toy_source"
    assert source.spec_path == str(tmp_path / "pipeline.yaml")
    assert source.config is None  # read from the spec at run time, never Jinja-rendered


def test_build_dag_keeps_default_args_retries_when_the_spec_sets_none(tmp_path: Path) -> None:
    dag = build_dag(write_spec(tmp_path, SPEC), dag_id="other", default_args={"retries": 5})
    assert dag.dag_id == "other"
    assert dag.get_task("source").retries == 5
    assert dag.get_task("total").retries == 3


def test_build_dag_reports_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown step 'nope'"):
        build_dag(write_spec(tmp_path, SPEC.replace("source.dataset}, retries", "nope.dataset}, retries")))


def test_connection_with_full_uri_and_token() -> None:
    conn = Connection(
        conn_id="m",
        conn_type="mlflow",
        host="https://mlflow.example.com/prefix",
        password="s3cret",
        extra='{"experiment": "exp", "registry_uri": "databricks-uc"}',
    )
    settings = settings_from_connection(conn)
    assert settings.tracking_uri == "https://mlflow.example.com/prefix"
    assert settings.registry_uri == "databricks-uc"
    assert settings.experiment == "exp"
    assert settings.token is not None
    assert settings.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in settings.model_dump_json()


def test_connection_with_bare_host() -> None:
    plain = settings_from_connection(Connection(conn_id="m", conn_type="mlflow", host="mlflow", port=5000))
    assert plain == MlflowSettings(tracking_uri="http://mlflow:5000")
    secure = settings_from_connection(
        Connection(conn_id="m", conn_type="mlflow", host="mlflow", extra='{"https": true}')
    )
    assert secure.tracking_uri == "https://mlflow"
    assert settings_from_connection(Connection(conn_id="m", conn_type="mlflow")) == MlflowSettings()


def test_provider_info_points_at_real_modules() -> None:
    info = get_provider_info()
    assert info["package-name"] == "mlsteps-airflow"
    for section in ("operators", "hooks"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    (conn_type,) = info["connection-types"]
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook is MlflowHook
    assert hook.conn_type == conn_type["connection-type"] == "mlflow"
