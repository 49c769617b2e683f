"""Fixtures: one real temporary Prefect API server per session, and the toy steps.

``prefect_test_harness`` starts a real API server on a temporary SQLite database
(about 20 s here, hence one per session and a generous startup timeout). Prefect
keeps task-cache records under ``PREFECT_RESULTS_LOCAL_STORAGE_PATH``, outside
that database, so it is pointed at a session temp dir: otherwise cache hits leak
from one test session into the next.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CORE_TESTS = ROOT / "packages" / "mlsteps" / "tests"
for path in (HERE, CORE_TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

TOY_STEPS = ("ToySource", "ToySum", "ToyCopy", "ToyCrash")


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect API server for the whole session; yields its API URL."""
    storage = tmp_path_factory.mktemp("prefect-results")
    saved = {
        k: os.environ.get(k)
        for k in ("PREFECT_RESULTS_LOCAL_STORAGE_PATH", "PREFECT_SERVER_ANALYTICS_ENABLED")
    }
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(storage)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=90):
            yield str(PREFECT_API_URL.value())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def toy_steps() -> Iterator[None]:
    """The core's toy steps plus this package's report consumer, registered in-process."""
    import prefect_teststeps
    import toysteps

    from mlsteps import registry

    classes = [getattr(toysteps, name) for name in TOY_STEPS] + [
        prefect_teststeps.ToyAfterGate,
        prefect_teststeps.ToyLiveSource,
    ]
    for cls in classes:
        registry.register_step(cls)
    yield
    for cls in classes:
        registry._REGISTERED.pop(cls.name, None)
    registry.refresh()


@pytest.fixture
def toy_plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toy steps are an installed entry-point plugin."""
    site = tmp_path / "plugin-site"
    dist = site / "mlsteps_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlsteps-toy\nVersion: 0.1\n")
    entries = "\n".join(
        f"{name} = toysteps:{cls}"
        for name, cls in zip(("toy_source", "toy_sum", "toy_copy", "toy_crash"), TOY_STEPS, strict=True)
    )
    (dist / "entry_points.txt").write_text(f"[mlsteps.steps]\n{entries}\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(CORE_TESTS), env.get("PYTHONPATH", "")])
    return env


def write_spec(directory: Path, body: str) -> Path:
    path = directory / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    return path
