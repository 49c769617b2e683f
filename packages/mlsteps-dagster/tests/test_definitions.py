"""build_definitions run for real with Dagster's in-process ``materialize``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import TOY_SPEC, write_spec
from dagster._core.errors import DagsterAssetCheckFailedError  # not re-exported by dagster

from mlsteps.errors import ConfigError
from mlsteps.lineage import LineageRecord, LineageRecorder
from mlsteps.refs import DatasetRef, ReportRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps_dagster import (
    GATE_CHECK_NAME,
    MLFLOW_RESOURCE_KEY,
    MLSTEPS_RESOURCE_KEY,
    MlflowResource,
    MlstepsResource,
    build_definitions,
)

pytestmark = pytest.mark.usefixtures("toy_steps")


def run(defs: dg.Definitions, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Materialize every asset of ``defs`` (with its checks) on an ephemeral instance."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources = {**(defs.resources or {}), **kwargs.pop("resources", {})}
    return dg.materialize(assets, resources=resources, **kwargs)


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Asset key (``a/b``) -> metadata values of its materialization in ``result``."""
    return {
        ev.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in ev.materialization.metadata.items()
        }
        for ev in result.get_asset_materialization_events()
    }


def report_summary(value: dict[str, Any]) -> dict[str, Any]:
    """The summary of a report ref given as an asset value."""
    ref = parse_ref(value)
    assert isinstance(ref, ReportRef)
    return ref.summary


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {ev.asset_key.to_user_string(): ev for ev in result.get_asset_check_evaluations()}


def records(root: Path, run_id: str) -> dict[str, LineageRecord]:
    return {r.run_key.step: r for r in LineageRecorder(ArtifactStore(root)).records(run_id)}


def test_toy_spec_materializes_every_output_as_a_ref_with_metadata_and_lineage(tmp_path: Path) -> None:
    defs = build_definitions(write_spec(tmp_path, TOY_SPEC))

    result = run(defs)

    assert result.success
    md = materialized(result)
    assert set(md) == {
        "source/dataset",
        "total/report",
        "after/report",
        "checked/dataset",
        "checked/report",
        "copy/dataset",
    }
    dataset = parse_ref(result.asset_value(["source", "dataset"]))
    assert isinstance(dataset, DatasetRef)
    assert dataset.rows == 10
    assert Path(dataset.uri).is_file()
    assert Path(dataset.uri).is_relative_to(tmp_path / "art")
    report = parse_ref(result.asset_value(["total", "report"]))
    assert isinstance(report, ReportRef)
    assert report.summary == {"sum": 45.0}
    # The value is the ref, and the metadata carries it plus what the UI can show.
    assert md["source/dataset"]["mlsteps/ref"] == result.asset_value(["source", "dataset"])
    assert md["source/dataset"]["dagster/row_count"] == 10
    assert md["source/dataset"]["mlsteps/content_hash"] == dataset.content_hash
    assert md["source/dataset"]["metric/rows"] == 10.0
    assert md["total/report"]["metric/sum"] == 45.0
    assert md["total/report"]["mlsteps/passed"] is True
    # Both gates ran as passing blocking checks.
    evaluations = checks(result)
    assert set(evaluations) == {"total/report", "checked/report"}
    assert all(ev.passed and ev.blocking and ev.check_name == GATE_CHECK_NAME for ev in evaluations.values())
    # One lineage record per step, keyed by the Dagster run, linked from the metadata.
    recs = records(tmp_path / "art", result.run_id)
    assert set(recs) == {"source", "total", "after", "checked", "copy"}
    for step_id, rec in recs.items():
        assert rec.status == "succeeded"
        assert rec.run_key.orchestrator == "dagster"
        assert rec.run_key.pipeline == "toy"
        assert rec.run_key.run_id == result.run_id
        assert rec.run_key.attempt == 1
        key = "checked/report" if step_id == "checked" else next(k for k in md if k.startswith(f"{step_id}/"))
        assert md[key]["mlsteps/lineage_record"] == rec.record_id
    # Wiring: the consumer's recorded input is the producer's output.
    assert recs["total"].inputs["dataset"].ref == result.asset_value(["source", "dataset"])


