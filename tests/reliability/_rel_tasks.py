"""What a forked child of the fork server runs: one step attempt, as an orchestrator's worker would.

Each function builds the run context from plain JSON arguments (run key, artifact
root, MLflow URI), calls :func:`mlsteps.step.execute_step` and writes the result
JSON next to the test's files. :func:`lineage_kill_hook` makes the process
SIGKILL itself at one chosen point inside the lineage write (a write lasts
milliseconds: no timer can aim inside it).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from mlsteps.context import MlflowSettings, RunKey, build_context
from mlsteps.registry import get_step
from mlsteps.step import execute_step
from mlsteps.storage import atomic_write_bytes

#: Points inside one ``atomic_write_bytes`` call at which the lineage hook can kill.
WRITE_POINTS = ("after_mkstemp", "mid_write", "after_write", "after_fsync", "after_replace")


def run_step(
    *,
    step_type: str,
    step_id: str,
    root: str,
    base_dir: str,
    run_id: str,
    attempt: int,
    result: str,
    config: dict[str, Any],
    inputs: dict[str, Any],
    pipeline: str = "crash",
    tracking_uri: str | None = None,
    plugin: str | None = None,
    lineage_kill: dict[str, Any] | None = None,
) -> None:
    """Run one attempt of ``step_type`` and write its result (or error) JSON to ``result``."""
    if plugin:
        import importlib

        from mlsteps.registry import register_step

        module, _, attr = plugin.partition(":")
        register_step(getattr(importlib.import_module(module), attr))
    if lineage_kill:
        lineage_kill_hook(**lineage_kill)
    ctx = build_context(
        RunKey(pipeline=pipeline, run_id=run_id, step=step_id, attempt=attempt),
        artifact_root=root,
        base_dir=Path(base_dir),
        mlflow=MlflowSettings(tracking_uri=tracking_uri),
    )
    try:
        res = execute_step(get_step(step_type), ctx, config, inputs)
    except Exception as exc:
        payload = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "record_id": ctx.record_id}
        atomic_write_bytes(Path(result), json.dumps(payload).encode())
        raise
    payload = {"status": "succeeded", "record_id": ctx.record_id, **res.to_dict()}
    atomic_write_bytes(Path(result), json.dumps(payload, default=str).encode())


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def lineage_kill_hook(*, write: int, point: str, fraction: float = 0.5) -> None:
    """SIGKILL this process at ``point`` of its ``write``-th lineage file write (1 = the started marker).

    Wraps the ``os`` and ``tempfile`` functions :func:`mlsteps.storage.atomic_write_bytes`
    calls, so the real write-then-rename code runs up to the kill.
    """
    import mlsteps.storage as storage

    if point not in WRITE_POINTS:
        raise ValueError(f"unknown kill point {point!r}")
    state = {"count": 0, "active": False}
    real_os, real_tempfile = storage.os, storage.tempfile

    class _File:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> _File:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            if state["active"] and point == "mid_write":
                self.fh.write(data[: int(len(data) * fraction)])
                self.fh.flush()
                _die()
            n: int = self.fh.write(data)
            if state["active"] and point == "after_write":
                self.fh.flush()
                _die()
            return n

        def flush(self) -> None:
            self.fh.flush()

        def fileno(self) -> int:
            fd: int = self.fh.fileno()
            return fd

    class _Os:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_os, name)

        def fdopen(self, fd: int, mode: str) -> Any:
            fh = real_os.fdopen(fd, mode)
            return _File(fh) if state["active"] else fh

        def fsync(self, fd: int) -> None:
            real_os.fsync(fd)
            if state["active"] and point == "after_fsync":
                _die()

        def replace(self, src: str, dst: str) -> None:
            real_os.replace(src, dst)
            if state["active"] and point == "after_replace":
                _die()

    class _Tempfile:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_tempfile, name)

        def mkstemp(self, **kwargs: Any) -> tuple[int, str]:
            fd, path = real_tempfile.mkstemp(**kwargs)
            is_lineage = f"{os.sep}lineage{os.sep}" in str(kwargs.get("dir", "")) + os.sep
            if is_lineage:
                state["count"] += 1
            state["active"] = is_lineage and state["count"] == write
            if state["active"] and point == "after_mkstemp":
                _die()
            return fd, path

    storage.os = _Os()  # type: ignore[assignment]
    storage.tempfile = _Tempfile()  # type: ignore[assignment]


def preload() -> None:
    """Imports the fork server does once, before any fork."""
    import feast  # noqa: F401
    import mlflow
    import mlflow.pyfunc.scoring_server
    import mlflow.sklearn
    import mlflow.store.model_registry.sqlalchemy_store
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import mlsteps.deploy.local
    import mlsteps.steps.deploy
    import mlsteps.steps.featurise
    import mlsteps.steps.register
    import mlsteps.testing  # noqa: F401


def online_values(*, repo: str, feature: str, entity_ids: list[int], result: str) -> None:
    """Read ``feature`` for ``entity_ids`` from the Feast repo's online store into ``result`` (JSON)."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=repo)
    rows = [{"entity_id": i} for i in entity_ids]
    got = store.get_online_features(features=[feature], entity_rows=rows).to_dict()
    name = feature.split(":", 1)[1]
    atomic_write_bytes(Path(result), json.dumps(got[name]).encode())


