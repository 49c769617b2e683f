"""The penguins pipeline hand-written as an Airflow DAG whose tasks do the work (validate -> register).

The baseline of ``benchmarks/adapter_overhead.py`` for ``build_dag``: one ``@task``
per stage calling GX, Feast, scikit-learn and MLflow directly (the bodies are
:mod:`penguins_stages`, i.e. ``penguins_direct.py``'s functions), file paths and
MLflow ids passed over XCom. ``PENGUINS_PROJECT`` names the project directory,
``PENGUINS_UNTIL`` the last stage. Needs ``benchmarks/handwritten`` on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import penguins_stages as stages
from airflow.sdk import DAG, task


@task
def validate() -> str:
    return stages.validate()


@task
def featurise(data: str) -> str:
    return stages.featurise(data)


@task
def train(features: str) -> dict[str, str]:
    return stages.train(features)


@task
def evaluate(trained: dict[str, str]) -> dict[str, float]:
    return stages.evaluate(trained)


@task
def register(trained: dict[str, str], metrics: dict[str, Any]) -> str:
    return stages.register(trained, metrics)


with DAG("penguins_handwritten", schedule=None, tags=["handwritten"]) as dag:
    data = validate()
    if stages.runs("featurise"):
        trained = train(featurise(data))
        register(trained, evaluate(trained))
