"""Hand a :class:`~mlsteps_prefect.blocks.FeastSettings` block's secret to the ``featurise`` step.

The featurise step takes its online store as config (``online_store``, or
``inline.online_store``), and config is recorded in lineage and hashed into cache
keys. So the block's settings go into the config the usual way
(:meth:`FeastSettings.featurise_config`) with the connection string as the
reference ``${feast_online_store}``, while its value travels in
``RunContext.secrets``; the step fills the reference in memory at run time.
Nothing here talks to Feast: the step does, with the config it is given.
"""

from __future__ import annotations

from typing import Any

from mlsteps_prefect.blocks import FeastSettings

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