def test_assets_and_deps_follow_the_spec_wiring(tmp_path: Path) -> None:
    defs = build_definitions(write_spec(tmp_path, TOY_SPEC), key_prefix="ml", group_name="g")

    graph = defs.resolve_asset_graph()
    key = dg.AssetKey
    assert graph.get(key(["ml", "total", "report"])).parent_keys == {key(["ml", "source", "dataset"])}
    assert graph.get(key(["ml", "copy", "dataset"])).parent_keys == {key(["ml", "checked", "dataset"])}
    assert graph.get(key(["ml", "source", "dataset"])).group_name == "g"
    assert set(defs.resources or {}) == {MLSTEPS_RESOURCE_KEY, MLFLOW_RESOURCE_KEY}
    result = run(defs)
    assert result.success
    assert isinstance(parse_ref(result.asset_value(["ml", "after", "report"])), ReportRef)


def test_failing_gate_fails_its_blocking_check_and_skips_downstream(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, TOY_SPEC.replace("min_sum: 40", "min_sum: 1000"))
    defs = build_definitions(spec)

    result = run(defs, raise_on_error=False)

    assert not result.success
    evaluation = checks(result)["total/report"]
    assert not evaluation.passed
    assert evaluation.blocking
    assert evaluation.metadata["mlsteps/reasons"].value == ["sum 45.0 < min_sum 1000.0"]
    md = materialized(result)
    # The gate's report is published (it explains the failure); nothing downstream ran.
    assert "total/report" in md
    assert md["total/report"]["mlsteps/passed"] is False
    assert "after/report" not in md
    # The other branch is unaffected.
    assert {"checked/dataset", "copy/dataset"} <= set(md)
    recs = records(tmp_path / "art", result.run_id)
    assert recs["total"].status == "gate_failed"
    assert "after" not in recs
    assert md["total/report"]["mlsteps/lineage_record"] == recs["total"].record_id


def test_failing_gate_raises_the_dagster_check_error(tmp_path: Path) -> None:
    defs = build_definitions(write_spec(tmp_path, TOY_SPEC.replace("min_sum: 40", "min_sum: 1000")))

    with pytest.raises(DagsterAssetCheckFailedError):
        run(defs)


def test_failing_two_output_gate_publishes_only_its_report(tmp_path: Path) -> None:
    defs = build_definitions(write_spec(tmp_path, TOY_SPEC.replace("max_rows: 100", "max_rows: 3")))

    result = run(defs, raise_on_error=False)

    assert not result.success
    assert not checks(result)["checked/report"].passed
    md = materialized(result)
    assert "checked/report" in md
    assert "checked/dataset" not in md
    assert "copy/dataset" not in md
    assert {"source/dataset", "total/report", "after/report"} <= set(md)


