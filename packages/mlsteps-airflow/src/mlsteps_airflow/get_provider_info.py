"""Provider metadata read by Airflow's provider discovery (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from mlsteps_airflow import __version__


def get_provider_info() -> dict[str, Any]:
    """The provider description Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "mlsteps-airflow",
        "name": "mlsteps",
        "description": "Portable MLOps steps (validate, featurise, train, evaluate, register) as Airflow operators.",
        "versions": [__version__],
    }
