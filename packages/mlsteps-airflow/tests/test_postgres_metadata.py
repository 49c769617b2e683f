"""The DAG builder against a PostgreSQL metadata DB (the production setup), not only SQLite.

Airflow reads its database settings when it is first imported, and this test
session's Airflow is already configured for SQLite, so the PostgreSQL run happens
in fresh processes: ``airflow db migrate`` on a new database, then ``dag.test()``
of a DAG file built with ``build_dag``. The results are read back from PostgreSQL
directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from airflow_testing import PG, subprocess_env, write_spec

BIN = Path(sys.executable).parent

SPEC = """\
name: toy_pg
defaults:
  artifact_root: art
steps:
  source:
    uses: toy_source
    config: {count: 10}
  total:
    uses: toy_sum
    config: {min_sum: 40}
    inputs: {dataset: source.dataset}
"""


@pytest.mark.integration
def test_build_dag_runs_on_a_postgresql_metadata_db(tmp_path: Path, database: str) -> None:
    import psycopg2

    spec = write_spec(tmp_path, SPEC)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "toy_pg.py").write_text(
        textwrap.dedent(
            f"""
            from mlsteps_airflow.dag import build_dag

            dag = build_dag({str(spec)!r})
            """
        )
    )
    env = subprocess_env()
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        }
    )
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    script = textwrap.dedent(
        """
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("toy_pg", sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run = module.dag.test()
        print("RESULT " + json.dumps({"run_id": run.run_id, "state": str(run.state)}))
        """
    )
    test = subprocess.run(
        [sys.executable, "-c", script, str(dags / "toy_pg.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    (line,) = [ln for ln in test.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["state"] == "success"

    with psycopg2.connect(dbname=database, **PG) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY task_id",
            ("toy_pg", result["run_id"]),
        )
        assert cur.fetchall() == [("source", "success"), ("total", "success")]
        cur.execute(
            "SELECT value FROM xcom WHERE dag_id = %s AND task_id = 'total' AND key = 'return_value'",
            ("toy_pg",),
        )
        (value,) = cur.fetchone()
    payload = value if isinstance(value, dict) else json.loads(value)
    assert payload["metrics"]["sum"] == 45.0
    assert os.path.isdir(tmp_path / "art" / "lineage" / result["run_id"])
