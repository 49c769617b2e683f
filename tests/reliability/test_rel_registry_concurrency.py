"""Concurrency: pipelines registering one model at once, and local runners sharing one artifact root.

Registration: 8 pipelines (8 processes) against a real ``mlflow server`` on
PostgreSQL each log a model, then all register it under the same name at the
same moment with ``promote: true``, each with its own evaluation score (one of
them fails its threshold). Version numbers must be unique, every passing
candidate registered exactly once, the failing one not at all, and ``champion``
must end on the best score whatever order the promotions land in (the register
step's compare-and-set under the registry lock, not last-writer-wins).

Runners: 6 processes run a toy pipeline 4 times each on one artifact root (the
same cache keys, so cache entries are read and written concurrently) while this
process keeps reading the lineage: every run succeeds, every cache entry and
lineage record parses, each run has one complete record per step.
"""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _rel_support import ForkServer

from mlsteps.lineage import LineageRecord

PIPELINES = 8
THRESHOLD = 0.905


@pytest.mark.integration
@pytest.mark.slow
def test_eight_pipelines_register_and_promote_one_model_at_once(
    forkserver: ForkServer, pg_mlflow_server: Any, tmp_path: Path
) -> None:
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    saved = tmp_path / "saved-model"
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=200).fit(X, y), str(saved), pip_requirements=["scikit-learn"]
    )
    scores = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]
    random.Random(11).shuffle(scores)  # the best is not the last to start
    name = "concurrent-model"
    go = tmp_path / "go"
    pids = {}
    for i, accuracy in enumerate(scores):
        kwargs = {
            "tracking_uri": pg_mlflow_server.url,
            "root": str(tmp_path / "art"),
            "base_dir": str(tmp_path),
            "run_id": f"p{i}",
            "name": name,
            "accuracy": accuracy,
            "threshold": THRESHOLD,
            "saved_model": str(saved),
            "go": str(go),
            "result": str(tmp_path / f"result-p{i}.json"),
        }
        pids[i] = forkserver.start("_rel_tasks:log_and_register", kwargs, tmp_path / f"p{i}.log")
    # Every pipeline has logged its model and is waiting: release them together.
    _wait_for(lambda: all((tmp_path / f"evaluation-p{i}.json").exists() for i in pids), tmp_path, pids)
    go.touch()
    for i, pid in pids.items():
        assert forkserver.wait(pid) == 0, (tmp_path / f"p{i}.log").read_text()[-3000:]

    results = {i: json.loads((tmp_path / f"result-p{i}.json").read_text()) for i in pids}
    passing = {i for i, s in enumerate(scores) if s >= THRESHOLD}
    assert {i for i, r in results.items() if r["status"] == "succeeded"} == passing
    assert {r["status"] for i, r in results.items() if i not in passing} == {"GateFailure"}

    # Both URIs: an earlier test may have set a process-wide registry URI.
    client = mlflow.MlflowClient(tracking_uri=pg_mlflow_server.url, registry_uri=pg_mlflow_server.url)
    versions = list(client.search_model_versions(f"name='{name}'"))
    numbers = sorted(int(v.version) for v in versions)
    assert numbers == list(range(1, len(passing) + 1))  # unique, no gaps, no duplicates
    keys = sorted(v.tags["mlsteps.run_key"] for v in versions)
    assert keys == sorted(f"local/concurrent/p{i}/register" for i in passing)  # each candidate once
    by_key = {v.tags["mlsteps.run_key"]: v for v in versions}
    for i in passing:
        mv = by_key[f"local/concurrent/p{i}/register"]
        assert float(mv.tags["metric.accuracy"]) == scores[i]
        assert str(results[i]["outputs"]["model_version"]["version"]) == str(mv.version)
    best = max(passing, key=lambda i: scores[i])
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["mlsteps.run_key"] == f"local/concurrent/p{best}/register"
    assert float(champion.tags["metric.accuracy"]) == max(scores)
    # Promotion outcomes agree: only the candidates that beat the champion they saw were promoted.
    assert results[best]["metrics"]["promoted"] == 1.0
    assert client.search_registered_models(f"name='{name}.mlsteps-lock'") == []


def _wait_for(predicate: Any, tmp_path: Path, pids: dict[int, int], timeout_s: float = 300) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join((tmp_path / f"p{i}.log").read_text()[-1500:] for i in pids)
            raise AssertionError(f"pipelines did not get ready in {timeout_s} s:\n{logs}")
        time.sleep(0.1)


TOY_SPEC = """\
name: shared
defaults:
  artifact_root: art
steps:
  source:
    uses: toy_source
    config: {count: 50}
  copy:
    uses: toy_copy
    inputs: {dataset: source.dataset}
  total:
    uses: toy_sum
    config: {min_sum: 10}
    inputs: {dataset: copy.dataset}
"""


def test_concurrent_local_runners_share_one_artifact_root(forkserver: ForkServer, tmp_path: Path) -> None:
    from mlsteps.lineage import LineageRecorder
    from mlsteps.storage import ArtifactStore

    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(TOY_SPEC))
    root = tmp_path / "art"
    go = tmp_path / "go"
    workers, runs = 6, 4
    pids = {}
    for w in range(workers):
        kwargs = {
            "spec": str(spec),
            "root": str(root),
            "run_ids": [f"w{w}-r{r}" for r in range(runs)],
            "result": str(tmp_path / f"runners-{w}.json"),
            "go": str(go),
        }
        pids[w] = forkserver.start("_rel_tasks:run_pipelines", kwargs, tmp_path / f"runner-{w}.log")
    go.touch()
    recorder = LineageRecorder(ArtifactStore(root))
    reads = 0
    while not all((tmp_path / f"runners-{w}.json").exists() for w in pids) and reads < 2000:
        recorder.records()  # a reader racing the writers never sees a partial record
        reads += 1
    for w, pid in pids.items():
        assert forkserver.wait(pid) == 0, (tmp_path / f"runner-{w}.log").read_text()[-3000:]

    for w in pids:
        outcomes = json.loads((tmp_path / f"runners-{w}.json").read_text())
        for run_id, steps in outcomes.items():
            assert set(steps) == {"source", "copy", "total"}, run_id
            assert set(steps.values()) <= {"succeeded", "cached"}, (run_id, steps)
    for entry in (root / "cache").glob("*.json"):
        data = json.loads(entry.read_text())
        assert set(data) == {"result", "record_id"}
    records = recorder.records()
    assert all(isinstance(r, LineageRecord) for r in records)
    per_run: dict[str, list[str]] = {}
    for rec in records:
        per_run.setdefault(rec.run_key.run_id, []).append(rec.run_key.step)
        assert rec.status in ("succeeded", "cached"), rec
    assert len(per_run) == workers * runs
    assert all(sorted(steps) == ["copy", "source", "total"] for steps in per_run.values()), per_run
    assert reads > 0
