"""The penguins pipeline hand-written as Dagster assets that do the work (validate -> register).

The baseline of ``benchmarks/adapter_overhead.py`` for ``build_definitions``: one
asset per stage calling GX, Feast, scikit-learn and MLflow directly (the bodies
are :mod:`penguins_stages`, i.e. ``penguins_direct.py``'s functions), file paths
and MLflow ids passed between assets. ``PENGUINS_PROJECT`` names the project
directory, ``PENGUINS_UNTIL`` the last stage; ``assets`` are the ones to materialize.
Needs ``benchmarks/handwritten`` on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import penguins_stages as stages


@dg.asset
def validated() -> str:
    return stages.validate()


@dg.asset
def training_set(validated: str) -> str:
    return stages.featurise(validated)


@dg.asset
def model(training_set: str) -> dict[str, str]:
    return stages.train(training_set)


@dg.asset
def evaluation(model: dict[str, str]) -> dict[str, float]:
    return stages.evaluate(model)


@dg.asset
def model_version(model: dict[str, str], evaluation: dict[str, Any]) -> str:
    return stages.register(model, evaluation)


assets = (
    [validated, training_set, model, evaluation, model_version] if stages.runs("featurise") else [validated]
)
defs = dg.Definitions(assets=assets)
