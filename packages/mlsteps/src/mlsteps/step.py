"""The step contract and the one function every adapter calls to run a step.

A step is a class with a typed config (a pydantic model), named inputs and outputs
(refs of declared kinds) and a ``run(ctx, config, inputs)`` method. Heavy
libraries are imported inside ``run`` so that importing a step is cheap.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mlsteps.errors import ConfigError, GateFailure, MlstepsError, Problem
from mlsteps.hashing import hash_value
from mlsteps.refs import BaseRef, RefKind, dump_ref, parse_ref

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlsteps.context import RunContext
    from mlsteps.lineage import Status


class StepConfig(BaseModel):
    """Base class of step configs: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


C = TypeVar("C", bound=StepConfig)


@dataclass(frozen=True)
class InputSpec:
    """A named input: the ref kind it accepts and whether it is required."""

    kind: RefKind
    required: bool = True
    description: str = ""


@dataclass
class StepResult:
    """What a step returns: output refs by name, metrics, and a gate verdict."""

    outputs: dict[str, BaseRef] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    passed: bool | None = None
    message: str = ""
    #: For steps with ``stateful_cache``: the state outside the inputs this result
    #: depended on (see :meth:`Step.cache_state`); ``None`` means "do not cache".
    cache_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "outputs": {k: dump_ref(v) for k, v in self.outputs.items()},
            "metrics": dict(self.metrics),
            "passed": self.passed,
            "message": self.message,
        }
        if self.cache_state is not None:
            out["cache_state"] = self.cache_state
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepResult:
        return cls(
            outputs={k: parse_ref(v) for k, v in data.get("outputs", {}).items()},
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
            passed=data.get("passed"),
            message=data.get("message", ""),
            cache_state=data.get("cache_state"),
        )


class Step(ABC, Generic[C]):
    """Base class of every step, built in or third party.

    Subclasses set the class attributes and implement :meth:`run`. ``version``
    is part of the cache key: bump it when a change to ``run`` changes outputs.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    config_model: ClassVar[type[StepConfig]]
    inputs: ClassVar[dict[str, InputSpec]] = {}
    outputs: ClassVar[dict[str, RefKind]] = {}
    #: Whether an unchanged re-run may reuse earlier outputs (registering and
    #: deploying talk to live systems and must always run).
    cacheable: ClassVar[bool] = True
    #: Whether the result also depends on state outside the inputs (the model registry):
    #: a cached result is then reused only while :meth:`cache_state` still returns the
    #: state the result recorded in :attr:`StepResult.cache_state`.
    stateful_cache: ClassVar[bool] = False
    #: Whether this step is a quality gate whose failure stops the pipeline.
    gate: ClassVar[bool] = False

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any] | StepConfig | None, *, file: str | None = None) -> C:
        """Validate raw config, reporting every problem with its path."""
        if isinstance(raw, cls.config_model):
            return raw  # type: ignore[return-value]
        try:
            return cls.config_model.model_validate(dict(raw or {}))  # type: ignore[return-value]
        except ValidationError as exc:
            raise ConfigError(validation_problems(exc, file=file, prefix=f"{cls.name}.config")) from None

    def cache_state(self, ctx: RunContext, config: C, inputs: Mapping[str, BaseRef]) -> str | None:
        """The current external state a ``stateful_cache`` step depends on (``None``: unknown).

        Called before a cached result is reused, so it must be cheap and must not
        import heavy libraries when it can avoid it.
        """
        return None

    @abstractmethod
    def run(self, ctx: RunContext, config: C, inputs: dict[str, BaseRef]) -> StepResult:
        """Do the work and return output refs. Raise :class:`GateFailure` for a failed gate."""


class NoConfig(StepConfig):
    """Config model for steps without options."""


def validation_problems(exc: ValidationError, *, file: str | None, prefix: str = "") -> list[Problem]:
    """Turn a pydantic error into problems with dotted paths and plain-English expectations."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required field is missing"
        else:
            msg = f"{err['msg']} (got {err.get('input')!r})"
        problems.append(Problem(file=file, path=path, message=msg))
    return problems


