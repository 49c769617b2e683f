"""Helpers for the Airflow adapter's tests: run results, XComs, lineage, subprocess environment.

Imports Airflow only inside functions: ``conftest.py`` must set AIRFLOW_HOME first.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
#: The PostgreSQL server the suite uses (trust auth; ``scripts/ensure-services.sh`` starts it).
PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def subprocess_env() -> dict[str, str]:
    """The environment for Airflow CLI subprocesses: this session's AIRFLOW_HOME and plugins."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def task_states(dag_run: Any) -> dict[str, str | None]:
    """Task id -> final state (a str enum, equal to e.g. ``"success"``) of a ``dag.test()`` run."""
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
    """(task id, key) -> value of every XCom of one DAG run, read from the metadata DB."""
    from airflow import settings
    from airflow.models.xcom import XComModel

    assert settings.Session is not None, "Airflow ORM is not configured"
    session = settings.Session()
    try:
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id)).all()
        return {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
    finally:
        session.close()


def asset_events(uri: str) -> list[dict[str, Any]]:
    """The events recorded on the asset with ``uri``, oldest first."""
    from airflow import settings
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    assert settings.Session is not None, "Airflow ORM is not configured"
    with settings.Session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
        return [
            {"source_dag_id": e.source_dag_id, "source_task_id": e.source_task_id, "extra": dict(e.extra)}
            for e in rows
        ]


def unpause(dag_id: str) -> None:
    """Unpause a DAG (new DAGs start paused, and paused DAGs are not queued by asset events)."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    assert settings.Session is not None, "Airflow ORM is not configured"
    with settings.Session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))
        session.commit()


def queued_asset_runs() -> list[str]:
    """DAG ids with a run queued by an asset event (what the scheduler turns into DAG runs)."""
    from airflow import settings
    from airflow.models.asset import AssetDagRunQueue
    from sqlalchemy import select

    assert settings.Session is not None, "Airflow ORM is not configured"
    with settings.Session() as session:
        return sorted(set(session.scalars(select(AssetDagRunQueue.target_dag_id)).all()))


def lineage_records(artifact_root: Path, run_id: str) -> list[Any]:
    """The lineage records of one run under an artifact root, oldest first."""
    from mlsteps.lineage import LineageRecorder
    from mlsteps.storage import ArtifactStore

    return LineageRecorder(ArtifactStore(str(artifact_root))).records(run_id)


def write_spec(directory: Path, body: str) -> Path:
    path = directory / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    return path
