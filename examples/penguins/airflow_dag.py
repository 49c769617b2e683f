"""The penguins pipeline as an Airflow DAG: copy this file and ``pipeline.yaml`` into your DAGs folder.

One task per step of ``pipeline.yaml`` (validate -> featurise -> train -> evaluate
-> register), refs passed over XCom, artifacts under ``.mlsteps`` next to the
spec, exactly as ``mlsteps run examples/penguins/pipeline.yaml`` does. Parsing
this file loads and validates the spec only; no ML library is imported.

To use an MLflow server, create an ``mlflow`` connection and pass its id:
``build_dag(SPEC, mlflow_conn_id="mlflow_default")``.
"""

from __future__ import annotations

from pathlib import Path

from mlsteps_airflow.dag import build_dag

SPEC = Path(__file__).resolve().parent / "pipeline.yaml"

dag = build_dag(SPEC, tags=["mlsteps", "example"])
