"""The penguins retraining loop under Prefect: a monitor flow, a training deployment, an automation.

Against a Prefect server (``prefect server start``; ``PREFECT_API_URL`` set), from
``examples/penguins`` after a first training run (``python prefect_flow.py``)::

    prefect worker start --pool penguins &   # runs the training deployment's flow runs
    python make_drift_batch.py               # a drifted next batch in data/next_batch.parquet
    python prefect_retrain.py --once         # or without --once: serve the monitor daily

``main()``:

1. deploys the training flow (``prefect_flow.py:flow``) as ``penguins/penguins-retrain``
   to the process work pool ``penguins`` (created if missing);
2. creates the automation ``retrain-on-drift-penguins`` (``drift_automation``): when a
   flow run's report says drift of the ``penguins`` model (the ``mlsteps.drift.detected``
   event), the server starts a run of that deployment, passing the drift report as the
   flow's ``trigger`` parameter, and every step of the retraining run records it in lineage;
3. runs the monitor flow (``monitor.yaml``) once, or serves it on a daily schedule.

The monitor and training flows share ``.mlsteps`` (lineage, embedded MLflow) next to
the specs. Running ``main()`` again updates the deployment and replaces the automation.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, cast

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from mlsteps_prefect import build_flow, drift_automation

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.automations import Automation

HERE = Path(__file__).resolve().parent
WORK_POOL = "penguins"
TRAINING_DEPLOYMENT = "penguins-retrain"
MODEL = "penguins"

#: ``monitor.yaml`` as a flow: checks data/next_batch.parquet against the champion's training data.
monitor = build_flow(HERE / "monitor.yaml")


def deploy_training(work_pool: str = WORK_POOL) -> UUID:
    """Deploy the training flow of ``prefect_flow.py`` to a process work pool, creating the pool if missing.

    The deployment runs the flow from this directory, so a worker on this machine
    (``prefect worker start --pool penguins``) finds the code and the data.
    """
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=work_pool, type="process"))
    # Called synchronously, Prefect's sync-or-async methods return plain values.
    training = cast(
        "Flow[..., object]", Flow.from_source(source=str(HERE), entrypoint="prefect_flow.py:flow")
    )
    return cast(
        "UUID", training.deploy(name=TRAINING_DEPLOYMENT, work_pool_name=work_pool, print_next_steps=False)
    )


def retrain_on_drift(deployment_id: UUID | str) -> Automation:
    """Save the automation that runs ``deployment_id`` on drift of the model, replacing one of the same name.

    Replacing keeps one automation however often ``main()`` runs: two would start
    two retraining runs per drift report.
    """
    automation = drift_automation(deployment_id, model=MODEL)
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(automation.name):
            client.delete_automation(old.id)
    return cast("Automation", automation.create())


def main(argv: list[str] | None = None) -> None:
    """Deploy the training flow, create the drift automation, then run or serve the monitor flow."""
    parser = argparse.ArgumentParser(description="The penguins retraining loop under Prefect.")
    parser.add_argument("--once", action="store_true", help="run the monitor flow once instead of serving it")
    parser.add_argument(
        "--cron", default="0 6 * * *", help="the monitor's schedule when served (default daily 06:00)"
    )
    args = parser.parse_args(argv)

    deployment_id = deploy_training()
    automation = retrain_on_drift(deployment_id)
    print(f"training deployment {deployment_id}; automation {automation.name!r} ({automation.id})")
    if args.once:
        monitor()
    else:
        monitor.serve(name="penguins-monitor", cron=args.cron)


if __name__ == "__main__":
    main()
