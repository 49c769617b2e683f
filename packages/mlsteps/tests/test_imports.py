"""The light-import rule: importing mlsteps or an adapter pulls in no heavy library.

Airflow re-parses DAG files constantly and Dagster/Prefect load code locations on
every reload, so each of these modules (1-8 s to import here) must stay out of
import time. Each package is imported in a fresh interpreter of its own environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlflow", "feast", "great_expectations", "sklearn", "kubernetes", "pandas")
ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_after_import(python: str, modules: list[str]) -> list[str]:
    code = PROBE.format(modules=modules, heavy=HEAVY)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


CORE_MODULES = [
    "mlsteps",
    "mlsteps.cli",
    "mlsteps.spec",
    "mlsteps.runner",
    "mlsteps.lineage",
    "mlsteps.data",
    "mlsteps.backends.mlflow",
    "mlsteps.cli_deploy",
    "mlsteps.deploy.base",
    "mlsteps.deploy.local",
    "mlsteps.deploy.kubernetes",
    "mlsteps.deploy.kserve",
    "mlsteps.deploy.manifests",
    "mlsteps.steps.deploy",
    # The pods' init container: it imports MLflow only once it downloads.
    "mlsteps.verify_model",
]


def test_core_import_is_light() -> None:
    assert heavy_after_import(sys.executable, CORE_MODULES) == []


def test_loading_every_builtin_step_class_is_light() -> None:
    code = "from mlsteps.registry import BUILTIN_STEPS, get_step\n[get_step(n) for n in BUILTIN_STEPS]"
    probe = PROBE.format(modules=["mlsteps"], heavy=HEAVY).replace("print(", code + "\nprint(")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_parsing_a_spec_is_light(tmp_path: Path) -> None:
    spec = ROOT / "examples" / "penguins" / "pipeline.yaml"
    code = f"from mlsteps.spec import load_spec\nload_spec({str(spec)!r})"
    probe = PROBE.format(modules=["mlsteps"], heavy=HEAVY).replace("print(", code + "\nprint(")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("adapter", ["airflow", "dagster", "prefect"])
def test_adapter_import_is_light(adapter: str) -> None:
    python = ROOT / ".venvs" / adapter / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{python} is missing: `make test` creates it (make env-{adapter})")
        pytest.skip(f"{python} not created yet; run `make env-{adapter}`")
    assert heavy_after_import(str(python), ["mlsteps", f"mlsteps_{adapter}"]) == []
