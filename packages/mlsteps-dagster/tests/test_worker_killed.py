"""Step processes SIGKILLed after their work, then Dagster's own re-execution from failure.

The job runs on Dagster's multiprocess executor (each step in its own spawned
process) against a persistent instance. ``register`` and ``deploy`` are the real
steps, except that on attempt 1 their process kills itself with SIGKILL right after
the step's work went through (the version is in MLflow, the server is up) and before
the step returns (:func:`mlsteps.testing.crash_after_first_attempt` with ``kill``):
no ``failed`` lineage record, no exception, exactly as a lost worker. The run fails;
``ReexecutionOptions.from_failure`` re-runs what did not finish. That a re-executed
step is attempt 2 of the root run's key, and so is not killed again, is the
adapter's doing (:func:`mlsteps_dagster.assets.run_and_attempt`).

Real MLflow (SQLite under the artifact root), sklearn, GX and a real local model server.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pytest
from conftest import write_spec

from mlsteps import registry
from mlsteps.context import RunKey, build_context
from mlsteps.lineage import LineageRecord, LineageRecorder, interrupted
from mlsteps.steps.register import ATTEMPT_TAG, LINEAGE_TAG, RUN_KEY_TAG
from mlsteps.storage import ArtifactStore
from mlsteps.testing import FLAKY_STEPS, stop_deployments, write_step_plugin

if TYPE_CHECKING:
    from collections.abc import Iterator


REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"

SPEC = """\
name: killed
defaults: {artifact_root: .mlsteps}
steps:
  validate:
    config:
      data: data/penguins.parquet
      expectations: [{type: column_exists, column: species}]
  train:
    config:
      estimator: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 20, max_depth: 4}
      target: species
      exclude: [penguin_id, event_timestamp, island, sex]
      seed: 1
    inputs: {dataset: validate.dataset}
  evaluate:
    config:
      target: species
      thresholds: {accuracy: ">= 0.5"}
    inputs: {model: train.model, dataset: train.test_data}
  register:
    uses: killed_register
    config: {name: killed_penguins, aliases: [challenger]}
    inputs: {model: train.model, evaluation: evaluate.report}
  deploy:
    uses: killed_deploy
    config: {name: killed-svc}
    inputs: {model_version: register.model_version}
"""

JOB_MODULE = """\
import dagster as dg

from mlsteps_dagster import build_definitions

defs = build_definitions({spec!r}, resources={{"io_manager": dg.FilesystemIOManager(base_dir={io!r})}})


def job() -> dg.JobDefinition:
    return defs.resolve_job_def("killed")
"""
MULTIPROCESS = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}


@pytest.fixture
def killing_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The killing steps as an installed entry-point plugin, visible to Dagster's step processes."""
    site = write_step_plugin(
        tmp_path / "plugin-site",
        {name: FLAKY_STEPS[name] for name in ("killed_register", "killed_deploy")},
        name="mlsteps-killed-steps",
    )
    add_to_path(monkeypatch, site)
    registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()


def add_to_path(monkeypatch: pytest.MonkeyPatch, *dirs: Path) -> None:
    """Make ``dirs`` importable here and in Dagster's step processes.

    Spawned processes start with this ``sys.path``. The dirs go at its end: Dagster
    takes ``sys.path[0]`` out while it imports the job's module.
    """
    monkeypatch.setattr(sys, "path", [*sys.path, *map(str, dirs)])


