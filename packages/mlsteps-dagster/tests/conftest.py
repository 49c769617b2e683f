"""Fixtures for the Dagster adapter tests: toy steps in-process and as an installed plugin."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
CORE_TESTS_DIR = TESTS_DIR.parents[1] / "mlsteps" / "tests"
for _dir in (TESTS_DIR, CORE_TESTS_DIR):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

#: Step name -> ``module:Class`` of every toy step the tests use.
TOY_STEPS = {
    "toy_source": "toysteps:ToySource",
    "toy_sum": "toysteps:ToySum",
    "toy_copy": "toysteps:ToyCopy",
    "toy_crash": "toysteps:ToyCrash",
    "toy_gate": "dagster_toysteps:ToyGate",
    "toy_after": "dagster_toysteps:ToyAfter",
    "toy_probe": "dagster_toysteps:ToyProbe",
}


@pytest.fixture
def toy_steps() -> Iterator[None]:
    """Register the toy steps in-process (``materialize`` runs steps in this process)."""
    import importlib

    from mlsteps import registry

    for target in TOY_STEPS.values():
        module, _, attr = target.partition(":")
        registry.register_step(getattr(importlib.import_module(module), attr))
    yield
    for name in TOY_STEPS:
        registry._REGISTERED.pop(name, None)
    registry.refresh()


@pytest.fixture
def toy_plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toy steps are an installed entry-point plugin."""
    site = tmp_path / "plugin-site"
    dist = site / "mlsteps_dagster_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlsteps-dagster-toy\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in TOY_STEPS.items())
    (dist / "entry_points.txt").write_text(f"[mlsteps.steps]\n{lines}\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS_DIR), str(CORE_TESTS_DIR)])
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