def config_hash(config: StepConfig) -> str:
    return hash_value(config.model_dump(mode="json"))


def cache_key(step_cls: type[Step[Any]], config: StepConfig, inputs: Mapping[str, BaseRef]) -> str:
    """What identifies a step's work: its type and code version, config and input content."""
    return hash_value(
        {
            "step": step_cls.name,
            "version": step_cls.version,
            "config": config_hash(config),
            "inputs": {k: v.fingerprint() for k, v in sorted(inputs.items())},
        }
    )


def check_inputs(step_cls: type[Step[Any]], inputs: Mapping[str, Any]) -> dict[str, BaseRef]:
    """Parse input refs and check them against the step's declared inputs."""
    problems: list[Problem] = []
    parsed: dict[str, BaseRef] = {}
    for name, raw in inputs.items():
        spec = step_cls.inputs.get(name)
        if spec is None:
            problems.append(
                Problem(
                    None,
                    f"inputs.{name}",
                    f"step '{step_cls.name}' has no input '{name}'; "
                    f"expected one of {sorted(step_cls.inputs) or 'none'}",
                )
            )
            continue
        try:
            ref = parse_ref(raw)
        except (ValidationError, ValueError) as exc:
            problems.append(Problem(None, f"inputs.{name}", f"not a valid ref: {exc}"))
            continue
        kind = getattr(ref, "kind", None)
        if kind != spec.kind:
            problems.append(Problem(None, f"inputs.{name}", f"expected a {spec.kind} ref, got a {kind} ref"))
            continue
        parsed[name] = ref
    for name, spec in step_cls.inputs.items():
        if spec.required and name not in inputs:
            problems.append(
                Problem(None, f"inputs.{name}", f"required input of step '{step_cls.name}' is missing")
            )
    if problems:
        raise ConfigError(problems)
    return parsed


def execute_step(
    step_cls: type[Step[Any]],
    ctx: RunContext,
    config: Mapping[str, Any] | StepConfig | None,
    inputs: Mapping[str, Any],
    *,
    spec_step: str | None = None,
) -> StepResult:
    """Validate, run and record one step: the single entry point for all adapters.

    Records one lineage record whatever happens (succeeded, failed, gate_failed)
    and re-raises errors unchanged, so each orchestrator fails in its own way. The
    record is first written as ``started`` and replaced at the end, so a killed
    attempt leaves its ``started`` marker behind.
    """
    cfg = step_cls.parse_config(config)
    refs = check_inputs(step_cls, inputs)
    started = time.time()
    status: Status = "failed"
    error: str | None = None
    result: StepResult | None = None
    key = cache_key(step_cls, cfg, refs)
    if ctx.lineage is not None:
        # A `started` marker at the path the final record replaces: an attempt killed before it
        # can record anything (SIGKILL, OOM) still leaves a trace in lineage.
        ctx.lineage.record(
            ctx,
            step_type=step_cls.name,
            step_version=step_cls.version,
            config=cfg,
            inputs=refs,
            result=None,
            status="started",
            error=None,
            started=started,
            finished=started,
            cache_key=key,
        )
    try:
        result = step_cls().run(ctx, cfg, refs)
        missing = set(step_cls.outputs) - set(result.outputs)
        if missing:
            raise MlstepsError(f"step '{step_cls.name}' did not produce outputs {sorted(missing)}")
        status = "succeeded"
        return result
    except GateFailure as exc:
        status = "gate_failed"
        error = str(exc)
        if exc.report is not None:
            result = StepResult(outputs={"report": exc.report}, passed=False, message=error)
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if ctx.lineage is not None:
            ctx.lineage.record(
                ctx,
                step_type=step_cls.name,
                step_version=step_cls.version,
                config=cfg,
                inputs=refs,
                result=result,
                status=status,
                error=error,
                started=started,
                finished=time.time(),
                cache_key=key,
            )
