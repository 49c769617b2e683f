"""The penguins pipeline hand-written as Dagster assets, libraries imported inside the assets."""

from __future__ import annotations

import dagster as dg


@dg.asset
def validated() -> dict:
    import great_expectations as gx  # noqa: F401

    return {"uri": "data/penguins.parquet"}


@dg.asset
def training_set(validated: dict) -> dict:
    import feast  # noqa: F401

    return validated


@dg.asset
def model(training_set: dict) -> dict:
    import mlflow  # noqa: F401

    return {"model": "models:/m"}


@dg.asset
def evaluation(model: dict, training_set: dict) -> dict:
    return {"passed": True}


@dg.asset_check(asset=evaluation, blocking=True)
def evaluation_gate(evaluation: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=bool(evaluation["passed"]))


@dg.asset
def model_version(model: dict, evaluation: dict) -> dict:
    import mlflow  # noqa: F401

    return {"version": "1"}


@dg.asset
def deployment(model_version: dict) -> dict:
    import mlflow  # noqa: F401

    return {"endpoint": "http://127.0.0.1:5001"}


defs = dg.Definitions(
    assets=[validated, training_set, model, evaluation, model_version, deployment],
    asset_checks=[evaluation_gate],
)
