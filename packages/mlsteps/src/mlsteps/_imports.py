"""Import optional backends on demand, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mlsteps.errors import MissingDependencyError

if TYPE_CHECKING:
    from types import ModuleType

#: Top-level module -> the mlsteps extra that installs it.
EXTRAS = {
    "mlflow": "mlflow",
    "sklearn": "sklearn",
    "pandas": "sklearn",
    "pyarrow": "sklearn",
    "great_expectations": "gx",
    "feast": "feast",
    "kubernetes": "k8s",
    "kubernetes_validate": "k8s",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name and exc.name.split(".")[0] != top:
            raise
        raise MissingDependencyError(top, EXTRAS.get(top, "all")) from exc