def log_and_register(
    *,
    tracking_uri: str,
    root: str,
    base_dir: str,
    run_id: str,
    name: str,
    accuracy: float,
    threshold: float,
    saved_model: str,
    go: str,
    result: str,
) -> None:
    """One pipeline of the concurrency test: log a model, wait for the start signal, then register it.

    The model (saved once by the test with ``mlflow.sklearn.save_model``) is logged
    as a new LoggedModel of its own run, as ``train`` would log it, minus MLflow's
    slow environment inference. The evaluation is written as ``evaluate`` would
    (accuracy vs. a threshold); the register step promotes on accuracy.
    """
    import time

    from mlsteps.backends.mlflow import configure, ensure_experiment
    from mlsteps.refs import ModelRef, ReportRef
    from mlsteps.steps.register import RegisterStep

    ctx = build_context(
        RunKey(pipeline="concurrent", run_id=run_id, step="register"),
        artifact_root=root,
        base_dir=Path(base_dir),
        mlflow=MlflowSettings(tracking_uri=tracking_uri, experiment="concurrent"),
    )
    client = configure(ctx)
    experiment_id = ensure_experiment(ctx, client)
    run = client.create_run(experiment_id, tags=ctx.tags())
    logged = client.create_logged_model(experiment_id, name="model", source_run_id=run.info.run_id)
    client.log_model_artifacts(logged.model_id, saved_model)
    client.finalize_logged_model(logged.model_id, "READY")
    client.set_terminated(run.info.run_id)
    passed = accuracy >= threshold
    summary = {
        "metrics": {"accuracy": accuracy},
        "thresholds": {"accuracy": f">= {threshold}"},
        "failing": [] if passed else [f"accuracy {accuracy} < {threshold}"],
    }
    report = Path(base_dir) / f"evaluation-{run_id}.json"
    atomic_write_bytes(report, json.dumps({"passed": passed, **summary}).encode())
    inputs = {
        "model": ModelRef(uri=f"models:/{logged.model_id}", run_id=run.info.run_id, model_id=logged.model_id),
        "evaluation": ReportRef(uri=str(report), passed=passed, summary=summary),
    }
    while not Path(go).exists():  # start all registrations together
        time.sleep(0.01)
    config = {"name": name, "promote": True, "promote_metric": "accuracy"}
    try:
        res = execute_step(RegisterStep, ctx, config, inputs)
        payload: dict[str, Any] = {"status": "succeeded", **res.to_dict()}
    except Exception as exc:
        payload = {"status": type(exc).__name__, "error": str(exc)}
    atomic_write_bytes(Path(result), json.dumps(payload, default=str).encode())


def run_pipelines(*, spec: str, root: str, run_ids: list[str], result: str, go: str) -> None:
    """Run the toy spec once per run id with the local runner (toy steps registered in-process)."""
    import time

    from mlsteps.runner import LocalRunner
    from mlsteps.spec import load_spec
    from mlsteps.testing import registered_steps

    with registered_steps():
        loaded = load_spec(spec)
        while not Path(go).exists():
            time.sleep(0.01)
        outcomes = {}
        for run_id in run_ids:
            summary = LocalRunner(loaded, run_id=run_id, artifact_root=root).run()
            outcomes[run_id] = {o.step_id: o.status for o in summary.outcomes}
    atomic_write_bytes(Path(result), json.dumps(outcomes).encode())


def mark_materializing(*, repo: str, view: str) -> None:
    """Leave ``view`` in Feast's MATERIALIZING state, as a run killed mid-materialisation does."""
    from feast import FeatureStore
    from feast.feature_view import FeatureViewState

    store = FeatureStore(repo_path=repo)
    fv = store.get_feature_view(view)
    fv.state = FeatureViewState.MATERIALIZING
    store.registry.apply_feature_view(fv, store.project, commit=True)
