"""Step overhead: mlsteps vs the same work hand-written against the libraries.

2. The example pipeline (validate, featurise, train, evaluate, register) through
   ``mlsteps run`` (cache on, on an empty artifact root: every step runs and records its
   cache entry, as a user's first run does) vs ``handwritten/penguins_direct.py`` (GX, Feast,
   scikit-learn and MLflow called directly, same data and settings), each side in a
   fresh interpreter after a fresh MLflow store and Feast registry (the ``prepare``
   step, not timed). ``scale.py`` reuses :func:`example_project` and :func:`fresh_stores` at larger sizes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from _common import (
    EXAMPLE_LIBRARIES,
    QUICK,
    ROOT,
    SMOKE,
    Contender,
    compare,
    import_warmup,
    table,
)

EXAMPLE = ROOT / "examples" / "penguins"
MLSTEPS = str(ROOT / ".venv" / "bin" / "mlsteps")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
DIRECT = str(ROOT / "benchmarks" / "handwritten" / "penguins_direct.py")


def example_project(
    dest: Path, *, rows: int | None, steps: list[str] | None, n_estimators: int | None = None
) -> Path:
    """A copy of the example; ``rows`` synthetic rows instead of the real data; only ``steps``.

    ``n_estimators`` replaces the example's forest size (the hand-written side is told the same).
    """
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__", "dagster_*")
    )
    subprocess.run([PYTHON, str(dest / "prepare_data.py"), "--out", str(dest / "data")], check=True)
    if rows is not None:
        synthetic(pd.read_parquet(dest / "data" / "penguins.parquet"), rows).to_parquet(
            dest / "data" / "penguins.parquet", index=False
        )
    spec = yaml.safe_load((dest / "pipeline.yaml").read_text())
    spec["steps"].pop("deploy", None)
    if steps is not None:
        spec["steps"] = {k: v for k, v in spec["steps"].items() if k in steps}
    if n_estimators is not None and "train" in spec["steps"]:
        spec["steps"]["train"]["config"]["params"]["n_estimators"] = n_estimators
    for exp in spec["steps"]["validate"]["config"]["expectations"]:
        if exp["type"] == "row_count_between":
            exp["max"] = 10**9
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def synthetic(real: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows resampled from the real penguins, numeric columns jittered, unique ids."""
    rng = np.random.default_rng(seed)
    df = real.iloc[rng.integers(0, len(real), rows)].reset_index(drop=True)
    for col in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        df[col] = df[col] * rng.normal(1.0, 0.01, rows)
    df["penguin_id"] = np.arange(rows, dtype="int64")
    start = df["event_timestamp"].min()
    df["event_timestamp"] = start + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, rows), unit="s")
    return df


def fresh_stores(project: Path) -> None:
    for name in (".mlsteps", ".direct", "mlruns"):
        shutil.rmtree(project / name, ignore_errors=True)
    shutil.rmtree(project / "data" / "feast", ignore_errors=True)


def direct_pair(project: Path) -> list[Contender]:
    """The whole example through ``mlsteps run`` and through the hand-written script, fresh stores each run."""

    def prepare() -> None:
        fresh_stores(project)

    return [
        Contender("mlsteps pipeline", [MLSTEPS, "run", "pipeline.yaml"], cwd=project, prepare=prepare),
        Contender(
            "hand-written pipeline",
            [PYTHON, DIRECT, str(project), "--max-rows", str(10**9)],
            cwd=project,
            prepare=prepare,
        ),
    ]


#: The mlsteps side's measured cold runs, once :func:`main` ran: ``cache.py`` compares its cached
#: re-runs with these instead of timing the same cold run again (about 100 s of ``make bench``).
COLD: Contender | None = None


def main() -> list[str]:
    global COLD
    runs = 1 if SMOKE else (2 if QUICK else 3)
    warmup = 0 if SMOKE else 1
    lines = [
        "## 2. Step overhead: the example end to end",
        "",
        "`mlsteps run` (validate, featurise, train, evaluate, register; cache on, every step runs on the",
        "empty artifact root and records its cache entry) vs `benchmarks/handwritten/penguins_direct.py`",
        "doing the same with GX, Feast, scikit-learn and MLflow directly; fresh MLflow store, Feast",
        f"registry and artifact root before each run; {runs} runs each, alternating, after {warmup} warm-up",
        "process that imports mlsteps and every library both sides use (GX, Feast, MLflow, scikit-learn,",
        "skops): importing is most of a run, and the warm-up fills the bytecode and page caches for both.",
        "Target: ratio <= 1.05.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        # Smoke: synthetic rows, so one end-to-end pair covers the data generator too.
        project = example_project(Path(tmp) / "e2e", rows=2_000 if SMOKE else None, steps=None)
        pair = direct_pair(project)
        warm = import_warmup("mlsteps and the libraries", PYTHON, ["mlsteps.cli", *EXAMPLE_LIBRARIES])
        compare(pair, runs=runs, warmup=warmup, warm=[warm])
        COLD = None if SMOKE else pair[0]
        lines += table(f"example pipeline ({'2,000 synthetic' if SMOKE else '344'} rows)", pair, pair[1].name)
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
    sys.stdout.flush()
