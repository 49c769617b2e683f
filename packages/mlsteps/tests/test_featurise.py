"""Tests of the ``featurise`` step against real Feast (local provider, file offline store).

Every test works on a Feast repo in ``tmp_path``: the penguins example's repo copied
there with its data, or a tiny repo written by :func:`make_repo` whose values are
chosen so that a point-in-time leak would show.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlsteps.context import RunContext, RunKey
from mlsteps.data import describe_dataset
from mlsteps.errors import BackendError, ConfigError, DataError
from mlsteps.refs import DatasetRef
from mlsteps.step import StepResult, execute_step
from mlsteps.steps.featurise import FeaturiseStep

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "penguins"
NOW = datetime.now(UTC).replace(microsecond=0)


def make_ctx(tmp_path: Path, run_id: str = "r1") -> RunContext:
    return RunContext(
        run_key=RunKey(run_id=run_id, step="featurise", pipeline="t"),
        artifact_root=str(tmp_path / "art"),
        base_dir=tmp_path,
    )


def make_repo(
    root: Path,
    *,
    project: str = "pit",
    view: str = "values",
    rows: list[tuple[int, float, datetime]] | None = None,
) -> Path:
    """A one-view Feast repo: entity ``entity_id``, feature ``value`` from ``data/values.parquet``.

    Default values: entity 1 has 10 at now-5h and 99 at now-1h; entity 2 has 7 at now-4h.
    A second view ``scores`` (feature ``score``) has 0.5 for entity 1 and 0.25 for entity 2 at now-10h.
    """
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    if rows is None:
        rows = [
            (1, 10.0, NOW - timedelta(hours=5)),
            (1, 99.0, NOW - timedelta(hours=1)),
            (2, 7.0, NOW - timedelta(hours=4)),
        ]
    pd.DataFrame(
        {
            "entity_id": pd.Series([r[0] for r in rows], dtype="int64"),
            "value": [r[1] for r in rows],
            "event_timestamp": pd.to_datetime([r[2] for r in rows], utc=True),
        }
    ).to_parquet(repo / "data" / "values.parquet", index=False)
    pd.DataFrame(
        {
            "entity_id": pd.Series([1, 2], dtype="int64"),
            "score": [0.5, 0.25],
            "event_timestamp": pd.to_datetime([NOW - timedelta(hours=10)] * 2, utc=True),
        }
    ).to_parquet(repo / "data" / "scores.parquet", index=False)
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(
            f"""\
            project: {project}
            provider: local
            registry: data/registry.db
            online_store: {{type: sqlite, path: data/online_store.db}}
            offline_store: {{type: file}}
            entity_key_serialization_version: 3
            """
        )
    )
    (repo / "features.py").write_text(
        textwrap.dedent(
            f"""\
            from datetime import timedelta

            from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
            from feast.types import Float64

            thing = Entity(name="thing", join_keys=["entity_id"], value_type=ValueType.INT64)
            source = FileSource(name="{view}_source", path="data/values.parquet", timestamp_field="event_timestamp")
            {view} = FeatureView(
                name="{view}",
                entities=[thing],
                ttl=timedelta(days=1),
                schema=[Field(name="value", dtype=Float64)],
                source=source,
            )
            svc = FeatureService(name="{view}_service", features=[{view}])
            scores = FeatureView(
                name="scores",
                entities=[thing],
                ttl=timedelta(0),
                schema=[Field(name="score", dtype=Float64)],
                source=FileSource(name="scores_source", path="data/scores.parquet", timestamp_field="event_timestamp"),
            )
            """
        )
    )
    return repo


def entity_dataset(path: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write entity rows as parquet and return the DatasetRef dict an orchestrator would pass."""
    df = pd.DataFrame(rows)
    df.to_parquet(path, index=False)
    return describe_dataset(str(path)).model_dump(mode="json")


def run(tmp_path: Path, config: dict[str, Any], dataset: dict[str, Any], run_id: str = "r1") -> StepResult:
    return execute_step(FeaturiseStep, make_ctx(tmp_path, run_id), config, {"dataset": dataset})


def tiny_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "repo_path": "repo",
        "features": ["values:value"],
        "entity_columns": ["entity_id"],
        "label_columns": ["label"],
    }
    config.update(overrides)
    return config


