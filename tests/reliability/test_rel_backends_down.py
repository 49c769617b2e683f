"""Backends down, table-driven: a clear error naming the backend and what to do, quickly, nothing kept.

Each case points a small pipeline on the penguins example at a backend that is not
there: an MLflow tracking or registry server on a closed port, PostgreSQL refusing
the connection (a closed port, a database that does not exist), Redis down while
``featurise`` materialises, a Feast registry that is missing (a file never applied, a
SQL registry on a closed port). For each, through a real ``mlsteps run``:

- exit code 1 (a step failed), the failing step is the first one that needs the
  backend, its error is a ``BackendError`` naming the backend and its address (never
  a password) and saying what to do;
- bounded time: the step fails after a few quick connection attempts instead of
  MLflow's minutes of retries (MLflow's own retries are also turned down through
  ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``MLFLOW_HTTP_REQUEST_TIMEOUT`` where a case
  says so, and every test has a pytest timeout, so none can hang);
- nothing partial: the failing step's lineage record says ``failed``, no step after it
  ran, no run-cache entry comes from it, it wrote no output, no embedded MLflow
  database was created, and a missing Feast registry is not created empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _rel_pipeline import (
    build_penguins,
    check_failed_run_left_nothing,
    closed_port,
    copy_feature_repo,
    run_pipeline,
    write_spec,
)

from mlsteps.testing import drop_feast_keys

TRAIN_PIPELINE = ("validate", "train", "evaluate", "register")
FEATURISE_PIPELINE = ("validate", "featurise")
#: Planted in URIs: it must not appear in any message, record or file the run writes.
PASSWORD = "planted-Pa55word"
#: MLflow's own HTTP retries turned down (its default is minutes of backoff).
FAST_MLFLOW = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@dataclass(frozen=True)
class BackendCase:
    """A backend that is down: the spec's settings ({port} is a closed port) and words of the error."""

    id: str
    pipeline: tuple[str, ...]
    fails_at: str
    says: tuple[str, ...]
    mlflow: dict[str, Any] | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Replaces `registry:` in the Feast repo's feature_store.yaml.
    feast_registry: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Needs the PostgreSQL server of the integration tests up.
    needs_postgres: bool = False


def fill(value: Any, port: int) -> Any:
    """``value`` with every ``{port}`` replaced (through JSON, so nested configs work too)."""
    return json.loads(json.dumps(value).replace("{port}", str(port)))


CASES = [
    BackendCase(
        "mlflow-server-refused",
        TRAIN_PIPELINE,
        "train",
        (
            "mlflow error: the MLflow tracking server at http://127.0.0.1:{port} is unreachable",
            "Connection refused",
            "start the MLflow server",
            "defaults.mlflow.tracking_uri",
        ),
        mlflow={"tracking_uri": "http://127.0.0.1:{port}"},
    ),
    BackendCase(
        "mlflow-server-refused-cli-uri-fast-retries",
        TRAIN_PIPELINE,
        "train",
        ("the MLflow tracking server at http://127.0.0.1:{port}/mlflow is unreachable (1 attempt(s))",),
        args=("--tracking-uri", "http://mlsteps:" + PASSWORD + "@127.0.0.1:{port}/mlflow"),
        env=FAST_MLFLOW,
    ),
    BackendCase(
        "mlflow-registry-refused",
        TRAIN_PIPELINE,
        "train",
        (
            "the MLflow registry server at http://127.0.0.1:{port} is unreachable",
            "defaults.mlflow.registry_uri",
            "MLFLOW_REGISTRY_URI",
        ),
        mlflow={"registry_uri": "http://127.0.0.1:{port}"},
        env=FAST_MLFLOW,
    ),
    BackendCase(
        "postgres-refused",
        TRAIN_PIPELINE,
        "train",
        (
            "cannot connect to the MLflow tracking database "
            "postgresql+psycopg2://mlsteps:***@127.0.0.1:{port}/mlflow (3 attempt(s))",
            "Connection refused",
            "check that the database server is running",
        ),
        mlflow={"tracking_uri": "postgresql+psycopg2://mlsteps:" + PASSWORD + "@127.0.0.1:{port}/mlflow"},
    ),
    BackendCase(
        "postgres-database-missing",
        TRAIN_PIPELINE,
        "train",
        (
            "cannot connect to the MLflow tracking database "
            "postgresql+psycopg2://postgres:***@127.0.0.1:5432/mlsteps_rel_no_such_db",
            'database "mlsteps_rel_no_such_db" does not exist',
        ),
        mlflow={
            "tracking_uri": "postgresql+psycopg2://postgres:"
            + PASSWORD
            + "@127.0.0.1:5432/mlsteps_rel_no_such_db"
        },
        needs_postgres=True,
    ),
    BackendCase(
        "redis-down-while-materialising",
        FEATURISE_PIPELINE,
        "featurise",
        (
            "feast error: materializing: ConnectionError",
            "127.0.0.1:{port}. Connection refused",
            "hint: the Feast redis online store at 127.0.0.1:{port} is unreachable",
            "featurise.config.online_store",
        ),
        overrides={
            "featurise": {
                "materialize": True,
                "online_store": {
                    "type": "redis",
                    "connection_string": "127.0.0.1:{port},db=0",
                },
            }
        },
    ),
    BackendCase(
        "feast-registry-missing",
        FEATURISE_PIPELINE,
        "featurise",
        (
            "feast error: looking up the feature service: FeatureServiceNotFoundException",
            "penguin_features does not exist in project penguins",
            "hint: the Feast registry",
            "/data/feast/registry.db did not exist and featurise.config.apply is false",
            "run `feast apply` in",
        ),
        overrides={"featurise": {"apply": False}},
    ),
    BackendCase(
        "feast-sql-registry-refused",
        FEATURISE_PIPELINE,
        "featurise",
        (
            "feast error: applying",
            "Connection refused",
            "hint: the Feast sql registry at postgresql+psycopg2://feast:***@127.0.0.1:{port}/feast is unreachable",
        ),
        feast_registry="{registry_type: sql, path: 'postgresql+psycopg2://feast:"
        + PASSWORD
        + "@127.0.0.1:{port}/feast'}",
    ),
]


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_penguins(tmp_path_factory.mktemp("penguins"))


