"""Dagster integration for mlsteps: a pipeline spec as assets, blocking gate checks and resources.

``build_definitions("pipeline.yaml")`` gives one asset per step output (its value is
the output's ref), a blocking asset check per gate step and two configurable
resources (artifact root, MLflow). Steps run through :func:`mlsteps.execute_step`,
so they behave, cache-key and record lineage exactly as under the local runner.
"""

from mlsteps_dagster.assets import GATE_CHECK_NAME, build_step_asset, output_key
from mlsteps_dagster.definitions import build_definitions
from mlsteps_dagster.resources import (
    MLFLOW_RESOURCE_KEY,
    MLSTEPS_RESOURCE_KEY,
    MlflowResource,
    MlstepsResource,
)

__version__ = "0.1.0"

__all__ = [
    "GATE_CHECK_NAME",
    "MLFLOW_RESOURCE_KEY",
    "MLSTEPS_RESOURCE_KEY",
    "MlflowResource",
    "MlstepsResource",
    "__version__",
    "build_definitions",
    "build_step_asset",
    "output_key",
]
