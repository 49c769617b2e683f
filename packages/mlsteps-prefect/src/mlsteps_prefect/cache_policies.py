"""A Prefect cache policy keyed like the core's cache: step, config and input content.

An unchanged re-run (same step type and version, same config, same input
content hashes, same artifact root) is served from Prefect's cache and ends in
the ``Cached`` state. Before a cached result is reused, the refs it holds are
checked as the local runner checks its cache: every local file must still exist
with its recorded content. A stale record is not reused; the key moves on to a
next generation so the re-run's fresh result is found by later runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect.cache_policies import CachePolicy

from mlsteps.errors import MlstepsError
from mlsteps.runner import ref_is_intact
from mlsteps_prefect._call import StepCall, parse_outputs

if TYPE_CHECKING:
    from prefect.context import TaskRunContext
    from prefect.results import ResultStore

    from mlsteps.step import Step

log = logging.getLogger("mlsteps.prefect")

#: How many stale records of one key are skipped before caching is given up for it.
MAX_GENERATIONS = 100


def cached_result_is_valid(value: Any) -> bool:
    """Whether a cached task result still is a set of refs whose local files are intact."""
    try:
        outputs = parse_outputs(value)
    except (TypeError, ValueError):
        return False
    return all(ref_is_intact(ref) for ref in outputs.values())


@dataclass
class StepCachePolicy(CachePolicy):
    """Cache key = the core's ``cache_key(step_cls, config, inputs)`` scoped to the artifact root.

    Steps with ``cacheable = False`` (deploy) or ``stateful_cache`` (evaluate, register) get no key, so they always
    run and nothing is persisted. For ``cache: false`` in a spec, the flow builder
    uses Prefect's ``NO_CACHE`` instead.

    Args:
        step: The step type name or class the task runs.
    """

    step: str | type[Step[Any]] | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The cache key for this call, or ``None`` (no caching) for uncacheable steps."""
        if self.step is None:
            return None
        try:
            call = StepCall.from_parameters(self.step, inputs)
        except MlstepsError:
            return None  # the task run itself raises the same error, as a failed state
        if not call.step_cls.cacheable or call.step_cls.stateful_cache:
            # Registry-dependent results (evaluate, register) are reused only by the local
            # runner, which re-reads the registry state first; here they always run.
            return None
        return first_valid_key(task_ctx.result_store, call.prefect_cache_key())


def first_valid_key(store: ResultStore, base: str) -> str | None:
    """``base``, or the first later generation of it that is unused or holds valid refs."""
    for generation in range(MAX_GENERATIONS):
        key = base if generation == 0 else f"{base}-{generation}"
        if not store.exists(key):
            return key
        try:
            value = store.read(key).result
        except Exception as exc:  # noqa: BLE001 - any unreadable record is stale; say so and move on
            log.warning("ignoring unreadable Prefect cache record %s: %s", key, exc)
            continue
        if cached_result_is_valid(value):
            return key
        log.info("Prefect cache record %s points at missing or changed files; re-running", key)
    return None