def test_the_table_covers_the_issue() -> None:
    ids = " ".join(c.id for c in CASES)
    for backend in ("mlflow-server", "postgres", "redis", "feast-registry-missing"):
        assert backend in ids


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=[pytest.mark.integration] if c.needs_postgres else []) for c in CASES],
    ids=[c.id for c in CASES],
)
def test_backend_down_fails_fast_with_a_clear_error_and_no_partial_state(
    case: BackendCase, tmp_path: Path, penguins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    port = closed_port()
    data = "data/penguins.parquet"
    if "featurise" in case.pipeline:
        repo = copy_feature_repo(tmp_path, penguins)
        if case.feast_registry is not None:
            yaml_path = repo / "feature_store.yaml"
            text = yaml_path.read_text().replace(
                "registry: ../data/feast/registry.db", "registry: " + fill(case.feast_registry, port)
            )
            assert text != yaml_path.read_text()
            yaml_path.write_text(text)
    else:
        (tmp_path / "data").mkdir()
        pd.read_parquet(penguins).to_parquet(tmp_path / data, index=False)
    spec = write_spec(
        tmp_path,
        data=data,
        steps=case.pipeline,
        overrides=fill(case.overrides, port),
        mlflow=fill(case.mlflow, port) if case.mlflow else None,
    )
    root = tmp_path / "art"

    run = run_pipeline(spec, *fill(list(case.args), port))

    assert run.exit_code == 1, run.output
    failing = run.step(case.fails_at)
    assert failing["status"] == "failed"
    message = str(failing["error"])
    for words in case.says:
        assert fill(words, port) in message, message
    before = case.pipeline[: case.pipeline.index(case.fails_at)]
    assert [run.step(s)["status"] for s in before] == ["succeeded"] * len(before)
    error = check_failed_run_left_nothing(
        root, run, failed=case.fails_at, status="failed", error_type="BackendError"
    )
    assert message in error

    # No embedded MLflow store was made on the side, and no Feast registry was created empty.
    assert not (root / "mlflow.db").exists()
    if case.id == "feast-registry-missing":
        assert not (tmp_path / "data" / "feast" / "registry.db").exists()
    # The planted password is nowhere: not in the output, not in any file the run wrote.
    assert PASSWORD not in run.output
    for path in root.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def keys(client: Any) -> set[bytes]:
    """The keys of the client's Redis database."""
    return {bytes(k) for k in client.keys("*")}


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_featurise_recovers_once_redis_is_back(tmp_path: Path, penguins: Path) -> None:
    """Redis down fails the step; pointed at a Redis that is up, the same repo materialises."""
    import redis

    repo = copy_feature_repo(tmp_path, penguins)
    db = 10  # a database of its own (the Dagster secrets scan, in the other CI stream, uses 13)
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    drop_feast_keys(client, "penguins")  # an interrupted earlier run's keys would hide this run's
    before = keys(client)
    online: dict[str, Any] = {"type": "redis", "connection_string": f"127.0.0.1:{closed_port()},db={db}"}
    spec = write_spec(
        tmp_path,
        data="data/penguins.parquet",
        steps=FEATURISE_PIPELINE,
        overrides={"featurise": {"materialize": True, "online_store": online}},
    )
    try:
        down = run_pipeline(spec)
        assert down.exit_code == 1 and down.step("featurise")["status"] == "failed"
        assert not keys(client) - before

        online["connection_string"] = f"127.0.0.1:6379,db={db}"
        spec = write_spec(
            tmp_path,
            data="data/penguins.parquet",
            steps=FEATURISE_PIPELINE,
            overrides={"featurise": {"materialize": True, "online_store": online}},
        )
        up = run_pipeline(spec)
        assert up.exit_code == 0, up.output
        assert up.step("featurise")["metrics"]["rows"] == 344
        assert keys(client) - before, "nothing was materialised into Redis"
        assert (repo.parent / "data" / "feast" / "registry.db").is_file()
    finally:
        added = keys(client) - before
        if added:
            client.delete(*added)
