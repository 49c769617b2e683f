"""Prefect caching keyed on the core's cache key: unchanged re-runs are served from cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_spec
from prefect_helpers import flow_run_id, lineage, state_names

from mlsteps.refs import parse_ref
from mlsteps.step import cache_key
from mlsteps_prefect import build_flow
from mlsteps_prefect._call import StepCall

pytestmark = pytest.mark.usefixtures("toy_steps")

SPEC = """\
name: cachey
defaults: {artifact_root: art}
steps:
  source:
    uses: toy_source
    config: {count: COUNT}
  total:
    uses: toy_sum
    inputs: {dataset: source.dataset}
  copy:
    uses: toy_copy
    inputs: {dataset: source.dataset}
    cache: false
"""


def spec(directory: Path, count: int = 5) -> Path:
    return write_spec(directory, SPEC.replace("COUNT", str(count)))


def test_unchanged_rerun_is_served_from_cache(tmp_path: Path) -> None:
    pipeline = build_flow(spec(tmp_path))
    first = pipeline(return_state=True)
    assert first.is_completed(), first.message
    assert state_names(first) == dict.fromkeys(["source", "total", "copy"], "Completed")

    second = pipeline(return_state=True)

    assert second.is_completed(), second.message
    # `cache: false` in the spec means NO_CACHE: that step runs again
    assert state_names(second) == {"source": "Cached", "total": "Cached", "copy": "Completed"}
    # cached results are still refs, pointing at the first run's files
    first_refs, second_refs = first.result(), second.result()
    assert second_refs["source"] == first_refs["source"]
    assert parse_ref(second_refs["total"]["report"]).summary == {"sum": 10.0}
    runs = tmp_path / "art" / "runs"
    assert not (runs / str(flow_run_id(second)) / "source").exists(), "a cached step wrote outputs"
    assert (runs / str(flow_run_id(second)) / "copy").exists()

    # lineage records the cache hits like the local runner does, linked to the producing records
    made = {r.run_key.step: r for r in lineage(tmp_path / "art", first)}
    reused = {r.run_key.step: r for r in lineage(tmp_path / "art", second)}
    assert {s: r.status for s, r in reused.items()} == {
        "source": "cached",
        "total": "cached",
        "copy": "succeeded",
    }
    for step in ("source", "total"):
        assert reused[step].cached_from == made[step].record_id
        assert reused[step].cache_key == made[step].cache_key
        assert reused[step].run_key.orchestrator == "prefect"
        assert reused[step].outputs == made[step].outputs


def test_the_cache_key_is_the_cores(tmp_path: Path) -> None:
    first = build_flow(spec(tmp_path))(return_state=True)
    records = {r.run_key.step: r for r in lineage(tmp_path / "art", first)}
    call = StepCall.from_parameters(
        "toy_sum",
        {
            "config": {},
            "inputs": {"dataset": first.result()["source"]["dataset"]},
            "artifact_root": "art",
            "base_dir": str(tmp_path),
        },
    )
    assert (
        call.cache_key() == records["total"].cache_key == cache_key(call.step_cls, call.config, call.inputs)
    )
    assert call.prefect_cache_key().startswith(
        "mlsteps-" + records["total"].cache_key.removeprefix("sha256:")
    )


def test_changed_config_or_deleted_outputs_are_not_served_from_cache(tmp_path: Path) -> None:
    first = build_flow(spec(tmp_path, count=6))(return_state=True)
    assert first.is_completed(), first.message

    changed = build_flow(spec(tmp_path, count=7))(return_state=True)
    assert state_names(changed) == dict.fromkeys(["source", "total", "copy"], "Completed")

    # delete the first run's source output: its cache record now holds a dangling ref
    Path(parse_ref(first.result()["source"]["dataset"]).uri).unlink()
    again = build_flow(spec(tmp_path, count=6))(return_state=True)

    assert again.is_completed(), again.message
    names = state_names(again)
    assert names["source"] == "Completed", "a cached ref to a deleted file was reused"
    assert Path(parse_ref(again.result()["source"]["dataset"]).uri).is_file()
    # the re-made output is cached in turn
    fourth = build_flow(spec(tmp_path, count=6))(return_state=True)
    assert state_names(fourth)["source"] == "Cached"
    assert fourth.result()["source"] == again.result()["source"]


def test_same_step_in_another_artifact_root_is_not_shared(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    build_flow(spec(one, count=8))(return_state=True)

    other = build_flow(spec(two, count=8))(return_state=True)

    assert state_names(other)["source"] == "Completed"
    assert Path(parse_ref(other.result()["source"]["dataset"]).uri).is_relative_to(two)


def test_uncacheable_steps_always_run(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: live
        defaults: {artifact_root: art}
        steps:
          source: {uses: toy_live_source, config: {count: 3}}
          total: {uses: toy_sum, inputs: {dataset: source.dataset}}
        """,
    )
    pipeline = build_flow(path)
    pipeline(return_state=True)

    second = pipeline(return_state=True)

    # the live step runs again; its output has the same content, so the gate after it is cached
    assert state_names(second) == {"source": "Completed", "total": "Cached"}
