"""Caching: an unchanged re-run of the example vs its cold run (target <= 10 % of the cold time).

The cold runs are the step-overhead benchmark's mlsteps runs when ``run.py`` ran it first
(``overhead.COLD``: the same project, cache on, fresh stores each run); run alone, this
script times its own cold runs, alternating with the re-runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import overhead
import yaml
from _common import QUICK, ROOT, SMOKE, Contender, compare, table

EXAMPLE = ROOT / "examples" / "penguins"
MLSTEPS = str(ROOT / ".venv" / "bin" / "mlsteps")


def _project(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    spec = yaml.safe_load((dest / "pipeline.yaml").read_text())
    spec["steps"].pop("deploy", None)  # like for like with the steps the cache covers; no server left running
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    subprocess.run([sys.executable, str(dest / "prepare_data.py"), "--out", str(dest / "data")], check=True)
    return dest


def main() -> list[str]:
    runs = 1 if SMOKE else (2 if QUICK else 3)
    with tempfile.TemporaryDirectory() as tmp:
        warm_dir = _project(Path(tmp) / "warm")
        measured = overhead.COLD  # set when run.py ran the step-overhead benchmark first
        # Smoke: the warm project's own first run is the cold run (one project, three runs).
        cold_dir = warm_dir if SMOKE or measured is not None else _project(Path(tmp) / "cold")

        def fresh_root() -> None:
            shutil.rmtree(cold_dir / ".mlsteps", ignore_errors=True)

        cold = Contender("cold run", [MLSTEPS, "run", "pipeline.yaml"], cwd=cold_dir, prepare=fresh_root)
        warm = Contender("unchanged re-run", [MLSTEPS, "run", "pipeline.yaml"], cwd=warm_dir)
        if SMOKE:
            compare([cold], runs=1, warmup=0)
        # The first run promotes its model to champion; the next re-does the champion
        # comparison once against it. From then on an unchanged re-run is what we time.
        for _ in range(1 if SMOKE else 2):
            subprocess.run([MLSTEPS, "run", "pipeline.yaml"], cwd=warm_dir, check=True, capture_output=True)
        if measured is not None:
            cold.walls, cold.rss_mb = list(measured.walls), list(measured.rss_mb)
            compare([warm], runs=runs, warmup=0)
            how = [
                f"`mlsteps run` of the penguins example without its deploy step: the cold runs are the {len(cold.walls)}",
                "runs of the mlsteps side of (2) (fresh artifact root, MLflow store and Feast registry each run),",
                f"the unchanged re-runs {runs} runs after the registry settled (two runs first: the first",
                "promotes its model, the second compares evaluate with that new champion once).",
            ]
        else:
            compare([warm] if SMOKE else [cold, warm], runs=runs, warmup=0)
            how = [
                f"`mlsteps run` of the penguins example without its deploy step, {runs} runs each, alternating: a",
                "cold run on a fresh artifact root vs an unchanged re-run after the registry settled (two runs",
                "first: the first promotes its model, the second compares evaluate with that new champion once).",
            ]
        lines = [
            "## 4. Caching",
            "",
            *how,
            "Every step is served from the cache; evaluate and register re-read the registered model's",
            "fingerprint first (SQLite, no MLflow import). Target: <= 10 % of cold.",
            "",
            *table("cold vs cached", [cold, warm], "cold run"),
        ]
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
