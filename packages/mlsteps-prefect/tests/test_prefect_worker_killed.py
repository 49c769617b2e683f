"""A flow run's process SIGKILLed inside ``register``, recovered by Prefect's own retry.

The set-up is a production one: ``build_flow(spec)`` deployed to a process work
pool, a real ``prefect worker`` (a separate process) running the flow run in a
process of its own, against the session's temporary API server. The spec's
``register`` step is ``prefect_teststeps.KilledMidRegister``, the real step whose
process kills itself (SIGKILL) once, right after MLflow created the version and
before its tags, model card and aliases were set. Nothing in that process can
report anything: the worker sees its child exit with -9 and marks the flow run
CRASHED. ``prefect flow-run retry`` schedules the same flow run again and the
worker runs it; ``register`` must find the version the killed attempt created
(same flow run id, so the same run key) and finish it instead of adding another.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.exceptions import ObjectAlreadyExists
from prefect_helpers import eventually
from prefect_teststeps import KILL_MARKER, KilledMidRegister, ToyDatasetFile

from mlsteps.context import RunKey
from mlsteps.lineage import LineageRecorder, interrupted
from mlsteps.steps.register import ATTEMPT_TAG, LINEAGE_TAG, RUN_KEY_TAG
from mlsteps.storage import ArtifactStore
from mlsteps.testing import registered_steps, write_step_plugin

HERE = Path(__file__).resolve().parent
PREFECT = Path(sys.executable).parent / "prefect"
POOL = "mlsteps-killed"
MODEL = "penguins-killed"
PIPELINE = "killed_worker"
SPEC = f"""\
name: {PIPELINE}
defaults: {{artifact_root: art}}
steps:
  data: {{uses: toy_dataset_file, config: {{path: penguins.parquet}}}}
  train:
    config:
      estimator: sklearn.linear_model.LogisticRegression
      params: {{max_iter: 500}}
      target: species
    inputs: {{dataset: data.dataset}}
  evaluate:
    config: {{target: species, thresholds: {{accuracy: ">= 0.8"}}}}
    inputs: {{model: train.model, dataset: train.test_data}}
  register:
    uses: killed_mid_register
    config: {{name: {MODEL}, aliases: [challenger]}}
    inputs: {{model: train.model, evaluation: evaluate.report}}
"""
FLOW = """\
from pathlib import Path

from mlsteps_prefect import build_flow

