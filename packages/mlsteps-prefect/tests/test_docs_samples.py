"""Every Python sample of docs/adapters/prefect.md runs against a real Prefect API server.

Each ```python block is written into a copy of ``examples/penguins`` (the samples
refer to its ``pipeline.yaml`` and ``prefect_flow.py``) and executed in a fresh
interpreter of this environment, with a temporary PREFECT_HOME and results storage,
talking to the session's temporary API server (``conftest.prefect_server``). The
test then checks what the sample promises, reading back through the API what it
saved (blocks, deployments, automations). A block that cannot run here is marked in
the page, on the line just before its fence, with ``<!-- docs-test: skip (REASON) -->``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlsteps.testing import doc_code_blocks

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "adapters" / "prefect.md"
EXAMPLE = ROOT / "examples" / "penguins"
MARKER = "DOCS-SAMPLE-RESULT "


# Runs in a fresh interpreter: execute one sample file, then describe the flows and tasks it made.
DRIVER = r"""
import json, runpy, sys
from prefect import Flow, Task

namespace = runpy.run_path(sys.argv[1], run_name=sys.argv[2])
found = {}
for name, value in namespace.items():
    if isinstance(value, Flow):
        found[name] = {"kind": "flow", "name": value.name, "parameters": sorted(value.parameters.properties)}
    elif isinstance(value, Task):
        found[name] = {"kind": "task", "name": value.name}
    elif name == "deployment_id":
        found[name] = {"kind": "deployment", "id": str(value)}
print("DOCS-SAMPLE-RESULT " + json.dumps(found))
"""


@dataclass
class Sample:
    """What a sample left: the objects in its namespace, and its working directory."""

    objects: dict[str, dict[str, Any]]
    workdir: Path


def run_sample(body: str, workdir: Path, api_url: str, *, filename: str, run_name: str) -> Sample:
    """Execute ``body`` as ``workdir/filename`` against the test API server."""
    sample = workdir / filename
    sample.write_text(body)
    env = dict(os.environ) | {
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(workdir.parent / "prefect-home"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(workdir.parent / "prefect-results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(sample), run_name],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith(MARKER)]
    return Sample(json.loads(line.removeprefix(MARKER)), workdir)


def prepare_penguins(workdir: Path) -> None:
    """The example's data, as its README says to do before running the flow."""
    subprocess.run(
        [sys.executable, "prepare_data.py"], cwd=workdir, check=True, timeout=300, capture_output=True
    )


def stop_served_model(workdir: Path) -> None:
    """The example's last step serves the model: stop it, whatever happened."""
    subprocess.run(
        [
            str(Path(sys.executable).parent / "mlsteps"),
            "deploy",
            "stop",
            "--spec",
            str(workdir / "pipeline.yaml"),
        ],
        check=False,
        timeout=120,
        capture_output=True,
    )


def check_build_flow(sample: Sample) -> None:
    """``python prefect_flow.py`` runs the whole penguins pipeline under Prefect, every step succeeding."""
    from mlsteps.lineage import LineageRecorder
    from mlsteps.storage import ArtifactStore

    assert sample.objects["flow"]["kind"] == "flow"
    assert sample.objects["flow"]["name"] == "penguins"
    assert sample.objects["flow"]["parameters"] == ["artifact_root", "feast_block", "mlflow_block", "trigger"]
    lineage = LineageRecorder(ArtifactStore(sample.workdir / ".mlsteps"))
    # One flow run (`mlsteps deploy stop` afterwards records a local run of its own).
    (run_id,) = {r.run_key.run_id for r in lineage.records() if r.run_key.orchestrator == "prefect"}
    records = lineage.records(run_id)
    assert sorted(r.run_key.step for r in records) == sorted(
        ["validate", "featurise", "train", "evaluate", "register", "deploy"]
    )
    assert {(r.run_key.orchestrator, r.status) for r in records} == {("prefect", "succeeded")}


def check_tasks_in_a_flow(sample: Sample) -> None:
    """A hand-written flow around the step tasks; ``train_task`` is a Prefect task."""
    assert sample.objects["pipeline"] == {"kind": "flow", "name": "pipeline", "parameters": []}
    assert sample.objects["train_task"]["kind"] == "task"


def check_blocks_saved(sample: Sample) -> None:
    """Both blocks are saved on the server; the secrets come back only when revealed."""
    from mlsteps_prefect import FeastSettings, MlflowSettingsBlock

    mlflow = MlflowSettingsBlock.load("mlflow-prod")
    assert mlflow.tracking_uri == "http://mlflow:5000"
    assert mlflow.token is not None and mlflow.token.get_secret_value() == "..."
    feast = FeastSettings.load("feast")
    assert feast.repo_path == "feature_repo"
    assert feast.online_store == {"type": "redis"}
    assert feast.online_store_connection_string is not None
    assert feast.online_store_connection_string.get_secret_value() == "redis:6379,password=..."
    assert "password" not in repr(feast)


