"""Helpers shared by the ``train`` and ``evaluate`` steps.

Import paths in configs (estimators, user functions, metric functions) are
resolved here with errors that name the config field. Metrics are defined once
so that ``train`` and ``evaluate`` agree on what "f1_macro" means. Heavy
libraries are imported inside the functions.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlsteps.errors import ConfigError, DataError, Problem

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

Task = Literal["classification", "regression"]

#: Built-in metrics: name -> (task, greater_is_better, needs class probabilities).
BUILTIN_METRICS: dict[str, tuple[Task, bool, bool]] = {
    "accuracy": ("classification", True, False),
    "f1_macro": ("classification", True, False),
    "precision_macro": ("classification", True, False),
    "recall_macro": ("classification", True, False),
    "roc_auc": ("classification", True, True),
    "log_loss": ("classification", False, True),
    "rmse": ("regression", False, False),
    "mae": ("regression", False, False),
    "r2": ("regression", True, False),
    "mape": ("regression", False, False),
}

#: Metrics ``train`` reports on its held-out split, and ``evaluate``'s defaults.
DEFAULT_METRICS: dict[Task, list[str]] = {
    "classification": ["accuracy", "f1_macro", "roc_auc"],
    "regression": ["rmse", "mae", "r2"],
}

#: The metric a champion comparison uses when none is configured.
DEFAULT_PRIMARY: dict[Task, str] = {"classification": "f1_macro", "regression": "rmse"}

#: An integer target with at most this many distinct values is taken as class labels.
MAX_AUTO_CLASSES = 20


def import_object(path: str, *, config_path: str) -> Any:
    """Import ``"package.module.Name"`` (or ``"package.module:Name"``).

    Raises:
        ConfigError: naming ``config_path`` when the module or attribute is missing.
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(
            [Problem(None, config_path, f"expected an import path like 'package.module.Name', got {path!r}")]
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            [Problem(None, config_path, f"cannot import module {module_name!r} for {path!r}: {exc}")]
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                [
                    Problem(
                        None, config_path, f"module {module_name!r} has no attribute {attr!r} (from {path!r})"
                    )
                ]
            ) from None
    return obj


def infer_task(y: pd.Series) -> Task:
    """Guess the task from the target column.

    Non-numeric and boolean targets are labels. Integer targets with few distinct
    values are labels too; whole-number floats with very few values (``0.0``/``1.0``)
    as well. Everything else is regression.
    """
    pd = importlib.import_module("pandas")
    api = pd.api.types
    if api.is_bool_dtype(y) or not api.is_numeric_dtype(y):
        return "classification"
    values = y.dropna()
    distinct = values.nunique()
    if api.is_integer_dtype(y):
        return "classification" if distinct <= MAX_AUTO_CLASSES else "regression"
    if distinct <= 10 and bool((values == values.round()).all()):
        return "classification"
    return "regression"


def check_target(y: pd.Series, *, task: Task, uri: str, column: str, min_classes: int = 2) -> None:
    """Reject targets a model cannot learn from (or be scored on): NaN, infinities, too few classes."""
    pd = importlib.import_module("pandas")
    missing = int(y.isna().sum())
    if missing:
        raise DataError(
            f"{uri}: target column {column!r} has {missing} missing value(s); fill them or drop those "
            "rows (train.config.drop_na_target: true drops them)"
        )
    if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y):
        np = importlib.import_module("numpy")
        infinite = int(np.isinf(y.to_numpy(dtype=float)).sum())
        if infinite:
            raise DataError(
                f"{uri}: target column {column!r} has {infinite} infinite value(s); replace them with "
                "finite values or drop those rows"
            )
    if task == "classification":
        classes = y.nunique()
        if classes < min_classes:
            seen = sorted(map(str, y.unique()))
            raise DataError(
                f"{uri}: target column {column!r} has {classes} class(es) {seen}; "
                f"classification needs at least {min_classes}; add rows of the other classes (or check "
                "that the data was not filtered to one class)"
            )


@dataclass
class Predictions:
    """What a model produced on a frame: labels or values, and class probabilities when available."""

    y_pred: Any
    proba: Any | None = None
    classes: list[Any] = field(default_factory=list)


