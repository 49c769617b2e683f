"""Deploying to a prefect-kubernetes work pool: the hardened template, a real deployment, the Job it renders.

No cluster is reachable here. What is real: the work pool and the deployment are
created on the temporary Prefect API server (by the ``prefect`` CLI, as the docs
say), and the Job manifest is rendered by prefect-kubernetes' own code path for a
flow run (``KubernetesWorkerJobConfiguration.resolve_for_flow_run``: the pool's
base template + the deployment's job variables + flow-run attribution), then
validated against the Kubernetes 1.33 schema and scanned with checkov. Not
exercised: a worker submitting the Job to an API server and the pod running.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prefect.client.orchestration import get_client

from mlsteps.deploy.pss import check_restricted
from mlsteps_prefect.kubernetes import DEFAULT_ENV, base_job_template, create_work_pool

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "penguins"
PREFECT = Path(sys.executable).parent / "prefect"
CHECKOV = ROOT / ".venvs" / "scan" / "bin" / "checkov"
K8S_VERSION = "1.33"
#: prefect-kubernetes refuses a job template without these two keys in the *pod* spec
#: (``KubernetesWorkerJobConfiguration._validate_job_manifest``); they are Job fields, so a strict
#: schema check flags them, and the API server drops them (unknown fields, fieldValidation=Warn).
PREFECT_POD_SPEC_EXTRAS = ("completions", "parallelism")
#: checkov findings the rendered Job may have, each with its reason (docs/adapters/prefect.md repeats them).
ALLOWED_CHECKOV = {
    "CKV_K8S_35": "Prefect passes its settings (API URL, flow run id) as environment variables",
    "CKV2_K8S_6": "a NetworkPolicy is a namespace object, not part of the Job (see the docs)",
}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "NO_COLOR": "1", "COLUMNS": "200"}
    out = subprocess.run(
        [str(PREFECT), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example's prefect.yaml deployed with the CLI to a pool made from the CLI-printed template."""
    work = tmp_path_factory.mktemp("k8s")
    template_file = work / "template.json"
    printed = subprocess.run(
        [sys.executable, "-m", "mlsteps_prefect.kubernetes"], capture_output=True, text=True, check=True
    )
    template_file.write_text(printed.stdout)
    cli(
        "work-pool",
        "create",
        "mlsteps-k8s",
        "--type",
        "kubernetes",
        "--base-job-template",
        str(template_file),
        # The session's test server is shared: another test (the docs samples) may have made it.
        "--overwrite",
    )

    example = work / "penguins"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".mlsteps", "data", "__pycache__"))
    cli("--no-prompt", "deploy", "--prefect-file", "prefect_deployment/prefect.yaml", "--all", cwd=example)

    async def read() -> dict[str, Any]:
        from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

        async with get_client() as client:
            pool = await client.read_work_pool("mlsteps-k8s")
            deployment = await client.read_deployment_by_name("penguins/penguins-k8s")
            flow_run = await client.create_flow_run_from_deployment(deployment.id)
            job = await KubernetesWorkerJobConfiguration.resolve_for_flow_run(
                flow_run, client=client, work_pool=pool, worker_name="mlsteps-test", deployment=deployment
            )
        return {"pool": pool, "deployment": deployment, "flow_run": flow_run, "job": job}

    return {"printed": json.loads(printed.stdout), **asyncio.run(read())}


def spec_variables() -> dict[str, Any]:
    """The job variables the example's prefect.yaml sets."""
    spec = yaml.safe_load((EXAMPLE / "prefect_deployment" / "prefect.yaml").read_text())
    variables: dict[str, Any] = spec["deployments"][0]["work_pool"]["job_variables"]
    return variables


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_the_cli_created_pool_holds_the_hardened_template(deployed: dict[str, Any]) -> None:
    pool = deployed["pool"]

    assert pool.type == "kubernetes"
    assert pool.base_job_template == deployed["printed"] == base_job_template()
    variables = pool.base_job_template["variables"]["properties"]
    assert variables["env"]["default"] == DEFAULT_ENV
    assert {"env_from", "volumes", "volume_mounts", "run_as_user"} <= set(variables)


