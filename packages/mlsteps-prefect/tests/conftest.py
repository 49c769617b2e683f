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
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


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

    from mlsteps import testing

    with testing.registered_steps(
        testing.ToySource,
        testing.ToySum,
        testing.ToyCopy,
        testing.ToyCrash,
        prefect_teststeps.ToyAfterGate,
        prefect_teststeps.ToyLiveSource,
        prefect_teststeps.ToyDriftReport,
    ):
        yield


@pytest.fixture
def toy_plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toy steps are an installed entry-point plugin."""
    from mlsteps.testing import TOY_STEPS, write_step_plugin

    site = write_step_plugin(tmp_path / "plugin-site", TOY_STEPS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def write_spec(directory: Path, body: str) -> Path:
    path = directory / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    return path