def reconstructable_job(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The spec's job, importable by Dagster's step processes from a module under ``tmp_path``."""
    module = f"killed_job_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(JOB_MODULE.format(spec=str(spec), io=str(tmp_path / "io")))
    add_to_path(monkeypatch, tmp_path)
    return dg.reconstructable(importlib.import_module(module).job)


def mlflow_client(root: Path) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions(root: Path, name: str) -> list[Any]:
    return list(mlflow_client(root).search_model_versions(f"name='{name}'"))


def step_keys(result: dg.ExecuteJobResult, event_type: str) -> set[str]:
    return {ev.step_key for ev in result.all_events if ev.event_type_value == event_type and ev.step_key}


def killed_then_succeeded(root: Path, step: str, run_id: str) -> tuple[LineageRecord, LineageRecord]:
    """The lineage of ``step``: a ``started`` record left by the killed attempt, then one success.

    Both carry the root run's key; the killed attempt is known as interrupted.
    """
    records = [r for r in LineageRecorder(ArtifactStore(root)).records() if r.run_key.step == step]
    assert [(r.run_key.run_id, r.run_key.attempt, r.status) for r in records] == [
        (run_id, 1, "started"),
        (run_id, 2, "succeeded"),
    ]
    assert interrupted(records) == [records[0]]
    return records[0], records[1]


def reexecute_from_failure(job: Any, instance: dg.DagsterInstance, parent: str) -> dg.ExecuteJobResult:
    return dg.execute_job(
        job,
        instance,
        run_config=MULTIPROCESS,
        raise_on_error=False,
        reexecution_options=dg.ReexecutionOptions.from_failure(parent, instance),
    )


def assert_killed(result: dg.ExecuteJobResult, step: str) -> None:
    """The run failed because ``step``'s process died, not because the step raised."""
    assert not result.success
    (failure,) = [ev for ev in result.all_events if ev.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == step
    error = failure.step_failure_data.error
    assert error is not None
    assert error.cls_name == "ChildProcessCrashException"
    assert any(
        ev.step_key == step and "terminated by signal 9 (SIGKILL)" in (ev.message or "")
        for ev in result.all_events
        if ev.event_type_value == "ENGINE_EVENT"
    )
    assert step_keys(result, "STEP_START") >= {step}


@pytest.mark.slow
def test_register_and_deploy_killed_by_sigkill_are_recovered_by_reexecution_from_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killing_steps: None
) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare_data.py"), "--out", str(tmp_path / "data")],
        check=True,
        timeout=300,
    )
    spec = write_spec(tmp_path, SPEC)
    root = tmp_path / ".mlsteps"
    job = reconstructable_job(tmp_path, spec, monkeypatch)
    (tmp_path / "dagster").mkdir()

    try:
        with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
            # Run 1: register's process registers v1, then is SIGKILLed.
            with dg.execute_job(job, instance, run_config=MULTIPROCESS, raise_on_error=False) as first:
                assert_killed(first, "register")
                assert step_keys(first, "STEP_SUCCESS") == {"validate", "train", "evaluate"}
            root_run = first.run_id
            assert [str(v.version) for v in versions(root, "killed_penguins")] == ["1"]

            # Re-execution 1 (from run 1's failure): register finishes; deploy's process
            # starts the server, then is SIGKILLed.
            with reexecute_from_failure(job, instance, root_run) as second:
                assert second.dagster_run.root_run_id == root_run
                assert_killed(second, "deploy")
                assert step_keys(second, "STEP_SUCCESS") == {"register"}

            (only,) = versions(root, "killed_penguins")
            _, registered = killed_then_succeeded(root, "register", root_run)
            assert only.tags[RUN_KEY_TAG] == f"dagster/killed/{root_run}/register"
            assert only.tags[ATTEMPT_TAG] == "2"
            assert only.tags[LINEAGE_TAG] == registered.record_id
            assert (
                str(mlflow_client(root).get_model_version_by_alias("killed_penguins", "challenger").version)
                == "1"
            )
            ref = registered.outputs["model_version"].ref
            assert (ref["version"], ref["aliases"], ref["metadata"]["reused"]) == ("1", ["challenger"], True)

            # Re-execution 2 (from re-execution 1's failure): deploy finds the live server.
            with reexecute_from_failure(job, instance, second.run_id) as third:
                assert third.success
                assert third.dagster_run.root_run_id == root_run
                assert step_keys(third, "STEP_SUCCESS") == {"deploy"}

        _, deployed = killed_then_succeeded(root, "deploy", root_run)
        assert deployed.outputs["deployment"].ref["status"] == "healthy"
        assert deployed.outputs["deployment"].ref["metadata"]["reused"] is True
        assert_one_live_server(root, "killed-svc", deployed)
        assert [str(v.version) for v in versions(root, "killed_penguins")] == ["1"]
    finally:
        stop_deployments(root)


def assert_one_live_server(root: Path, deployment: str, deployed: LineageRecord) -> None:
    """One healthy history entry for the run key, one server process, serving v1 for real."""
    from mlsteps.deploy.base import StateFile
    from mlsteps.deploy.local import LocalServer, is_running, predict, serving_example, stray_servers

    ctx = build_context(RunKey(run_id="check", step="check", pipeline="check"), artifact_root=str(root))
    state_file = StateFile(ctx, deployment)
    state = state_file.load()
    assert state is not None
    assert [(e.version, e.status, e.details.get("run_key")) for e in state.history] == [
        ("1", "healthy", deployed.run_key.idempotency_key)
    ]
    live = LocalServer.model_validate(state.runtime["live"])
    assert is_running(live)
    assert stray_servers(state_file.directory(), keep={live.pid}) == []
    example = serving_example(live.model_path)
    assert example is not None and state.endpoint is not None
    assert predict(state.endpoint, example)
