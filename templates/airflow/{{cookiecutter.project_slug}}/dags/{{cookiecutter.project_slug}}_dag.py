"""The {{ cookiecutter.project_name }} pipeline as an Airflow DAG: one task per step of ``pipeline.yaml``.

Airflow parses this file often, so ``build_dag`` only loads and validates the spec
(no ML library is imported); the steps run in the tasks, refs pass over XCom and
artifacts go to ``.mlsteps`` next to the spec, as with ``mlsteps run``. To track in
an MLflow server, create an ``mlflow`` connection and pass ``mlflow_conn_id=...``.
"""

from __future__ import annotations

from pathlib import Path

from mlsteps_airflow.dag import build_dag

SPEC = Path(__file__).resolve().parents[1] / "pipeline.yaml"

dag = build_dag(SPEC, tags=["mlsteps", {{ cookiecutter.project_slug | tojson }}])
