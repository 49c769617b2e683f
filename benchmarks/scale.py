"""Data scale: validate, featurise and train on synthetic data, mlsteps vs the direct library calls.

5. Each step in its own fresh process, as an orchestrator runs them, on synthetic rows of the
   example's schema: ``mlsteps run --only STEP`` (the steps before it served from the cache
   the previous invocation filled) vs ``handwritten/penguins_direct.py --only STEP`` (which
   reads the file the stage before it wrote). One pass runs validate, featurise and train in
   turn on each side, alternating step by step; each side has its own copy of the project
   (same data file) and starts each pass on a fresh MLflow store, Feast registry and
   artifact root (not timed). Wall time and peak RSS of each step's whole process.

Sizes: 100k and 1M rows in ``make bench`` (100k only in quick mode); ``BENCH_ROWS=5000000``
(``make bench-5m``) for the largest size, which on a 2-CPU machine takes about as long by
itself as the whole of ``make bench``. The forest has 5 trees instead of the example's 200
on both sides: training time grows with rows x trees, and at these sizes 200 trees would be
nearly all of the benchmark's time while telling nothing more about mlsteps. Two passes per side
below 1M rows, one from 1M.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import QUICK, SMOKE, Contender, run_once, table
from overhead import DIRECT, MLSTEPS, PYTHON, example_project, fresh_stores

#: The steps measured, in pipeline order.
STEPS = ("validate", "featurise", "train")
#: Trees in the forest at every size, on both sides (the example has 200). At 1M rows, 5 trees
#: instead of 20 took 20-33 s off each side's train step (58 -> 37 s and 83 -> 49 s, one pass
#: each): time spent in scikit-learn that says nothing about what mlsteps adds around it.
TREES = 5


def sizes() -> list[int]:
    """Rows to measure: ``BENCH_ROWS`` (comma-separated) if set, else by mode."""
    if os.environ.get("BENCH_ROWS"):
        return [int(n) for n in os.environ["BENCH_ROWS"].split(",")]
    return [2_000] if SMOKE else ([100_000] if QUICK else [100_000, 1_000_000])


def step_pairs(mlsteps_dir: Path, direct_dir: Path) -> dict[str, list[Contender]]:
    """Per step, (mlsteps, hand-written); each side's validate starts from fresh stores."""
    pairs: dict[str, list[Contender]] = {}
    for step in STEPS:
        first = step == STEPS[0]
        pairs[step] = [
            Contender(
                f"mlsteps {step}",
                [MLSTEPS, "run", "pipeline.yaml", "--only", step],
                cwd=mlsteps_dir,
                prepare=(lambda: fresh_stores(mlsteps_dir)) if first else None,
            ),
            Contender(
                f"hand-written {step}",
                [
                    *(PYTHON, DIRECT, str(direct_dir), "--only", step),
                    *("--max-rows", str(10**9), "--n-estimators", str(TREES)),
                ],
                cwd=direct_dir,
                prepare=(lambda: fresh_stores(direct_dir)) if first else None,
            ),
        ]
    return pairs


def passes(pairs: dict[str, list[Contender]], runs: int) -> None:
    """``runs`` passes through the steps, the two sides alternating at every step."""
    for _ in range(runs):
        for pair in pairs.values():
            for c in pair:
                wall, peak, _ = run_once(c)
                c.walls.append(wall)
                c.rss_mb.append(peak)


def main() -> list[str]:
    # Two passes below 1M rows (one from 1M): at 100k rows each step's time is mostly the same
    # fixed cost as the step-overhead benchmark's, which has 3 runs; a third pass would add
    # about 80 s to `make bench`, which has to fit in 30 minutes.
    runs = 1 if SMOKE else 2
    lines = [
        "## 5. Data scale",
        "",
        "Synthetic rows with the example's schema (resampled penguins, jittered measurements, unique",
        "ids, timestamps over three years). Each step in its own fresh process, as an orchestrator",
        "runs them: `mlsteps run --only STEP` (earlier steps served from the cache the previous",
        "invocation filled) vs `penguins_direct.py --only STEP` (reading the file the stage before it",
        "wrote: its featurise writes the training set to Parquet, as mlsteps does). A pass runs",
        "validate, featurise and train on each side, alternating step by step, from fresh stores.",
        f"The forest has {TREES} trees (the example: 200) on both sides: training time grows with",
        "rows x trees, and 200 trees would make training nearly all of the time measured. Below 1M",
        f"rows {runs} passes (after the step-overhead benchmark's warm-up of the same environment);",
        "from 1M rows one pass. Targets: time ratio <= 1.05, peak RSS within 1.2x of the",
        "hand-written step.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes():
            mlsteps_dir = example_project(
                Path(tmp) / f"mlsteps-{rows}", rows=rows, steps=list(STEPS), n_estimators=TREES
            )
            direct_dir = Path(tmp) / f"direct-{rows}"
            shutil.copytree(mlsteps_dir, direct_dir)
            pairs = step_pairs(mlsteps_dir, direct_dir)
            passes(pairs, runs=1 if rows >= 1_000_000 else runs)
            for step, pair in pairs.items():
                lines += table(f"{rows:,} rows: {step}", pair, pair[1].name)
            shutil.rmtree(mlsteps_dir, ignore_errors=True)
            shutil.rmtree(direct_dir, ignore_errors=True)
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
    sys.stdout.flush()
