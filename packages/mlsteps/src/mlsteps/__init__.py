"""mlsteps: portable MLOps steps for the orchestrators teams already run.

Importing this package is cheap on purpose (no MLflow, Feast, GX, scikit-learn,
Kubernetes or pandas): orchestrators parse pipeline files constantly, and every
heavy library is imported inside the step that uses it.
"""

from importlib import metadata as _metadata

from mlsteps.context import MlflowSettings, Resources, RunContext, RunKey
from mlsteps.errors import (
    BackendError,
    ConfigError,
    DataError,
    GateFailure,
    MissingDependencyError,
    MlstepsError,
    StepNotFoundError,
)
from mlsteps.refs import (
    BaseRef,
    DatasetRef,
    DeploymentRef,
    ModelRef,
    ModelVersionRef,
    ReportRef,
    dump_ref,
    parse_ref,
)
from mlsteps.registry import available_steps, get_step
from mlsteps.step import InputSpec, Step, StepConfig, StepResult, execute_step

try:
    __version__ = _metadata.version("mlsteps")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BackendError",
    "BaseRef",
    "ConfigError",
    "DataError",
    "DatasetRef",
    "DeploymentRef",
    "GateFailure",
    "InputSpec",
    "MissingDependencyError",
    "MlflowSettings",
    "MlstepsError",
    "ModelRef",
    "ModelVersionRef",
    "ReportRef",
    "Resources",
    "RunContext",
    "RunKey",
    "Step",
    "StepConfig",
    "StepNotFoundError",
    "StepResult",
    "__version__",
    "available_steps",
    "dump_ref",
    "execute_step",
    "get_step",
    "parse_ref",
]
