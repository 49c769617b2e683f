"""Airflow's own CLI in subprocesses: provider discovery, example DAG parsing, light imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import BIN, subprocess_env, write_spec

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("mlflow", "feast", "great_expectations", "sklearn", "kubernetes", "pandas")


def _run(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _json_tail(stdout: str) -> Any:
    """The JSON document Airflow printed on one line (it may log warnings before it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise AssertionError(f"no JSON line in the output:\n{stdout}")


def test_airflow_lists_the_provider_and_its_connection_type() -> None:
    env = subprocess_env()
    providers = _json_tail(_run([str(BIN / "airflow"), "providers", "list", "-o", "json"], env))
    ours = [p for p in providers if p["package_name"] == "mlsteps-airflow"]
    assert len(ours) == 1
    from mlsteps_airflow import __version__

    assert ours[0]["version"] == __version__
    hooks = _json_tail(_run([str(BIN / "airflow"), "providers", "hooks", "-o", "json"], env))
    mlflow = [h for h in hooks if h["connection_type"] == "mlflow"]
    assert mlflow, hooks
    assert mlflow[0]["class"] == "mlsteps_airflow.hooks.mlflow.MlflowHook"
    assert mlflow[0]["package_name"] == "mlsteps-airflow"
    assert mlflow[0]["hook_name"] == "MLflow (mlsteps)"


def test_building_a_dag_from_a_spec_is_light(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: light
        steps:
          source: {uses: toy_source, config: {count: 3}}
          total: {uses: toy_sum, inputs: {dataset: source.dataset}}
        """,
    )
    code = (
        "import json, sys\n"
        "import mlsteps_airflow\n"
        "from mlsteps_airflow.dag import build_dag\n"
        f"dag = build_dag({str(spec)!r})\n"
        "assert sorted(dag.task_ids) == ['source', 'total'], dag.task_ids\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = _run([sys.executable, "-c", code], subprocess_env())
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_importing_the_package_does_not_import_airflow() -> None:
    code = "import sys, mlsteps_airflow\nprint('airflow' in sys.modules)"
    out = _run([sys.executable, "-c", code], subprocess_env())
    assert out.strip().splitlines()[-1] == "False"


@pytest.mark.slow
def test_example_dag_has_no_import_errors(tmp_path: Path, airflow_db: Path) -> None:
    """The example file parses into the training DAG and the monitor DAG, wired into a retraining loop."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("airflow_dag.py", "pipeline.yaml", "monitor.yaml"):
        shutil.copy(ROOT / "examples" / "penguins" / name, dags / name)
    env = subprocess_env() | {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag({str(dags)!r})\n"
        "def uris(assets): return sorted(getattr(a, 'uri', None) or f'alias:{a.name}' for a in assets)\n"
        "print(json.dumps({d.dag_id: {\n"
        "    'tasks': sorted(d.task_ids),\n"
        "    'schedule': d.schedule if isinstance(d.schedule, str) or d.schedule is None else uris(d.schedule),\n"
        "    'outlets': {t.task_id: uris(t.outlets) for t in d.tasks if t.outlets},\n"
        "} for d in bag.dags.values()}))\n"
    )
    parsed = json.loads(_run([sys.executable, "-c", code], env).strip().splitlines()[-1])
    assert sorted(parsed) == ["penguins", "penguins_monitor"]
    training, monitor = parsed["penguins"], parsed["penguins_monitor"]
    assert training["tasks"] == ["deploy", "evaluate", "featurise", "register", "train", "validate"]
    # The loop as documented: training runs on the drift asset the monitor's alias resolves to.
    assert training["schedule"] == ["x-mlsteps://drift/penguins"]
    assert training["outlets"] == {"register": ["x-mlsteps://models/penguins"]}
    assert monitor["tasks"] == ["monitor"]
    assert monitor["schedule"] == "@daily"
    assert monitor["outlets"] == {"monitor": ["alias:mlsteps.drift-alias.penguins"]}
    errors = _json_tail(
        _run([str(BIN / "airflow"), "dags", "list-import-errors", "--local", "-o", "json"], env)
    )
    assert errors == []
    assert os.environ["AIRFLOW__CORE__DAGS_FOLDER"] != str(dags)  # our session's folder untouched