def predict(model: Any, X: pd.DataFrame, *, task: Task) -> Predictions:
    """Predict with ``model``; class probabilities are collected when the model offers them."""
    y_pred = model.predict(X)
    proba = None
    classes: list[Any] = []
    if task == "classification" and hasattr(model, "predict_proba"):
        try:
            proba = model.predict_proba(X)
            classes = list(model.classes_)
        except (AttributeError, NotImplementedError):
            # e.g. SVC(probability=False) exposes predict_proba but refuses to run it.
            proba = None
    return Predictions(y_pred=y_pred, proba=proba, classes=classes)


def compute_metric(name: str, y_true: Any, pred: Predictions) -> tuple[float | None, str | None]:
    """One built-in metric, or ``(None, reason)`` when it cannot be computed for this data/model."""
    from sklearn import metrics as m

    if name == "accuracy":
        return float(m.accuracy_score(y_true, pred.y_pred)), None
    if name in ("f1_macro", "precision_macro", "recall_macro"):
        fn = {"f1_macro": m.f1_score, "precision_macro": m.precision_score, "recall_macro": m.recall_score}
        return float(fn[name](y_true, pred.y_pred, average="macro", zero_division=0)), None
    if name in ("roc_auc", "log_loss"):
        if pred.proba is None:
            return None, "the model has no predict_proba"
        try:
            if name == "log_loss":
                return float(m.log_loss(y_true, pred.proba, labels=pred.classes)), None
            if len(pred.classes) == 2:
                return float(m.roc_auc_score(y_true, pred.proba[:, 1])), None
            return float(
                m.roc_auc_score(y_true, pred.proba, multi_class="ovr", average="macro", labels=pred.classes)
            ), None
        except ValueError as exc:
            # e.g. only one class present in y_true.
            return None, str(exc)
    if name == "rmse":
        return float(m.root_mean_squared_error(y_true, pred.y_pred)), None
    if name == "mae":
        return float(m.mean_absolute_error(y_true, pred.y_pred)), None
    if name == "r2":
        return float(m.r2_score(y_true, pred.y_pred)), None
    if name == "mape":
        return float(m.mean_absolute_percentage_error(y_true, pred.y_pred)), None
    raise ValueError(f"unknown metric {name!r}")


def compute_metrics(
    names: Sequence[str], y_true: Any, pred: Predictions
) -> tuple[dict[str, float], dict[str, str]]:
    """Built-in metrics by name, and the reasons for those that could not be computed."""
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name in names:
        value, reason = compute_metric(name, y_true, pred)
        if value is None or not math.isfinite(value):
            skipped[name] = reason or f"not finite ({value})"
        else:
            values[name] = value
    return values, skipped


def feature_columns(
    model_metadata: dict[str, Any], model_uri: str, frame_columns: Sequence[str], target: str
) -> list[str]:
    """The columns a model was trained on: from the ref's metadata, else the MLflow signature."""
    features = model_metadata.get("features")
    if isinstance(features, list) and features:
        return [str(f) for f in features]
    import mlflow.models
    from mlflow.exceptions import MlflowException

    try:
        signature = mlflow.models.get_model_info(model_uri).signature
    except (MlflowException, OSError):  # an unreadable signature just means "use every column"
        signature = None
    if signature is not None and signature.inputs is not None:
        names = signature.inputs.input_names()
        if names and all(isinstance(n, str) for n in names):
            return [str(n) for n in names]
    return [c for c in frame_columns if c != target]


def normalise_features(X: pd.DataFrame) -> pd.DataFrame:
    """Turn pandas string/category columns into plain object columns with ``None`` for missing.

    scikit-learn's imputers and encoders choke on ``pd.NA`` ("boolean value of NA is
    ambiguous"); object columns with ``None`` are what parquet gives for text anyway.
    """
    pd = importlib.import_module("pandas")
    out = X.copy()
    for col in out.columns:
        dtype = out[col].dtype
        if isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype)):
            values = out[col].astype(object)
            out[col] = values.where(values.notna(), None)
    return out
