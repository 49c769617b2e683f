"""Airflow 3 provider for mlsteps: operators, an ``mlflow`` connection type and a DAG builder.

Importing this package is cheap: it imports neither Airflow nor any ML backend.
The public names below are loaded on first use, so Airflow's provider discovery
(which imports :mod:`mlsteps_airflow.get_provider_info`) stays fast.

Example:
    A DAG file built from a pipeline spec::

        from mlsteps_airflow import build_dag

        dag = build_dag("pipeline.yaml")
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlsteps_airflow.assets import drift_asset, model_asset
    from mlsteps_airflow.dag import build_dag
    from mlsteps_airflow.hooks.mlflow import MlflowHook
    from mlsteps_airflow.operators.mlsteps import (
        DeployOperator,
        EvaluateOperator,
        FeaturiseOperator,
        MlstepsOperator,
        MonitorOperator,
        RegisterOperator,
        TrainOperator,
        ValidateOperator,
    )
    from mlsteps_airflow.sensors.drift import DriftSensor
    from mlsteps_airflow.sensors.model import ModelAliasSensor

try:
    __version__ = _metadata.version("mlsteps-airflow")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_LAZY = {
    "build_dag": "mlsteps_airflow.dag",
    "model_asset": "mlsteps_airflow.assets",
    "drift_asset": "mlsteps_airflow.assets",
    "DeployOperator": "mlsteps_airflow.operators.mlsteps",
    "MonitorOperator": "mlsteps_airflow.operators.mlsteps",
    "MlflowHook": "mlsteps_airflow.hooks.mlflow",
    "MlstepsOperator": "mlsteps_airflow.operators.mlsteps",
    "ModelAliasSensor": "mlsteps_airflow.sensors.model",
    "DriftSensor": "mlsteps_airflow.sensors.drift",
    "ValidateOperator": "mlsteps_airflow.operators.mlsteps",
    "FeaturiseOperator": "mlsteps_airflow.operators.mlsteps",
    "TrainOperator": "mlsteps_airflow.operators.mlsteps",
    "EvaluateOperator": "mlsteps_airflow.operators.mlsteps",
    "RegisterOperator": "mlsteps_airflow.operators.mlsteps",
}

__all__ = [
    "DeployOperator",
    "DriftSensor",
    "EvaluateOperator",
    "FeaturiseOperator",
    "MlflowHook",
    "MlstepsOperator",
    "ModelAliasSensor",
    "MonitorOperator",
    "RegisterOperator",
    "TrainOperator",
    "ValidateOperator",
    "__version__",
    "build_dag",
    "drift_asset",
    "model_asset",
]


def __getattr__(name: str) -> Any:
    """Import the public names on first access (Airflow itself is imported only then)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlsteps_airflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
