"""Test set-up: a real Airflow 3 metadata DB (SQLite) in a temp AIRFLOW_HOME, toy steps as a plugin.

Airflow reads its configuration when it is first imported, so the environment
is set at the top of this module, before any test module imports Airflow. The
temp directory is removed at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

from mlsteps.testing import FLAKY_STEPS, TOY_STEPS, write_step_plugin  # light: imports no airflow

if "airflow" in sys.modules:  # pragma: no cover - guards the ordering this file relies on
    raise RuntimeError("airflow was imported before the test environment was set up")

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parents[2]
BIN = Path(sys.executable).parent

_TMP = Path(tempfile.mkdtemp(prefix="mlsteps-airflow-tests-"))
AIRFLOW_HOME = _TMP / "home"
DAGS_FOLDER = _TMP / "dags"
PLUGIN_SITE = _TMP / "plugin-site"
DAGS_FOLDER.mkdir(parents=True)

_SAVED_ENV = {k: os.environ.get(k) for k in ("AIRFLOW_HOME", "PYTHONPATH")}
_SAVED_ENV |= {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__")}
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

# The toy steps (the core's and ours) as an installed entry-point plugin, for this
# process (DAG files are parsed in-process by dag.test) and for subprocesses.
write_step_plugin(
    PLUGIN_SITE,
    {
        **TOY_STEPS,
        "toy_file": "airflow_toysteps:ToyFile",
        "toy_publish": "airflow_toysteps:ToyPublish",
        "toy_probe": "airflow_toysteps:ToyProbe",
        **FLAKY_STEPS,
    },
)
_extra_path = [str(PLUGIN_SITE), str(TESTS_DIR)]
for _p in reversed(_extra_path):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ["PYTHONPATH"] = os.pathsep.join([*_extra_path, os.environ.get("PYTHONPATH", "")])

import pytest  # noqa: E402  (after the environment is set)
from airflow_testing import PG, subprocess_env  # noqa: E402

from mlsteps import registry  # noqa: E402

registry.refresh()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the temp AIRFLOW_HOME and restore the environment (also after --collect-only)."""
    shutil.rmtree(_TMP, ignore_errors=True)
    for key in [k for k in os.environ if k.startswith("AIRFLOW__")]:
        del os.environ[key]
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB (``airflow db migrate`` once per session, ~8 s)."""
    out = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return AIRFLOW_HOME / "airflow.db"


@pytest.fixture
def dag_file(airflow_db: Path) -> object:
    """Write a DAG file into the DAGs folder and import its ``dag`` from there.

    ``dag.test()`` only runs DAGs it can find in the DAGs-folder bundle ("the dag
    is not serialized" otherwise). The file is removed after the test.
    """
    import importlib.util

    written: list[Path] = []

    def write(source: str, *, attr: str = "dag") -> object:
        name = f"test_dag_{uuid.uuid4().hex[:8]}"
        path = DAGS_FOLDER / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        written.append(path)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, attr)

    yield write
    for path in written:
        path.unlink(missing_ok=True)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")  # in the adapter's dev group; present in `make test`
    name = f"mlsteps_airflow_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(dbname="postgres", **PG)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable on 127.0.0.1:5432 (scripts/ensure-services.sh starts it): {exc}"
        )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
