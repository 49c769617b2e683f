"""Blocks: save/load round trip with masked secrets, and registration with the Prefect CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from pydantic import SecretStr

from mlsteps.context import MlflowSettings
from mlsteps_prefect import FeastSettings, MlflowSettingsBlock

PREFECT = Path(sys.executable).parent / "prefect"


def test_prefect_block_register_finds_both_blocks(prefect_server: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "NO_COLOR": "1", "COLUMNS": "200"}

    out = subprocess.run(
        [str(PREFECT), "block", "register", "-m", "mlsteps_prefect"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )

    assert out.returncode == 0, out.stdout + out.stderr
    assert "mlsteps MLflow Settings" in out.stdout
    assert "mlsteps Feast Settings" in out.stdout
    with get_client(sync_client=True) as client:
        for slug in ("mlsteps-mlflow-settings", "mlsteps-feast-settings"):
            assert client.read_block_type_by_slug(slug).slug == slug


def test_mlflow_block_round_trip_keeps_the_token_secret() -> None:
    MlflowSettingsBlock(
        tracking_uri="http://mlflow.example:5000", experiment="penguins", token=SecretStr("s3cr3t-token")
    ).save("mlflow-roundtrip", overwrite=True)

    loaded = MlflowSettingsBlock.load("mlflow-roundtrip")

    assert loaded.tracking_uri == "http://mlflow.example:5000"
    assert loaded.registry_uri is None
    assert isinstance(loaded.token, SecretStr)
    assert loaded.token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t" not in repr(loaded) and "s3cr3t" not in str(loaded.token)
    settings = loaded.to_settings()
    assert isinstance(settings, MlflowSettings)
    assert settings.token is not None and settings.token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t" not in settings.model_dump_json()
    with get_client(sync_client=True) as client:
        stored = client.read_block_document_by_name(
            "mlflow-roundtrip", block_type_slug="mlsteps-mlflow-settings", include_secrets=False
        )
    assert stored.data["token"] != "s3cr3t-token"
    assert stored.data["tracking_uri"] == "http://mlflow.example:5000"


def test_feast_block_round_trip_keeps_the_connection_string_secret() -> None:
    FeastSettings(
        repo_path="feature_repo",
        online_store={"type": "redis", "key_ttl_seconds": 3600},
        online_store_connection_string=SecretStr("127.0.0.1:6379,password=pw-s3cr3t,db=3"),
    ).save("feast-roundtrip", overwrite=True)

    loaded = FeastSettings.load("feast-roundtrip")

    assert loaded.repo_path == "feature_repo"
    assert loaded.online_store == {"type": "redis", "key_ttl_seconds": 3600}
    assert "pw-s3cr3t" not in repr(loaded)
    assert (
        loaded.secrets()["feast_online_store"].get_secret_value() == "127.0.0.1:6379,password=pw-s3cr3t,db=3"
    )
    assert FeastSettings(repo_path="r").secrets() == {}
    with get_client(sync_client=True) as client:
        stored = client.read_block_document_by_name(
            "feast-roundtrip", block_type_slug="mlsteps-feast-settings", include_secrets=False
        )
    assert "pw-s3cr3t" not in str(stored.data)
    assert stored.data["online_store"] == {"type": "redis", "key_ttl_seconds": 3600}
