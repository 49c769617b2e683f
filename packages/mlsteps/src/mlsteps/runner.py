"""The local runner: runs a spec in-process, in dependency order, with caching.

A step whose type, code version, config and input content are unchanged since a
successful earlier run is not run again: its recorded outputs are reused (after
checking that the files they point at still hold the recorded content), and the
reuse is recorded in lineage as ``cached``.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlsteps.context import MlflowSettings, RunContext, RunKey, new_run_id
from mlsteps.errors import ConfigError, GateFailure, MlstepsError, Problem
from mlsteps.hashing import hash_file
from mlsteps.lineage import LineageRecorder
from mlsteps.step import StepResult, cache_key, execute_step
from mlsteps.storage import ArtifactStore, check_segment, is_local, to_local_path

if TYPE_CHECKING:
    from mlsteps.refs import BaseRef
    from mlsteps.spec import PipelineSpec, ResolvedStep

Outcome = Literal["succeeded", "cached", "failed", "gate_failed", "skipped"]
log = logging.getLogger("mlsteps.runner")


@dataclass
class StepOutcome:
    """What happened to one step in a run."""

    step_id: str
    step_type: str
    status: Outcome
    duration_s: float = 0.0
    result: StepResult | None = None
    error: str | None = None
    record_id: str | None = None


@dataclass
class RunSummary:
    """The result of running a pipeline."""

    pipeline: str
    run_id: str
    artifact_root: str
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status in ("succeeded", "cached") for o in self.outcomes)

    def outcome(self, step_id: str) -> StepOutcome:
        return next(o for o in self.outcomes if o.step_id == step_id)


Listener = Callable[[str, str, StepOutcome | None], None]


class RunCache:
    """Maps cache keys to the results of successful step runs under ``<root>/cache``."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def _rel(self, key: str) -> str:
        return f"cache/{key.removeprefix('sha256:')}.json"

    def get(self, key: str, state: Callable[[], str | None] | None = None) -> tuple[StepResult, str] | None:
        """The cached result and the record id that produced it, if still valid.

        ``state`` (for ``stateful_cache`` steps) reads the current external state;
        the entry is valid only if it equals the state the result recorded.
        """
        rel = self._rel(key)
        if not self.store.exists(rel):
            return None
        try:
            entry = self.store.read_json(rel)
            result = StepResult.from_dict(entry["result"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", rel, exc)
            return None
        if not all(ref_is_intact(ref) for ref in result.outputs.values()):
            return None
        if state is not None:
            if result.cache_state is None:
                return None
            try:
                current = state()
            except Exception as exc:  # noqa: BLE001 - an unreadable state means "run the step"
                log.debug("cache entry %s: cannot read the current state: %s", rel, exc)
                return None
            if current != result.cache_state:
                return None
        return result, str(entry["record_id"])

    def put(self, key: str, result: StepResult, record_id: str) -> None:
        self.store.write_json(self._rel(key), {"result": result.to_dict(), "record_id": record_id})


def ref_is_intact(ref: BaseRef) -> bool:
    """Whether a ref's local files still exist with the recorded content (remote ones are trusted).

    A cached result is reusable only if every output ref is intact; the Prefect
    adapter's cache policy applies the same check.
    """
    for uri in (ref.uri, getattr(ref, "html_uri", None)):
        if uri and is_local(uri) and not to_local_path(uri).exists():
            return False
    if ref.content_hash and is_local(ref.uri):
        path = to_local_path(ref.uri)
        if path.is_file():
            return hash_file(path) == ref.content_hash
    return True


class LocalRunner:
    """Runs a :class:`PipelineSpec` in this process."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        run_id: str | None = None,
        use_cache: bool = True,
        artifact_root: str | None = None,
        mlflow: MlflowSettings | None = None,
        listener: Listener | None = None,
        trigger: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.run_id = check_segment(run_id, "run id") if run_id is not None else new_run_id()
        self.use_cache = use_cache
        self.store = ArtifactStore(spec.artifact_root(artifact_root))
        self.mlflow = mlflow or spec.model.defaults.mlflow
        self.lineage = LineageRecorder(self.store)
        self.cache = RunCache(self.store)
        self.listener = listener
        #: Recorded on every lineage record of the run (and tagged on its MLflow objects).
        self.trigger = trigger

    def _emit(self, event: str, step_id: str, outcome: StepOutcome | None = None) -> None:
        if self.listener is not None:
            self.listener(event, step_id, outcome)

    def context(self, step_id: str) -> RunContext:
        """The context for one step of this run (the spec builds it, as for every adapter)."""
        run_key = RunKey(orchestrator="local", pipeline=self.spec.name, run_id=self.run_id, step=step_id)
        ctx = self.spec.context(step_id, run_key, artifact_root=self.store.root, mlflow=self.mlflow)
        ctx.lineage = self.lineage
        if self.trigger is not None:
            ctx.set_trigger(self.trigger)
        return ctx

    def run(self, only: list[str] | None = None) -> RunSummary:
        """Run every step (or ``only`` these and what they need) in dependency order."""
        wanted = self._with_upstream(only) if only else set(self.spec.order)
        summary = RunSummary(self.spec.name, self.run_id, self.store.root)
        results: dict[str, StepResult] = {}
        blocked: set[str] = set()
        for sid in self.spec.order:
            if sid not in wanted:
                continue
            step = self.spec.steps[sid]
            if sid in blocked:
                outcome = StepOutcome(
                    sid, step.step_cls.name, "skipped", error="an upstream step did not succeed"
                )
                summary.outcomes.append(outcome)
                self._emit("skipped", sid, outcome)
                continue
            self._emit("start", sid)
            outcome = self._run_step(step, results)
            summary.outcomes.append(outcome)
            self._emit(outcome.status, sid, outcome)
            if outcome.result is not None and outcome.status in ("succeeded", "cached"):
                results[sid] = outcome.result
            else:
                blocked |= self.spec.downstream(sid)
        return summary

    def _with_upstream(self, only: list[str]) -> set[str]:
        wanted: set[str] = set()
        frontier = list(only)
        while frontier:
            sid = frontier.pop()
            if sid in wanted:
                continue
            if sid not in self.spec.steps:
                raise ConfigError(
                    [
                        Problem(
                            None, "--only", f"unknown step {sid!r}; expected one of {sorted(self.spec.steps)}"
                        )
                    ]
                )
            wanted.add(sid)
            frontier.extend(self.spec.steps[sid].upstream)
        return wanted

    def _run_step(self, step: ResolvedStep, results: dict[str, StepResult]) -> StepOutcome:
        inputs = {name: results[up].outputs[out] for name, (up, out) in step.inputs.items()}
        ctx = self.context(step.id)
        key = cache_key(step.step_cls, step.config, inputs)
        cacheable = self.use_cache and step.spec.cache and step.step_cls.cacheable
        started = time.time()
        if cacheable:
            state = (
                functools.partial(step.step_cls().cache_state, ctx, step.config, inputs)
                if step.step_cls.stateful_cache
                else None
            )
            hit = self.cache.get(key, state)
            if hit is not None:
                result, source_record = hit
                self.lineage.record(
                    ctx,
                    step_type=step.step_cls.name,
                    step_version=step.step_cls.version,
                    config=step.config,
                    inputs=inputs,
                    result=result,
                    status="cached",
                    error=None,
                    started=started,
                    cache_key=key,
                    cached_from=source_record,
                )
                return StepOutcome(
                    step.id,
                    step.step_cls.name,
                    "cached",
                    time.time() - started,
                    result,
                    record_id=ctx.record_id,
                )
        try:
            result = execute_step(step.step_cls, ctx, step.config, inputs)
        except GateFailure as exc:
            gate = StepResult(
                outputs={"report": exc.report} if exc.report else {}, passed=False, message=str(exc)
            )
            return StepOutcome(
                step.id,
                step.step_cls.name,
                "gate_failed",
                time.time() - started,
                gate,
                str(exc),
                ctx.record_id,
            )
        except MlstepsError as exc:
            return StepOutcome(
                step.id, step.step_cls.name, "failed", time.time() - started, None, str(exc), ctx.record_id
            )
        except Exception as exc:  # noqa: BLE001 - a user's step may raise anything; report it, keep going
            log.debug("step %s crashed:\n%s", step.id, traceback.format_exc())
            return StepOutcome(
                step.id,
                step.step_cls.name,
                "failed",
                time.time() - started,
                None,
                f"{type(exc).__name__}: {exc}",
                ctx.record_id,
            )
        if cacheable and not (step.step_cls.stateful_cache and result.cache_state is None):
            self.cache.put(key, result, ctx.record_id)
        return StepOutcome(
            step.id, step.step_cls.name, "succeeded", time.time() - started, result, record_id=ctx.record_id
        )