def online_values(repo: Path, entity_ids: list[int], feature: str = "values:value") -> list[Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    rows = [{"entity_id": i} for i in entity_ids]
    return list(store.get_online_features(features=[feature], entity_rows=rows).to_dict()["value"])


@pytest.fixture
def penguins_repo(tmp_path: Path) -> Path:
    """The example's feature repo and freshly prepared data, copied side by side into tmp_path."""
    shutil.copytree(EXAMPLE / "feature_repo", tmp_path / "feature_repo")
    spec = importlib.util.spec_from_file_location("prepare_penguins", EXAMPLE / "prepare_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path / "data")
    return tmp_path / "feature_repo"


def test_penguins_example_end_to_end(
    tmp_path: Path, penguins_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must resolve against the repo, not the cwd
    source = describe_dataset(str(tmp_path / "data" / "penguins.parquet"))
    config = {
        "repo_path": "feature_repo",
        "feature_service": "penguin_features",
        "entity_columns": ["penguin_id"],
        "event_timestamp_column": "event_timestamp",
        "label_columns": ["species"],
    }

    result = run(tmp_path, config, source.model_dump(mode="json"))

    assert os.getcwd() == str(elsewhere)
    assert "definitions" not in sys.modules
    ref = result.outputs["dataset"]
    assert isinstance(ref, DatasetRef)
    assert Path(ref.uri) == tmp_path / "art" / "runs" / "r1" / "featurise" / "training.parquet"
    features = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"]
    training = pd.read_parquet(ref.uri)
    assert list(training.columns) == ["penguin_id", "event_timestamp", "species", *features]
    assert ref.rows == len(training) == 344
    assert training["penguin_id"].tolist() == list(range(1, 345))
    raw = pd.read_parquet(tmp_path / "data" / "penguins.parquet").sort_values("penguin_id")
    # Each penguin's measurements carry its own event time, so the join must return them unchanged.
    pd.testing.assert_frame_equal(
        training[["species", *features]].reset_index(drop=True),
        raw[["species", *features]].reset_index(drop=True),
        check_dtype=False,
    )
    assert result.metrics == {"rows": 344.0, "features": 6.0}
    assert ref.metadata["feature_service"] == "penguin_features"
    assert ref.metadata["feast_project"] == "penguins"
    assert ref.metadata["features"] == [f"penguin_measurements:{f}" for f in features]
    assert ref.metadata["registry_fingerprint"].startswith("sha256:")
    assert ref.metadata["registry_last_updated"]
    # Registry and online store land in the (git-ignored) data dir next to the repo.
    assert (tmp_path / "data" / "feast" / "registry.db").is_file()
    assert not (penguins_repo / "__pycache__").exists()


def test_point_in_time_join_does_not_leak_later_values(tmp_path: Path) -> None:
    make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [
            # Naive timestamps are read as UTC; a non-default column name is renamed back.
            {"entity_id": 1, "observed_at": (NOW - timedelta(hours=3)).replace(tzinfo=None), "label": "a"},
            {"entity_id": 1, "observed_at": (NOW - timedelta(minutes=30)).replace(tzinfo=None), "label": "b"},
            {"entity_id": 2, "observed_at": (NOW - timedelta(hours=6)).replace(tzinfo=None), "label": "c"},
        ],
    )

    result = run(tmp_path, tiny_config(event_timestamp_column="observed_at"), dataset)

    training = pd.read_parquet(result.outputs["dataset"].uri)
    assert list(training.columns) == ["entity_id", "observed_at", "label", "value"]
    by_label = training.set_index("label")["value"]
    assert by_label["a"] == 10.0  # 99 was written at now-1h, after this row's now-3h: it must not leak
    assert by_label["b"] == 99.0
    assert pd.isna(by_label["c"])  # entity 2 had no value yet at now-6h
    assert str(training["observed_at"].dt.tz) == "UTC"


def test_every_entity_row_survives_with_several_views(tmp_path: Path) -> None:
    make_repo(tmp_path)
    at = NOW - timedelta(hours=6)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [
            # Same key and time twice (Feast's file store would collapse them into one row).
            {"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"},
            {"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "b"},
            # Only later `values` exist for entity 2 at now-6h (Feast's file store would drop
            # the row), but its `score` from now-10h must still be there.
            {"entity_id": 2, "event_timestamp": at, "label": "c"},
        ],
    )

    result = run(tmp_path, tiny_config(features=["values:value", "scores:score"]), dataset)

    training = pd.read_parquet(result.outputs["dataset"].uri)
    assert list(training.columns) == ["entity_id", "event_timestamp", "label", "value", "score"]
    assert training["label"].tolist() == ["a", "b", "c"]
    assert training["value"].tolist()[:2] == [10.0, 10.0]
    assert pd.isna(training["value"].iloc[2])
    assert training["score"].tolist() == [0.5, 0.5, 0.25]
    assert result.metrics == {"rows": 3.0, "features": 2.0}


def test_content_hash_is_stable_across_runs(tmp_path: Path) -> None:
    make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [
            {"entity_id": 2, "event_timestamp": NOW - timedelta(hours=2), "label": "x"},
            {"entity_id": 1, "event_timestamp": NOW - timedelta(hours=2), "label": "y"},
            {"entity_id": 1, "event_timestamp": NOW - timedelta(hours=4), "label": "z"},
        ],
    )

    first = run(tmp_path, tiny_config(), dataset, run_id="r1").outputs["dataset"]
    second = run(tmp_path, tiny_config(), dataset, run_id="r2").outputs["dataset"]

    assert first.uri != second.uri
    assert first.content_hash == second.content_hash
    # Re-applying unchanged definitions keeps the definitions fingerprint.
    assert first.metadata["registry_fingerprint"] == second.metadata["registry_fingerprint"]
    training = pd.read_parquet(first.uri)
    assert training[["entity_id", "label"]].values.tolist() == [[1, "z"], [1, "y"], [2, "x"]]


def test_materialize_fills_the_sqlite_online_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [{"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"}],
    )

    # Up to the dataset's latest event time (now-3h): the online values are the ones known then
    # (entity 1's 99 at now-1h is not yet; entity 2's 7 at now-4h is).
    run(tmp_path, tiny_config(materialize=True, materialize_end="max_event_time"), dataset, run_id="r1")
    assert online_values(repo, [1, 2, 3]) == [10.0, 7.0, None]

    # A second run continues incrementally up to now and picks up the later values.
    run(tmp_path, tiny_config(materialize=True), dataset, run_id="r2")
    assert online_values(repo, [1, 2, 3]) == [99.0, 7.0, None]


