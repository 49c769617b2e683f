"""The pipeline end to end on Dagster: the project's own definitions, materialized in process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from helpers import PACKAGE, STEPS, assert_registered_with_lineage, load_module, stop_deployment


def load_definitions(project: Path, name: str) -> dg.Definitions:
    defs = load_module(project / PACKAGE / "definitions.py", name).defs
    assert isinstance(defs, dg.Definitions)
    return defs


def test_definitions_have_one_asset_group_per_step(project: Path) -> None:
    defs = load_definitions(project, f"{PACKAGE}_defs_shape")

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}

    assert {key.split("/")[0] for key in keys} == set(STEPS)
    assert "register/model_version" in keys


def test_pipeline_materializes_on_dagster_and_registers_a_model(project: Path) -> None:
    defs = load_definitions(project, f"{PACKAGE}_defs")
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]

    try:
        result = dg.materialize(assets, resources=defs.resources)
    finally:
        stop_deployment(project)

    assert result.success
    gates = {ev.asset_key.to_user_string(): ev.passed for ev in result.get_asset_check_evaluations()}
    assert gates == {"validate/report": True, "evaluate/report": True}
    assert_registered_with_lineage(project, result.run_id, "dagster")
