"""Redis lost in the middle of ``featurise``'s materialisation, at seeded points, then back.

``featurise`` materialises an inline Feast repo into a real Redis (127.0.0.1:6379)
through a :class:`TcpFaultProxy`. A clean run through the proxy counts the bytes
Feast sends Redis (B). Then, for each seed, a fresh Feast project is featurised
with the proxy set to lose Redis after a seeded number of bytes (one in each sixth
of [0, B)): the connection drops mid-pipeline (the commands already sent may run,
their replies are lost) and every reconnection is dropped until Redis is "back".
Each such attempt must:

- fail with a ``BackendError`` naming Feast, the materialisation and the Redis
  address (the proxy's), with the hint that the online store is unreachable;
- leave no corrupted state: the registry parses, no feature view is left
  MATERIALIZING, no materialisation interval is recorded for the failed load,
  no training set is written, lineage says ``failed``;

and the retry of the same run key, once Redis is back, must succeed with the
online store holding exactly the expected features: ``get_online_features``, read
straight from Redis (not through the proxy), returns each entity's latest offline
value, unknown entities get None, and the project has one Redis key per entity.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _rel_support import TcpFaultProxy

REDIS = ("127.0.0.1", 6379)
#: A database of its own (other tests use 13 and 15); each project's keys are deleted at the end.
DB = 11
ENTITIES = 1500
#: Cut points: one seeded point in each of this many equal slices of the conversation.
CUTS = 6
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def proxy() -> Any:
    server = TcpFaultProxy(REDIS)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def feature_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two values per entity (an old one, then the latest) and one entity row per entity, as parquet."""
    import pandas as pd

    from mlsteps.data import describe_dataset

    base = tmp_path_factory.mktemp("redis-lost")
    (base / "data").mkdir()
    rng = random.Random(7)
    ids = list(range(ENTITIES))
    values = pd.DataFrame(
        {
            "entity_id": pd.Series(ids + ids, dtype="int64"),
            "value": [round(rng.uniform(0, 1000), 3) for _ in range(2 * ENTITIES)],
            "event_timestamp": pd.to_datetime(
                [NOW - timedelta(hours=5)] * ENTITIES + [NOW - timedelta(hours=1, seconds=i) for i in ids],
                utc=True,
            ),
        }
    )
    values.to_parquet(base / "data" / "values.parquet", index=False)
    entities = base / "entities.parquet"
    pd.DataFrame(
        {
            "entity_id": pd.Series(ids, dtype="int64"),
            "event_timestamp": pd.to_datetime([NOW] * ENTITIES, utc=True),
            "label": ["x"] * ENTITIES,
        }
    ).to_parquet(entities, index=False)
    latest = values.sort_values("event_timestamp").groupby("entity_id")["value"].last()
    return {"base": base, "dataset": describe_dataset(str(entities)), "latest": latest.to_dict()}


def config(project: str, port: int) -> dict[str, Any]:
    return {
        "inline": {
            "project": project,
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
            "online_store": {"type": "redis", "connection_string": f"127.0.0.1:{port},db={DB}"},
        },
        "features": ["values:value"],
        "entity_columns": ["entity_id"],
        "label_columns": ["label"],
        "materialize": True,
    }


def redis_keys(client: Any, project: str) -> list[bytes]:
    """The project's keys: Feast's Redis key is the serialised entity key followed by the project."""
    return list(client.scan_iter(match=b"*" + project.encode(), count=1000))


