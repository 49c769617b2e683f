"""The six-step penguins pipeline in ZenML: load CSV, validate, features, train, evaluate, register.

``python penguins_zenml.py --data penguins.csv --registry DIR``; the work is ``penguins_work``.
"""

from __future__ import annotations

import argparse
from typing import Annotated

import pandas as pd  # noqa: TC002 - ZenML reads the step annotations at run time
import penguins_work as work
from sklearn.base import ClassifierMixin  # noqa: TC002 - idem
from zenml import pipeline, step


@step
def load(path: str) -> pd.DataFrame:
    return work.load(path)


@step
def validate(df: pd.DataFrame) -> pd.DataFrame:
    failures = work.validate(df)
    if failures:
        raise ValueError(f"validation failed: {failures}")
    return df


@step
def features(df: pd.DataFrame) -> pd.DataFrame:
    return work.features(df)


@step
def train(
    df: pd.DataFrame,
) -> tuple[Annotated[ClassifierMixin, "model"], Annotated[pd.DataFrame, "test_data"]]:
    model, test_data = work.train(df)
    return model, test_data  # a tuple literal: how ZenML tells two outputs from one


@step
def evaluate(model: ClassifierMixin, test_data: pd.DataFrame) -> dict[str, float]:
    metrics = work.evaluate(model, test_data)
    if not work.passed(metrics):
        raise ValueError(f"below thresholds: {metrics}")
    return metrics


@step
def register(model: ClassifierMixin, metrics: dict[str, float], registry: str) -> str:
    return work.register(model, metrics, registry)


@pipeline(name="penguins", enable_cache=True)
def penguins(data: str, registry: str) -> None:
    model, test_data = train(features(validate(load(data))))
    register(model, evaluate(model, test_data), registry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--registry", required=True)
    args = parser.parse_args()
    run = penguins(data=args.data, registry=args.registry)
    statuses = {name: str(s.status) for name, s in run.steps.items()}
    print("STEPS", len(statuses), "CACHED", sum("cached" in v for v in statuses.values()))


if __name__ == "__main__":
    main()
