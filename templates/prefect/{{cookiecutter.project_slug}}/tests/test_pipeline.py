"""The pipeline end to end on Prefect: the project's deployment, run by a Prefect runner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import PACKAGE, STEPS, assert_registered_with_lineage, load_module, stop_deployment


def test_flow_builds_from_the_spec(project: Path) -> None:
    flow = load_module(project / PACKAGE / "flow.py", f"{PACKAGE}_flow").flow

    assert flow.name == PACKAGE
    assert set(flow.parameters.properties) == {"artifact_root", "mlflow_block", "feast_block", "trigger"}


def test_deployment_runs_the_pipeline_and_registers_a_model(project: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    deployment = load_module(project / PACKAGE / "deploy.py", f"{PACKAGE}_deploy").deployment()
    runner = Runner(name=f"{PACKAGE}-test-runner")

    async def run_once() -> str:
        deployment_id = await runner.aadd_deployment(deployment)
        flow_run = await run_deployment(deployment_id, timeout=0)
        await runner.start(run_once=True)
        return str(flow_run.id)

    try:
        flow_run_id = asyncio.run(run_once())
    finally:
        stop_deployment(project)

    with get_client(sync_client=True) as client:
        stored = client.read_deployment_by_name(f"{PACKAGE}/{PACKAGE}")
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs()
    assert stored.entrypoint == f"{PACKAGE}/flow.py:flow"
    assert flow_run.deployment_id == stored.id
    assert flow_run.state is not None
    assert flow_run.state.is_completed(), flow_run.state.message
    ran = {run.name.rsplit("-", 1)[0] for run in task_runs if run.flow_run_id == flow_run.id}
    assert ran == set(STEPS)
    assert_registered_with_lineage(project, flow_run_id, "prefect")
