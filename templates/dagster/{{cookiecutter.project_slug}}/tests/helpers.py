"""Shared by the tests: a private copy of the project, and what a finished run must have left behind."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from mlsteps.lineage import LineageNode, LineageRecorder, find_model_version, trace
from mlsteps.storage import ArtifactStore

PROJECT_DIR = Path(__file__).resolve().parents[1]
#: Not copied: environments, outputs, data and the orchestrators' local state.
SKIPPED = (".venv", ".mlsteps", "data", "__pycache__", ".git", ".pytest_cache", ".airflow", ".dagster")
PACKAGE = {{ cookiecutter.project_slug | tojson }}
MODEL_NAME = {{ cookiecutter.model_name | tojson }}
STEPS = ["validate", "featurise", "train", "evaluate", "register"{% if cookiecutter.deploy == "local" %}, "deploy"{% endif %}]


def copy_project(target: Path) -> Path:
    """Copy the project (without environments, outputs or data) to ``target`` and write its sample data.

    The pipeline writes next to its spec (``.mlsteps``, ``data/feast``), so tests run a copy
    and leave the checkout clean.
    """
    ignore = shutil.ignore_patterns(*SKIPPED)
    shutil.copytree(PROJECT_DIR, target, ignore=ignore)
    script = target / PACKAGE / "data.py"
    subprocess.run([sys.executable, str(script), "--out", str(target / "data")], check=True, timeout=300)
    return target


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file at ``path`` as module ``name`` (the copy's entry file, not the installed one)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_registered_with_lineage(project: Path, run_id: str, orchestrator: str) -> str:
    """Check the run registered a model version, in MLflow and in lineage; return the version.

    Lineage must lead from the registered version back through every step to the
    validated data file, each record written by ``orchestrator`` for this run.
    """
    from mlflow import MlflowClient

    root = project / ".mlsteps"
    records = LineageRecorder(ArtifactStore(str(root))).records(run_id)
    assert sorted(r.run_key.step for r in records) == sorted(STEPS)
    assert {(r.run_key.orchestrator, r.status) for r in records} == {(orchestrator, "succeeded")}

    register = find_model_version(records, MODEL_NAME, None)
    assert register is not None, f"no lineage record registered {MODEL_NAME!r}"
    (version_ref,) = [link.ref for link in register.outputs.values() if link.ref["kind"] == "model_version"]
    version = str(version_ref["version"])

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    registered = client.get_model_version(MODEL_NAME, version)
    assert registered.tags["mlsteps.run_key"].startswith(f"{orchestrator}/")
    assert run_id in registered.tags["mlsteps.run_key"]

    tree = trace(records, register)
    assert steps_in(tree) == {"validate", "featurise", "train", "evaluate", "register"}
    validate = tree.parents["model"].parents["dataset"].parents["dataset"]
    assert validate.record.run_key.step == "validate"
    assert validate.record.outputs["dataset"].ref["uri"].endswith("wines.parquet")
    return version


def steps_in(node: LineageNode) -> set[str]:
    """The step names of a lineage tree."""
    return {node.record.run_key.step}.union(*(steps_in(parent) for parent in node.parents.values()))


def stop_deployment(project: Path) -> None:
    """Stop the model server a ``deploy`` step started (a no-op when the pipeline has no deploy step)."""
    if "deploy" not in STEPS:
        return
    mlsteps = Path(sys.executable).parent / "mlsteps"
    spec = project / "pipeline.yaml"
    subprocess.run([str(mlsteps), "deploy", "stop", "--spec", str(spec)], check=False, timeout=120)