def test_online_store_override_is_used_for_materialization(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [{"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"}],
    )
    other = tmp_path / "other_online.db"

    run(tmp_path, tiny_config(materialize=True, online_store={"type": "sqlite", "path": str(other)}), dataset)

    assert other.is_file()
    assert not (repo / "data" / "online_store.db").exists()


def test_online_store_values_are_filled_from_secrets_and_never_recorded(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from mlsteps.lineage import LineageRecorder

    make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [{"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"}],
    )
    # A sqlite path stands in for a Redis password: the same substitution, no server needed.
    hidden = tmp_path / "s3cret-online-store.db"
    config = tiny_config(materialize=True, online_store={"type": "sqlite", "path": "${ONLINE_DB}"})
    ctx = make_ctx(tmp_path)
    ctx.secrets = {"ONLINE_DB": SecretStr(str(hidden))}
    ctx.lineage = LineageRecorder(ctx.store)
    execute_step(FeaturiseStep, ctx, config, {"dataset": dataset})

    assert hidden.is_file()  # materialised where the secret said
    records = list((tmp_path / "art").rglob("lineage/**/*.json"))
    assert records and all("s3cret" not in r.read_text() for r in records)
    assert any("${ONLINE_DB}" in r.read_text() for r in records)

    with pytest.raises(ConfigError, match=r"featurise\.config\.online_store\.path.*\$\{NOPE\} is not set"):
        run(tmp_path, tiny_config(online_store={"type": "sqlite", "path": "${NOPE}"}), dataset, run_id="r2")


def test_bad_online_store_override_is_a_config_error(tmp_path: Path) -> None:
    make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet", [{"entity_id": 1, "event_timestamp": NOW, "label": "a"}]
    )
    with pytest.raises(ConfigError, match=r"featurise\.config\.online_store"):
        run(tmp_path, tiny_config(online_store={"type": "no_such_store"}), dataset)


def test_two_repos_with_the_same_module_name_do_not_mix(tmp_path: Path) -> None:
    make_repo(tmp_path / "one", project="one", view="first")
    make_repo(tmp_path / "two", project="two", view="second")
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [{"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"}],
    )

    a = run(tmp_path, tiny_config(repo_path="one/repo", features=["first:value"]), dataset, run_id="a")
    b = run(tmp_path, tiny_config(repo_path="two/repo", features=["second:value"]), dataset, run_id="b")

    assert a.outputs["dataset"].metadata["feast_project"] == "one"
    assert b.outputs["dataset"].metadata["feast_project"] == "two"
    assert pd.read_parquet(b.outputs["dataset"].uri)["value"].tolist() == [10.0]


