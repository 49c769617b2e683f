"""Fixtures of the reliability suite: one fork server per session, a shared MLflow server when asked."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rel_support import REPO, ForkServer


@pytest.fixture(scope="session")
def forkserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """The fork server, with MLflow, scikit-learn, Feast and the stateful steps imported."""
    server = ForkServer(tmp_path_factory.mktemp("forkserver"), ["_rel_tasks:preload"])
    try:
        yield server
    finally:
        server.close()


def _load_mlflow_server_module() -> Any:
    """``packages/mlsteps/tests/_mlflow_server.py``, the core tests' PostgreSQL-backed server helper."""
    name = "_mlflow_server"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO / "packages" / "mlsteps" / "tests" / "_mlflow_server.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _BackgroundServer:
    """Starts ``mlflow server`` in a thread (its schema migration takes ~30 s) and stops it on demand."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ready = threading.Event()
        self.done = threading.Event()
        self.server: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="rel-mlflow-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        helper = _load_mlflow_server_module()
        try:
            with helper.running_mlflow_server(workdir=self.workdir) as server:
                self.server = server
                self.ready.set()
                self.done.wait()
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=120)


@pytest.fixture(scope="session")
def _background_mlflow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_BackgroundServer | None]:
    """Start the server as soon as the session starts, if any collected test needs it."""
    needed = any("pg_mlflow_server" in getattr(item, "fixturenames", ()) for item in request.session.items)
    if not needed:
        yield None
        return
    background = _BackgroundServer(tmp_path_factory.mktemp("rel-mlflow-server"))
    try:
        yield background
    finally:
        background.stop()


@pytest.fixture(scope="session", autouse=True)
def _start_mlflow_server_early(_background_mlflow_server: _BackgroundServer | None) -> None:
    """Overlap the server's start-up with the crash tests, which mostly wait on their kill timers."""


@pytest.fixture(scope="session")
def pg_mlflow_server(_background_mlflow_server: _BackgroundServer | None) -> Any:
    """A real ``mlflow server`` on a fresh PostgreSQL database, for the concurrency and secrets tests."""
    assert _background_mlflow_server is not None
    _background_mlflow_server.ready.wait(timeout=600)
    error = _background_mlflow_server.error
    if error is not None:
        helper = _load_mlflow_server_module()
        if isinstance(error, helper.PostgresDriverMissing) and not os.environ.get("CI"):
            pytest.skip(str(error))
        raise error
    assert _background_mlflow_server.server is not None, "mlflow server did not start in 600 s"
    return _background_mlflow_server.server
