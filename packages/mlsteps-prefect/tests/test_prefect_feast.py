"""The FeastSettings block wired into the featurise step, with the penguins example's real Feast repo.

The block only translates into the step's own config (``repo_path``,
``online_store``); Feast applies, retrieves and materialises as always. The
connection string is a secret: it must reach Feast but never lineage.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect_helpers import lineage, state_names
from pydantic import SecretStr

from mlsteps.errors import ConfigError
from mlsteps.hashing import hash_file
from mlsteps.refs import DatasetRef, parse_ref
from mlsteps.testing import drop_feast_keys
from mlsteps_prefect import FeastSettings, build_flow, featurise_task

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "penguins"
FEATURISE = {
    "repo_path": "feature_repo",
    "feature_service": "penguin_features",
    "entity_columns": ["penguin_id"],
    "event_timestamp_column": "event_timestamp",
    "label_columns": ["species"],
    "materialize": True,
}
SPEC = """\
name: feast_block
defaults: {artifact_root: .mlsteps}
steps:
  validate:
    config:
      data: data/penguins.parquet
      expectations: [{type: column_exists, column: species}]
  featurise:
    config: CONFIG
    inputs: {dataset: validate.dataset}
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The penguins example with its data prepared, copied once per module."""
    example = tmp_path_factory.mktemp("feast") / "penguins"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    subprocess.run([sys.executable, str(example / "prepare_data.py")], check=True, timeout=300, cwd=example)
    return example


@pytest.fixture
def example(prepared: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "penguins"
    shutil.copytree(prepared, copy)
    return copy


def online_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sum(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)


def test_build_flow_applies_the_feast_block_to_featurise(example: Path) -> None:
    import json

    override = example / "elsewhere" / "online.db"
    override.parent.mkdir()
    FeastSettings(online_store={"type": "sqlite", "path": str(override)}).save("feast-sqlite", overwrite=True)
    spec = example / "feast_block.yaml"
    spec.write_text(SPEC.replace("CONFIG", json.dumps(FEATURISE)))

    state = build_flow(spec)(feast_block="feast-sqlite", return_state=True)

    assert state.is_completed(), state.message
    assert state_names(state) == {"validate": "Completed", "featurise": "Completed"}
    training = parse_ref(state.result()["featurise"]["dataset"])
    assert isinstance(training, DatasetRef)
    assert training.rows == 344
    # Feast materialised into the block's store, not the one in feature_store.yaml
    assert online_rows(override) > 0
    assert not (example / "data" / "feast" / "online_store.db").exists()
    (record,) = [r for r in lineage(example / ".mlsteps", state) if r.run_key.step == "featurise"]
    assert record.config["online_store"] == {"type": "sqlite", "path": str(override)}
    assert record.config["repo_path"] == "feature_repo"


def test_feast_settings_translate_into_the_featurise_config() -> None:
    block = FeastSettings(repo_path="repo2", online_store={"type": "redis"})
    assert block.featurise_config({"repo_path": "repo", "features": ["v:f"]}) == {
        "repo_path": "repo2",
        "features": ["v:f"],
        "online_store": {"type": "redis"},
    }
    inline = {"inline": {"project": "p", "online_store": {"type": "sqlite"}}}
    assert FeastSettings(online_store={"type": "redis"}).featurise_config(inline) == {
        "inline": {"project": "p", "online_store": {"type": "redis"}}
    }
    with pytest.raises(ConfigError, match="inline repo"):
        block.featurise_config(inline)
    with pytest.raises(ConfigError, match="needs the online store's `type`"):
        FeastSettings(online_store_connection_string=SecretStr("h:6379")).featurise_config({})


def test_a_feast_block_on_another_step_is_a_config_error(tmp_path: Path) -> None:
    from mlsteps_prefect import train_task

    @flow
    def wrong() -> None:
        train_task(config={"target": "y"}, feast=FeastSettings(repo_path="r"), artifact_root=str(tmp_path))

    state = wrong(return_state=True)

    assert state.is_failed()
    with pytest.raises(ConfigError, match="takes no Feast settings"):
        state.result()


@pytest.mark.integration
def test_the_connection_string_reaches_redis_but_not_lineage(example: Path) -> None:
    import redis

    db = 9  # a database of its own (the Dagster Feast test uses 14); only the keys this test adds are deleted
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(
            "Redis is not reachable on 127.0.0.1:6379: start it with `bash scripts/ensure-services.sh`"
        )
    drop_feast_keys(client, "penguins")  # an interrupted earlier run's keys would hide this run's
    before = set(client.keys("*"))
    secret = f"127.0.0.1:6379,db={db}"
    name = f"feast-redis-{uuid.uuid4().hex[:6]}"
    FeastSettings(online_store={"type": "redis"}, online_store_connection_string=SecretStr(secret)).save(name)
    data = example / "data" / "penguins.parquet"
    dataset = DatasetRef(uri=str(data), content_hash=hash_file(data), rows=344)

    @flow(name="feast-redis")
    def featurise() -> dict[str, Any]:
        return featurise_task(
            config=FEATURISE, inputs={"dataset": dataset}, feast=name, base_dir=str(example)
        )

    try:
        state = featurise(return_state=True)

        assert state.is_completed(), state.message
        assert set(client.keys("*")) - before, "nothing was materialised into Redis"
        assert not (example / "data" / "feast" / "online_store.db").exists()
        (record,) = lineage(example / ".mlsteps", state)
        # Lineage records the reference the step filled from the run's secrets, never the value.
        assert record.config["online_store"] == {
            "type": "redis",
            "connection_string": "${feast_online_store}",
        }
        leaked = [
            p for p in (example / ".mlsteps").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
        ]
        assert leaked == []
    finally:
        added = set(client.keys("*")) - before
        if added:
            client.delete(*added)