@pytest.mark.parametrize(
    "selection",
    [{}, {"feature_service": "values_service", "features": ["values:value"]}],
    ids=["neither", "both"],
)
def test_exactly_one_of_feature_service_and_features(tmp_path: Path, selection: dict[str, Any]) -> None:
    config = tiny_config(**selection)
    if not selection:
        del config["features"]
    with pytest.raises(ConfigError, match="exactly one of `feature_service` and `features`") as info:
        run(tmp_path, config, {"kind": "dataset", "uri": str(tmp_path / "unused.parquet")})
    assert info.value.problems[0].path == "featurise.config.feature_service"


def test_malformed_feature_reference_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"featurise\.config\.features.*feature_view:feature"):
        run(tmp_path, tiny_config(features=["value"]), {"kind": "dataset", "uri": "x.parquet"})


def test_missing_entity_column_is_a_data_error(tmp_path: Path) -> None:
    make_repo(tmp_path)
    path = tmp_path / "entities.parquet"
    dataset = entity_dataset(path, [{"id": 1, "event_timestamp": NOW, "label": "a"}])
    with pytest.raises(DataError, match=rf"{path}: missing column\(s\) \['entity_id'\]"):
        run(tmp_path, tiny_config(), dataset)


def test_null_entity_key_is_a_data_error(tmp_path: Path) -> None:
    make_repo(tmp_path)
    path = tmp_path / "entities.parquet"
    dataset = entity_dataset(
        path,
        [
            {"entity_id": 1, "event_timestamp": NOW, "label": "a"},
            {"entity_id": 2, "event_timestamp": None, "label": "b"},
        ],
    )
    with pytest.raises(DataError, match=r"column 'event_timestamp' has 1 null"):
        run(tmp_path, tiny_config(), dataset)


@pytest.mark.parametrize("layout", ["missing", "no_yaml"])
def test_bad_repo_path_is_a_config_error(tmp_path: Path, layout: str) -> None:
    if layout == "no_yaml":
        (tmp_path / "repo").mkdir()
    dataset = entity_dataset(
        tmp_path / "entities.parquet", [{"entity_id": 1, "event_timestamp": NOW, "label": "a"}]
    )
    with pytest.raises(ConfigError, match=r"featurise\.config\.repo_path") as info:
        run(tmp_path, tiny_config(), dataset)
    assert str(tmp_path / "repo") in str(info.value)


def test_unknown_feature_is_a_backend_error_keeping_feasts_message(tmp_path: Path) -> None:
    make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet", [{"entity_id": 1, "event_timestamp": NOW, "label": "a"}]
    )
    with pytest.raises(BackendError, match="feast error: retrieving historical features") as info:
        run(tmp_path, tiny_config(features=["values:nope"]), dataset)
    assert info.value.backend == "feast"
    assert "nope" in info.value.backend_message


def test_without_apply_an_unregistered_repo_fails_in_feast(tmp_path: Path) -> None:
    make_repo(tmp_path)
    dataset = entity_dataset(
        tmp_path / "entities.parquet", [{"entity_id": 1, "event_timestamp": NOW, "label": "a"}]
    )
    with pytest.raises(BackendError, match="Feature view values does not exist in project pit") as info:
        run(tmp_path, tiny_config(apply=False), dataset)
    assert info.value.hint is not None and "feast apply" in info.value.hint


def test_definitions_that_do_not_import_are_a_config_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "features.py").write_text("import no_such_module_here\n")
    dataset = entity_dataset(
        tmp_path / "entities.parquet", [{"entity_id": 1, "event_timestamp": NOW, "label": "a"}]
    )
    with pytest.raises(ConfigError, match=r"featurise\.config\.repo_path: cannot import Feast definitions"):
        run(tmp_path, tiny_config(), dataset)


