"""Hand a :class:`~mlsteps_prefect.blocks.FeastSettings` block's secret to the ``featurise`` step.

The featurise step takes its online store as config (``online_store``, or
``inline.online_store``), and config is recorded in lineage and hashed into cache
keys. So the block's non-secret settings go into the config the usual way
(:meth:`FeastSettings.featurise_config`), while the connection string travels in
``RunContext.secrets`` and is added to the config only inside the step's ``run``,
after the lineage record and the cache key were made from the secret-free config.
Nothing here talks to Feast: the step does, with the config it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlsteps_prefect.blocks import FEAST_SECRET, FeastSettings

if TYPE_CHECKING:
    from mlsteps.context import RunContext
    from mlsteps.refs import BaseRef
    from mlsteps.step import Step, StepConfig, StepResult

#: Step types whose config has the Feast ``repo_path`` / ``online_store`` fields.
FEAST_STEPS = frozenset({"featurise"})


def resolve_block(value: Any) -> FeastSettings | None:
    """A ``FeastSettings`` from a block, a saved block's name, or a dict of its fields."""
    if value is None or isinstance(value, FeastSettings):
        return value
    if isinstance(value, str):
        # _sync: load synchronously even when called from an event loop (Prefect's async_dispatch)
        loaded = FeastSettings.load(value, _sync=True)  # type: ignore[call-arg]
        if not isinstance(loaded, FeastSettings):
            raise TypeError(f"block {value!r} is a {type(loaded).__name__}, not FeastSettings")
        return loaded
    return FeastSettings.model_validate(value)


def with_connection_string(config: StepConfig, connection_string: str) -> StepConfig:
    """``config`` with ``connection_string`` set in its online store section (a copy)."""
    inline = getattr(config, "inline", None)
    if inline is not None:
        store = {**inline.online_store, "connection_string": connection_string}
        return config.model_copy(update={"inline": inline.model_copy(update={"online_store": store})})
    store = {**(getattr(config, "online_store", None) or {}), "connection_string": connection_string}
    return config.model_copy(update={"online_store": store})


def with_online_store_secret(step_cls: type[Step[Any]]) -> type[Step[Any]]:
    """A subclass of the featurise step class that adds ``ctx.secrets``' connection string at run time.

    It keeps the step's ``name`` and ``version``, so lineage and cache keys are
    those of the step itself.
    """

    class WithOnlineStoreSecret(step_cls):  # type: ignore[valid-type,misc]
        __doc__ = step_cls.__doc__

        def run(self, ctx: RunContext, config: Any, inputs: dict[str, BaseRef]) -> StepResult:
            secret = ctx.secrets.get(FEAST_SECRET)
            if secret is not None:
                config = with_connection_string(config, secret.get_secret_value())
            result: StepResult = super().run(ctx, config, inputs)
            return result

    return WithOnlineStoreSecret
