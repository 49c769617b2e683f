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
}


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_steps() -> dict[str, str]:
    """Step name -> ``module:Class`` for every known step (entry points override nothing built in)."""
    return {**_entry_points(), **BUILTIN_STEPS}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@cache
def get_step(name: str) -> type[Step[Any]]:
    """The step class registered as ``name``; a clear error with suggestions otherwise."""
    steps = available_steps()
    target = steps.get(name)
    if target is None:
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
