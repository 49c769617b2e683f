"""Re-materializing or retrying ``register`` (and ``deploy``) never duplicates a model version or a server.

Real MLflow, sklearn, GX and a real local model server.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import write_spec

from mlsteps.lineage import LineageRecorder
from mlsteps.refs import ModelVersionRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps.testing import (
    FlakyDeploy,
    FlakyRegister,
    check_retried_deploy,
    registered_steps,
    stop_deployments,
)
from mlsteps_dagster import build_definitions

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"

SPEC = """\
name: reg
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
    config: {name: reg_penguins, aliases: [challenger]}
    inputs: {model: train.model, evaluation: evaluate.report}
"""


def versions(spec: Path, name: str) -> list[Any]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{spec.parent / '.mlsteps' / 'mlflow.db'}"
    return list(MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name='{name}'"))


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dg.Definitions, dg.ExecuteInProcessResult]:
    """The pipeline materialized once, with an IO manager later runs can load its values from."""
    base = tmp_path_factory.mktemp("reg")
    subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare_data.py"), "--out", str(base / "data")],
        check=True,
        timeout=300,
    )
    spec = write_spec(base, SPEC)
    defs = build_definitions(
        spec, resources={"io_manager": dg.FilesystemIOManager(base_dir=str(base / "io"))}
    )
    result = materialize(defs)
    assert result.success
    return spec, defs, result


def materialize(defs: dg.Definitions, **kwargs: Any) -> dg.ExecuteInProcessResult:
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(assets, resources=defs.resources, **kwargs)


@pytest.mark.slow
def test_materializing_register_again_reuses_the_version(
    first_run: tuple[Path, dg.Definitions, dg.ExecuteInProcessResult],
) -> None:
    spec, defs, first = first_run
    registered = parse_ref(first.asset_value(["register", "model_version"]))
    assert isinstance(registered, ModelVersionRef)
    assert [str(v.version) for v in versions(spec, "reg_penguins")] == ["1"]

    # A new Dagster run (a new run key) that re-materializes only register, on the same upstream values.
    again = materialize(defs, selection=["register/model_version"])

    assert again.success
    assert again.run_id != first.run_id
    ref = parse_ref(again.asset_value(["register", "model_version"]))
    assert isinstance(ref, ModelVersionRef)
    assert (ref.name, ref.version) == ("reg_penguins", "1")
    assert ref.metadata["reused"] is True
    (only,) = versions(spec, "reg_penguins")
    assert only.tags["mlsteps.run_key"] == f"dagster/reg/{first.run_id}/register"
    # Both runs recorded lineage for register; both point at the same version.
    recs = [
        r
        for r in LineageRecorder(ArtifactStore(spec.parent / ".mlsteps")).records()
        if r.run_key.step == "register"
    ]
    assert {r.run_key.run_id for r in recs} == {first.run_id, again.run_id}
    assert {r.outputs["model_version"].ref["version"] for r in recs} == {"1"}


JOB_MODULE = """\
import dagster as dg

from mlsteps_dagster import build_definitions

defs = build_definitions({spec!r}, resources={{"io_manager": dg.FilesystemIOManager(base_dir={io!r})}})


def reg_job() -> dg.JobDefinition:
    return defs.resolve_job_def("reg")
"""
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


@pytest.mark.slow
def test_reexecuting_the_register_step_of_a_run_reuses_the_version(
    first_run: tuple[Path, dg.Definitions, dg.ExecuteInProcessResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dagster's own re-execution (``ReexecutionOptions``) of ``register`` in a finished run."""
    spec, _, _ = first_run
    module = f"reg_job_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(JOB_MODULE.format(spec=str(spec), io=str(tmp_path / "io")))
    monkeypatch.syspath_prepend(str(tmp_path))
    job = dg.reconstructable(importlib.import_module(module).reg_job)

    with dg.instance_for_test() as instance:
        with dg.execute_job(job, instance, run_config=IN_PROCESS) as original:
            assert original.success
        # A full run trains a new model, so it registers a new version.
        after_original = sorted(str(v.version) for v in versions(spec, "reg_penguins"))
        with dg.execute_job(
            job,
            instance,
            run_config=IN_PROCESS,
            reexecution_options=dg.ReexecutionOptions(
                parent_run_id=original.run_id, step_selection=["register"]
            ),
        ) as rerun:
            assert rerun.success
            assert rerun.dagster_run.root_run_id == original.run_id
            steps = {ev.step_key for ev in rerun.all_events if ev.event_type_value == "STEP_SUCCESS"}
            assert steps == {"register"}
            (event,) = rerun.get_asset_materialization_events()
            rerun_version = event.materialization.metadata["mlsteps/ref"].value

    assert sorted(str(v.version) for v in versions(spec, "reg_penguins")) == after_original
    ref = parse_ref(rerun_version)  # type: ignore[arg-type]
    assert isinstance(ref, ModelVersionRef)
    assert ref.version == max(after_original, key=int)
    assert ref.metadata["reused"] is True


@pytest.mark.slow
def test_retried_register_and_deploy_ops_do_not_duplicate_the_version_or_the_server(
    first_run: tuple[Path, dg.Definitions, dg.ExecuteInProcessResult],
) -> None:
    """Dagster's op retries (the spec's ``retries``) after the work of attempt 1 went through."""
    spec, _, _ = first_run
    retry_spec = write_spec(
        spec.parent,
        SPEC.replace("name: reg\n", "name: reg_retry\n").replace(
            "  register:\n    config: {name: reg_penguins,",
            "  register:\n    uses: flaky_register\n    retries: 1\n    config: {name: reg_retry,",
        )
        + "  deploy:\n    uses: flaky_deploy\n    retries: 1\n    config: {name: dg-retry-svc}\n"
        "    inputs: {model_version: register.model_version}\n",
        name="retry.yaml",
    )
    root = spec.parent / ".mlsteps"
    with registered_steps(FlakyRegister, FlakyDeploy):
        try:
            result = materialize(build_definitions(retry_spec))
            assert result.success
            deployed = check_retried_deploy(root, result.run_id, "dg-retry-svc")
        finally:
            stop_deployments(root)
    assert [str(v.version) for v in versions(spec, "reg_retry")] == ["1"]
    assert deployed.traffic == {"1": 100}
    records = [
        r for r in LineageRecorder(ArtifactStore(root)).records(result.run_id) if r.run_key.step == "register"
    ]
    assert [(r.run_key.attempt, r.status) for r in records] == [(1, "failed"), (2, "succeeded")]
    assert records[1].outputs["model_version"].ref["metadata"]["reused"] is True
