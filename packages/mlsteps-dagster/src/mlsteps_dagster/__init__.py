"""Dagster integration for mlsteps: a pipeline spec as assets, blocking gate checks and resources.

``build_definitions("pipeline.yaml")`` gives one asset per step output (its value is
the output's ref), a blocking asset check per gate step, a job for the whole
pipeline and configurable resources (artifact root, MLflow, Feast). Steps run
through :func:`mlsteps.execute_step`, so they behave, cache-key and record lineage
exactly as under the local runner. ``MlstepsPipelineComponent`` declares the same
in a ``dg`` project's YAML; ``drift_sensor`` and ``data_file_sensor`` start
retraining runs; ``execution="kubernetes"`` runs each step in its own pod.
"""

from mlsteps_dagster.assets import GATE_CHECK_NAME, TRIGGER_TAG, build_step_asset, output_key
from mlsteps_dagster.component import MlstepsPipelineComponent
from mlsteps_dagster.definitions import build_definitions, pipeline_job_name
from mlsteps_dagster.kubernetes import K8sSettings, SecretEnv, render_step_job
from mlsteps_dagster.resources import (
    FEAST_RESOURCE_KEY,
    MLFLOW_RESOURCE_KEY,
    MLSTEPS_RESOURCE_KEY,
    FeastResource,
    MlflowResource,
    MlstepsResource,
)
from mlsteps_dagster.sensors import data_file_sensor, drift_sensor

__version__ = "0.1.0"

__all__ = [
    "FEAST_RESOURCE_KEY",
    "GATE_CHECK_NAME",
    "MLFLOW_RESOURCE_KEY",
    "MLSTEPS_RESOURCE_KEY",
    "TRIGGER_TAG",
    "FeastResource",
    "K8sSettings",
    "MlflowResource",
    "MlstepsPipelineComponent",
    "MlstepsResource",
    "SecretEnv",
    "__version__",
    "build_definitions",
    "build_step_asset",
    "data_file_sensor",
    "drift_sensor",
    "output_key",
    "pipeline_job_name",
    "render_step_job",
]
