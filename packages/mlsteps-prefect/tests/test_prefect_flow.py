"""build_flow and the step tasks against a real Prefect API server."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_spec
from prefect import flow
from prefect_helpers import artifacts, flow_run_id, lineage, state_names, task_runs

from mlsteps.refs import DatasetRef, ReportRef, parse_ref
from mlsteps_prefect import PipelineFailed, build_flow, mlsteps_task

pytestmark = pytest.mark.usefixtures("toy_steps")

TOY_SPEC = """\
name: toy
defaults:
  artifact_root: art
steps:
  source:
    uses: toy_source
    config: {count: 10}
  total:
    uses: toy_sum
    config: {min_sum: MIN_SUM}
    inputs: {dataset: source.dataset}
    retries: 2
  after:
    uses: toy_after_gate
    inputs: {report: total.report}
  copy:
    uses: toy_copy
    inputs: {dataset: source.dataset}
"""


def toy_spec(directory: Path, *, min_sum: int = 40) -> Path:
    return write_spec(directory, TOY_SPEC.replace("MIN_SUM", str(min_sum)))


def test_flow_runs_the_spec_and_passes_refs(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    pipeline = build_flow(spec)
    assert pipeline.name == "toy"

    state = pipeline(return_state=True)

    assert state.is_completed(), state.message
    assert state_names(state) == dict.fromkeys(["source", "total", "after", "copy"], "Completed")
    result = state.result()
    assert set(result) == {"source", "total", "after", "copy"}
    dataset = parse_ref(result["source"]["dataset"])
    assert isinstance(dataset, DatasetRef)
    assert dataset.rows == 10
    # artifacts land under the spec's artifact root, relative to the spec file
    assert Path(dataset.uri).is_relative_to(tmp_path / "art")
    report = parse_ref(result["total"]["report"])
    assert isinstance(report, ReportRef)
    assert report.passed
    assert report.summary == {"sum": 45.0}
    # the copy's input was the source's output
    assert parse_ref(result["copy"]["dataset"]).content_hash == dataset.content_hash

    records = lineage(tmp_path / "art", state)
    assert sorted(r.run_key.step for r in records) == ["after", "copy", "source", "total"]
    for record in records:
        assert record.status == "succeeded"
        assert record.run_key.orchestrator == "prefect"
        assert record.run_key.pipeline == "toy"
        assert record.run_key.run_id == str(flow_run_id(state))
        assert record.run_key.attempt == 1
    total = next(r for r in records if r.run_key.step == "total")
    assert total.inputs["dataset"].fingerprint == dataset.content_hash

    published = [a for a in artifacts(state) if a.key == "toy-total-report"]
    assert len(published) == 1
    assert published[0].type == "markdown"
    assert "sum" in str(published[0].data)
    assert "passed" in str(published[0].data)


def test_failed_gate_fails_the_flow_and_stops_downstream(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, min_sum=1000)

    state = build_flow(spec)(return_state=True)

    assert state.is_failed()
    with pytest.raises(PipelineFailed, match="total") as err:
        state.result()
    assert err.value.not_run == ["after"]
    runs = task_runs(state)
    assert runs["total"].state is not None
    assert runs["total"].state.is_failed()
    assert runs["total"].run_count == 1, "a failed gate must not be retried"
    assert runs["after"].state is not None
    assert runs["after"].state.name == "NotReady"
    assert runs["after"].start_time is None
    assert runs["copy"].state is not None
    assert runs["copy"].state.is_completed(), "an independent branch still runs"

    records = {r.run_key.step: r for r in lineage(tmp_path / "art", state)}
    assert "after" not in records
    assert records["total"].status == "gate_failed"
    assert not (tmp_path / "art" / "runs" / str(flow_run_id(state)) / "after").exists()
    # the failed gate's report summary is still published
    report = [a for a in artifacts(state) if a.key == "toy-total-report"]
    assert len(report) == 1
    assert "FAILED" in str(report[0].data)


def test_unexpected_errors_are_retried_with_attempt_numbers(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: crashy
        defaults: {artifact_root: art}
        steps:
          crash: {uses: toy_crash, retries: 2}
        """,
    )

    state = build_flow(spec)(return_state=True)

    assert state.is_failed()
    assert task_runs(state)["crash"].run_count == 3
    records = lineage(tmp_path / "art", state)
    assert [(r.status, r.run_key.attempt) for r in records] == [("failed", 1), ("failed", 2), ("failed", 3)]
    assert all("ZeroDivisionError" in (r.error or "") for r in records)


def test_config_errors_are_not_retried(tmp_path: Path) -> None:
    source = mlsteps_task("toy_source", retries=3)

    @flow
    def bad() -> None:
        source(config={"count": -1}, artifact_root=str(tmp_path / "art"))

    state = bad(return_state=True)

    assert state.is_failed()
    assert "count" in (state.message or "") or "count" in str(state.result(raise_on_failure=False))
    assert task_runs(state)["toy_source"].run_count == 1


def test_task_in_a_hand_written_flow(tmp_path: Path) -> None:
    source = mlsteps_task("toy_source")
    total = mlsteps_task("toy_sum")

    @flow(name="handmade")
    def handmade() -> dict[str, dict[str, object]]:
        made = source(config={"count": 4}, artifact_root="art", base_dir=str(tmp_path))
        return total(
            config={"min_sum": 1},
            inputs={"dataset": made["dataset"]},
            artifact_root="art",
            base_dir=str(tmp_path),
        )

    state = handmade(return_state=True)

    assert state.is_completed(), state.message
    report = parse_ref(state.result()["report"])
    assert isinstance(report, ReportRef)
    assert report.summary == {"sum": 6.0}
    records = lineage(tmp_path / "art", state)
    assert sorted(r.run_key.step for r in records) == ["toy_source", "toy_sum"]
    assert {r.run_key.pipeline for r in records} == {"handmade"}
