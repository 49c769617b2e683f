"""Shared fixtures for the core package's tests."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsteps.testing import TOY_STEPS, registered_steps, write_step_plugin


def pytest_configure(config: pytest.Config) -> None:
    # Registered here because the root pyproject.toml is not edited for one marker.
    config.addinivalue_line(
        "markers",
        "cluster: needs a live Kubernetes cluster (KUBECONFIG); run by .github/workflows/kind.yml",
    )


@pytest.fixture
def toy_steps() -> Iterator[None]:
    """Register the toy steps in-process for the duration of a test."""
    with registered_steps():
        yield


@pytest.fixture
def toy_plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toy steps are an installed entry-point plugin."""
    site = write_step_plugin(tmp_path / "plugin-site", TOY_STEPS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
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
