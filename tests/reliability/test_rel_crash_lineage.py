"""SIGKILL inside the lineage write, then retry: records stay whole and the crash stays visible.

A lineage write lasts milliseconds, so a timer cannot aim inside it: the child
kills itself at one of five points of the real ``atomic_write_bytes`` (after
``mkstemp``, half-way through the bytes, after the write, after ``fsync``, after
the rename) of its first (the ``started`` marker) or second (the final record)
lineage write. 30 seeds cover each of the 10 points three times, with seeded
cut-off fractions for the half-written case.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from _rel_support import Chain, ForkServer, check_lineage, lineage_files
from _rel_tasks import WRITE_POINTS

from mlsteps.lineage import LineageRecord

POINTS = [(write, point) for write in (1, 2) for point in WRITE_POINTS]
SEEDS = range(30)


def expected_statuses(write: int, point: str) -> list[str]:
    """What the killed attempt leaves in lineage, by where it died."""
    if write == 1:
        return ["started"] if point == "after_replace" else []
    return ["succeeded"] if point == "after_replace" else ["started"]


def test_sigkill_inside_the_lineage_write_then_retry(forkserver: ForkServer, tmp_path: Path) -> None:
    root = tmp_path / "art"
    kills = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        write, point = POINTS[seed % len(POINTS)]
        kill = {"write": write, "point": point, "fraction": round(rng.uniform(0.05, 0.95), 3)}
        run_id = f"lineage-{seed}"
        chain = Chain(seed=seed, run_id=run_id)
        for attempt in (1, 2):
            kwargs = {
                "step_type": "toy_source",
                "plugin": "mlsteps.testing:ToySource",
                "step_id": "source",
                "root": str(root),
                "base_dir": str(tmp_path),
                "run_id": run_id,
                "attempt": attempt,
                "result": str(tmp_path / f"result-{run_id}-{attempt}.json"),
                "config": {"count": 5 + seed},
                "inputs": {},
                "lineage_kill": kill if attempt == 1 else None,
            }
            chain.attempts.append(
                forkserver.attempt(kwargs, kill_after_s=None, log=tmp_path / f"{run_id}-{attempt}.log")
            )
        first, retry = chain.attempts
        assert first.killed, (kill, first)
        assert retry.returncode == 0, (tmp_path / f"{run_id}-2.log").read_text()
        kills += 1

        records = check_lineage(root, chain, step="source")
        left = sorted(r.status for r in records if r.run_key.attempt == 1)
        assert left == expected_statuses(write, point), (kill, left)
        done = [r for r in records if r.status == "succeeded"]
        # Both succeeded records (a kill after the final rename) describe the same output.
        assert len({r.outputs["dataset"].fingerprint for r in done}) == 1
        result = json.loads((tmp_path / f"result-{run_id}-2.json").read_text())
        assert result["outputs"]["dataset"]["rows"] == 5 + seed

    assert kills == len(SEEDS) >= 20
    print(f"lineage: {kills} kills at {len(POINTS)} points, {kills} retries survived")
    # No half-written record anywhere: every *.json parses; leftovers are hidden temp files.
    for path in lineage_files(root):
        LineageRecord.model_validate_json(path.read_text())
    leftovers = [p.name for p in root.glob("lineage/*/.*")]
    assert all(name.endswith(".tmp") for name in leftovers), leftovers
