"""Prefect Blocks holding the settings mlsteps steps need, secrets included.

Blocks are Prefect's place for configuration and credentials: saved once (UI,
CLI or ``.save()``), loaded by name in any flow. Register the types with::

    prefect block register -m mlsteps_prefect

Secrets are ``SecretStr`` fields, so Prefect treats them as secret block fields and shows them
masked; they are revealed only when turned into the core's settings objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from mlsteps.context import FEAST_CONNECTION_REF, FEAST_CONNECTION_SECRET, MlflowSettings
from mlsteps.errors import ConfigError, Problem


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
    """Which Feast feature repository the ``featurise`` step uses and how it reaches the online store.

    The block only translates: at run time its fields become the ``featurise``
    step's own config (``repo_path``, ``online_store``), so Feast logic stays in the
    step. ``online_store`` is the non-secret part of the section (``type`` and
    options), recorded in lineage like any config; ``online_store_connection_string``
    (e.g. ``redis.internal:6379,password=...,ssl=true`` for Feast's Redis store) is a
    secret: it reaches the step's config only in memory, for the run, and never
    lineage, Prefect parameters or cache keys in clear.

    Example:
        ```python
        from pydantic import SecretStr
        from mlsteps_prefect import FeastSettings

        FeastSettings(
            online_store={"type": "redis"},
            online_store_connection_string=SecretStr("redis.internal:6379,password=...,db=0"),
        ).save("feast-prod", overwrite=True)
        flow(feast_block="feast-prod")  # a flow built with build_flow
        ```
    """

    _block_type_name: ClassVar[str] = "mlsteps Feast Settings"
    _block_type_slug: ClassVar[str] = "mlsteps-feast-settings"
    _description: ClassVar[str] = "Feast repository path and online store for the mlsteps featurise step."

    repo_path: str | None = Field(
        default=None,
        description="Feast feature repository (relative to the spec); empty keeps the step's `repo_path`.",
    )
    online_store: dict[str, Any] | None = Field(
        default=None,
        description="Online store section replacing feature_store.yaml's, without secrets, e.g. "
        '{"type": "redis"} or {"type": "sqlite", "path": "/data/online.db"}.',
    )
    online_store_connection_string: SecretStr | None = Field(
        default=None,
        description="Secret connection string of the online store (Feast's `connection_string`), e.g. "
        "host:6379,password=...,ssl=true for Redis. Needs `online_store` with its `type`.",
    )

    def secrets(self) -> dict[str, SecretStr]:
        """Secrets for :attr:`mlsteps.RunContext.secrets`, under the key ``feast_online_store``."""
        if self.online_store_connection_string is None:
            return {}
        return {FEAST_CONNECTION_SECRET: self.online_store_connection_string}

    def featurise_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """The ``featurise`` step's config with this block's non-secret settings applied.

        ``repo_path`` replaces the step's; ``online_store`` replaces ``online_store``
        (or ``inline.online_store`` for a repo declared in the spec).

        Raises:
            ConfigError: The block does not fit the config (a repo path for an inline
                repo, a connection string without an online store type).
        """
        merged = dict(config or {})
        problems: list[Problem] = []
        inline = merged.get("inline")
        if self.repo_path is not None:
            if inline is not None:
                problems.append(
                    Problem(None, "FeastSettings.repo_path", "the featurise step declares an inline repo")
                )
            merged["repo_path"] = self.repo_path
        if self.online_store_connection_string is not None and not isinstance(
            (self.online_store or {}).get("type"), str
        ):
            problems.append(
                Problem(
                    None,
                    "FeastSettings.online_store",
                    "a connection string needs the online store's `type`, e.g. {type: redis}",
                )
            )
        if problems:
            raise ConfigError(problems)
        if self.online_store is not None:
            store = dict(self.online_store)
            if self.online_store_connection_string is not None:
                # Only a reference: the step fills it from RunContext.secrets, so lineage never sees it.
                store["connection_string"] = FEAST_CONNECTION_REF
            if isinstance(inline, Mapping):
                merged["inline"] = {**inline, "online_store": store}
            else:
                merged["online_store"] = store
        return merged
