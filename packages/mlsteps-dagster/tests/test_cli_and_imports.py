"""Dagster's own CLI loads the definitions; building them stays light."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import TOY_SPEC, write_spec

REPO = Path(__file__).resolve().parents[3]
DAGSTER = Path(sys.executable).parent / "dagster"
EXAMPLE_DEFS = REPO / "examples" / "penguins" / "dagster_defs.py"
HEAVY = ("mlflow", "feast", "great_expectations", "sklearn", "kubernetes", "pandas")

DEFS_FILE = """\
from pathlib import Path

from mlsteps_dagster import build_definitions

defs = build_definitions(Path(__file__).parent / "pipeline.yaml")
"""


def validate(defs_file: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-f", str(defs_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=defs_file.parent,
        timeout=300,
        check=False,
    )


def test_dagster_cli_validates_definitions_built_from_a_spec(
    tmp_path: Path, toy_plugin_env: dict[str, str]
) -> None:
    write_spec(tmp_path, TOY_SPEC)
    defs_file = tmp_path / "defs.py"
    defs_file.write_text(DEFS_FILE)

    proc = validate(defs_file, toy_plugin_env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_dagster_cli_reports_spec_errors(tmp_path: Path, toy_plugin_env: dict[str, str]) -> None:
    write_spec(tmp_path, TOY_SPEC.replace("count: 10", "count: -1"))
    defs_file = tmp_path / "defs.py"
    defs_file.write_text(DEFS_FILE)

    proc = validate(defs_file, toy_plugin_env)

    assert proc.returncode != 0
    assert "steps.source.config.count" in proc.stdout + proc.stderr


def test_dagster_cli_validates_the_penguins_example() -> None:
    proc = validate(EXAMPLE_DEFS)

    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_building_definitions_imports_no_heavy_library(
    tmp_path: Path, toy_plugin_env: dict[str, str]
) -> None:
    spec = write_spec(tmp_path, TOY_SPEC)
    code = textwrap.dedent(
        f"""\
        import sys
        from mlsteps_dagster import build_definitions
        defs = build_definitions({str(spec)!r})
        assert len(list(defs.assets)) == 5, defs.assets
        defs.resolve_asset_graph()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        print("HEAVY:", heavy)
        """
    )

    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=toy_plugin_env,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "HEAVY: []" in proc.stdout