def test_the_deployment_reads_back_with_its_job_variables(deployed: dict[str, Any]) -> None:
    deployment = deployed["deployment"]

    assert deployment.work_pool_name == "mlsteps-k8s"
    assert deployment.entrypoint == "prefect_flow.py:flow"
    assert deployment.job_variables == spec_variables()
    assert deployment.parameters == {"artifact_root": "data/.mlsteps"}
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/mlsteps/examples/penguins"}}
    ]
    # the flow's parameters, read from build_flow's flow by `prefect deploy`
    assert {"artifact_root", "mlflow_block"} <= set(deployment.parameter_openapi_schema["properties"])


def test_the_rendered_job_validates_against_the_kubernetes_schema(deployed: dict[str, Any]) -> None:
    manifest = copy.deepcopy(deployed["job"].job_manifest)

    kubernetes_validate.validate(manifest, K8S_VERSION, strict=False)
    with pytest.raises(kubernetes_validate.ValidationError) as strict:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    # the only strict finding: the two extra keys prefect-kubernetes insists on
    assert list(strict.value.path) == ["spec", "template", "spec"]
    assert "'completions', 'parallelism' were unexpected" in strict.value.message
    for key in PREFECT_POD_SPEC_EXTRAS:
        assert pod_spec(manifest).pop(key) == 1
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert check_restricted([manifest]) == []  # Pod Security Standards, restricted profile


def test_the_rendered_job_is_locked_down_and_carries_the_job_variables(deployed: dict[str, Any]) -> None:
    manifest = deployed["job"].job_manifest
    pod = pod_spec(manifest)
    (container,) = pod["containers"]

    assert manifest["kind"] == "Job"
    assert manifest["metadata"]["namespace"] == "mlsteps"
    assert manifest["metadata"]["labels"]["prefect.io/flow-run-id"] == str(deployed["flow_run"].id)
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 3600
    assert pod["serviceAccountName"] == "mlsteps-flows"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["image"] == spec_variables()["image"]
    assert container["imagePullPolicy"] == "Always"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"] == str(deployed["flow_run"].id)
    assert {k: env[k] for k in DEFAULT_ENV} == DEFAULT_ENV
    assert env["PREFECT_LOGGING_LEVEL"] == "INFO"
    # /tmp is the only writable path besides the data volume
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/opt/mlsteps/examples/penguins/data": "data"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "penguins-data"}


def test_template_defaults_apply_when_a_deployment_sets_only_the_image() -> None:
    async def render() -> dict[str, Any]:
        from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

        async with get_client() as client:
            config = await KubernetesWorkerJobConfiguration.from_template_and_values(
                base_job_template(), {"image": "registry.example.com/x:1"}, client=client
            )
        manifest: dict[str, Any] = config.job_manifest
        return manifest

    manifest = asyncio.run(render())
    pod = pod_spec(manifest)
    (container,) = pod["containers"]

    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container["envFrom"] == []
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_server_refuses_a_root_user_for_a_deployment(deployed: dict[str, Any]) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    deployment = deployed["deployment"]

    async def create() -> None:
        async with get_client() as client:
            await client.create_deployment(
                flow_id=deployment.flow_id,
                name="penguins-root",
                work_pool_name="mlsteps-k8s",
                entrypoint=deployment.entrypoint,
                job_variables={"run_as_user": 0},
            )

    with pytest.raises(PrefectHTTPStatusError, match=r"run_as_user.*0 is less than the minimum of 1"):
        asyncio.run(create())


def test_the_rendered_job_passes_a_checkov_scan(deployed: dict[str, Any], tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is missing at {CHECKOV}: create it with `make env-scan` (`make test` does)")
    manifest = copy.deepcopy(deployed["job"].job_manifest)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    out = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        check=False,
    )

    assert out.returncode in (0, 1), out.stderr[-3000:]
    report = json.loads(out.stdout)
    failed = {check["check_id"]: check["check_name"] for check in report["results"]["failed_checks"]}
    assert set(failed) <= set(ALLOWED_CHECKOV), {k: v for k, v in failed.items() if k not in ALLOWED_CHECKOV}
    assert report["summary"]["passed"] > 20


def test_create_work_pool_overwrites_an_existing_pool() -> None:
    async def run() -> tuple[Any, Any]:
        async with get_client() as client:
            first = await create_work_pool("mlsteps-k8s-api", client=client)
            second = await create_work_pool(
                "mlsteps-k8s-api", client=client, overwrite=True, resources={"memory_limit": "8Gi"}
            )
        return first, second

    first, second = asyncio.run(run())

    assert first.base_job_template["variables"]["properties"]["memory_limit"]["default"] == "4Gi"
    assert second.base_job_template["variables"]["properties"]["memory_limit"]["default"] == "8Gi"
