"""A real temporary Prefect API server for the session, and a private copy of the project.

``prefect_test_harness`` starts a Prefect server on a temporary SQLite database.
Prefect's task-cache records go to a session temp dir so nothing leaks between
sessions. The copy keeps the checkout clean: the pipeline writes ``.mlsteps`` and
``data/`` next to its spec.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import copy_project


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(tmp_path_factory.mktemp("prefect-results"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("copy") / "project")
