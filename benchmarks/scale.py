"""Data scale: validate, featurise and train on synthetic data, mlsteps vs the direct library calls.

5. Each stage is the example's pipeline up to and including one step (validate;
   validate+featurise; validate+featurise+train) on synthetic rows of the example's
   schema, through ``mlsteps run --no-cache`` vs ``handwritten/penguins_direct.py
   --until STAGE``: wall time and peak RSS of the whole process, each side in a fresh
   interpreter after a fresh MLflow store and Feast registry (not timed).

Sizes: 100k (and 1M outside quick mode) rows in ``make bench``; ``BENCH_ROWS=5000000``
(``make bench-5m``) for the largest size, which on a 2-CPU machine takes longer by itself
than the whole of ``make bench`` may. The forest has 20 trees instead of the example's
200 on both sides: training time grows with rows x trees, and at these sizes 200 trees
would be nearly all of the benchmark's time while telling nothing more about mlsteps.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import QUICK, SMOKE, compare, table
from overhead import direct_pair, example_project

STAGES = {
    "validate": ["validate"],
    "featurise": ["validate", "featurise"],
    "train": ["validate", "featurise", "train"],
}
#: Trees in the forest at every size, on both sides (the example has 200).
TREES = 20


def sizes() -> list[int]:
    """Rows to measure: ``BENCH_ROWS`` (comma-separated) if set, else by mode."""
    if os.environ.get("BENCH_ROWS"):
        return [int(n) for n in os.environ["BENCH_ROWS"].split(",")]
    return [2_000] if SMOKE else ([100_000] if QUICK else [100_000, 1_000_000])


def main() -> list[str]:
    runs = 1 if SMOKE else 3
    lines = [
        "## 5. Data scale",
        "",
        "Synthetic rows with the example's schema (resampled penguins, jittered measurements, unique",
        "ids, timestamps over three years). Each stage is the pipeline up to and including that step,",
        f"in a fresh process. The forest has {TREES} trees (the example: 200) on both sides: training",
        "time grows with rows x trees, and 200 trees would make training nearly all of the time",
        f"measured. Below 1M rows {runs} run(s) each after a warm-up, alternating; from 1M rows one",
        "run each, no warm-up. Targets: time ratio <= 1.05, peak RSS within 1.2x of the hand-written",
        "run.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes():
            for stage, steps in STAGES.items():
                if SMOKE and stage != "validate":
                    continue  # overhead.py's smoke pair already ran every step once on synthetic rows
                project = example_project(
                    Path(tmp) / f"{stage}-{rows}", rows=rows, steps=steps, n_estimators=TREES
                )
                pair = direct_pair(project, stage, f"to {stage}", n_estimators=TREES)
                large = rows >= 1_000_000
                compare(pair, runs=1 if large else runs, warmup=0 if large or SMOKE else 1)
                lines += table(f"{rows:,} rows: up to {stage}", pair, pair[1].name)
                shutil.rmtree(project, ignore_errors=True)
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
    sys.stdout.flush()
