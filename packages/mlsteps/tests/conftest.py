"""Shared fixtures for the core package's tests."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def toy_steps() -> Iterator[None]:
    """Register the toy steps in-process for the duration of a test."""
    import toysteps

    from mlsteps import registry

    for cls in (toysteps.ToySource, toysteps.ToySum, toysteps.ToyCopy, toysteps.ToyCrash):
        registry.register_step(cls)
    yield
    for name in ("toy_source", "toy_sum", "toy_copy", "toy_crash"):
        registry._REGISTERED.pop(name, None)
    registry.refresh()


@pytest.fixture
def toy_plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toy steps are an installed entry-point plugin."""
    site = tmp_path / "plugin-site"
    dist = site / "mlsteps_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlsteps-toy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [mlsteps.steps]
            toy_source = toysteps:ToySource
            toy_sum = toysteps:ToySum
            toy_copy = toysteps:ToyCopy
            toy_crash = toysteps:ToyCrash
            """
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS_DIR), env.get("PYTHONPATH", "")])
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def write_spec(directory: Path, body: str, name: str = "pipeline.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


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
"""