def direct_store(repo: Path, project: str) -> Any:
    """A FeatureStore on the generated repo whose online store is Redis itself, not the proxy."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    repo_config = RepoConfig(
        project=project,
        provider="local",
        registry=str(repo / "registry.db"),
        online_store={"type": "redis", "connection_string": f"{REDIS[0]}:{REDIS[1]},db={DB}"},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    repo_config.repo_path = repo
    return FeatureStore(repo_path=str(repo), config=repo_config)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_redis_lost_mid_materialisation_fails_cleanly_and_the_retry_completes(
    proxy: TcpFaultProxy, feature_data: dict[str, Any], tmp_path: Path
) -> None:
    import redis
    from feast.feature_view import FeatureViewState

    from mlsteps.context import RunKey, build_context
    from mlsteps.errors import BackendError
    from mlsteps.lineage import LineageRecorder
    from mlsteps.step import execute_step
    from mlsteps.steps.featurise import TRAINING_FILE, FeaturiseStep

    client = redis.Redis(host=REDIS[0], port=REDIS[1], db=DB)
    client.ping()
    root = tmp_path / "art"
    token = uuid.uuid4().hex[:8]
    projects: list[str] = []

    def context(run_id: str, attempt: int) -> Any:
        return build_context(
            RunKey(pipeline="redis-lost", run_id=run_id, step="featurise", attempt=attempt),
            artifact_root=str(root),
            base_dir=feature_data["base"],
        )

    def featurise(project: str, run_id: str, attempt: int) -> Any:
        return execute_step(
            FeaturiseStep,
            context(run_id, attempt),
            config(project, proxy.port),
            {"dataset": feature_data["dataset"]},
        )

    def check_online(project: str) -> None:
        """Exactly the expected features: the latest value per entity, None for unknown ones, no extra keys."""
        store = direct_store(root / "feast" / project, project)
        rows = [{"entity_id": i} for i in range(ENTITIES + 2)]
        got = store.get_online_features(features=["values:value"], entity_rows=rows).to_dict()
        expected = [feature_data["latest"][i] for i in range(ENTITIES)] + [None, None]
        assert got["value"] == expected, project
        assert len(redis_keys(client, project)) == ENTITIES, project

    try:
        # A clean run through the proxy: how many bytes Feast sends Redis in one materialisation.
        # Every project name has the same length: it is part of each Redis key, so of the byte count.
        calibration = f"lost_{token}_cc"
        projects.append(calibration)
        proxy.restore()
        featurise(calibration, "calib", 1)
        total = proxy.forwarded
        assert total > 50 * ENTITIES, total  # a read and a write per entity went through the proxy
        check_online(calibration)

        # One seeded cut in each slice: the reads of the previous timestamps come first, then the writes.
        rng = random.Random(20261129)
        cuts = [rng.randrange(total * i // CUTS, total * (i + 1) // CUTS) for i in range(CUTS)]
        partial: list[int] = []
        failed_s: list[float] = []
        for seed, cut in enumerate(cuts):
            project, run_id = f"lost_{token}_{seed:02d}", f"seed-{seed}"
            projects.append(project)
            proxy.cut_after(cut)
            started = time.monotonic()
            with pytest.raises(BackendError) as caught:
                featurise(project, run_id, 1)
            failed_s.append(round(time.monotonic() - started, 1))  # reported, not asserted
            assert proxy.down, (seed, cut)  # the failure is the cut, not something before it
            error = caught.value
            assert error.backend == "feast"
            message = str(error)
            assert "materializing: ConnectionError" in message, message
            assert f"the Feast redis online store at 127.0.0.1:{proxy.port} is unreachable" in message, (
                message
            )

            # Nothing corrupted: the registry parses, the view is not stuck, no interval recorded.
            repo = root / "feast" / project
            store = direct_store(repo, project)
            (view,) = store.list_feature_views(allow_cache=False)
            assert view.state != FeatureViewState.MATERIALIZING, (seed, view.state)
            assert view.materialization_intervals == [], (seed, view.materialization_intervals)
            assert not list(repo.glob("registry.db.torn-*"))
            assert not (context(run_id, 1).step_dir() / TRAINING_FILE).exists()
            partial.append(len(redis_keys(client, project)))

            proxy.restore()  # Redis is back
            result = featurise(project, run_id, 2)
            assert result.metrics["rows"] == ENTITIES
            check_online(project)
            (view,) = direct_store(repo, project).list_feature_views(allow_cache=False)
            assert len(view.materialization_intervals) == 1, view.materialization_intervals
            records = [
                r
                for r in LineageRecorder(context(run_id, 1).store).records(run_id)
                if r.run_key.step == "featurise"
            ]
            assert sorted((r.run_key.attempt, r.status) for r in records) == [(1, "failed"), (2, "succeeded")]

        # The cuts landed across the materialisation: some before any write, some mid-write.
        assert 0 in partial, partial
        assert any(0 < n < ENTITIES for n in partial), partial
        print(
            f"\n{total} bytes to Redis per materialisation of {ENTITIES} entities; cuts at {cuts}; "
            f"keys left by each failed attempt {partial}; failed attempts took {failed_s} s; "
            "every retry completed"
        )
    finally:
        for project in projects:
            keys = redis_keys(client, project)
            if keys:
                client.delete(*keys)
