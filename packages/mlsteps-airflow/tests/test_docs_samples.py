"""Every Python sample of docs/adapters/airflow.md runs: Airflow's own DagBag parses it as a DAG file.

Each ```python block is written into a copy of ``examples/penguins`` (the samples
refer to its ``pipeline.yaml`` and ``monitor.yaml``, relatively or next to the DAG
file) and loaded by ``airflow.dag_processing.dagbag.DagBag`` in a fresh interpreter
of this environment, with a temporary AIRFLOW_HOME: exactly what the DAG processor
does with a file in the DAGs folder. The test then checks what the sample promises
(DAG ids, tasks and their operators, dependencies, schedules, asset outlets) and
validates every config an operator carries against its step's model. No sample runs
a pipeline. A block that cannot run here is marked in the page, on the line just
before its fence, with ``<!-- docs-test: skip (REASON) -->``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlsteps.registry import get_step
from mlsteps.testing import doc_code_blocks

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "adapters" / "airflow.md"
EXAMPLE = ROOT / "examples" / "penguins"
MARKER = "DOCS-SAMPLE-RESULT "

Dags = dict[str, dict[str, Any]]


# Runs in a fresh interpreter: parse one sample file as Airflow's DAG processor does, print the DAGs.
DRIVER = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

def assets(schedule):
    return [] if isinstance(schedule, str) or schedule is None else sorted(a.uri for a in schedule)

def outlet(o):
    return getattr(o, "uri", None) or f"alias:{o.name}"

bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
dags = {}
for dag_id, dag in bag.dags.items():
    tasks = {}
    for t in dag.tasks:
        tasks[t.task_id] = {
            "class": type(t).__name__,
            "upstream": sorted(t.upstream_task_ids),
            "outlets": sorted(outlet(o) for o in t.outlets),
            "inlets": sorted(outlet(o) for o in t.inlets),
            "step": getattr(t, "step", None),
            "config": getattr(t, "config", None),
            "spec_path": str(getattr(t, "spec_path", None) or "") or None,
        }
    dags[dag_id] = {
        "tasks": tasks,
        "schedule": dag.schedule if isinstance(dag.schedule, str) or dag.schedule is None else "assets",
        "scheduled_on": assets(dag.schedule),
        "tags": sorted(dag.tags),
        "fileloc": dag.fileloc,
    }
print("DOCS-SAMPLE-RESULT " + json.dumps({"errors": bag.import_errors, "dags": dags}, default=repr))
"""


def run_sample(body: str, workdir: Path) -> Dags:
    """Write ``body`` as a DAG file into ``workdir`` and return the DAGs DagBag found in it."""
    sample = workdir / "docs_sample_dag.py"
    sample.write_text(body)
    home = workdir.parent / "airflow-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(workdir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(sample)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith(MARKER)]
    result = json.loads(line.removeprefix(MARKER))
    assert result["errors"] == {}, "the sample does not load as a DAG file:\n" + "\n".join(
        result["errors"].values()
    )
    dags: Dags = result["dags"]
    return dags


def check_penguins_dag(dags: Dags) -> None:
    """``dag = build_dag(Path(__file__).parent / "pipeline.yaml")``: one task per step, wired."""
    (dag,) = dags.values()
    assert list(dags) == ["penguins"]
    tasks = dag["tasks"]
    assert {t: v["class"] for t, v in tasks.items()} == {
        "validate": "ValidateOperator",
        "featurise": "FeaturiseOperator",
        "train": "TrainOperator",
        "evaluate": "EvaluateOperator",
        "register": "RegisterOperator",
        "deploy": "DeployOperator",
    }
    assert tasks["train"]["upstream"] == ["featurise"]
    assert tasks["register"]["upstream"] == ["evaluate", "train"]
    assert tasks["register"]["outlets"] == ["x-mlsteps://models/penguins"]
    assert dag["schedule"] is None
    assert dag["tags"] == ["mlsteps"]


def check_hand_composed(dags: Dags) -> None:
    """``daily_check``: a validate operator feeding a generic featurise operator over XCom."""
    assert list(dags) == ["daily_check"]
    tasks = dags["daily_check"]["tasks"]
    assert tasks["validate"]["class"] == "ValidateOperator"
    assert tasks["features"]["class"] == "MlstepsOperator"
    assert tasks["features"]["step"] == "featurise"
    assert tasks["features"]["upstream"] == ["validate"]
    assert dags["daily_check"]["schedule"] == "@daily"
    assert "{{ ds }}" in tasks["validate"]["config"]["data"]  # rendered by Airflow when the task runs


