"""Provider metadata read by Airflow's provider discovery (entry point ``apache_airflow_provider``).

Airflow validates the returned dict against ``airflow/provider_info.schema.json``
and imports the modules listed here lazily (``airflow providers hooks`` imports
the hook class to register the ``mlflow`` connection type).
"""

from __future__ import annotations

from typing import Any

from mlsteps_airflow import __version__

INTEGRATION = "mlsteps"


def get_provider_info() -> dict[str, Any]:
    """The provider description: package, operators, hooks and the ``mlflow`` connection type."""
    return {
        "package-name": "mlsteps-airflow",
        "name": "mlsteps",
        "description": "Portable MLOps steps (validate, featurise, train, evaluate, register) as Airflow operators.",
        "versions": [__version__],
        "integrations": [{"integration-name": INTEGRATION, "tags": ["software"]}],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": ["mlsteps_airflow.operators.mlsteps"]}
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["mlsteps_airflow.sensors.model", "mlsteps_airflow.sensors.drift"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["mlsteps_airflow.hooks.mlflow"]}],
        "connection-types": [
            {"hook-class-name": "mlsteps_airflow.hooks.mlflow.MlflowHook", "connection-type": "mlflow"}
        ],
    }