flow = build_flow(Path(__file__).with_name("pipeline.yaml"))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from palmerpenguins import load_penguins

    project = tmp_path / "project"
    project.mkdir()
    columns = ["species", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    load_penguins()[columns].dropna().to_parquet(project / "penguins.parquet", index=False)
    (project / "pipeline.yaml").write_text(SPEC)
    (project / "flow.py").write_text(FLOW)
    return project


@pytest.fixture
def worker(tmp_path: Path, prefect_server: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real process worker polling the pool every second, with the test steps installed as a plugin."""
    site = write_step_plugin(
        tmp_path / "plugin-site",
        {
            "toy_dataset_file": "prefect_teststeps:ToyDatasetFile",
            "killed_mid_register": "prefect_teststeps:KilledMidRegister",
        },
    )
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(HERE), env.get("PYTHONPATH", "")]),
        PREFECT_API_URL=prefect_server,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(PREFECT), "worker", "start", "--pool", POOL, "--type", "process", "--install-policy", "never"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()


def flow_run_state(run_id: UUID) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def worker_exit_codes(run_id: UUID) -> list[str]:
    """Exit codes of the flow run's processes, from the worker's ``executed-flow-run`` events.

    The worker emits that event once it is done with an execution, after its own
    crash report; the process executor reported the crash earlier, before running
    the flow's crash hooks. A retry scheduled between the two would be marked
    crashed by the worker's late report, so the test retries only after the event.
    """
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    flow_run = f"prefect.flow-run.{run_id}"
    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(name=["prefect.worker.executed-flow-run"]),
                related=EventRelatedFilter(id=[flow_run]),
            ),
            limit=50,
        )
    return [
        str(r.get("prefect.infrastructure.status-code"))
        for event in page.events
        for r in event.related
        if r.id == flow_run
    ]


@pytest.mark.slow
def test_a_flow_run_killed_in_register_is_retried_by_prefect_without_a_second_version(
    tmp_path: Path, project: Path, worker: subprocess.Popen[bytes], prefect_server: str
) -> None:
    from mlflow import MlflowClient

    art = project / "art"
    db = f"sqlite:///{art / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=db, registry_uri=db)
    worker_log = tmp_path / "worker.log"

    with registered_steps(ToyDatasetFile, KilledMidRegister):  # the deployment loads the flow here too
        training = Flow.from_source(source=str(project), entrypoint="flow.py:flow")
        deployment_id = training.deploy(name="killed", work_pool_name=POOL, print_next_steps=False)
    with get_client(sync_client=True) as client:
        run_id = client.create_flow_run_from_deployment(deployment_id).id

    def ended() -> Any:
        run = flow_run_state(run_id)
        return run if run.state is not None and run.state.is_final() else None

    crashed = eventually(ended, timeout=600, what="the worker to report the killed flow run")
    assert crashed.state.is_crashed(), (crashed.state, worker_log.read_text()[-3000:])
    assert "-9" in (crashed.state.message or ""), crashed.state.message
    codes = eventually(lambda: worker_exit_codes(run_id), what="the worker to finish with the killed process")
    assert codes == [str(-signal.SIGKILL)]
    marker = json.loads((art / "runs" / str(run_id) / "register" / KILL_MARKER).read_text())
    key = RunKey(orchestrator="prefect", pipeline=PIPELINE, run_id=str(run_id), step="register")
    assert marker["run_key"] == f"{key.idempotency_key}#1"

    # the killed attempt left its version, tagged with the run key and its `started` record, no aliases
    records = LineageRecorder(ArtifactStore(art)).records(str(run_id))
    (killed,) = [r for r in records if r.run_key.step == "register"]
    assert killed.status == "started"
    (version,) = registry.search_model_versions(f"name = '{MODEL}'")
    assert str(version.version) == marker["version"] == "1"
    assert version.tags[RUN_KEY_TAG] == key.idempotency_key
    assert version.tags[LINEAGE_TAG] == killed.record_id
    assert registry.get_model_version(MODEL, "1").aliases == []  # (search results carry no aliases)

    # Prefect's own recovery: retry the crashed flow run; the worker runs it again
    out = subprocess.run(
        [str(PREFECT), "flow-run", "retry", str(run_id)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "scheduled for retry" in out.stdout, out.stdout

    def completed() -> Any:
        run = flow_run_state(run_id)
        if run.state is None or not run.state.is_final() or run.run_count < 2:
            return None
        return run

    retried = eventually(completed, timeout=600, what="the worker to run the retried flow run")
    assert retried.state.is_completed(), (retried.state, worker_log.read_text()[-3000:])
    with get_client(sync_client=True) as client:  # the same flow run ran again, no new one was made
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(deployment_id))]))
        )
    assert [run.id for run in runs] == [run_id]

    # one version, carrying the run key, finished by the retry: lineage tag, aliases
    (version,) = registry.search_model_versions(f"name = '{MODEL}'")
    assert str(version.version) == "1"
    assert version.tags[RUN_KEY_TAG] == key.idempotency_key
    assert registry.get_model_version(MODEL, "1").aliases == ["challenger"]
    records = LineageRecorder(ArtifactStore(art)).records(str(run_id))
    register = [r for r in records if r.run_key.step == "register"]
    assert [r.status for r in register] == ["started", "succeeded"]
    assert register[0] == killed
    finished = register[1]
    assert {r.run_key.idempotency_key for r in register} == {key.idempotency_key}
    assert interrupted(records) == [killed]
    assert version.tags[LINEAGE_TAG] == finished.record_id
    # the retried flow run's new task runs count from 1 again; the attempt number does not
    assert (killed.run_key.attempt, finished.run_key.attempt) == (1, 2)
    assert version.tags[ATTEMPT_TAG] == "2"
    assert finished.outputs["model_version"].ref["version"] == "1"
    assert finished.outputs["model_version"].ref["metadata"]["reused"] is True