def test_crashing_step_fails_and_is_retried_per_the_spec(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: crashy
        defaults: {artifact_root: art}
        steps:
          source: {uses: toy_source, config: {count: 3}}
          crash:
            uses: toy_crash
            retries: 1
            inputs: {dataset: source.dataset}
          copy: {uses: toy_copy, inputs: {dataset: crash.dataset}}
        """,
    )
    defs = build_definitions(spec)

    result = run(defs, raise_on_error=False)

    assert not result.success
    assert result.get_asset_check_evaluations() == []
    assert set(materialized(result)) == {"source/dataset"}
    crashes = [
        r
        for r in LineageRecorder(ArtifactStore(tmp_path / "art")).records(result.run_id)
        if r.run_key.step == "crash"
    ]
    # Dagster's retry number becomes the attempt: one record per attempt, same run key otherwise.
    assert [(r.run_key.attempt, r.status) for r in crashes] == [(1, "failed"), (2, "failed")]
    assert all("ZeroDivisionError" in (r.error or "") for r in crashes)
    assert len({r.run_key.idempotency_key for r in crashes}) == 1


PROBE_SPEC = """\
name: probe
defaults:
  artifact_root: art
  mlflow: {tracking_uri: "sqlite:///spec.db", experiment: from-spec}
steps:
  probe: {uses: toy_probe}
"""


def test_resources_default_to_the_spec(tmp_path: Path) -> None:
    defs = build_definitions(write_spec(tmp_path, PROBE_SPEC))

    result = run(defs)

    probe = report_summary(result.asset_value(["probe", "report"]))
    assert probe["tracking_uri"] == "sqlite:///spec.db"
    assert probe["experiment"] == "from-spec"
    assert probe["token_length"] == 0
    assert probe["artifact_root"] == str(tmp_path / "art")
    assert probe["run_key"]["orchestrator"] == "dagster"
    assert probe["run_key"]["run_id"] == result.run_id


def test_resources_override_the_spec_and_read_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSTEPS_TEST_MLFLOW_TOKEN", "s3cret-token")
    other_root = tmp_path / "elsewhere"
    defs = build_definitions(
        write_spec(tmp_path, PROBE_SPEC),
        resources={
            MLFLOW_RESOURCE_KEY: MlflowResource(
                experiment="from-resource", token=dg.EnvVar("MLSTEPS_TEST_MLFLOW_TOKEN")
            ),
        },
    )

    result = run(defs, resources={MLSTEPS_RESOURCE_KEY: MlstepsResource(artifact_root=str(other_root))})

    probe = report_summary(result.asset_value(["probe", "report"]))
    assert probe["experiment"] == "from-resource"
    assert probe["tracking_uri"] == "sqlite:///spec.db"  # not overridden: the spec's value
    assert probe["token_length"] == len("s3cret-token")
    assert probe["artifact_root"] == str(other_root)
    assert records(other_root, result.run_id)["probe"].status == "succeeded"
    assert not (tmp_path / "art" / "lineage").exists()
    # The secret never reaches materialization metadata.
    assert "s3cret-token" not in repr(materialized(result))


def test_relative_artifact_root_override_resolves_against_the_spec_dir(tmp_path: Path) -> None:
    spec_dir = tmp_path / "project"
    spec_dir.mkdir()
    defs = build_definitions(
        write_spec(spec_dir, PROBE_SPEC),
        resources={MLSTEPS_RESOURCE_KEY: MlstepsResource(artifact_root="out")},
    )

    result = run(defs)

    assert report_summary(result.asset_value(["probe", "report"]))["artifact_root"] == str(spec_dir / "out")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (TOY_SPEC.replace("count: 10", "count: 10, colour: red"), "steps.source.config.colour: unknown key"),
        (TOY_SPEC.replace("source.dataset}", "nowhere.dataset}"), "nowhere"),
        (TOY_SPEC.replace("uses: toy_after", "uses: toy_aftr"), "did you mean 'toy_after'"),
    ],
)
def test_spec_errors_surface_at_build_time(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_definitions(write_spec(tmp_path, body))

    assert expected in str(info.value)
    assert str(tmp_path / "pipeline.yaml") in str(info.value)


class WrongRefIOManager(dg.IOManager):
    """Hands every input a valid ref of the wrong kind (a report where a dataset is expected)."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        raise AssertionError("no output is expected in this test")

    def load_input(self, context: dg.InputContext) -> Any:
        return {"kind": "report", "uri": "/nowhere.json", "passed": True}


def test_config_error_at_run_time_fails_the_step_without_retries(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, TOY_SPEC.replace("config: {min_sum: 40}", "config: {min_sum: 40}\n    retries: 2")
    )
    defs = build_definitions(spec)

    result = run(
        defs,
        selection=["total/report"],
        resources={"io_manager": WrongRefIOManager()},
        raise_on_error=False,
    )

    assert not result.success
    failures = result.get_step_failure_events()
    assert [ev.step_key for ev in failures] == ["total"]
    assert "expected a dataset ref, got a report ref" in str(failures[0].step_failure_data.error)
    assert not [ev for ev in result.all_events if ev.event_type_value == "STEP_UP_FOR_RETRY"]
    assert materialized(result) == {}
