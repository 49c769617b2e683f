"""Node functions. Like the hand-written baselines, heavy libraries are imported inside the
functions, so building the pipeline (and parsing its Airflow DAG) never imports them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def validate(data: Any, expectations: dict[str, Any]) -> Any:
    failures = []
    if "species" not in data.columns:
        failures.append("species column missing")
    elif not data["species"].isin(expectations["species"]).all():
        failures.append("unexpected species")
    if not data["penguin_id"].is_unique:
        failures.append("penguin_id not unique")
    if data["event_timestamp"].isna().any():
        failures.append("event_timestamp has nulls")
    if data["bill_length_mm"].notna().mean() < 0.98:
        failures.append("bill_length_mm has too many nulls")
    for column, (low, high) in expectations["ranges"].items():
        if data[column].dropna().between(low, high).mean() < 0.99:
            failures.append(f"{column} out of [{low}, {high}]")
    if not expectations["min_rows"] <= len(data) <= expectations["max_rows"]:
        failures.append(f"row count {len(data)}")
    if failures:
        raise ValueError(f"validation failed: {failures}")
    return data


def featurise(data: Any, features: dict[str, Any]) -> Any:
    return data[features["entity_columns"] + features["columns"] + features["label_columns"]]


def train(data: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    target = params["target"]
    train_df, test_df = train_test_split(
        data,
        test_size=params["test_fraction"],
        stratify=data[target],
        random_state=params["seed"],
    )
    x = train_df.drop(columns=[target, *params["exclude"]])
    model = RandomForestClassifier(**params["estimator"], random_state=params["seed"])
    model.fit(pd.get_dummies(x), train_df[target])
    return model, test_df


def evaluate(model: Any, test_data: Any, params: dict[str, Any]) -> dict[str, float]:
    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score

    target = params["target"]
    x = pd.get_dummies(test_data.drop(columns=[target, *params["exclude"]]))
    x = x.reindex(columns=model.feature_names_in_, fill_value=0)
    predicted = model.predict(x)
    report = {
        "accuracy": float(accuracy_score(test_data[target], predicted)),
        "f1_macro": float(f1_score(test_data[target], predicted, average="macro")),
    }
    for metric, minimum in params["thresholds"].items():
        if report[metric] < minimum:
            raise ValueError(f"{metric} {report[metric]:.3f} < {minimum}")
    return report


def register(model: Any, evaluation: dict[str, float], params: dict[str, Any]) -> dict[str, Any]:
    import pickle

    registry = Path(params["registry"]) / params["name"]
    registry.mkdir(parents=True, exist_ok=True)
    version = len(list(registry.glob("v*.pkl"))) + 1
    (registry / f"v{version}.pkl").write_bytes(pickle.dumps(model))
    (registry / f"v{version}.json").write_text(json.dumps(evaluation))
    return {"name": params["name"], "version": version, "aliases": params["aliases"]}


def deploy(model_version: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {**model_version, "target": params["target"], "deployed_at": time.time()}
