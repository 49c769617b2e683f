"""Fixtures for the Dagster adapter tests: toy steps in-process and as an installed plugin."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsteps.testing import TOY_STEPS as CORE_TOY_STEPS
from mlsteps.testing import registered_steps, write_step_plugin

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

#: Step name -> ``module:Class`` of every toy step the tests use.
TOY_STEPS = {
    **CORE_TOY_STEPS,
    "toy_gate": "dagster_toysteps:ToyGate",
    "toy_after": "dagster_toysteps:ToyAfter",
    "toy_probe": "dagster_toysteps:ToyProbe",
}


@pytest.fixture
def toy_steps() -> Iterator[None]:
    """Register the toy steps in-process (``materialize`` runs steps in this process)."""
    import importlib

    classes = []
    for target in TOY_STEPS.values():
        module, _, attr = target.partition(":")
        classes.append(getattr(importlib.import_module(module), attr))
    with registered_steps(*classes):
        yield


@pytest.fixture
def toy_plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toy steps are an installed entry-point plugin."""
    site = write_step_plugin(tmp_path / "plugin-site", TOY_STEPS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS_DIR)])
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    (tmp_path / "dagster_home").mkdir()
    return env


def write_spec(directory: Path, body: str, name: str = "pipeline.yaml") -> Path:
    """Write a spec file (dedented) and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


#: source -> total (a gate) -> after, and source -> gate (two-output gate) -> copy.
TOY_SPEC = """\
name: toy
defaults:
  artifact_root: art
steps:
  source:
    uses: toy_source
    config: {count: 10}
  total:
    uses: toy_sum
    config: {min_sum: 40}
    inputs: {dataset: source.dataset}
  after:
    uses: toy_after
    inputs: {report: total.report}
  checked:
    uses: toy_gate
    config: {max_rows: 100}
    inputs: {dataset: source.dataset}
  copy:
    uses: toy_copy
    inputs: {dataset: checked.dataset}
"""
