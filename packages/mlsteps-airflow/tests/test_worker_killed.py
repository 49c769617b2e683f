"""A ``register`` task killed with SIGKILL inside a real Airflow worker, then retried by Airflow.

``dag.test()`` runs tasks in the test process, so all it can show of a lost worker
is an exception. Here the DAG runs with ``dag.test(use_executor=True)`` and the
LocalExecutor: every try of every task runs in a process of its own under the
Task SDK supervisor, which reports to a real Execution API (an ``airflow
api-server`` on a free port, sharing a JWT secret with the executor) on a fresh
PostgreSQL metadata DB (Airflow refuses the LocalExecutor on SQLite). All of it
runs in subprocesses: this session's Airflow is configured for SQLite.

The ``register`` step is ``mlsteps.testing.KilledRegister``: on try 1 it creates
its MLflow version and then kills its own task process with SIGKILL, so it writes
no ``failed`` record and raises nothing. The supervisor must see the process die,
Airflow must mark the try up for retry, and try 2 must find the version instead of
creating a second one.

Slow: every task process imports what its step needs (MLflow, scikit-learn) afresh,
and ``airflow db migrate`` and the API server start take half a minute each.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import PG, lineage_records, subprocess_env, write_spec

BIN = Path(sys.executable).parent
DAG_ID = "killed_worker"
#: Only the Execution API (what task supervisors call), one worker.
API_SERVER = [str(BIN / "airflow"), "api-server", "--apps", "execution", "-H", "127.0.0.1", "-w", "1"]

SPEC = """\
name: killed_worker
defaults: {artifact_root: art}
steps:
  source: {uses: toy_file, config: {path: train.csv}}
  train:
    config: {estimator: sklearn.tree.DecisionTreeClassifier, target: y, seed: 0}
    inputs: {dataset: source.dataset}
  evaluate:
    config: {target: y, thresholds: {accuracy: ">= 0.5"}}
    inputs: {model: train.model, dataset: train.test_data}
  register:
    uses: killed_register
    retries: 1
    config: {name: killed, promote: true}
    inputs: {model: train.model, evaluation: evaluate.report}
