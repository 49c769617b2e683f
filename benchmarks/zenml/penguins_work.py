"""The work of the six-step penguins pipeline, shared by its ZenML and mlsteps versions.

Both sides call exactly these functions, so what differs between them is the framework
around the work. Plain pandas checks stand in for validation (no GX on the ZenML side) and a
pickle in a directory stands in for a model registry (no MLflow on either side).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

TARGET = "species"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


def load(path: str) -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(path)


def validate(df: pd.DataFrame) -> list[str]:
    """The example's expectations as pandas checks; returns the failures (empty: passed)."""
    failures = []
    if TARGET not in df.columns:
        return [f"{TARGET} column missing"]
    if not df[TARGET].isin(["Adelie", "Chinstrap", "Gentoo"]).all():
        failures.append("unexpected species")
    if not df["penguin_id"].is_unique:
        failures.append("penguin_id not unique")
    if df["event_timestamp"].isna().any():
        failures.append("event_timestamp has nulls")
    if df["bill_length_mm"].notna().mean() < 0.98:
        failures.append("bill_length_mm: too many nulls")
    for column, low, high in (("bill_length_mm", 25, 70), ("body_mass_g", 2000, 7000)):
        if df[column].dropna().between(low, high).mean() < 0.99:
            failures.append(f"{column} outside [{low}, {high}]")
    if not 300 <= len(df) <= 100_000:
        failures.append(f"row count {len(df)}")
    return failures


def features(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    out = df[["penguin_id", *FEATURES, TARGET]].dropna()
    return pd.get_dummies(out, columns=["island", "sex"], dtype="int64")


def train(df: pd.DataFrame, seed: int = 42) -> tuple[Any, pd.DataFrame]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    train_df, test_df = train_test_split(df, test_size=0.25, stratify=df[TARGET], random_state=seed)
    model = RandomForestClassifier(n_estimators=200, max_depth=6, random_state=seed)
    model.fit(train_df.drop(columns=[TARGET, "penguin_id"]), train_df[TARGET])
    return model, test_df


def evaluate(model: Any, test_df: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = model.predict(test_df.drop(columns=[TARGET, "penguin_id"]))
    return {
        "accuracy": float(accuracy_score(test_df[TARGET], predicted)),
        "f1_macro": float(f1_score(test_df[TARGET], predicted, average="macro")),
    }


def passed(metrics: dict[str, float]) -> bool:
    return metrics["accuracy"] >= 0.9 and metrics["f1_macro"] >= 0.9


def register(model: Any, metrics: dict[str, float], registry: str, name: str = "penguins") -> str:
    """Write the model and its metrics as the next version under ``registry/name``."""
    directory = Path(registry) / name
    directory.mkdir(parents=True, exist_ok=True)
    version = len(list(directory.glob("v*.pkl"))) + 1
    (directory / f"v{version}.pkl").write_bytes(pickle.dumps(model))
    (directory / f"v{version}.json").write_text(json.dumps(metrics))
    return str(directory / f"v{version}.pkl")
