"""Retried register and deploy tasks do not duplicate their work (real MLflow on SQLite, a real server).

The failure is real: ``mlsteps.testing.FlakyRegister`` / ``FlakyDeploy`` run the
built-in step and then raise on their first attempt, as a worker lost after the
registry write (the server start) would. Prefect retries the task; the retry must
find the version (the live server) the first attempt made and finish with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect_helpers import flow_run_id, lineage, state_names, task_runs

from mlsteps.context import RunKey, build_context
from mlsteps.hashing import hash_file
from mlsteps.refs import DatasetRef, ModelVersionRef, parse_ref
from mlsteps.steps.register import ATTEMPT_TAG, LINEAGE_TAG, RUN_KEY_TAG
from mlsteps.testing import FlakyDeploy, FlakyRegister, check_retried_deploy, stop_deployments
from mlsteps_prefect import evaluate_task, mlsteps_task, train_task

MODEL = "penguins-retry"


@pytest.fixture
def penguins(tmp_path: Path) -> DatasetRef:
    from palmerpenguins import load_penguins

    df = load_penguins()[["species", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]]
    path = tmp_path / "penguins.parquet"
    df.dropna().to_parquet(path, index=False)
    return DatasetRef(uri=str(path), content_hash=hash_file(path), rows=len(df.dropna()))


def test_retried_register_and_deploy_do_not_duplicate_the_version_or_the_server(
    tmp_path: Path, penguins: DatasetRef
) -> None:
    from mlflow import MlflowClient

    common: dict[str, Any] = {"artifact_root": "art", "base_dir": str(tmp_path)}
    register = mlsteps_task(FlakyRegister, retries=1)
    deploy = mlsteps_task(FlakyDeploy, retries=1)

    @flow(name="retry")
    def retry() -> dict[str, dict[str, Any]]:
        trained = train_task(
            config={
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
                "target": "species",
            },
            inputs={"dataset": penguins},
            **common,
        )
        evaluated = evaluate_task(
            config={"target": "species", "thresholds": {"accuracy": ">= 0.8"}},
            inputs={"model": trained["model"], "dataset": trained["test_data"]},
            **common,
        )
        registered = register(
            config={"name": MODEL, "aliases": ["challenger"]},
            inputs={"model": trained["model"], "evaluation": evaluated["report"]},
            **common,
        )
        deploy(config={"name": "retry-svc"}, inputs={"model_version": registered["model_version"]}, **common)
        return registered

    try:
        state = retry(return_state=True)
        assert state.is_completed(), state.message
        deployed = check_retried_deploy(
            tmp_path / "art", str(flow_run_id(state)), "retry-svc", step="flaky_deploy"
        )
    finally:
        stop_deployments(tmp_path / "art")
    assert task_runs(state)["flaky_deploy"].run_count == 2
    assert deployed.traffic == {"1": 100}
    assert task_runs(state)["flaky_register"].run_count == 2
    assert state_names(state)["flaky_register"] == "Completed"
    version = parse_ref(state.result()["model_version"])
    assert isinstance(version, ModelVersionRef)
    assert version.metadata["reused"] is True, "the retry registered instead of finding attempt 1's version"

    # exactly one version in the registry, tagged with the run key; the retry finished it
    run_key = RunKey(
        orchestrator="prefect", pipeline="retry", run_id=str(flow_run_id(state)), step="flaky_register"
    )
    ctx = build_context(run_key, artifact_root="art", base_dir=tmp_path)
    client = MlflowClient(tracking_uri=ctx.tracking_uri, registry_uri=ctx.tracking_uri)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [str(v.version) for v in versions] == [version.version] == ["1"]
    tags = versions[0].tags
    assert tags[RUN_KEY_TAG] == run_key.idempotency_key
    assert tags[ATTEMPT_TAG] == "2"
    assert client.get_model_version(MODEL, "1").aliases == ["challenger"]

    # lineage: the failed first attempt and the successful retry, same run key
    records = [r for r in lineage(tmp_path / "art", state) if r.run_key.step == "flaky_register"]
    records.sort(key=lambda r: r.run_key.attempt)
    assert [(r.run_key.attempt, r.status) for r in records] == [(1, "failed"), (2, "succeeded")]
    assert "WorkerLostError" in (records[0].error or "")
    assert records[1].outputs["model_version"].ref["version"] == "1"
    assert tags[LINEAGE_TAG] == records[1].record_id
    assert {r.run_key.idempotency_key for r in records} == {run_key.idempotency_key}
