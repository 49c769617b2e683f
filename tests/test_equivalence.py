"""The same spec on the same data through the local runner, Airflow, Dagster and Prefect.

mlsteps promises that a pipeline runs the same on any orchestrator. This test
runs the penguins example (validate -> featurise -> train -> evaluate -> register)
once per runner, each in the runner's own environment and in its own copy of
the example (so each has its own artifact root and embedded MLflow registry),
using each orchestrator's own entry point:

* local: ``mlsteps run``
* Airflow: ``airflow dags test penguins`` on a migrated metadata DB, the example's DAG
  file (which also holds the ``penguins_monitor`` DAG)
* Dagster: ``dagster asset materialize --select 'group:penguins'`` on the example's
  definitions (the training pipeline's assets; the file also holds the monitor's)
* Prefect: ``python prefect_flow.py`` (Prefect starts its own temporary server)

and then compares what they recorded: the same steps with the same config hashes,
input hashes and output hashes, the same validation verdict, the same training
and evaluation metrics, and exactly one registered version each. A difference is
a bug in an adapter. The example's ``deploy`` step is left out: it starts a
server, which the comparison does not need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsteps.lineage import LineageRecord, LineageRecorder
from mlsteps.storage import ArtifactStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "penguins"
CORE_BIN = Path(sys.executable).parent
ENVS = {
    "airflow": ROOT / ".venvs" / "airflow",
    "dagster": ROOT / ".venvs" / "dagster",
    "prefect": ROOT / ".venvs" / "prefect",
}
LIFECYCLE = ["validate", "featurise", "train", "evaluate", "register"]
TIMEOUT = 900


def _copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    spec = yaml.safe_load((dest / "pipeline.yaml").read_text())
    spec["steps"] = {k: v for k, v in spec["steps"].items() if k in LIFECYCLE}
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PREFECT", "DAGSTER", "MLFLOW"))
    }
    env.update({"HOME": str(home), "NO_COLOR": "1", **extra})
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}); log tail:\n{log.read_text()[-4000:]}"
        )


def run_local(work: Path) -> None:
    _run(
        [str(CORE_BIN / "mlsteps"), "run", "pipeline.yaml", "--no-cache"],
        work,
        _env(work / "home"),
        work / "log",
    )


def run_airflow(work: Path) -> None:
    bin_ = ENVS["airflow"] / "bin"
    # The example directory is the DAGs folder: Airflow only parses files that
    # mention both "airflow" and "dag", i.e. airflow_dag.py.
    env = _env(
        work / "home",
        PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}",
        AIRFLOW_HOME=str(work / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(work),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    _run([str(bin_ / "airflow"), "db", "migrate"], work, env, work / "log")
    _run([str(bin_ / "airflow"), "dags", "test", "penguins"], work, env, work / "log")


def run_dagster(work: Path) -> None:
    bin_ = ENVS["dagster"] / "bin"
    env = _env(
        work / "home", DAGSTER_HOME=str(work / "dagster"), PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}"
    )
    (work / "dagster").mkdir()
    _run(
        [
            str(bin_ / "dagster"),
            "asset",
            "materialize",
            "-f",
            "dagster_defs.py",
            "--select",
            "group:penguins",
        ],
        work,
        env,
        work / "log",
    )


def run_prefect(work: Path) -> None:
    bin_ = ENVS["prefect"] / "bin"
    env = _env(
        work / "home",
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(work / "prefect" / "results"),
        # The temporary server's 20 s default is tight on a busy 2-CPU machine.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}",
    )
    _run([str(bin_ / "python"), "prefect_flow.py"], work, env, work / "log")


RUNNERS = {"local": run_local, "airflow": run_airflow, "dagster": run_dagster, "prefect": run_prefect}


def records(work: Path) -> dict[str, LineageRecord]:
    recorder = LineageRecorder(ArtifactStore(str(work / ".mlsteps")))
    runs = recorder.runs()
    assert len(runs) == 1, f"{work.name}: expected one run, found {runs}"
    recs = recorder.records(runs[0])
    by_step = {r.run_key.step: r for r in recs}
    assert len(by_step) == len(recs), (
        f"{work.name}: several records for one step: {[r.run_key.step for r in recs]}"
    )
    return by_step


def registered_versions(work: Path) -> list[str]:
    from mlflow import MlflowClient

    db = f"sqlite:///{work / '.mlsteps' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    return sorted(str(v.version) for v in client.search_model_versions("name='penguins'"))


def shape(rec: LineageRecord) -> dict[str, Any]:
    """What must be identical across runners for one step."""
    return {
        "status": rec.status,
        "step_type": rec.step_type,
        "config_hash": rec.config_hash,
        "inputs": {name: link.fingerprint for name, link in sorted(rec.inputs.items())},
        "outputs": {name: link.fingerprint for name, link in sorted(rec.outputs.items())},
    }


@pytest.mark.slow
def test_the_same_spec_runs_the_same_on_every_orchestrator(tmp_path: Path) -> None:
    missing = [name for name, env in ENVS.items() if not (env / "bin" / "python").exists()]
    assert not missing, f"adapter environments missing: {missing} (make envs creates them)"
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare_data.py"), "--out", str(data)], check=True, timeout=300
    )
    works = {}
    for name in RUNNERS:
        work = _copy_example(tmp_path / name)
        shutil.copytree(data, work / "data")
        works[name] = work
    # Two at a time: each runner is mostly one busy process.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(RUNNERS[name], works[name]) for name in RUNNERS}
        errors = {}
        for name, fut in futures.items():
            try:
                fut.result()
            except Exception as exc:
                errors[name] = exc
    assert not errors, "\n\n".join(f"[{k}] {v}" for k, v in errors.items())

    recs = {name: records(work) for name, work in works.items()}
    for name, by_step in recs.items():
        assert sorted(by_step) == sorted(LIFECYCLE), f"{name}: steps {sorted(by_step)}"
        assert {r.run_key.orchestrator for r in by_step.values()} == {name}

    reference = recs["local"]
    for name in ("airflow", "dagster", "prefect"):
        for step in LIFECYCLE:
            assert shape(recs[name][step]) == shape(reference[step]), f"{name} differs from local at {step}"
        assert (
            recs[name]["validate"].outputs["report"].ref["passed"]
            == reference["validate"].outputs["report"].ref["passed"]
        )
        for step in ("validate", "train", "evaluate"):
            assert recs[name][step].metrics == pytest.approx(reference[step].metrics, rel=1e-12), (
                f"{name} {step} metrics"
            )

    for name, work in works.items():
        assert registered_versions(work) == ["1"], f"{name}: registry holds {registered_versions(work)}"
