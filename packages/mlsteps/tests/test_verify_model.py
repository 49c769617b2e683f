"""``python -m mlsteps.verify_model``: the init container of the Kubernetes and KServe pods.

Run for real, as the pod runs it: a subprocess with only ``MLFLOW_TRACKING_URI``
set, against a SQLite MLflow registry in which the real ``register`` step
registered a model and recorded its artifact hash. No cluster is involved: this
proves the command's behaviour, not that a pod runs it (see docs/deploy/kubernetes.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_register import log_model, register, report

from mlsteps.backends.mlflow import ARTIFACT_HASH_TAG, configure
from mlsteps.context import RunContext, RunKey
from mlsteps.hashing import hash_path


@dataclass(frozen=True)
class Registered:
    """A version registered by the ``register`` step: its URI, recorded hash and stored files."""

    tracking_uri: str
    model_uri: str
    recorded: str
    stored: Path


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    tmp = tmp_path_factory.mktemp("verify")
    ctx = RunContext(
        run_key=RunKey(run_id="r1", step="register", pipeline="t"),
        artifact_root=str(tmp / "art"),
        base_dir=tmp,
    )
    version = register(ctx, log_model(ctx, tmp), report(tmp)).version
    client = configure(ctx)
    recorded = client.get_model_version("iris", version).tags[ARTIFACT_HASH_TAG]
    stored = Path(client.get_model_version_download_uri("iris", version).removeprefix("file://"))
    assert ctx.registry_uri == ctx.tracking_uri
    return Registered(ctx.tracking_uri, f"models:/iris/{version}", recorded, stored)


def verify(
    reg: Registered, dest: Path, *args: str, model_uri: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The init container's command, with the environment a pod gives it (the tracking URI)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = reg.tracking_uri
    uri = model_uri or reg.model_uri
    return subprocess.run(
        [sys.executable, "-m", "mlsteps.verify_model", "--model-uri", uri, "--dest", str(dest), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_intact_artifacts_pass_and_artifacts_changed_after_registration_fail_the_pod(
    registered: Registered, tmp_path: Path
) -> None:
    dest = tmp_path / "mnt-models"
    dest.mkdir()
    # What an earlier, interrupted attempt of the init container could have left in the emptyDir.
    (dest / "partial.tmp").write_text("half a download")

    ok = verify(registered, dest, "--expected-hash", registered.recorded)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert f"match the registered hash {registered.recorded}" in ok.stdout
    # The copy the server will load: the registered files, nothing stale, hashing as recorded.
    assert (dest / "MLmodel").is_file()
    assert not (dest / "partial.tmp").exists()
    assert hash_path(dest) == registered.recorded

    # Someone edits the stored artifacts after registration (and after deploy's own check).
    mlmodel = registered.stored / "MLmodel"
    mlmodel.write_text(mlmodel.read_text() + "\n# edited after registration\n")
    changed = verify(registered, dest, "--expected-hash", registered.recorded)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    message = changed.stderr
    assert f"REFUSED {registered.model_uri}: its artifacts changed since registration" in message
    assert f"registration recorded {registered.recorded}" in message
    actual = message.split("hash to ", 1)[1].split(",", 1)[0]
    assert actual.startswith("sha256:") and actual != registered.recorded
    # The refused copy is gone: nothing in the shared volume for the server to load.
    assert list(dest.iterdir()) == []


def test_no_recorded_hash_downloads_unverified_and_bad_input_fails(
    registered: Registered, tmp_path: Path
) -> None:
    unverified = verify(registered, tmp_path / "a")
    assert unverified.returncode == 0, unverified.stderr[-3000:]
    assert "NOT verified: no hash was recorded at registration" in unverified.stderr
    assert (tmp_path / "a" / "MLmodel").is_file()

    malformed = verify(registered, tmp_path / "b", "--expected-hash", "md5:abc")
    assert malformed.returncode == 2
    assert "expected sha256:<64 hex digits>" in malformed.stderr

    missing = verify(registered, tmp_path / "c", model_uri="models:/iris/99")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "could not download models:/iris/99" in missing.stderr
    assert "not found" in missing.stderr
    assert list((tmp_path / "c").iterdir()) == []