def check_feast_block_saved(sample: Sample) -> None:
    from mlsteps_prefect import FeastSettings

    feast = FeastSettings.load("feast-prod")
    assert feast.online_store == {"type": "redis"}
    assert feast.online_store_connection_string is not None
    assert feast.online_store_connection_string.get_secret_value().startswith("redis.internal:6379,")


def check_drift_automation(sample: Sample) -> None:
    """The training deployment exists on the k8s pool and an automation runs it on drift events."""
    from prefect.client.orchestration import get_client

    deployment_id = sample.objects["deployment_id"]["id"]

    async def read() -> tuple[Any, list[Any]]:
        async with get_client() as client:
            return await client.read_deployment(deployment_id), await client.read_automations()

    deployment, automations = asyncio.run(read())
    assert deployment.name == "penguins-train"
    assert deployment.work_pool_name == "mlsteps-k8s"
    assert deployment.entrypoint == "prefect_flow.py:flow"
    assert deployment.job_variables["image"] == "registry.example.com/ml/penguins:1.0"
    # A worker's pod changes to the directory the deployment was made in: the image must hold it.
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(sample.workdir)}}
    ]
    (automation,) = [a for a in automations if a.name == "retrain-on-drift-penguins"]
    assert automation.trigger.expect == {"mlsteps.drift.detected"}
    assert automation.trigger.match.get("prefect.resource.id") == ["mlsteps.model.penguins"]
    (action,) = automation.actions
    assert str(action.deployment_id) == deployment_id


def create_k8s_pool(workdir: Path) -> None:
    """The sample deploys to the pool the page creates first (`prefect work-pool create ...`)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from mlsteps_prefect.kubernetes import create_work_pool

    async def ensure() -> None:
        async with get_client() as client:
            try:
                await client.read_work_pool("mlsteps-k8s")
            except ObjectNotFound:
                await create_work_pool("mlsteps-k8s")

    asyncio.run(ensure())


#: What each sample promises, by block index: a substring that makes sure the index
#: still fits, a set-up the page asks for before the sample, and the check.
CHECKS: dict[int, tuple[str, Callable[[Path], None] | None, Callable[[Sample], None]]] = {
    0: ('build_flow(Path(__file__).with_name("pipeline.yaml"))', prepare_penguins, check_build_flow),
    1: ('mlsteps_task("my_loader")', None, check_tasks_in_a_flow),
    2: ('.save("mlflow-prod")', None, check_blocks_saved),
    3: ('flow(mlflow_block="mlflow-prod", feast_block="feast")', None, lambda sample: None),
    4: ('.save("feast-prod")', None, check_feast_block_saved),
    5: ('flow(feast_block="feast-prod")', None, lambda sample: None),
    6: ("drift_automation(deployment_id", create_k8s_pool, check_drift_automation),
}

SAMPLES = doc_code_blocks(PAGE, "python")


def test_every_sample_has_a_check_and_every_skip_a_reason() -> None:
    assert len(SAMPLES) == len(CHECKS), "a sample was added or removed: give it a check in CHECKS"
    skipped = [reason for _, reason in SAMPLES if reason is not None]
    assert all(skipped), "a `<!-- docs-test: skip (REASON) -->` marker needs a reason"
    markers = [line for line in PAGE.read_text().splitlines() if "docs-test" in line]
    assert len(markers) == len(skipped), (
        f"a docs-test marker is malformed or not just before a python fence: {markers}"
    )
    print(f"{PAGE.name}: {len(SAMPLES) - len(skipped)} samples executed, {len(skipped)} skipped")


#: Samples that run the whole example pipeline (about a minute).
SLOW = {0}


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(i, id=f"prefect-{i}", marks=[pytest.mark.slow] if i in SLOW else [])
        for i in range(len(SAMPLES))
    ],
)
def test_sample_runs(index: int, tmp_path: Path, prefect_server: str) -> None:
    body, reason = SAMPLES[index]
    marker, setup, check = CHECKS[index]
    assert marker in body, f"block {index} is no longer the sample its check expects ({marker!r})"
    if reason is not None:
        compile(body, f"{PAGE.name} block {index}", "exec")  # not run here, but it must be valid Python
        pytest.skip(f"docs-test: skip ({reason})")
    workdir = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    # A sample that names its file (``# examples/penguins/prefect_flow.py``) runs as that file.
    first = body.splitlines()[0]
    filename = Path(first.removeprefix("# ").split()[0]).name if first.startswith("# ") else "docs_sample.py"
    if setup is not None:
        setup(workdir)
    # A sample with a `__main__` guard is a script: run it as one (prefect_flow.py runs the pipeline).
    run_name = "__main__" if 'if __name__ == "__main__":' in body else "docs_sample"

    try:
        sample = run_sample(body, workdir, prefect_server, filename=filename, run_name=run_name)
    finally:
        if run_name == "__main__":
            stop_served_model(workdir)

    check(sample)
