"""SIGKILL ``featurise`` with materialisation at seeded random points, then retry with the same run key.

An inline Feast repo (SQLite online store under the artifact root) over a small
parquet source; each seed's run key is killed after seeded delays in [0, the
step's measured duration) (applying the repo, retrieving, writing the training
set, materialising), then retried to the end. The retried attempt must produce
the byte-identical training set the uninterrupted run produced, the online store
must hold the latest values, and lineage one succeeded record per run key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _rel_support import ForkServer, check_lineage, kill_delays, result_of, run_chain

KILLS_PER_SEED = 5
MIN_KILLS = 20
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def feature_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Feature values (entity 1: 10 then 99, entity 2: 7) and entity rows, as parquet."""
    import pandas as pd

    from mlsteps.data import describe_dataset
    from mlsteps.refs import dump_ref

    base = tmp_path_factory.mktemp("featurise-crash")
    (base / "data").mkdir()
    pd.DataFrame(
        {
            "entity_id": pd.Series([1, 1, 2], dtype="int64"),
            "value": [10.0, 99.0, 7.0],
            "event_timestamp": pd.to_datetime(
                [NOW - timedelta(hours=5), NOW - timedelta(hours=1), NOW - timedelta(hours=4)], utc=True
            ),
        }
    ).to_parquet(base / "data" / "values.parquet", index=False)
    entities = base / "entities.parquet"
    pd.DataFrame(
        {
            "entity_id": pd.Series([1, 2, 1], dtype="int64"),
            "event_timestamp": pd.to_datetime(
                [NOW - timedelta(hours=3), NOW - timedelta(hours=3), NOW], utc=True
            ),
            "label": ["a", "b", "c"],
        }
    ).to_parquet(entities, index=False)
    return {"base": base, "root": base / "art", "dataset": dump_ref(describe_dataset(str(entities)))}


CONFIG: dict[str, Any] = {
    "inline": {
        "project": "crash",
        "entities": [{"name": "thing", "join_keys": ["entity_id"]}],
        "sources": [{"name": "values_source", "path": "data/values.parquet"}],
        "feature_views": [
            {
                "name": "values",
                "entities": ["thing"],
                "source": "values_source",
                "schema": {"value": "float64"},
            }
        ],
    },
    "features": ["values:value"],
    "entity_columns": ["entity_id"],
    "label_columns": ["label"],
    "materialize": True,
}


@pytest.mark.slow
def test_sigkill_featurise_with_materialization_then_retry(
    forkserver: ForkServer, feature_data: dict[str, Any], tmp_path: Path
) -> None:
    root: Path = feature_data["root"]

    def kwargs(run_id: str) -> dict[str, Any]:
        return {
            "step_type": "featurise",
            "step_id": "featurise",
            "root": str(root),
            "base_dir": str(feature_data["base"]),
            "run_id": run_id,
            "config": CONFIG,
            "inputs": {"dataset": feature_data["dataset"]},
        }

    def online() -> list[Any]:
        out = tmp_path / "online.json"
        pid = forkserver.start(
            "_rel_tasks:online_values",
            {
                "repo": str(root / "feast" / "crash"),
                "feature": "values:value",
                "entity_ids": [1, 2, 3],
                "result": str(out),
            },
            tmp_path / "online.log",
        )
        assert forkserver.wait(pid) == 0, (tmp_path / "online.log").read_text()
        values: list[Any] = json.loads(out.read_text())
        return values

    calibration = run_chain(forkserver, seed=-1, kwargs=kwargs("feat-calib"), delays=[], workdir=tmp_path)
    duration = calibration.attempts[0].elapsed_s
    expected = result_of(tmp_path, calibration)["outputs"]["dataset"]
    assert online() == [99.0, 7.0, None]

    kills = 0
    for seed in range(10):
        chain = run_chain(
            forkserver,
            seed=seed,
            kwargs=kwargs(f"feat-{seed}"),
            delays=kill_delays(seed, KILLS_PER_SEED, duration),
            workdir=tmp_path,
        )
        kills += chain.kills
        got = result_of(tmp_path, chain)["outputs"]["dataset"]
        assert got["content_hash"] == expected["content_hash"]
        assert got["rows"] == 3
        assert Path(got["uri"]).is_file()
        check_lineage(root, chain, step="featurise")
        if kills >= MIN_KILLS and seed >= 3:
            break

    assert kills >= MIN_KILLS
    assert online() == [99.0, 7.0, None]
    print(f"featurise: {kills} kills over {seed + 1} run keys, every retry survived")


@pytest.mark.slow
def test_a_registry_torn_by_a_crash_mid_write_is_rebuilt(
    forkserver: ForkServer, feature_data: dict[str, Any], tmp_path: Path
) -> None:
    """Feast writes ``registry.db`` in place: a kill mid-write leaves a prefix of it, which used to
    fail every later run with a DecodeError. The retry now sets it aside and re-applies."""
    root: Path = feature_data["root"]
    registry = root / "feast" / "crash" / "registry.db"
    base = {
        "step_type": "featurise",
        "step_id": "featurise",
        "root": str(root),
        "base_dir": str(feature_data["base"]),
        "config": CONFIG,
        "inputs": {"dataset": feature_data["dataset"]},
    }
    run_chain(forkserver, seed=-1, kwargs={**base, "run_id": "torn-setup"}, delays=[], workdir=tmp_path)
    whole = registry.read_bytes()
    for fraction in (0.2, 0.5, 0.8):
        registry.write_bytes(whole[: int(len(whole) * fraction)])  # what the killed write left
        chain = run_chain(
            forkserver, seed=-1, kwargs={**base, "run_id": f"torn-{fraction}"}, delays=[], workdir=tmp_path
        )
        assert result_of(tmp_path, chain)["outputs"]["dataset"]["rows"] == 3
        assert registry.stat().st_size > 0
    assert len(list(registry.parent.glob("registry.db.torn-*"))) >= 1


@pytest.mark.slow
def test_a_view_left_materializing_by_a_killed_run_is_released(
    forkserver: ForkServer, feature_data: dict[str, Any], tmp_path: Path
) -> None:
    """Feast marks a view MATERIALIZING while it loads the online store and refuses to serve it
    meanwhile; a kill mid-materialisation left the mark forever and failed every later run."""
    root: Path = feature_data["root"]
    base = {
        "step_type": "featurise",
        "step_id": "featurise",
        "root": str(root),
        "base_dir": str(feature_data["base"]),
        "config": CONFIG,
        "inputs": {"dataset": feature_data["dataset"]},
    }
    run_chain(forkserver, seed=-1, kwargs={**base, "run_id": "stuck-setup"}, delays=[], workdir=tmp_path)
    pid = forkserver.start(
        "_rel_tasks:mark_materializing",
        {"repo": str(root / "feast" / "crash"), "view": "values"},
        tmp_path / "mark.log",
    )
    assert forkserver.wait(pid) == 0, (tmp_path / "mark.log").read_text()
    chain = run_chain(
        forkserver, seed=-1, kwargs={**base, "run_id": "stuck-retry"}, delays=[], workdir=tmp_path
    )
    assert result_of(tmp_path, chain)["outputs"]["dataset"]["rows"] == 3
    assert "left MATERIALIZING by an interrupted run" in (tmp_path / "stuck-retry-1.log").read_text()
