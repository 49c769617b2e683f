"""One step call as Prefect sees it: the task's parameters turned into core objects.

The task function, the cache policy and the cached-run hook all receive the same
task parameters as a dict; :class:`StepCall` parses them once, the same way for
all three, so the cache key Prefect uses is the one the run would have recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

from mlsteps.context import (
    DEFAULT_ARTIFACT_ROOT,
    FEAST_CONNECTION_SECRET,
    MlflowSettings,
    Resources,
    RunContext,
    RunKey,
    build_context,
)
from mlsteps.errors import ConfigError, Problem
from mlsteps.refs import BaseRef, parse_ref
from mlsteps.registry import get_step
from mlsteps.step import Step, StepConfig, cache_key, check_inputs
from mlsteps.storage import resolve_root
from mlsteps_prefect.feast import FEAST_STEPS, resolve_block

if TYPE_CHECKING:
    from collections.abc import Mapping

ORCHESTRATOR = "prefect"

#: The task parameters every mlsteps task takes (besides ``config`` and ``inputs``).
PARAMETERS = (
    "config",
    "inputs",
    "step_id",
    "upstream",
    "wiring",
    "artifact_root",
    "base_dir",
    "mlflow",
    "resources",
    "pipeline",
    "feast",
    "trigger",
)


def resolve_step(step: str | type[Step[Any]]) -> type[Step[Any]]:
    """The step class for a registered name (built-in or ``mlsteps.steps`` plugin) or a class."""
    return get_step(step) if isinstance(step, str) else step


def _mlflow(value: Any) -> MlflowSettings:
    """Accept core settings, an :class:`MlflowSettingsBlock` (anything with ``to_settings``) or a dict."""
    if value is None:
        return MlflowSettings()
    if isinstance(value, MlflowSettings):
        return value
    to_settings = getattr(value, "to_settings", None)
    if callable(to_settings):
        settings = to_settings()
        if isinstance(settings, MlflowSettings):
            return settings
    return MlflowSettings.model_validate(value)


def _resources(value: Any) -> Resources:
    if value is None:
        return Resources()
    if isinstance(value, Resources):
        return value
    return Resources.model_validate(value)


def _wired_inputs(
    inputs: Mapping[str, Any] | None,
    upstream: Mapping[str, Mapping[str, Any]] | None,
    wiring: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Direct ``inputs`` plus those picked from upstream outputs by ``'<step id>.<output>'``."""
    merged: dict[str, Any] = dict(inputs or {})
    problems: list[Problem] = []
    for name, source in (wiring or {}).items():
        up, dot, output = source.partition(".")
        outputs = (upstream or {}).get(up)
        if not dot or outputs is None or output not in outputs:
            have = sorted(upstream or {}) if outputs is None else sorted(outputs)
            problems.append(
                Problem(None, f"wiring.{name}", f"cannot resolve {source!r}; upstream provides {have}")
            )
            continue
        merged[name] = outputs[output]
    if problems:
        raise ConfigError(problems)
    return merged


