"""Data and context builders for the train and evaluate tests.

The datasets are real: Palmer penguins from the ``palmerpenguins`` package and
the diabetes data bundled with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsteps.context import RunContext, RunKey
from mlsteps.data import describe_dataset
from mlsteps.refs import dump_ref

PENGUIN_PARAMS = {"n_estimators": 25, "max_depth": 5}


def make_ctx(tmp_path: Path, *, run_id: str = "r1", step: str = "train", attempt: int = 1) -> RunContext:
    """A context with the embedded SQLite MLflow under ``tmp_path/art``."""
    return RunContext(
        run_key=RunKey(run_id=run_id, step=step, pipeline="t", attempt=attempt),
        artifact_root=str(tmp_path / "art"),
        base_dir=tmp_path,
    )


def penguins_frame() -> Any:
    """Palmer penguins with the example's derived id and event time (see examples/penguins)."""
    import pandas as pd
    from palmerpenguins import load_penguins

    df = load_penguins()
    df.insert(0, "penguin_id", range(1, len(df) + 1))
    df.insert(
        1,
        "event_timestamp",
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df["penguin_id"], unit="h"),
    )
    return df


def write_frame(df: Any, path: Path) -> dict[str, Any]:
    """Write ``df`` as parquet and return its dataset ref as an orchestrator would pass it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return dump_ref(describe_dataset(str(path)))


def penguins_ref(tmp_path: Path) -> dict[str, Any]:
    return write_frame(penguins_frame(), tmp_path / "data" / "penguins.parquet")


def diabetes_ref(tmp_path: Path) -> dict[str, Any]:
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True).frame
    return write_frame(df, tmp_path / "data" / "diabetes.parquet")


def penguins_train_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": dict(PENGUIN_PARAMS),
        "target": "species",
        "exclude": ["penguin_id", "event_timestamp"],
        "split": {"test_fraction": 0.25, "stratify": True},
        "seed": 42,
    }
    config.update(overrides)
    return config


def train_knn(X_train: Any, y_train: Any, params: dict[str, Any], seed: int) -> Any:
    """A user training function for ``custom_train``: its own preprocessing plus k-NN."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    numeric = [c for c in X_train.columns if X_train[c].dtype.kind == "f"]
    pre = ColumnTransformer([("num", Pipeline([("i", SimpleImputer()), ("s", StandardScaler())]), numeric)])
    model = Pipeline([("pre", pre), ("knn", KNeighborsClassifier(n_neighbors=params.get("k", 5)))])
    return model.fit(X_train, y_train)


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """A custom metric for ``evaluate``."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def mlflow_runs_with_key(ctx: RunContext) -> list[Any]:
    """Every MLflow run tagged with ``ctx``'s run key, in any state."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=ctx.tracking_uri)
    exp = client.get_experiment_by_name(ctx.experiment_name)
    assert exp is not None
    key = ctx.run_key.idempotency_key
    return list(client.search_runs([exp.experiment_id], filter_string=f"tags.\"mlsteps.run_key\" = '{key}'"))
