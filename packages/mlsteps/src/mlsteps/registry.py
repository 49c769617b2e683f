"""Where step types are found: the built-ins and the ``mlsteps.steps`` entry points.

Look-ups are lazy: a step's module is imported only when the step is asked for,
and step modules import their heavy backends only inside ``run``.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from importlib import metadata
from typing import Any

from mlsteps.errors import Problem, StepNotFoundError
from mlsteps.step import Step

ENTRY_POINT_GROUP = "mlsteps.steps"

BUILTIN_STEPS: dict[str, str] = {
    "validate": "mlsteps.steps.validate:ValidateStep",
    "featurise": "mlsteps.steps.featurise:FeaturiseStep",
    "train": "mlsteps.steps.train:TrainStep",
    "evaluate": "mlsteps.steps.evaluate:EvaluateStep",
    "register": "mlsteps.steps.register:RegisterStep",
    "deploy": "mlsteps.steps.deploy:DeployStep",
    "monitor": "mlsteps.steps.monitor:MonitorStep",
}


#: Steps registered from Python with :func:`register_step` (e.g. in a project's own module).
_REGISTERED: dict[str, type[Step[Any]]] = {}


def register_step(step_cls: type[Step[Any]], *, name: str | None = None) -> type[Step[Any]]:
    """Register a step class under ``name`` (default: its ``name``); usable as a decorator."""
    if not (isinstance(step_cls, type) and issubclass(step_cls, Step)):
        raise TypeError(f"{step_cls!r} is not a mlsteps Step subclass")
    key = name or step_cls.name
    if key in BUILTIN_STEPS:
        raise ValueError(f"{key!r} is a built-in step name; pick another")
    _REGISTERED[key] = step_cls
    get_step.cache_clear()
    return step_cls


def refresh() -> None:
    """Forget cached look-ups (after installing a package that adds entry points)."""
    _entry_points.cache_clear()
    get_step.cache_clear()


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_steps() -> dict[str, str]:
    """Step name -> ``module:Class`` for every known step; built-in names cannot be overridden."""
    registered = {k: f"{v.__module__}:{v.__qualname__}" for k, v in _REGISTERED.items()}
    return {**_entry_points(), **registered, **BUILTIN_STEPS}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@cache
def get_step(name: str) -> type[Step[Any]]:
    """The step class registered as ``name``; a clear error with suggestions otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    # A built-in name needs no entry-point scan (every installed distribution's metadata).
    target = BUILTIN_STEPS.get(name) or available_steps().get(name)
    if target is None:
        steps = available_steps()
        close = difflib.get_close_matches(name, steps, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise StepNotFoundError(
            [Problem(None, "uses", f"unknown step {name!r}; expected one of {sorted(steps)}{hint}")]
        )
    try:
        cls = _load(target)
    except (ImportError, AttributeError) as exc:
        raise StepNotFoundError(
            [
                Problem(
                    None, "uses", f"step {name!r} is registered as {target!r} but could not be loaded: {exc}"
                )
            ]
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise StepNotFoundError([Problem(None, "uses", f"{target!r} is not a mlsteps Step subclass")])
    return cls
