"""A real ``mlflow server`` on a fresh PostgreSQL database, for integration tests.

:func:`running_mlflow_server` creates a database, starts ``<venv>/bin/mlflow server``
against it with proxied artifacts under a temporary directory, waits for
``/health`` and yields the server; on exit it stops the server's whole process
group and drops the database. Starting takes tens of seconds (the server migrates
the schema on start), so share one server per test session::

    @pytest.fixture(scope="session")
    def mlflow_server(tmp_path_factory):
        with running_mlflow_server(workdir=tmp_path_factory.mktemp("mlflow-server")) as server:
            yield server

PostgreSQL is reached through SQLAlchemy, so a PostgreSQL driver (psycopg2,
psycopg or pg8000) must be installed in the test environment; the server runs
with the same interpreter's ``bin/`` on ``PATH``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The test PostgreSQL server (trust auth); override with MLSTEPS_TEST_POSTGRES.
DEFAULT_POSTGRES = "127.0.0.1:5432"
#: SQLAlchemy driver names by the module that provides them, in order of preference.
DRIVERS = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000"}


class PostgresDriverMissing(RuntimeError):
    """No PostgreSQL driver is installed in the test environment."""


@dataclass(frozen=True)
class MlflowServer:
    """A running server: its URL, its backend database and its log file."""

    url: str
    database: str
    backend_store_uri: str
    artifacts_dir: Path
    log_file: Path
    pid: int


def postgres_driver() -> str:
    """The SQLAlchemy driver to use (``psycopg2``...), or :class:`PostgresDriverMissing`."""
    for module, driver in DRIVERS.items():
        if importlib.util.find_spec(module) is not None:
            return driver
    raise PostgresDriverMissing(
        f"no PostgreSQL driver ({', '.join(DRIVERS)}) is installed in {sys.prefix}; "
        "add psycopg2-binary to the dev dependency group to run the mlflow-server tests"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(*, host: str, driver: str, prefix: str = "mlsteps_test") -> Iterator[str]:
    """Create a uniquely named database as user ``postgres``, yield its name, then drop it."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"postgresql+{driver}://postgres@{host}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield name
        finally:
            with admin.connect() as conn:
                # FORCE (PostgreSQL 13+) closes connections a killed server may have left.
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_file: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {proc.returncode} before it was healthy:\n{_tail(log_file)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {url} was not healthy after {timeout_s:.0f} s:\n{_tail(log_file)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers: it leads its own process group (start_new_session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # Workers that outlived the leader are still in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_mlflow_server(
    *,
    workdir: Path,
    postgres: str | None = None,
    startup_timeout_s: float = 300.0,
) -> Iterator[MlflowServer]:
    """Run ``mlflow server`` on a fresh PostgreSQL database until the block exits.

    Args:
        workdir: Directory for the artifact store and the server log.
        postgres: ``host:port`` of PostgreSQL (user ``postgres``, trust auth).
        startup_timeout_s: How long to wait for ``/health``; schema migration on
            start takes tens of seconds on a busy machine.

    Raises:
        PostgresDriverMissing: if no PostgreSQL driver is installed.
        RuntimeError: if the server exits or is not healthy in time (with its log).
    """
    host = postgres or os.environ.get("MLSTEPS_TEST_POSTGRES", DEFAULT_POSTGRES)
    driver = postgres_driver()
    bindir = Path(sys.executable).parent
    mlflow_bin = bindir / "mlflow"
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "mlflow-server.log"
    with fresh_database(host=host, driver=driver) as db:
        backend = f"postgresql+{driver}://postgres@{host}/{db}"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        # The server execs uvicorn and its job workers from PATH.
        env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True
            )
        try:
            _wait_healthy(url, proc, log_file, startup_timeout_s)
            yield MlflowServer(
                url=url,
                database=db,
                backend_store_uri=backend,
                artifacts_dir=artifacts,
                log_file=log_file,
                pid=proc.pid,
            )
        finally:
            _stop(proc)
