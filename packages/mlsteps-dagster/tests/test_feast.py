"""FeastResource: a deployment's Feast repo and online store, applied to ``featurise`` at run time (real Feast)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import write_spec

from mlsteps.errors import ConfigError
from mlsteps.lineage import LineageRecorder
from mlsteps.refs import DatasetRef, parse_ref
from mlsteps.storage import ArtifactStore
from mlsteps.testing import drop_feast_keys
from mlsteps_dagster import FEAST_RESOURCE_KEY, FeastResource, build_definitions

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "penguins"

#: validate -> featurise of the penguins example, materializing the online store.
SPEC = """\
name: feasty
defaults: {artifact_root: .mlsteps}
steps:
  validate:
    config:
      data: data/penguins.parquet
      expectations: [{type: column_exists, column: species}]
  featurise:
    config:
      repo_path: feature_repo
      feature_service: penguin_features
      entity_columns: [penguin_id]
      event_timestamp_column: event_timestamp
      label_columns: [species]
      materialize: true
      materialize_end: max_event_time
    inputs: {dataset: validate.dataset}
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's feature repo and freshly prepared data, made once."""
    base = tmp_path_factory.mktemp("penguins")
    shutil.copytree(
        EXAMPLE / "feature_repo", base / "feature_repo", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare_data.py"), "--out", str(base / "data")],
        check=True,
        timeout=300,
    )
    return base


@pytest.fixture
def project(prepared: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared project with the two-step spec."""
    shutil.copytree(prepared, tmp_path / "p")
    return write_spec(tmp_path / "p", SPEC)


def run(spec: Path, feast: FeastResource | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
    defs = build_definitions(spec, resources={FEAST_RESOURCE_KEY: feast} if feast else None)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(assets, resources=defs.resources, **kwargs)


def featurise_config(spec: Path, run_id: str) -> dict[str, Any]:
    recs = LineageRecorder(ArtifactStore(spec.parent / ".mlsteps")).records(run_id)
    (rec,) = [r for r in recs if r.run_key.step == "featurise"]
    assert rec.status == "succeeded", rec.error
    return rec.config


def test_featurise_requires_the_feast_resource_and_defaults_to_the_spec(project: Path) -> None:
    defs = build_definitions(project)
    featurise = next(
        a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and "featurise" in a.op.name
    )
    assert FEAST_RESOURCE_KEY in featurise.required_resource_keys
    assert FEAST_RESOURCE_KEY in (defs.resources or {})

    result = run(project)

    assert result.success
    # The spec's own online store (feature_store.yaml: ../data/feast/online_store.db) was filled.
    assert (project.parent / "data" / "feast" / "online_store.db").stat().st_size > 0
    config = featurise_config(project, result.run_id)
    assert config["repo_path"] == "feature_repo"
    assert config["online_store"] is None


def test_resource_overrides_the_repo_path_and_the_online_store(project: Path, tmp_path: Path) -> None:
    # Another copy of the repo next to the first (its relative paths still reach ../data).
    shutil.copytree(project.parent / "feature_repo", project.parent / "feature_repo_prod")
    online_db = tmp_path / "elsewhere" / "online.db"
    online_db.parent.mkdir()

    result = run(
        project,
        FeastResource(repo_path="feature_repo_prod", online_store={"type": "sqlite", "path": str(online_db)}),
    )

    assert result.success
    assert online_db.stat().st_size > 0
    assert not (project.parent / "data" / "feast" / "online_store.db").exists()
    dataset = parse_ref(result.asset_value(["featurise", "dataset"]))
    assert isinstance(dataset, DatasetRef)
    assert dataset.rows == 344
    # The lineage record shows the config the step actually ran with.
    config = featurise_config(project, result.run_id)
    assert config["repo_path"] == "feature_repo_prod"
    assert config["online_store"] == {"type": "sqlite", "path": str(online_db)}


def test_a_bad_override_fails_the_step_without_retries(project: Path) -> None:
    result = run(project, FeastResource(online_store={"type": "nosuchstore"}), raise_on_error=False)

    assert not result.success
    failures = {ev.step_key: ev for ev in result.get_step_failure_events()}
    assert set(failures) == {"featurise"}
    assert "featurise.config.online_store" in str(failures["featurise"].step_failure_data.error)


def test_overrides_translate_into_the_step_config() -> None:
    inline = {"repo_path": None, "inline": {"project": "p", "online_store": {"type": "sqlite"}}}

    # The secret itself stays out of the config (lineage records it): only a ${NAME} reference.
    reference = "${feast_online_store}"
    assert FeastResource(online_store={"type": "redis"}, connection_string="r:6379").overrides(
        {"repo_path": "repo"}
    ) == {"repo_path": "repo", "online_store": {"type": "redis", "connection_string": reference}}
    # With an inline repo the store goes where the inline config keeps it.
    assert FeastResource(connection_string="r:6379").overrides(
        {**inline, "inline": {**inline["inline"], "online_store": {"type": "redis"}}}
    )["inline"]["online_store"] == {"type": "redis", "connection_string": reference}
    assert FeastResource().overrides(inline) == inline
    with pytest.raises(ConfigError, match="inline"):
        FeastResource(repo_path="elsewhere").overrides(inline)
    with pytest.raises(ConfigError, match="set `online_store`"):
        FeastResource(connection_string="r:6379").overrides({"repo_path": "repo"})


@pytest.mark.integration
def test_redis_online_store_with_the_connection_string_from_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    db = 14  # a database of its own; only the keys this test adds are deleted
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable on 127.0.0.1:6379: run scripts/ensure-services.sh")
    secret = f"127.0.0.1:6379,db={db}"
    monkeypatch.setenv("MLSTEPS_TEST_FEAST_REDIS", secret)
    drop_feast_keys(client, "penguins")  # an interrupted earlier run's keys would hide this run's
    before = set(client.keys("*"))
    project.write_text(project.read_text().replace("name: feasty", f"name: feasty_{uuid.uuid4().hex[:6]}"))
    try:
        result = run(
            project,
            FeastResource(
                online_store={"type": "redis"}, connection_string=dg.EnvVar("MLSTEPS_TEST_FEAST_REDIS")
            ),
        )

        assert result.success
        assert set(client.keys("*")) - before, "nothing was written to Redis"
        assert not (project.parent / "data" / "feast" / "online_store.db").exists()
        # Dagster never shows the EnvVar's value in the materialization metadata.
        metadata = [ev.materialization.metadata for ev in result.get_asset_materialization_events()]
        assert secret not in repr(metadata)
    finally:
        added = set(client.keys("*")) - before
        if added:
            client.delete(*added)
