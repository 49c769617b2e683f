"""Airflow for the tests: a temporary AIRFLOW_HOME (SQLite metadata DB) whose DAGs folder is a project copy.

Airflow reads its configuration when first imported, so the environment is set
here, before any test imports it. The copy keeps the checkout clean: the
pipeline writes ``.mlsteps`` and ``data/`` next to its spec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import copy_project

if "airflow" in sys.modules:  # pragma: no cover - the set-up below must come first
    raise RuntimeError("airflow was imported before AIRFLOW_HOME was set")

_TMP = Path(tempfile.mkdtemp(prefix="{{ cookiecutter.project_slug }}-tests-"))
PROJECT_COPY = copy_project(_TMP / "project")
os.environ["AIRFLOW_HOME"] = str(_TMP / "airflow_home")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_COPY / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def project() -> Path:
    """The project copy, with a migrated Airflow metadata DB (``airflow db migrate``)."""
    airflow = Path(sys.executable).parent / "airflow"
    out = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return PROJECT_COPY
