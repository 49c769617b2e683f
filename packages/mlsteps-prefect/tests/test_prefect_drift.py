"""Retraining on drift: the drift event, and the automation that runs the training deployment.

Everything runs against the real temporary API server, whose event services
(event persister, triggers, actions) run in-process with it: the drift event is
emitted by the task, stored, evaluated by the automation's trigger, and the
RunDeployment action creates the flow run; that run is then executed with
``prefect flow-run execute`` (the command a worker's Job or process runs).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.exceptions import ObjectAlreadyExists
from prefect_helpers import drift_events, eventually, flow_run_id, lineage

from mlsteps.refs import ReportRef, parse_ref
from mlsteps_prefect import drift_automation, mlsteps_task, monitor_task
from mlsteps_prefect.events import model_resource_id, pipeline_resource_id

PREFECT = Path(sys.executable).parent / "prefect"
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture
def batches(tmp_path: Path) -> dict[str, Path]:
    """A reference batch, an unchanged batch and one whose measurements shifted."""
    from palmerpenguins import load_penguins

    df = load_penguins()[FEATURES].dropna()
    out = {"reference": tmp_path / "reference.parquet", "same": tmp_path / "same.parquet"}
    df.to_parquet(out["reference"], index=False)
    df.to_parquet(out["same"], index=False)
    shifted = df.assign(body_mass_g=df["body_mass_g"] + 1500, bill_length_mm=df["bill_length_mm"] + 12)
    out["shifted"] = tmp_path / "shifted.parquet"
    shifted.to_parquet(out["shifted"], index=False)
    return out


def test_a_monitor_report_saying_drift_emits_the_event(tmp_path: Path, batches: dict[str, Path]) -> None:
    @flow(name="watch-penguins")
    def watch(current: str) -> dict[str, Any]:
        return monitor_task(
            config={
                "reference": str(batches["reference"]),
                "current": current,
                "log_to_mlflow": False,
            },
            artifact_root="art",
            base_dir=str(tmp_path),
        )

    calm = watch(str(batches["same"]), return_state=True)
    drifted = watch(str(batches["shifted"]), return_state=True)

    assert calm.is_completed() and drifted.is_completed()
    assert parse_ref(calm.result()["report"]).summary["verdict"] == "no_drift"
    report = parse_ref(drifted.result()["report"])
    assert isinstance(report, ReportRef)
    assert report.summary["verdict"] == "drift"
    events = eventually(
        lambda: drift_events(pipeline_resource_id("watch-penguins")), what="the drift event to be stored"
    )
    # only the drifted batch emitted (the calm one ran first, so its event would be stored by now)
    assert len(events) == 1
    (event,) = events
    assert event.resource["mlsteps.step"] == "monitor"
    assert event.payload["report"]["uri"] == report.uri
    (record,) = [r for r in lineage(tmp_path / "art", drifted) if r.run_key.step == "monitor"]
    assert event.payload["trigger"] == {
        "kind": "drift",
        "report": report.uri,
        "report_hash": report.content_hash,
        "html": report.html_uri,
        "monitor_pipeline": "watch-penguins",
        "monitor_run_id": str(flow_run_id(drifted)),
        "monitor_record": record.record_id,
        "reasons": report.summary["reasons"],
    }
    assert event.related[0].id == f"prefect.flow-run.{flow_run_id(drifted)}"


RETRAIN_SPEC = """\
name: retrain
defaults: {artifact_root: art}
steps:
  source: {uses: toy_source, config: {count: 4}}
  total: {uses: toy_sum, inputs: {dataset: source.dataset}}
"""
RETRAIN_FLOW = """\
from pathlib import Path

from mlsteps_prefect import build_flow

flow = build_flow(Path(__file__).with_name("pipeline.yaml"))
"""


def process_pool(name: str) -> None:
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


@pytest.mark.usefixtures("toy_steps")
def test_the_automation_runs_the_training_deployment_on_drift(
    tmp_path: Path, toy_plugin_env: dict[str, str]
) -> None:
    project = tmp_path / "retrain"
    project.mkdir()
    (project / "pipeline.yaml").write_text(RETRAIN_SPEC)
    (project / "flow.py").write_text(RETRAIN_FLOW)
    process_pool("mlsteps-process")
    training = Flow.from_source(source=str(project), entrypoint="flow.py:flow")
    deployment_id = training.deploy(name="retrain", work_pool_name="mlsteps-process", print_next_steps=False)
    automation = drift_automation(deployment_id, model="penguins-drift").create()

    @flow(name="watch-model")
    def watch() -> dict[str, Any]:
        return mlsteps_task("toy_drift_report")(
            config={"verdict": "drift", "model": "models:/penguins-drift/3"},
            artifact_root="art",
            base_dir=str(tmp_path),
        )

    watched = watch(return_state=True)
    assert watched.is_completed(), watched.message

    def runs() -> list[Any]:
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(deployment_id))]))
            )

    (run,) = eventually(runs, what="the automation to create a flow run of the training deployment")
    (event,) = eventually(
        lambda: drift_events(model_resource_id("penguins-drift")), what="the drift event to be stored"
    )
    assert run.created_by is not None
    assert (run.created_by.type, run.created_by.id) == ("AUTOMATION", automation.id)
    report = parse_ref(watched.result()["report"])
    assert run.parameters["trigger"] == event.payload["trigger"]
    assert run.parameters["trigger"]["report"] == report.uri
    assert run.parameters["trigger"]["monitor_run_id"] == str(flow_run_id(watched))

    # run it as a worker would (the command in the Kubernetes Job), with the toy steps installed
    env = {**toy_plugin_env, "PREFECT_API_URL": os.environ.get("PREFECT_API_URL") or _api_url()}
    out = subprocess.run(
        [str(PREFECT), "flow-run", "execute", str(run.id)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with get_client(sync_client=True) as client:
        final = client.read_flow_run(run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    records = [r for r in _lineage(project / "art") if r.run_key.run_id == str(run.id)]
    assert sorted(r.run_key.step for r in records) == ["source", "total"]
    assert all(r.trigger == event.payload["trigger"] for r in records)


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def _lineage(root: Path) -> list[Any]:
    from mlsteps.lineage import LineageRecorder
    from mlsteps.storage import ArtifactStore

    return LineageRecorder(ArtifactStore(root)).records()


def test_drift_automation_needs_one_resource_and_matches_any_by_default() -> None:
    with pytest.raises(ValueError, match="not both"):
        drift_automation(UUID(int=1), model="m", pipeline="p")
    automation = drift_automation(UUID(int=1))
    assert automation.trigger.match.model_dump()["prefect.resource.id"] == [  # type: ignore[attr-defined]
        "mlsteps.model.*",
        "mlsteps.pipeline.*",
    ]
