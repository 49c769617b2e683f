"""Retraining on drift: a Prefect event when a report says drift, and the automation that reacts.

Any mlsteps task whose output is a report with ``summary["verdict"] == "drift"``
(the ``monitor`` step's ``report``; any step that reports drift the same way)
emits the custom event ``mlsteps.drift.detected`` after it succeeded. Its resource
is ``mlsteps.model.<registered model name>`` (from ``summary["model"]``, else
``mlsteps.pipeline.<pipeline>``), its payload the report ref and the lineage
``trigger`` (:func:`mlsteps.triggers.drift_trigger`).

:func:`drift_automation` builds the automation that runs the training deployment
on that event, passing the report's trigger as the flow's ``trigger`` parameter,
so every step of the retraining run records in lineage which report started it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlsteps.refs import ReportRef, dump_ref
from mlsteps.triggers import drift_trigger

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from prefect.automations import Automation
    from prefect.events.schemas.events import Event

    from mlsteps.context import RunKey
    from mlsteps.refs import BaseRef

DRIFT_EVENT = "mlsteps.drift.detected"
DRIFT_VERDICT = "drift"


def model_resource_id(model: str) -> str:
    """The event resource id of a registered model: ``mlsteps.model.<name>``."""
    return f"mlsteps.model.{model}"


def pipeline_resource_id(pipeline: str) -> str:
    """The event resource id used when a drift report names no model: ``mlsteps.pipeline.<name>``."""
    return f"mlsteps.pipeline.{pipeline}"


def drifted_reports(outputs: Mapping[str, BaseRef]) -> dict[str, ReportRef]:
    """The report outputs whose summary says ``verdict: drift``."""
    return {
        name: ref
        for name, ref in outputs.items()
        if isinstance(ref, ReportRef) and ref.summary.get("verdict") == DRIFT_VERDICT
    }


def _model_name(report: ReportRef) -> str | None:
    """The registered model a report is about, from ``summary["model"]`` (``models:/NAME/...``)."""
    uri = report.summary.get("model")
    if not isinstance(uri, str) or not uri.startswith("models:/"):
        return None
    name = uri.removeprefix("models:/").split("/", 1)[0].split("@", 1)[0]
    return name or None


def emit_drift_events(
    outputs: Mapping[str, BaseRef], *, run_key: RunKey, record_id: str | None
) -> list[Event]:
    """Emit ``mlsteps.drift.detected`` for each drifted report in ``outputs``; returns the events sent."""
    from prefect.events import emit_event

    sent: list[Event] = []
    for output, report in drifted_reports(outputs).items():
        model = _model_name(report)
        resource = {
            "prefect.resource.id": model_resource_id(model)
            if model
            else pipeline_resource_id(run_key.pipeline),
            "prefect.resource.name": model or run_key.pipeline,
            "mlsteps.pipeline": run_key.pipeline,
            "mlsteps.step": run_key.step,
        }
        if model:
            resource["mlsteps.model"] = model
        event = emit_event(
            event=DRIFT_EVENT,
            resource=resource,
            related=[
                {
                    "prefect.resource.id": f"prefect.flow-run.{run_key.run_id}",
                    "prefect.resource.role": "flow-run",
                }
            ]
            if run_key.orchestrator == "prefect"
            else None,
            payload={
                "output": output,
                "report": dump_ref(report),
                "trigger": drift_trigger(
                    report,
                    monitor_pipeline=run_key.pipeline,
                    monitor_run_id=run_key.run_id,
                    monitor_record=record_id,
                ),
            },
        )
        if event is not None:
            sent.append(event)
    return sent


def drift_automation(
    deployment_id: UUID | str,
    *,
    model: str | None = None,
    pipeline: str | None = None,
    name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> Automation:
    """An automation that runs a (training) deployment whenever drift is reported.

    The deployment's flow gets ``trigger`` (the lineage trigger of the drift report,
    as built by :func:`mlsteps.triggers.drift_trigger`) besides ``parameters``;
    flows from :func:`mlsteps_prefect.build_flow` take it and record it in every
    step's lineage. Save it with ``.create()`` (or ``await .acreate()``).

    Args:
        deployment_id: The deployment to run (e.g. ``flow.deploy(...)``'s return value).
        model: React only to drift of this registered model (``mlsteps.model.<model>``).
        pipeline: React only to drift reported by this pipeline when the report names no model.
        name: Automation name (default ``retrain-on-drift-<model or pipeline or 'any'>``).
        parameters: More flow parameters for the run.
        enabled: Whether the automation starts enabled.
    """
    from uuid import UUID

    from prefect.automations import Automation, EventTrigger, Posture, RunDeployment

    if model and pipeline:
        raise ValueError("give `model` or `pipeline`, not both (one event resource each)")
    match: dict[str, str | list[str]] = {}
    if model:
        match["prefect.resource.id"] = model_resource_id(model)
    elif pipeline:
        match["prefect.resource.id"] = pipeline_resource_id(pipeline)
    else:
        match["prefect.resource.id"] = ["mlsteps.model.*", "mlsteps.pipeline.*"]
    return Automation(
        name=name or f"retrain-on-drift-{model or pipeline or 'any'}",
        description=f"Run deployment {deployment_id} when an mlsteps report says drift.",
        enabled=enabled,
        trigger=EventTrigger(
            expect={DRIFT_EVENT},
            match=match,
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=UUID(str(deployment_id)),
                parameters={
                    **dict(parameters or {}),
                    "trigger": {
                        "__prefect_kind": "json",
                        "value": {
                            "__prefect_kind": "jinja",
                            "template": "{{ event.payload.trigger | tojson }}",
                        },
                    },
                },
            )
        ],
    )
