"""The retraining loop under Prefect, end to end, against the real temporary API server.

The penguins example (its data, its next-batch generator and its spec, minus
the Feast and serving steps to keep the test short) is set up by its own
``prefect_retrain.py``: ``deploy_training`` deploys ``prefect_flow.py:flow`` to a
process work pool and ``retrain_on_drift`` saves the ``drift_automation``. The
training flow runs once; the example's monitor flow runs on a drifted next batch
and its monitor task emits the drift event; the server's automation creates a
run of the training deployment, which is executed with
``prefect flow-run execute`` (what a worker runs). ``test_prefect_drift.py``
covers the event and the automation with toy steps; this test follows the real
steps through to a new registered version.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect_helpers import drift_events, eventually, flow_run_id, lineage

from mlsteps.lineage import LineageRecorder
from mlsteps.refs import ReportRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps_prefect.events import model_resource_id

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"
PREFECT = Path(sys.executable).parent / "prefect"
TRAIN_STEPS = ["validate", "train", "evaluate", "register"]


def example_module(project: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"penguins_{name}", project / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def penguins_project(dest: Path) -> Path:
    """A copy of the example with its data; the spec without ``featurise`` (Feast) and ``deploy``."""
    shutil.copytree(
        EXAMPLE,
        dest,
        ignore=shutil.ignore_patterns(
            ".mlsteps", "data", "__pycache__", "dagster_project", "prefect_deployment"
        ),
    )
    example_module(dest, "prepare_data").build(dest / "data")
    spec = yaml.safe_load((dest / "pipeline.yaml").read_text())
    del spec["steps"]["featurise"], spec["steps"]["deploy"]
    spec["steps"]["train"]["inputs"] = {"dataset": "validate.dataset"}
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def land_batch_in_training_table(project: Path) -> None:
    """The labelled next batch joins the training table (the data platform's job in production)."""
    import pandas as pd

    table = project / "data" / "penguins.parquet"
    batch = pd.read_parquet(project / "data" / "next_batch.parquet")
    pd.concat([pd.read_parquet(table), batch], ignore_index=True).to_parquet(table, index=False)


def registry(project: Path) -> Any:
    from mlflow import MlflowClient

    db = f"sqlite:///{project / '.mlsteps' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=db, registry_uri=db)


@pytest.mark.slow
def test_drift_in_the_next_batch_retrains_through_the_automation(tmp_path: Path, prefect_server: str) -> None:
    project = penguins_project(tmp_path / "penguins")
    art = project / ".mlsteps"
    loop = example_module(project, "prefect_retrain")  # the example's own set-up of the loop
    deployment_id = loop.deploy_training()
    automation = loop.retrain_on_drift(deployment_id)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert (deployment.name, deployment.work_pool_name) == ("penguins-retrain", "penguins")
    assert deployment.entrypoint == "prefect_flow.py:flow"
    assert automation.name == "retrain-on-drift-penguins"
    try:
        first = example_module(project, "prefect_flow").flow(return_state=True)
        assert first.is_completed(), first.message
        models = registry(project)
        assert str(models.get_model_version_by_alias("penguins", "champion").version) == "1"

        example_module(project, "make_drift_batch").build(
            project / "data" / "penguins.parquet", project / "data" / "next_batch.parquet", drift=True
        )
        watched = loop.monitor(return_state=True)
        assert watched.is_completed(), watched.message  # drift is a finding, not a failure
        (monitor_record,) = lineage(art, watched)
        report = parse_ref(monitor_record.outputs["report"].ref)
        assert isinstance(report, ReportRef)
        assert report.summary["verdict"] == "drift", report.summary
        assert report.summary["model"] == "models:/penguins/1"

        def runs() -> list[Any]:
            with get_client(sync_client=True) as client:
                return client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(deployment_id))]))
                )

        (run,) = eventually(runs, what="the automation to create a run of the training deployment")
        (event,) = eventually(
            lambda: drift_events(model_resource_id("penguins"), report_uri=report.uri),
            what="the drift event to be stored",  # the event persister writes in batches
        )
        assert run.created_by is not None
        assert (run.created_by.type, run.created_by.id) == ("AUTOMATION", automation.id)
        assert run.parameters["trigger"] == event.payload["trigger"]
        assert run.parameters["trigger"]["report"] == report.uri
        assert run.parameters["trigger"]["monitor_run_id"] == str(flow_run_id(watched))
        assert run.parameters["trigger"]["monitor_record"] == monitor_record.record_id
    finally:
        automation.delete()

    land_batch_in_training_table(project)
    out = subprocess.run(
        [str(PREFECT), "flow-run", "execute", str(run.id)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with get_client(sync_client=True) as client:
        final = client.read_flow_run(run.id)
    assert final.state is not None and final.state.is_completed(), final.state

    records = LineageRecorder(ArtifactStore(art)).records(str(run.id))
    assert sorted(r.run_key.step for r in records) == sorted(TRAIN_STEPS)
    assert all(r.trigger == event.payload["trigger"] for r in records)

    # A new version, tagged with the report; the champion alias is on it if and
    # only if it beats the champion (register's compare-and-set).
    by_step = {r.run_key.step: r for r in records}
    new = by_step["register"].outputs["model_version"].ref
    assert new["version"] == "2"
    assert models.get_model_version("penguins", "2").tags["mlsteps.trigger"] == report.uri
    evaluation = parse_ref(by_step["evaluate"].outputs["report"].ref)
    assert isinstance(evaluation, ReportRef)
    assert evaluation.summary["champion"]["version"] == "1"
    (comparison,) = evaluation.summary["champion"]["comparisons"]
    # v1 scored by evaluate on the same rows; register compares with that while v1 holds the alias.
    recorded = comparison["champion"]
    beats = comparison["challenger"] >= recorded  # ties go to the newer version
    assert beats, comparison  # retrained on the drifted data, it wins: the promotion path runs
    assert bool(new["metadata"]["promotion"].startswith("v2 promoted")) == beats, new["metadata"]["promotion"]
    champion = str(models.get_model_version_by_alias("penguins", "champion").version)
    assert champion == ("2" if beats else "1")
