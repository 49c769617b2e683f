"""The local runner: dependency order, caching, gates, failures and lineage."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOY_SPEC, write_spec

from mlsteps.lineage import LineageRecorder
from mlsteps.runner import LocalRunner
from mlsteps.spec import load_spec
from mlsteps.storage import ArtifactStore

pytestmark = pytest.mark.usefixtures("toy_steps")


def statuses(summary: object) -> dict[str, str]:
    return {o.step_id: o.status for o in summary.outcomes}  # type: ignore[attr-defined]


def test_runs_in_order_and_passes_refs(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    summary = LocalRunner(spec, run_id="r1").run()
    assert summary.ok
    assert statuses(summary) == {"source": "succeeded", "total": "succeeded"}
    assert summary.outcome("total").result.metrics == {"sum": 45.0}  # type: ignore[union-attr]
    dataset = summary.outcome("source").result.outputs["dataset"]  # type: ignore[union-attr]
    assert Path(dataset.uri).is_file()
    assert Path(dataset.uri).is_relative_to(tmp_path / "art" / "runs" / "r1" / "source")


def test_unchanged_rerun_is_served_from_cache(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    first = LocalRunner(spec, run_id="r1").run()
    second = LocalRunner(spec, run_id="r2").run()
    assert statuses(second) == {"source": "cached", "total": "cached"}
    assert second.outcome("total").result.metrics == first.outcome("total").result.metrics  # type: ignore[union-attr]
    # The reuse is visible in lineage and points at the record that did the work.
    records = LineageRecorder(ArtifactStore(tmp_path / "art")).records("r2")
    assert [r.status for r in records] == ["cached", "cached"]
    original = {r.record_id for r in LineageRecorder(ArtifactStore(tmp_path / "art")).records("r1")}
    assert {r.cached_from for r in records} == original


def test_no_cache_forces_a_rerun(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    LocalRunner(spec, run_id="r1").run()
    again = LocalRunner(spec, run_id="r2", use_cache=False).run()
    assert statuses(again) == {"source": "succeeded", "total": "succeeded"}


def test_config_change_reruns_the_step_and_its_dependents(tmp_path: Path) -> None:
    path = write_spec(tmp_path, TOY_SPEC)
    LocalRunner(load_spec(path), run_id="r1").run()
    path.write_text(TOY_SPEC.replace("count: 10", "count: 11"))
    summary = LocalRunner(load_spec(path), run_id="r2").run()
    assert statuses(summary) == {"source": "succeeded", "total": "succeeded"}
    assert summary.outcome("total").result.metrics == {"sum": 55.0}  # type: ignore[union-attr]


def test_gate_config_change_reruns_only_the_gate(tmp_path: Path) -> None:
    path = write_spec(tmp_path, TOY_SPEC)
    LocalRunner(load_spec(path), run_id="r1").run()
    path.write_text(TOY_SPEC.replace("min_sum: 40", "min_sum: 41"))
    assert statuses(LocalRunner(load_spec(path), run_id="r2").run()) == {
        "source": "cached",
        "total": "succeeded",
    }


def test_tampered_output_invalidates_the_cache(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    first = LocalRunner(spec, run_id="r1").run()
    Path(first.outcome("source").result.outputs["dataset"].uri).write_text("n\n1\n")  # type: ignore[union-attr]
    second = LocalRunner(spec, run_id="r2").run()
    assert statuses(second)["source"] == "succeeded"
    assert second.outcome("total").result.metrics == {"sum": 45.0}  # type: ignore[union-attr]


def test_corrupt_cache_entry_is_ignored(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    LocalRunner(spec, run_id="r1").run()
    for entry in (tmp_path / "art" / "cache").glob("*.json"):
        entry.write_text("{not json")
    assert statuses(LocalRunner(spec, run_id="r2").run()) == {"source": "succeeded", "total": "succeeded"}


def test_failed_gate_stops_downstream_and_is_not_cached(tmp_path: Path) -> None:
    body = TOY_SPEC.replace("min_sum: 40", "min_sum: 1000") + (
        "  after:\n    uses: toy_copy\n    inputs: {dataset: source.dataset}\n"
        "  gated:\n    uses: toy_sum\n    inputs: {dataset: source.dataset}\n"
    )
    # "after" and "gated" depend on the source, not on the failing gate: they still run.
    spec = load_spec(write_spec(tmp_path, body))
    summary = LocalRunner(spec, run_id="r1").run()
    assert not summary.ok
    assert statuses(summary) == {
        "source": "succeeded",
        "total": "gate_failed",
        "after": "succeeded",
        "gated": "succeeded",
    }
    failed = summary.outcome("total")
    assert "sum 45.0 < min_sum 1000" in (failed.error or "")
    report = failed.result.outputs["report"]  # type: ignore[union-attr]
    assert report.passed is False and Path(report.uri).is_file()  # type: ignore[attr-defined]
    again = LocalRunner(spec, run_id="r2").run()
    assert statuses(again)["total"] == "gate_failed"  # failures are never served from cache


def test_failure_skips_descendants_only(tmp_path: Path) -> None:
    body = """\
    name: toy
    steps:
      crash: {uses: toy_crash}
      after_crash: {uses: toy_copy, inputs: {dataset: crash.dataset}}
      later: {uses: toy_copy, inputs: {dataset: after_crash.dataset}}
      source: {uses: toy_source, config: {count: 3}}
      check: {uses: toy_sum, config: {min_sum: 100}, inputs: {dataset: source.dataset}}
      copy: {uses: toy_copy, inputs: {dataset: source.dataset}}
    """
    summary = LocalRunner(load_spec(write_spec(tmp_path, body)), run_id="r1").run()
    assert statuses(summary) == {
        "crash": "failed",
        "after_crash": "skipped",
        "later": "skipped",
        "source": "succeeded",
        "check": "gate_failed",
        "copy": "succeeded",
    }
    assert "ZeroDivisionError: boom" in (summary.outcome("crash").error or "")
    records = LineageRecorder(ArtifactStore(tmp_path / ".mlsteps")).records("r1")
    by_step = {r.run_key.step: r for r in records}
    assert by_step["crash"].status == "failed" and "boom" in (by_step["crash"].error or "")
    assert by_step["check"].status == "gate_failed"
    assert "after_crash" not in by_step  # skipped steps did not run, so they have no record


def test_only_runs_the_step_and_its_upstream(tmp_path: Path) -> None:
    body = """\
    name: toy
    steps:
      source: {uses: toy_source, config: {count: 3}}
      first: {uses: toy_copy, inputs: {dataset: source.dataset}}
      other: {uses: toy_copy, inputs: {dataset: source.dataset}}
    """
    spec = load_spec(write_spec(tmp_path, body))
    summary = LocalRunner(spec, run_id="r1").run(only=["first"])
    assert statuses(summary) == {"source": "succeeded", "first": "succeeded"}


def test_lineage_records_every_step_run(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, TOY_SPEC))
    LocalRunner(spec, run_id="r1").run()
    records = LineageRecorder(ArtifactStore(tmp_path / "art")).records("r1")
    assert [r.run_key.step for r in records] == ["source", "total"]
    source, total = records
    assert source.status == "succeeded" and total.status == "succeeded"
    assert source.config == {"count": 10, "start": 0}
    assert source.config_hash.startswith("sha256:")
    # The gate's input is linked to the source's output by content hash.
    assert total.inputs["dataset"].fingerprint == source.outputs["dataset"].fingerprint
    assert "mlsteps" in source.packages
    assert total.metrics == {"sum": 45.0}
    assert total.finished_at >= total.started_at