def test_import_is_light() -> None:
    code = (
        "import sys, mlsteps.steps.featurise\n"
        "heavy = {'feast', 'pandas', 'pyarrow', 'mlflow', 'sklearn'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.integration
def test_materialize_into_redis(tmp_path: Path) -> None:
    import redis
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    project = f"mlsteps_it_{uuid.uuid4().hex[:8]}"
    db = 15  # a database of its own; only the keys this test adds are deleted
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    before = set(client.keys("*"))
    online = {"type": "redis", "connection_string": f"127.0.0.1:6379,db={db}"}
    repo = make_repo(tmp_path, project=project)
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [{"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"}],
    )
    try:
        run(tmp_path, tiny_config(materialize=True, online_store=online), dataset)

        assert set(client.keys("*")) - before, "nothing was written to Redis"
        assert not (repo / "data" / "online_store.db").exists()
        config = RepoConfig(
            project=project,
            provider="local",
            registry=str(repo / "data" / "registry.db"),
            online_store=online,
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
        )
        config.repo_path = repo
        store = FeatureStore(repo_path=str(repo), config=config)
        got = store.get_online_features(
            features=["values:value"], entity_rows=[{"entity_id": 1}, {"entity_id": 2}, {"entity_id": 3}]
        ).to_dict()
        assert got["value"] == [99.0, 7.0, None]
    finally:
        added = set(client.keys("*")) - before
        if added:
            client.delete(*added)


def inline_penguins(**overrides: Any) -> dict[str, Any]:
    """The penguins example's repo declared inline, as a spec would."""
    inline: dict[str, Any] = {
        "project": "penguins_inline",
        "entities": [{"name": "penguin", "join_keys": ["penguin_id"], "value_type": "INT64"}],
        "sources": [{"name": "penguins_source", "path": "data/penguins.parquet"}],
        "feature_views": [
            {
                "name": "penguin_measurements",
                "entities": ["penguin"],
                "source": "penguins_source",
                "schema": {
                    "bill_length_mm": "float64",
                    "bill_depth_mm": "float64",
                    "flipper_length_mm": "float64",
                    "body_mass_g": "float64",
                    "island": "string",
                    "sex": "string",
                },
            }
        ],
        "feature_services": [
            {"name": "penguin_features", "features": ["penguin_measurements"]},
            {"name": "bills", "features": ["penguin_measurements:bill_length_mm"]},
        ],
    }
    inline.update(overrides)
    return inline


def test_inline_repo_gives_the_same_training_set_as_the_example_repo(
    tmp_path: Path, penguins_repo: Path
) -> None:
    source = describe_dataset(str(tmp_path / "data" / "penguins.parquet")).model_dump(mode="json")
    common = {"entity_columns": ["penguin_id"], "label_columns": ["species"], "materialize": True}
    from_repo = run(
        tmp_path, {"repo_path": "feature_repo", "feature_service": "penguin_features", **common}, source
    )
    inline = run(
        tmp_path,
        {"inline": inline_penguins(), "feature_service": "penguin_features", **common},
        source,
        run_id="r2",
    )

    a, b = from_repo.outputs["dataset"], inline.outputs["dataset"]
    assert isinstance(a, DatasetRef) and isinstance(b, DatasetRef)
    assert a.content_hash == b.content_hash  # byte-identical training sets
    assert b.metadata["feast_project"] == "penguins_inline"
    repo = tmp_path / "art" / "feast" / "penguins_inline"
    assert (repo / "registry.db").is_file()
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    assert [v.name for v in store.list_feature_views()] == ["penguin_measurements"]
    online = store.get_online_features(
        features=["penguin_measurements:island"], entity_rows=[{"penguin_id": 1}]
    ).to_dict()
    assert online["island"] == ["Torgersen"]

    bills = run(
        tmp_path, {"inline": inline_penguins(), "feature_service": "bills", **common}, source, run_id="r3"
    )
    ref = bills.outputs["dataset"]
    assert isinstance(ref, DatasetRef)
    assert ref.metadata["features"] == ["penguin_measurements:bill_length_mm"]