"""

# Runs in a fresh process: imports the DAG file and runs it through the executor.
DRIVER = """\
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("killed_worker_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run = module.dag.test(use_executor=True)
tis = {ti.task_id: [str(ti.state), ti.try_number] for ti in run.get_task_instances()}
print("RESULT " + json.dumps({"run_id": run.run_id, "state": str(run.state), "tis": tis}))
"""

# The supervisor's line when a task process ends: its exit code and the state it reports.
WORKLOAD_FINISHED = re.compile(
    r"Workload finished .*?exit_code=(?P<code><[^>]*>|\S+) final_state=(?P<state>\S+)"
    r" .*?workload_id=(?P<id>[0-9a-f-]+)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(tmp_path: Path, database: str, port: int) -> dict[str, str]:
    """Airflow on ``database`` with the LocalExecutor (one worker) and the Execution API on ``port``."""
    env = subprocess_env()
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{database}"
            ),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        }
    )
    return env


def run_group(args: list[str], env: dict[str, str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command in a process group of its own; on a hang, kill the whole group (its workers too)."""
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{args[:3]} did not finish in {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@contextlib.contextmanager
def execution_api(env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    """An ``airflow api-server`` serving only the Execution API on ``port``, until the block ends."""
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [*API_SERVER, "-p", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"airflow api-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer in 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def metadata_rows(database: str, run_id: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(task id, try, state) of the run's task instances, and (ti id, task id, try, state) of earlier tries."""
    import psycopg2

    with psycopg2.connect(dbname=database, **PG) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT task_id, try_number, state FROM task_instance"
            " WHERE dag_id = %s AND run_id = %s ORDER BY task_id",
            (DAG_ID, run_id),
        )
        current = cur.fetchall()
        cur.execute(
            "SELECT task_instance_id::text, task_id, try_number, state FROM task_instance_history"
            " WHERE dag_id = %s AND run_id = %s ORDER BY task_id, try_number",
            (DAG_ID, run_id),
        )
        return current, cur.fetchall()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_a_register_task_killed_in_its_worker_is_retried_by_airflow(tmp_path: Path, database: str) -> None:
    rows = ["x1,x2,y"] + [
        f"{i % 7},{(i * 3) % 5},{'a' if (i % 7) + (i * 3) % 5 > 5 else 'b'}" for i in range(120)
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = write_spec(tmp_path, SPEC)
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_path = dags / f"{DAG_ID}.py"
    # dag.test(use_executor=True) tells the worker to load the DAG from `dag.fileloc`, which
    # for a DAG made by a factory is the factory's module (mlsteps_airflow/dag.py): the
    # worker then finds no DAG and reschedules the task. A scheduler reads the file's
    # path from the metadata DB instead, which is right; here the DAG file sets it.
    dag_path.write_text(
        textwrap.dedent(
            f"""
            from datetime import timedelta
            from mlsteps_airflow.dag import build_dag

            dag = build_dag({str(spec)!r}, default_args={{"retry_delay": timedelta(seconds=0)}})
            dag.fileloc = __file__
            """
        )
    )
    port = free_port()
    env = airflow_env(tmp_path, database, port)

    migrate = run_group([str(BIN / "airflow"), "db", "migrate"], env, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

    with execution_api(env, port, tmp_path / "api-server.log"):
        test = run_group([sys.executable, "-c", DRIVER, str(dag_path)], env, timeout=900)
    output = test.stdout + test.stderr
    assert test.returncode == 0, output[-5000:]
    (line,) = [ln for ln in test.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    run_id = result["run_id"]

    # The DAG run succeeded; register took two tries, every other task one.
    assert result["state"] == "success"
    assert result["tis"] == {
        "source": ["success", 1],
        "train": ["success", 1],
        "evaluate": ["success", 1],
        "register": ["success", 2],
    }
    current, history = metadata_rows(database, run_id)
    assert current == [
        ("evaluate", 1, "success"),
        ("register", 2, "success"),
        ("source", 1, "success"),
        ("train", 1, "success"),
    ]
    # Airflow kept the killed try: register try 1, failed (and retried, above).
    ((killed_ti_id, task_id, try_number, state),) = history
    assert (task_id, try_number, state) == ("register", 1, "failed")

    # The supervisor saw that try's process die of SIGKILL and reported it up for retry;
    # every other task process it ran exited 0.
    finished = {m["id"]: (m["code"], m["state"]) for m in WORKLOAD_FINISHED.finditer(output)}
    assert len(finished) == 5, output[-5000:]
    assert finished.pop(killed_ti_id) == ("<Negsignal.SIGKILL: -9>", "up_for_retry")
    assert sorted(finished.values()) == [("0", "success")] * 4

    # mlsteps lineage: the killed attempt left its `started` marker, try 2 succeeded.
    from mlsteps.lineage import interrupted

    records = [r for r in lineage_records(tmp_path / "art", run_id) if r.run_key.step == "register"]
    assert [(r.run_key.attempt, r.status) for r in records] == [(1, "started"), (2, "succeeded")]
    assert interrupted(records) == [records[0]]
    ref = records[1].outputs["model_version"].ref
    assert ref["version"] == "1"
    assert ref["metadata"]["reused"] is True

    # One version for the run key, aliases on it, tagged by the attempt that completed it.
    from mlflow import MlflowClient

    db = f"sqlite:///{tmp_path / 'art' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    assert [str(v.version) for v in client.search_model_versions("name='killed'")] == ["1"]
    version = client.get_model_version("killed", "1")
    assert sorted(version.aliases) == ["challenger", "champion"]
    assert version.tags["mlsteps.run_key"] == f"airflow/{DAG_ID}/{run_id}/register"
    assert version.tags["mlsteps.attempt"] == "2"
    assert version.tags["mlsteps.lineage_record"] == records[1].record_id
