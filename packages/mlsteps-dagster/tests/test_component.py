"""MlstepsPipelineComponent: a dg project declares pipelines in defs.yaml, loaded by Dagster's own loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from conftest import TOY_SPEC, write_spec

from mlsteps.lineage import LineageRecorder
from mlsteps.refs import DatasetRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps_dagster import MLFLOW_RESOURCE_KEY, MLSTEPS_RESOURCE_KEY, MlstepsPipelineComponent

DG = Path(sys.executable).parent / "dg"
COMPONENT = "mlsteps_dagster.MlstepsPipelineComponent"


def write_project(root: Path, components: dict[str, str]) -> str:
    """A dg project (as ``dg scaffold project`` lays it out) with one defs folder per component.

    Returns the project's (unique) root module name.
    """
    module = f"mlproj_{uuid.uuid4().hex[:8]}"
    (root / module / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "{module}"
            version = "0.1.0"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "{module}"
            """
        )
    )
    (root / module / "__init__.py").write_text("")
    (root / module / "defs" / "__init__.py").write_text("")
    (root / module / "definitions.py").write_text(
        textwrap.dedent(
            """\
            from pathlib import Path

            import dagster as dg


            @dg.definitions
            def defs() -> dg.Definitions:
                return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )
    for name, body in components.items():
        folder = root / module / "defs" / name
        folder.mkdir()
        (folder / "defs.yaml").write_text(textwrap.dedent(body))
    return module


#: Two components on the same spec: the second loads it again under another key prefix.
TWO_COMPONENTS = {
    "toy": f"""\
        type: {COMPONENT}
        attributes:
          spec: ../../../pipeline.yaml
          key_prefix: ml
          group_name: toys
        """,
    "toy_again": f"""\
        type: {COMPONENT}
        attributes:
          spec: ../../../pipeline.yaml
          key_prefix: [again, ml]
          job_name: toy_again
        """,
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    write_spec(tmp_path, TOY_SPEC)
    module = write_project(tmp_path, TWO_COMPONENTS)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path, module
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("toy_steps")
def test_dagsters_loader_builds_and_materializes_the_declared_pipelines(project: tuple[Path, str]) -> None:
    root, _ = project

    defs = dg.load_from_defs_folder(path_within_project=root)

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "ml/source/dataset",
        "ml/copy/dataset",
        "again/ml/source/dataset",
        "again/ml/after/report",
    } <= keys
    assert len(keys) == 12
    assert graph.get(dg.AssetKey(["ml", "source", "dataset"])).group_name == "toys"
    assert graph.get(dg.AssetKey(["again", "ml", "source", "dataset"])).group_name == "toy"
    assert graph.get(dg.AssetKey(["ml", "total", "report"])).parent_keys == {
        dg.AssetKey(["ml", "source", "dataset"])
    }
    # Both components' default resources merged into one code location without a conflict,
    # and their ops (same step ids) do not collide in the code location's asset job.
    assert {MLSTEPS_RESOURCE_KEY, MLFLOW_RESOURCE_KEY} <= set(defs.resources or {})
    assert {"ml__total", "again__ml__total"} <= set(
        defs.resolve_implicit_global_asset_job_def().graph.node_dict
    )

    result = defs.resolve_job_def("ml_toy").execute_in_process()

    assert result.success
    materialized = {ev.asset_key.to_user_string() for ev in result.get_asset_materialization_events()}
    assert materialized == {k for k in keys if k.startswith("ml/")}
    assert {ev.passed for ev in result.get_asset_check_evaluations()} == {True}
    dataset = parse_ref(result.asset_value(["ml", "source", "dataset"]))
    assert isinstance(dataset, DatasetRef)
    # The spec's relative artifact root resolves against the spec's folder, not the component's.
    assert Path(dataset.uri).is_relative_to(root / "art")
    recs = LineageRecorder(ArtifactStore(root / "art")).records(result.run_id)
    assert {r.run_key.step for r in recs} == {"source", "total", "after", "checked", "copy"}
    assert all(r.status == "succeeded" and r.run_key.orchestrator == "dagster" for r in recs)


def test_component_attributes_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colour"):
        MlstepsPipelineComponent.model_validate({"spec": "pipeline.yaml", "colour": "red"})
    with pytest.raises(ValueError, match="execution"):
        MlstepsPipelineComponent.model_validate({"spec": "pipeline.yaml", "execution": "spark"})


@pytest.mark.usefixtures("toy_steps")
def test_a_bad_spec_fails_loading_with_file_line_and_path(tmp_path: Path) -> None:
    write_spec(tmp_path, TOY_SPEC.replace("count: 10", "count: -1"))
    module = write_project(tmp_path, {"toy": TWO_COMPONENTS["toy"]})
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(Exception, match="Error while building definitions") as info:
            dg.load_from_defs_folder(path_within_project=tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
    chain: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    causes = "\n".join(str(e) for e in chain)
    assert "steps.source.config.count" in causes
    assert f"{tmp_path / 'pipeline.yaml'}:7" in causes  # the line of `count: -1`


def dg_cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DG), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
        check=False,
    )


def test_dg_cli_lists_the_component_and_checks_the_project(
    tmp_path: Path, toy_plugin_env: dict[str, str]
) -> None:
    """``dg`` finds the component through the entry point mlsteps-dagster declares (simulated here)."""
    root = tmp_path / "project"
    root.mkdir()
    write_spec(root, TOY_SPEC)
    write_project(root, TWO_COMPONENTS)
    # An installed-looking distribution declaring the dg registry entry point, as the
    # package's pyproject does (see docs/adapters/dagster.md).
    dist = tmp_path / "dg-site" / "mlsteps_dagster_registry-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlsteps-dagster-registry\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[dagster_dg_cli.registry_modules]\nmlsteps_dagster = mlsteps_dagster\n"
    )
    env = {
        **toy_plugin_env,
        "PYTHONPATH": os.pathsep.join([str(dist.parent), str(root), toy_plugin_env["PYTHONPATH"]]),
        "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "NO_COLOR": "1",
    }

    listed = dg_cli(root, env, "list", "components", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    items = {item["key"]: item for item in json.loads(listed.stdout)["items"]}
    assert COMPONENT in items
    assert "mlsteps pipeline" in items[COMPONENT]["summary"]

    yaml_check = dg_cli(root, env, "check", "yaml")
    assert yaml_check.returncode == 0, yaml_check.stdout + yaml_check.stderr

    defs_check = dg_cli(root, env, "check", "defs")
    assert defs_check.returncode == 0, defs_check.stdout + defs_check.stderr

    folder = next(root.glob("mlproj_*")) / "defs" / "toy"
    (folder / "defs.yaml").write_text((folder / "defs.yaml").read_text() + "  colour: red\n")
    # dg 1.13.27 validates one defs.yaml per component type when checking a whole project,
    # so the check names the folder.
    failed = dg_cli(root, env, "check", "yaml", str(folder))
    assert failed.returncode != 0
    assert "'colour' was unexpected" in failed.stdout + failed.stderr


def test_the_example_dg_project_loads_the_penguins_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    project = Path(__file__).resolve().parents[3] / "examples" / "penguins" / "dagster_project"
    monkeypatch.syspath_prepend(str(project))

    defs = dg.load_from_defs_folder(path_within_project=project)

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"validate/dataset", "featurise/dataset", "train/model", "register/model_version"} <= keys
    assert defs.resolve_job_def("penguins").name == "penguins"
    checks = defs.resolve_asset_graph().asset_check_keys
    assert {c.asset_key.to_user_string() for c in checks} == {"validate/report", "evaluate/report"}
