"""Prefect Blocks holding the settings mlsteps steps need, secrets included.

Blocks are Prefect's place for configuration and credentials: saved once (UI,
CLI or ``.save()``), loaded by name in any flow. Register the types with::

    prefect block register -m mlsteps_prefect

Secrets are ``SecretStr`` fields, so Prefect treats them as secret block fields and shows them
masked; they are revealed only when turned into the core's settings objects.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from mlsteps.context import MlflowSettings


class MlflowSettingsBlock(Block):
    """How mlsteps steps reach MLflow: tracking and registry URIs, experiment, token.

    Empty URIs mean the embedded SQLite default under the artifact root, exactly
    as in ``pipeline.yaml``. Pass the saved block's name to a flow built with
    :func:`mlsteps_prefect.build_flow` (``mlflow_block=``) to override the spec's
    ``defaults.mlflow``.

    Example:
        ```python
        from pydantic import SecretStr
        from mlsteps_prefect import MlflowSettingsBlock

        MlflowSettingsBlock(
            tracking_uri="http://mlflow:5000", experiment="penguins", token=SecretStr("...")
        ).save("mlflow-prod", overwrite=True)
        settings = MlflowSettingsBlock.load("mlflow-prod").to_settings()
        ```
    """

    _block_type_name: ClassVar[str] = "mlsteps MLflow Settings"
    _block_type_slug: ClassVar[str] = "mlsteps-mlflow-settings"
    _description: ClassVar[str] = "MLflow tracking/registry URIs, experiment and token for mlsteps steps."

    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; empty for the embedded SQLite store."
    )
    registry_uri: str | None = Field(default=None, description="Model registry URI; defaults to tracking.")
    experiment: str | None = Field(
        default=None, description="Experiment name; defaults to the pipeline name."
    )
    token: SecretStr | None = Field(default=None, description="Bearer token for a secured MLflow server.")

    def to_settings(self) -> MlflowSettings:
        """The core's :class:`~mlsteps.MlflowSettings` (the token stays a ``SecretStr``)."""
        return MlflowSettings(
            tracking_uri=self.tracking_uri,
            registry_uri=self.registry_uri,
            experiment=self.experiment,
            token=self.token,
        )


class FeastSettings(Block):
    """Where the Feast feature repository is and how to reach its online store.

    ``online_store_connection_string`` (e.g. ``redis://:password@host:6379``) is
    a secret; it is revealed only by :meth:`secrets`, for a step's run context.
    """

    _block_type_name: ClassVar[str] = "mlsteps Feast Settings"
    _block_type_slug: ClassVar[str] = "mlsteps-feast-settings"
    _description: ClassVar[str] = "Feast repository path and online store connection for mlsteps steps."

    repo_path: str = Field(description="Path of the Feast feature repository (relative to the spec).")
    online_store_connection_string: SecretStr | None = Field(
        default=None, description="Online store connection string, e.g. redis://:password@host:6379."
    )

    def secrets(self) -> dict[str, SecretStr]:
        """Secrets for :attr:`mlsteps.RunContext.secrets`, under the key ``feast_online_store``."""
        if self.online_store_connection_string is None:
            return {}
        return {"feast_online_store": self.online_store_connection_string}
