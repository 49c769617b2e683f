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


@task
def deploy(version: dict) -> dict:
    import mlflow  # noqa: F401

    return {"endpoint": "http://127.0.0.1:5001"}


# Like the flow build_flow makes, it takes run parameters: Prefect then checks each
# parameter's type against pydantic.v1 when the flow is built, which imports it (~0.1 s).
@flow(name="penguins_handwritten")
def penguins(artifact_root: str | None = None, trigger: dict | None = None) -> dict:
    data = featurise(validate())
    model = train(data)
    return deploy(register(model, evaluate(model, data)))
