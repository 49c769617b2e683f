"""The penguins pipeline and its drift monitor as Airflow DAGs: the retraining loop.

Copy this file, ``pipeline.yaml`` and ``monitor.yaml`` into your DAGs folder.

* ``penguins``: one task per step of ``pipeline.yaml`` (validate -> featurise ->
  train -> evaluate -> register -> deploy), refs passed over XCom, artifacts
  under ``.mlsteps`` next to the spec, exactly as ``mlsteps run pipeline.yaml``
  does. It runs when triggered by hand and whenever a monitor reports drift
  of the ``penguins`` model (it is scheduled on ``drift_asset("penguins")``).
* ``penguins_monitor``: ``monitor.yaml`` once a day. Its ``monitor`` task checks
  ``data/next_batch.parquet`` against the champion's training data; only when
  the verdict is ``drift`` does it emit an event on ``drift_asset("penguins")``,
  which queues a ``penguins`` run. Every step of that run records the drift
  report as its lineage ``trigger``.

Parsing this file loads and validates both specs only; no ML library is imported.
To use an MLflow server, create an ``mlflow`` connection and pass its id to both:
``build_dag(SPEC, mlflow_conn_id="mlflow_default")``.
"""

from __future__ import annotations

from pathlib import Path

from mlsteps_airflow import build_dag, drift_asset

HERE = Path(__file__).resolve().parent
SPEC = HERE / "pipeline.yaml"
MONITOR_SPEC = HERE / "monitor.yaml"

dag = build_dag(SPEC, schedule=[drift_asset("penguins")], tags=["mlsteps", "example"])
monitor_dag = build_dag(MONITOR_SPEC, schedule="@daily", tags=["mlsteps", "example"])
