"""The run context: settings layering, path resolution and lineage wiring."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from mlsteps.context import MlflowSettings, RunKey, build_context


def test_mlflow_settings_merge_overrides_only_set_fields() -> None:
    base = MlflowSettings(tracking_uri="http://a", experiment="spec")
    merged = base.merged(MlflowSettings(tracking_uri="http://b", token=SecretStr("t")))
    assert merged.tracking_uri == "http://b"
    assert merged.experiment == "spec"
    assert merged.token is not None
    assert merged.token.get_secret_value() == "t"
    assert base.merged(None) is base


def test_build_context_resolves_root_and_records_lineage(tmp_path: Path) -> None:
    ctx = build_context(RunKey(run_id="r", step="s"), artifact_root="art", base_dir=tmp_path)
    assert ctx.artifact_root == str((tmp_path / "art").resolve())
    assert ctx.lineage is not None
    assert ctx.lineage.store.root == ctx.artifact_root
    assert ctx.tracking_uri == f"sqlite:///{tmp_path.resolve()}/art/mlflow.db"
    url = build_context(RunKey(run_id="r", step="s"), artifact_root="s3://bucket/x", base_dir=tmp_path)
    assert url.artifact_root == "s3://bucket/x"