def test_inline_online_store_values_are_filled_from_secrets_and_never_written(
    tmp_path: Path, penguins_repo: Path
) -> None:
    from pydantic import SecretStr

    from mlsteps.lineage import LineageRecorder

    source = describe_dataset(str(tmp_path / "data" / "penguins.parquet")).model_dump(mode="json")
    # A sqlite path stands in for a Redis password: the same substitution, no server needed.
    hidden = tmp_path / "s3cret-inline-online.db"
    config = {
        "inline": inline_penguins(online_store={"type": "sqlite", "path": "${INLINE_DB}"}),
        "feature_service": "bills",
        "entity_columns": ["penguin_id"],
        "label_columns": ["species"],
        "materialize": True,
    }
    ctx = make_ctx(tmp_path)
    ctx.secrets = {"INLINE_DB": SecretStr(str(hidden))}
    ctx.lineage = LineageRecorder(ctx.store)
    execute_step(FeaturiseStep, ctx, config, {"dataset": source})

    assert hidden.is_file()  # materialised where the secret said
    generated = (tmp_path / "art" / "feast" / "penguins_inline" / "feature_store.yaml").read_text()
    assert "${INLINE_DB}" in generated and "s3cret" not in generated
    records = list((tmp_path / "art").rglob("lineage/**/*.json"))
    assert records and all("s3cret" not in r.read_text() for r in records)

    config["inline"]["online_store"]["path"] = "${NOPE}"
    with pytest.raises(
        ConfigError, match=r"featurise\.config\.inline\.online_store\.path.*\$\{NOPE\} is not set"
    ):
        run(tmp_path, config, source, run_id="r2")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"sources": [{"name": "other", "path": "x.parquet"}]},
            "feature_views.0.source: unknown source 'penguins_source'",
        ),
        (
            {"entities": [{"name": "bird", "join_keys": ["penguin_id"]}]},
            r"feature_views.0.entities: unknown entity \['penguin'\]",
        ),
        (
            {"feature_services": [{"name": "s", "features": ["penguin_measurements:beak"]}]},
            "has no feature 'beak'",
        ),
        ({"project": "bad-name"}, "inline.project"),
    ],
)
def test_inline_repo_wiring_errors_name_the_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        FeaturiseStep.parse_config(
            {"inline": inline_penguins(**change), "features": ["a:b"], "entity_columns": ["penguin_id"]}
        )
    assert "featurise.config.inline" in str(info.value)


def test_inline_feature_type_must_be_known() -> None:
    views = inline_penguins()["feature_views"]
    views[0]["schema"]["island"] = "varchar"
    with pytest.raises(ConfigError, match=r"inline\.feature_views\.0\.schema.*unknown feature type"):
        FeaturiseStep.parse_config(
            {"inline": inline_penguins(feature_views=views), "features": ["a:b"], "entity_columns": ["id"]}
        )


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"repo_path": "repo", "inline": inline_penguins()}, "featurise.config.repo_path"),
        ({}, "featurise.config.repo_path"),
        ({"inline": inline_penguins(), "apply": False}, "featurise.config.apply"),
        ({"inline": inline_penguins(), "online_store": {"type": "redis"}}, "featurise.config.online_store"),
    ],
)
def test_repo_path_and_inline_are_exclusive(config: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError, match=path):
        FeaturiseStep.parse_config({"features": ["a:b"], "entity_columns": ["id"], **config})


def test_feature_service_with_on_demand_view_and_alias(tmp_path: Path) -> None:
    """Services Feast must answer in one request: an on-demand view, and an aliased projection."""
    repo = make_repo(tmp_path)
    with (repo / "features.py").open("a") as fh:
        fh.write(
            textwrap.dedent(
                """
                import pandas as pd
                from feast.on_demand_feature_view import on_demand_feature_view

                @on_demand_feature_view(
                    sources=[values], schema=[Field(name="doubled", dtype=Float64)], mode="pandas"
                )
                def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
                    return pd.DataFrame({"doubled": inputs["value"] * 2})

                with_odfv = FeatureService(name="with_odfv", features=[values, doubled])
                aliased = FeatureService(name="aliased", features=[values.with_name("renamed")])
                """
            )
        )
    dataset = entity_dataset(
        tmp_path / "entities.parquet",
        [
            {"entity_id": 1, "event_timestamp": NOW - timedelta(hours=3), "label": "a"},
            {"entity_id": 2, "event_timestamp": NOW - timedelta(hours=2), "label": "b"},
        ],
    )

    odfv = run(tmp_path, tiny_config(features=None, feature_service="with_odfv"), dataset)
    training = pd.read_parquet(odfv.outputs["dataset"].uri)
    assert list(training.columns) == ["entity_id", "event_timestamp", "label", "value", "doubled"]
    assert training["value"].tolist() == [10.0, 7.0]  # the now-1h value of entity 1 must not leak
    assert training["doubled"].tolist() == [20.0, 14.0]
    assert odfv.outputs["dataset"].metadata["features"] == ["values:value", "doubled:doubled"]

    aliased = run(tmp_path, tiny_config(features=None, feature_service="aliased"), dataset, run_id="r2")
    training = pd.read_parquet(aliased.outputs["dataset"].uri)
    assert training["value"].tolist() == [10.0, 7.0]
    # Lineage names the feature view the values come from, not the projection's alias.
    assert aliased.outputs["dataset"].metadata["features"] == ["values:value"]
