"""Every Python sample of docs/adapters/dagster.md runs and builds loadable Definitions.

Each ```python block is written into a copy of ``examples/penguins`` (the samples
refer to its ``pipeline.yaml``, relatively or next to the file) and executed in a
fresh interpreter of this environment with a temporary DAGSTER_HOME. Every
``Definitions`` the sample leaves in its namespace goes through
``Definitions.validate_loadable`` (what ``dagster definitions validate`` does), and
the test checks what the sample promises: asset keys, blocking gate checks, the
job, resources, sensors, the executor and, for the Kubernetes sample, the Job
manifest dagster-k8s renders for a step. No sample materializes anything. A block
that cannot run here is marked in the page, on the line just before its fence, with
``<!-- docs-test: skip (REASON) -->``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlsteps.testing import doc_code_blocks

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "adapters" / "dagster.md"
EXAMPLE = ROOT / "examples" / "penguins"
MARKER = "DOCS-SAMPLE-RESULT "

Defs = dict[str, dict[str, Any]]

PENGUIN_ASSETS = {
    "validate/dataset",
    "validate/report",
    "featurise/dataset",
    "train/model",
    "train/train_data",
    "train/test_data",
    "evaluate/report",
    "register/model_version",
    "deploy/deployment",
}


# Runs in a fresh interpreter: execute one sample file, then describe every Definitions it made.
DRIVER = r"""
import json, runpy, sys
import dagster as dg

namespace = runpy.run_path(sys.argv[1], run_name="docs_sample")
found = {}
for name, defs in namespace.items():
    if not isinstance(defs, dg.Definitions):
        continue
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    checks = {}
    for key in graph.asset_check_keys:
        checks[f"{key.asset_key.to_user_string()}:{key.name}"] = graph.get_check_spec(key).blocking
    info = {
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "checks": checks,
        "jobs": {j.name: j.executor_def.name for j in repo.get_all_jobs() if not j.name.startswith("__")},
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "sensor_jobs": sorted({s.job_name for s in repo.sensor_defs}),
        "resources": {k: type(v).__name__ for k, v in (defs.resources or {}).items()},
        "resource_fields": {
            k: {f: repr(getattr(v, f)) for f in type(v).model_fields} for k, v in (defs.resources or {}).items()
        },
    }
    if any("k8s" in executor for executor in info["jobs"].values()):
        from mlsteps_dagster import render_step_job

        job = render_step_job(defs, "train")
        pod = job["spec"]["template"]["spec"]
        info["train_job"] = {
            "namespace": job["metadata"].get("namespace"),
            "image": pod["containers"][0]["image"],
            "env": sorted(e["name"] for e in pod["containers"][0].get("env", [])),
            "secret_env": sorted(
                e["name"] for e in pod["containers"][0].get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
            ),
            "run_as_non_root": pod["securityContext"]["runAsNonRoot"],
        }
    found[name] = info
print("DOCS-SAMPLE-RESULT " + json.dumps(found))
"""


def run_sample(body: str, workdir: Path, filename: str) -> Defs:
    """Execute ``body`` as ``workdir/filename`` and describe the Definitions it builds."""
    sample = workdir / filename
    sample.write_text(body)
    home = workdir.parent / "dagster-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ) | {"DAGSTER_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(sample)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith(MARKER)]
    found: Defs = json.loads(line.removeprefix(MARKER))
    return found


def check_penguins(defs: dict[str, Any]) -> None:
    """The penguins spec as assets: one per step output, gate checks, one job, unset resources."""
    assert set(defs["assets"]) == PENGUIN_ASSETS
    assert defs["checks"] == {"validate/report:gate": True, "evaluate/report:gate": True}
    assert list(defs["jobs"]) == ["penguins"]
    resources = defs["resources"]
    assert (resources["mlsteps"], resources["mlsteps_mlflow"]) == ("MlstepsResource", "MlflowResource")


def check_build_definitions(found: Defs) -> None:
    """``defs = build_definitions(Path(__file__).parent / "pipeline.yaml")``."""
    assert list(found) == ["defs"]
    check_penguins(found["defs"])
    assert found["defs"]["jobs"] == {"penguins": "multi_or_in_process_executor"}


def check_resources(found: Defs) -> None:
    """Deployment resources: an S3 artifact root and an MLflow server whose token is an EnvVar."""
    defs = found["defs"]
    check_penguins(defs)
    fields = defs["resource_fields"]
    assert fields["mlsteps"]["artifact_root"] == "'s3://ml-artifacts/penguins'"
    assert fields["mlsteps_mlflow"]["tracking_uri"] == "'https://mlflow.example.com'"
    assert "MLFLOW_TRACKING_TOKEN" in fields["mlsteps_mlflow"]["token"]


def check_feast(found: Defs) -> None:
    """A ``FeastResource`` under ``mlsteps_feast``, its connection string an EnvVar."""
    defs = found["defs"]
    check_penguins(defs)
    assert defs["resources"]["mlsteps_feast"] == "FeastResource"
    feast = defs["resource_fields"]["mlsteps_feast"]
    assert feast["repo_path"] == "'/app/feature_repo'"
    assert feast["online_store"] == "{'type': 'redis'}"
    assert "FEAST_REDIS_URL" in feast["connection_string"]


def check_kubernetes(found: Defs) -> None:
    """``execution="kubernetes"``: the job runs on dagster-k8s's executor; a step's Job is hardened."""
    defs = found["defs"]
    check_penguins(defs)
    assert defs["jobs"] == {"penguins": "mlsteps_k8s"}  # dagster-k8s's k8s_job_executor, configured
    job = defs["train_job"]
    assert job["namespace"] == "ml"
    assert job["image"] == "registry.example.com/ml/penguins@sha256:..."
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"} <= set(job["env"])
    assert job["secret_env"] == ["MLFLOW_TRACKING_TOKEN"]
    assert job["run_as_non_root"] is True


def check_sensors(found: Defs) -> None:
    """Both retraining sensors, each starting the ``penguins`` job."""
    defs = found["defs"]
    check_penguins(defs)
    assert len(defs["sensors"]) == 2
    assert defs["sensor_jobs"] == ["penguins"]


#: What each sample promises, by block index (the substring makes sure the index still fits).
CHECKS: dict[int, tuple[str, Callable[[Defs], None]]] = {
    0: ('build_definitions(Path(__file__).parent / "pipeline.yaml")', check_build_definitions),
    1: ('"mlsteps": MlstepsResource(artifact_root=', check_resources),
    2: ("FeastResource(", check_feast),
    3: ('execution="kubernetes"', check_kubernetes),
    4: ("drift_sensor(", check_sensors),
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


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=[f"dagster-{i}" for i in range(len(SAMPLES))])
def test_sample_runs(index: int, tmp_path: Path) -> None:
    body, reason = SAMPLES[index]
    marker, check = CHECKS[index]
    assert marker in body, f"block {index} is no longer the sample its check expects ({marker!r})"
    if reason is not None:
        compile(body, f"{PAGE.name} block {index}", "exec")  # not run here, but it must be valid Python
        pytest.skip(f"docs-test: skip ({reason})")
    workdir = tmp_path / "penguins"
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    # A sample that names its file (``# examples/penguins/dagster_defs.py``) runs as that file.
    first = body.splitlines()[0]
    filename = Path(first.removeprefix("# ").split()[0]).name if first.startswith("# ") else "docs_sample.py"

    check(run_sample(body, workdir, filename))
