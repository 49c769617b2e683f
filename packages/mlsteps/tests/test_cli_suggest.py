"""`mlsteps suggest-expectations` prints expectations the validate step accepts and passes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

MLSTEPS = shutil.which("mlsteps", path=str(Path(sys.executable).parent)) or "mlsteps"


def test_suggestions_round_trip_through_validate(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("id,size,colour\n1,2.5,red\n2,3.0,blue\n3,,red\n4,4.5,blue\n")
    out = subprocess.run(
        [MLSTEPS, "suggest-expectations", str(data)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    suggested = yaml.safe_load(out.stdout)["expectations"]
    kinds = {(e["type"], e.get("column")) for e in suggested}
    assert ("in_set", "colour") in kinds
    assert ("between", "size") in kinds
    size_not_null = next(e for e in suggested if e["type"] == "not_null" and e["column"] == "size")
    assert size_not_null["mostly"] <= 0.75

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": str(data), "expectations": suggested}))
    run = subprocess.run(
        [MLSTEPS, "step", "validate", "--config", f"@{config}", "--artifact-root", str(tmp_path / "art")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["outputs"]["report"]["passed"] is True
    assert result["metrics"]["failed_expectations"] == 0


def test_unreadable_data_exits_1(tmp_path: Path) -> None:
    out = subprocess.run(
        [MLSTEPS, "suggest-expectations", str(tmp_path / "missing.parquet")], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "file not found" in out.stderr