def check_model_asset_consumer(dags: Dags) -> None:
    """A DAG scheduled on ``model_asset("penguins")``, whose task reads its events."""
    assert list(dags) == ["score_with_new_penguins_model"]
    dag = dags["score_with_new_penguins_model"]
    assert dag["scheduled_on"] == ["x-mlsteps://models/penguins"]
    assert list(dag["tasks"]) == ["score"]
    assert dag["tasks"]["score"]["inlets"] == ["x-mlsteps://models/penguins"]


def check_retrain_on_drift(dags: Dags) -> None:
    """Training scheduled on ``drift_asset("penguins")``; the daily monitor's outlet is its drift alias."""
    assert sorted(dags) == ["penguins_monitor", "penguins_retrain"]
    assert dags["penguins_retrain"]["scheduled_on"] == ["x-mlsteps://drift/penguins"]
    assert "register" in dags["penguins_retrain"]["tasks"]
    monitor = dags["penguins_monitor"]
    assert monitor["schedule"] == "@daily"
    assert monitor["tasks"]["monitor"]["class"] == "MonitorOperator"
    (alias,) = monitor["tasks"]["monitor"]["outlets"]
    assert alias.startswith("alias:") and alias.endswith("penguins")


def check_drift_sensor(dags: Dags) -> None:
    """``wait_for_drift=``: a ``DriftSensor`` task before the first step."""
    assert list(dags) == ["penguins_retrain"]
    tasks = dags["penguins_retrain"]["tasks"]
    assert tasks["wait_for_drift"]["class"] == "DriftSensor"
    assert tasks["validate"]["upstream"] == ["wait_for_drift"]
    assert dags["penguins_retrain"]["schedule"] == "@hourly"


def check_alias_sensor(dags: Dags) -> None:
    """A ``ModelAliasSensor`` whose XCom is the deploy operator's ``model_version`` input."""
    (dag,) = dags.values()
    tasks = dag["tasks"]
    assert tasks["wait_for_champion"]["class"] == "ModelAliasSensor"
    assert tasks["deploy"]["class"] == "DeployOperator"
    assert tasks["deploy"]["upstream"] == ["wait_for_champion"]


#: What each sample promises, by block index (the substring makes sure the index still fits).
CHECKS: dict[int, tuple[str, Callable[[Dags], None]]] = {
    0: ('build_dag(Path(__file__).parent / "pipeline.yaml")', check_penguins_dag),
    1: ('DAG("daily_check"', check_hand_composed),
    2: ('schedule=[model_asset("penguins")]', check_model_asset_consumer),
    3: ('schedule=[drift_asset("penguins")]', check_retrain_on_drift),
    4: ("wait_for_drift=", check_drift_sensor),
    5: ("ModelAliasSensor(", check_alias_sensor),
}

SAMPLES = doc_code_blocks(PAGE, "python")


def test_every_sample_has_a_check_and_every_skip_a_reason() -> None:
    assert len(SAMPLES) == len(CHECKS), "a sample was added or removed: give it a check in CHECKS"
    skipped = [reason for _, reason in SAMPLES if reason is not None]
    assert all(skipped), "a `<!-- docs-test: skip (REASON) -->` marker needs a reason"
    markers = [line for line in PAGE.read_text().splitlines() if "docs-test" in line]
    assert len(markers) == len(skipped), (
        f"a docs-test marker is malformed or not just before a python fence: {markers}"
    )
    print(f"{PAGE.name}: {len(SAMPLES) - len(skipped)} samples executed, {len(skipped)} skipped")


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=[f"airflow-{i}" for i in range(len(SAMPLES))])
def test_sample_runs(index: int, tmp_path: Path) -> None:
    body, reason = SAMPLES[index]
    marker, check = CHECKS[index]
    assert marker in body, f"block {index} is no longer the sample its check expects ({marker!r})"
    if reason is not None:
        compile(body, f"{PAGE.name} block {index}", "exec")  # not run here, but it must be valid Python
        pytest.skip(f"docs-test: skip ({reason})")
    workdir = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))

    dags = run_sample(body, workdir)

    check(dags)
    for dag in dags.values():
        assert Path(dag["fileloc"]) == workdir / "docs_sample_dag.py"
        for task_id, task in dag["tasks"].items():
            if task["step"] is None or task["spec_path"] is not None:
                continue  # not an mlsteps operator, or its config comes from a spec build_dag validated
            get_step(task["step"]).parse_config(task["config"], file=f"{PAGE.name}#{index}:{task_id}")
