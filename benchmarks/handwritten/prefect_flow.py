"""The penguins pipeline hand-written as a Prefect flow of tasks, libraries imported inside."""

from __future__ import annotations

from prefect import flow, task


@task
def validate() -> dict:
    import great_expectations as gx  # noqa: F401

    return {"uri": "data/penguins.parquet"}


@task
def featurise(dataset: dict) -> dict:
    import feast  # noqa: F401

    return dataset


@task
def train(dataset: dict) -> dict:
    import mlflow  # noqa: F401

    return {"model": "models:/m"}


@task
def evaluate(model: dict, dataset: dict) -> dict:
    return {"passed": True}


@task
def register(model: dict, evaluation: dict) -> dict:
    return {"version": "1"}


@flow(name="penguins_handwritten")
def penguins() -> dict:
    data = featurise(validate())
    model = train(data)
    return register(model, evaluate(model, data))
