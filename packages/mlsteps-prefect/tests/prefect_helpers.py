"""Reading what a flow run left behind, through the real Prefect API and the artifact root."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import pytest

from mlsteps.lineage import LineageRecord, LineageRecorder
from mlsteps.storage import ArtifactStore

if TYPE_CHECKING:
    from prefect.client.schemas.objects import Artifact, State, TaskRun

T = TypeVar("T")


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def task_runs(state: State[Any]) -> dict[str, TaskRun]:
    """Task runs of a flow run by step id (task run names are '<step id>-<suffix>')."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id(state)]))
        )
    by_step = {run.name.rsplit("-", 1)[0]: run for run in runs}
    assert len(by_step) == len(runs), [run.name for run in runs]
    return by_step


def state_names(state: State[Any]) -> dict[str, str]:
    return {sid: run.state.name for sid, run in task_runs(state).items() if run.state is not None}


def artifacts(state: State[Any]) -> list[Artifact]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)]))
        )


def lineage(root: Path, state: State[Any]) -> list[LineageRecord]:
    return LineageRecorder(ArtifactStore(root)).records(str(flow_run_id(state)))


def eventually(probe: Callable[[], T | None], *, timeout: float = 90, what: str) -> T:
    """Poll ``probe`` until it returns something truthy: the server's services work asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def drift_events(resource_id: str, *, report_uri: str | None = None) -> list[Any]:
    """The stored drift events about ``resource_id`` (about one report's URI, if given)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from mlsteps_prefect.events import DRIFT_EVENT

    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(name=[DRIFT_EVENT]),
                resource=EventResourceFilter(id=[resource_id]),
            ),
            limit=50,  # the client's default (100) is above the server's maximum
        )
    return [e for e in page.events if report_uri is None or e.payload["report"]["uri"] == report_uri]
