"""The penguins pipeline hand-written as a Prefect flow whose tasks do the work (validate -> register).

The baseline of ``benchmarks/adapter_overhead.py`` for ``build_flow``: one task per
stage calling GX, Feast, scikit-learn and MLflow directly (the bodies are
:mod:`penguins_stages`, i.e. ``penguins_direct.py``'s functions), file paths and
MLflow ids passed between tasks. ``PENGUINS_PROJECT`` names the project directory,
``PENGUINS_UNTIL`` the last stage. Tasks use ``NO_CACHE``, as the adapter's tasks
do when a step has ``cache: false`` (the benchmark's spec), so both sides ask
Prefect for the same work. Needs ``benchmarks/handwritten`` on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import penguins_stages as stages
from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def validate() -> str:
    return stages.validate()


@task(cache_policy=NO_CACHE)
def featurise(data: str) -> str:
    return stages.featurise(data)


@task(cache_policy=NO_CACHE)
def train(features: str) -> dict[str, str]:
    return stages.train(features)


@task(cache_policy=NO_CACHE)
def evaluate(trained: dict[str, str]) -> dict[str, float]:
    return stages.evaluate(trained)


@task(cache_policy=NO_CACHE)
def register(trained: dict[str, str], metrics: dict[str, Any]) -> str:
    return stages.register(trained, metrics)


@flow(name="penguins_handwritten")
def penguins() -> str | None:
    data = validate()
    if not stages.runs("featurise"):
        return None
    trained = train(featurise(data))
    return register(trained, evaluate(trained))
