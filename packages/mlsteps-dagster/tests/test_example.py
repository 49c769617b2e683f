"""The penguins example through Dagster with the real built-in steps (slow: GX, Feast, MLflow, sklearn)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from mlsteps.lineage import LineageRecorder
from mlsteps.refs import ReportRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps_dagster import build_definitions

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"
HEAVY = ("mlflow", "feast", "great_expectations", "sklearn", "kubernetes", "pandas")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the example with fresh data, so artifacts and MLflow land in tmp_path."""
    project = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    subprocess.run(
        [sys.executable, str(project / "prepare_data.py"), "--out", str(project / "data")],
        check=True,
        timeout=300,
    )
    return project / "pipeline.yaml"


def test_building_the_example_imports_no_heavy_library(example: Path) -> None:
    code = textwrap.dedent(
        f"""\
        import sys
        from mlsteps_dagster import build_definitions
        build_definitions({str(example)!r}).resolve_asset_graph()
        print("HEAVY:", sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )

    assert proc.returncode == 0, proc.stderr
    assert "HEAVY: []" in proc.stdout


@pytest.mark.slow
def test_example_materializes_with_the_real_steps(example: Path) -> None:
    defs = build_definitions(example)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    expected = {k.to_user_string() for a in assets for k in a.keys}

    try:
        result = dg.materialize(assets, resources=defs.resources)
    finally:
        # The example ends by serving the model (deploy step): stop it, whatever happened.
        subprocess.run(
            [str(Path(sys.executable).parent / "mlsteps"), "deploy", "stop", "--spec", str(example)],
            check=False,
            timeout=120,
            capture_output=True,
        )

    assert result.success
    md = {
        ev.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in ev.materialization.metadata.items()
        }
        for ev in result.get_asset_materialization_events()
    }
    assert set(md) == expected
    gates = {ev.asset_key.to_user_string(): ev.passed for ev in result.get_asset_check_evaluations()}
    assert gates == {"validate/report": True, "evaluate/report": True}
    assert md["validate/dataset"]["dagster/row_count"] == 344
    assert md["train/model"]["mlflow/run_id"]
    accuracy = md["train/model"]["metric/accuracy"]
    assert isinstance(accuracy, float)
    assert accuracy >= 0.9
    evaluation = parse_ref(result.asset_value(["evaluate", "report"]))
    assert isinstance(evaluation, ReportRef)
    assert evaluation.passed
    assert md["register/model_version"]["mlflow/registered_model"] == "penguins"
    assert md["register/model_version"]["mlflow/model_version"] == "1"
    deployment = parse_ref(result.asset_value(["deploy", "deployment"]))
    assert deployment.status == "healthy"  # type: ignore[attr-defined]
    recs = LineageRecorder(ArtifactStore(example.parent / ".mlsteps")).records(result.run_id)
    assert {r.run_key.step for r in recs} == {key.split("/")[0] for key in expected}
    assert all(r.run_key.orchestrator == "dagster" and r.status == "succeeded" for r in recs)