@dataclass(frozen=True)
class StepCall:
    """A parsed mlsteps task call: step class, config, input refs and where it runs."""

    step_cls: type[Step[Any]]
    step_id: str
    config: StepConfig
    inputs: dict[str, BaseRef]
    artifact_root: str
    base_dir: Path
    mlflow: MlflowSettings
    resources: Resources
    pipeline: str | None
    #: Secrets for the run context (never part of the config, lineage or the core cache key).
    secrets: dict[str, SecretStr]
    #: Why this run started (lineage ``trigger``), e.g. a drift report; see :mod:`mlsteps.triggers`.
    trigger: dict[str, Any] | None = None

    @classmethod
    def from_parameters(cls, step: str | type[Step[Any]], params: Mapping[str, Any]) -> StepCall:
        """Parse a task's (resolved) parameters; raises :class:`ConfigError` on bad config or inputs."""
        step_cls = resolve_step(step)
        raw_inputs = _wired_inputs(params.get("inputs"), params.get("upstream"), params.get("wiring"))
        base_dir = Path(params.get("base_dir") or Path.cwd())
        config = params.get("config")
        secrets: dict[str, SecretStr] = {}
        feast = resolve_block(params.get("feast"))
        if feast is not None:
            if step_cls.name not in FEAST_STEPS:
                raise ConfigError(
                    [
                        Problem(
                            None, "feast", f"step {step_cls.name!r} takes no Feast settings (only featurise)"
                        )
                    ]
                )
            if isinstance(config, BaseModel):
                config = config.model_dump(by_alias=True, exclude_unset=True)
            config = feast.featurise_config(config)
            secrets.update(feast.secrets())
        trigger = params.get("trigger")
        return cls(
            step_cls=step_cls,
            step_id=params.get("step_id") or step_cls.name,
            config=step_cls.parse_config(config),
            inputs=check_inputs(step_cls, raw_inputs),
            artifact_root=str(params.get("artifact_root") or DEFAULT_ARTIFACT_ROOT),
            base_dir=base_dir,
            mlflow=_mlflow(params.get("mlflow")),
            resources=_resources(params.get("resources")),
            pipeline=params.get("pipeline"),
            secrets=secrets,
            trigger=dict(trigger) if trigger else None,
        )

    def cache_key(self) -> str:
        """The core's cache key (step type, code version, config and input content)."""
        return cache_key(self.step_cls, self.config, self.inputs)

    def prefect_cache_key(self) -> str:
        """The core key, scoped to the artifact root as the local runner's cache is.

        Prefect keeps cache records in one place for every project
        (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``), while the core keeps one cache per
        artifact root; without the root's digest, identical steps of two projects
        would hand each other refs into the other project's artifact root.
        """
        core = self.cache_key().removeprefix("sha256:")
        scope = hashlib.sha256(self.context_root().encode())
        secret = self.secrets.get(FEAST_CONNECTION_SECRET)
        if secret is not None:
            # Another online store (same config, other connection string) is other work when the
            # step materialises; the secret enters the key only salted and hashed.
            scope.update(core.encode() + b"\0" + secret.get_secret_value().encode())
        return f"mlsteps-{core}-{scope.hexdigest()[:12]}"

    def context_root(self) -> str:
        """The artifact root, resolved against ``base_dir`` like the run context does."""
        return resolve_root(self.artifact_root, self.base_dir)

    def run_key(self) -> RunKey:
        """The run key from the Prefect runtime: flow run id, and the attempt.

        The attempt is the task run's count, offset by the earlier runs of the same flow
        run: a retried flow run (``prefect flow-run retry``, or the flow's own retries)
        keeps its id, so the run key, but gets new task runs counting from 1 again.
        Each flow run attempt can make at most ``retries + 1`` attempts of a task, so
        ``(flow run count - 1) * (retries + 1) + task run count`` numbers every attempt
        of a step in that flow run uniquely and in order (with gaps where a flow run
        attempt ended early).
        """
        from prefect.context import FlowRunContext, TaskRunContext

        flow_ctx = FlowRunContext.get()
        task_ctx = TaskRunContext.get()
        run_id: str | None = None
        pipeline = self.pipeline
        if flow_ctx is not None and flow_ctx.flow_run is not None:
            run_id = str(flow_ctx.flow_run.id)
            pipeline = pipeline or (flow_ctx.flow.name if flow_ctx.flow is not None else None)
        attempt = 1
        if task_ctx is not None:
            run_id = run_id or str(task_ctx.task_run.flow_run_id or task_ctx.task_run.id)
            attempt = max(1, int(task_ctx.task_run.run_count or 1))
            if flow_ctx is not None and flow_ctx.flow_run is not None:
                earlier = max(0, int(flow_ctx.flow_run.run_count or 1) - 1)
                attempt += earlier * (int(task_ctx.task.retries or 0) + 1)
        if run_id is None:
            raise RuntimeError("mlsteps Prefect tasks must run inside a Prefect task run")
        return RunKey(
            orchestrator=ORCHESTRATOR,
            pipeline=pipeline or self.step_cls.name,
            run_id=run_id,
            step=self.step_id,
            attempt=attempt,
        )

    def context(self, run_key: RunKey) -> RunContext:
        """The run context, built by the core as for every runner (a task may have no spec)."""
        ctx = build_context(
            run_key,
            artifact_root=self.artifact_root,
            base_dir=self.base_dir,
            mlflow=self.mlflow,
            resources=self.resources,
        )
        ctx.secrets.update(self.secrets)
        if self.trigger is not None:
            ctx.set_trigger(self.trigger)
        return ctx


def parse_outputs(value: Any) -> dict[str, BaseRef]:
    """Parse a task result (output name -> ref dict) back into refs; raises on anything else."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping of output name to ref, got {type(value).__name__}")
    return {str(name): parse_ref(ref) for name, ref in value.items()}
