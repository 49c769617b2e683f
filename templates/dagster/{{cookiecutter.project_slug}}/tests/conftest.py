"""A private copy of the project per session: the pipeline writes ``.mlsteps`` and ``data/`` by its spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import copy_project


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("copy") / "project")
