"""Prefect 3 integration for mlsteps: tasks, a flow builder and settings blocks.

- :func:`build_flow` turns a ``pipeline.yaml`` into a Prefect flow.
- :func:`mlsteps_task` makes a task for any registered step; ``validate_task``,
  ``featurise_task``, ``train_task``, ``evaluate_task``, ``register_task``,
  ``deploy_task`` and ``monitor_task`` are ready-made for the built-in steps.
- :class:`MlflowSettingsBlock` and :class:`FeastSettings` hold settings and secrets;
  register them with ``prefect block register -m mlsteps_prefect``.
- A report saying drift emits the ``mlsteps.drift.detected`` event;
  :func:`drift_automation` runs a training deployment on it.
- :mod:`mlsteps_prefect.kubernetes`: a hardened base job template for
  ``prefect-kubernetes`` work pools (imported on demand).

Importing this package imports Prefect but none of the step backends (MLflow,
Feast, Great Expectations, scikit-learn, pandas, Kubernetes): steps import those
when they run.
"""

from importlib import metadata as _metadata

from mlsteps_prefect.blocks import FeastSettings, MlflowSettingsBlock
from mlsteps_prefect.cache_policies import StepCachePolicy
from mlsteps_prefect.events import DRIFT_EVENT, drift_automation
from mlsteps_prefect.flows import PipelineFailed, build_flow
from mlsteps_prefect.tasks import (
    deploy_task,
    evaluate_task,
    featurise_task,
    mlsteps_task,
    monitor_task,
    register_task,
    retry_unless_config_or_gate,
    train_task,
    validate_task,
)

try:
    __version__ = _metadata.version("mlsteps-prefect")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DRIFT_EVENT",
    "FeastSettings",
    "MlflowSettingsBlock",
    "PipelineFailed",
    "StepCachePolicy",
    "__version__",
    "build_flow",
    "deploy_task",
    "drift_automation",
    "evaluate_task",
    "featurise_task",
    "mlsteps_task",
    "monitor_task",
    "register_task",
    "retry_unless_config_or_gate",
    "train_task",
    "validate_task",
]
