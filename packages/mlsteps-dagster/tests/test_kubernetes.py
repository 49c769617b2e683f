"""``execution="kubernetes"``: dagster-k8s's executor, per-step pod config, and the Job it would create.

No cluster is reachable here: the Job manifest of each step is rendered by
dagster-k8s's own code (the executor's config merged with the op's
``dagster-k8s/config`` tag, then ``construct_dagster_k8s_job``), validated
against the Kubernetes 1.33 schema and scanned with checkov. That the pods
actually schedule and run on a cluster is not tested.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from conftest import TOY_SPEC, write_spec
from pydantic import ValidationError

from mlsteps.deploy.pss import check_restricted
from mlsteps_dagster import K8sSettings, build_definitions, render_step_job
from mlsteps_dagster.kubernetes import K8S_CONFIG_TAG

pytestmark = pytest.mark.usefixtures("toy_steps")

ROOT = Path(__file__).resolve().parents[3]
CHECKOV = ROOT / ".venvs" / "scan" / "bin" / "checkov"
K8S_VERSION = "1.33"
#: checkov findings a rendered step Job may have, each with its reason (docs/adapters/dagster.md repeats them).
ALLOWED_CHECKOV = {
    "CKV_K8S_35": "the MLflow token comes from a Secret as an environment variable (secretKeyRef), "
    "as Dagster passes its own settings",
    "CKV2_K8S_6": "a NetworkPolicy is a namespace object, not part of the Job (see the docs)",
}

#: The toy spec with compute asked for on two steps.
SPEC = TOY_SPEC.replace(
    "    config: {count: 10}\n",
    """\
    config: {count: 10}
    resources:
      cpu: "500m"
      memory: 1Gi
""",
).replace(
    "    config: {max_rows: 100}\n",
    """\
    config: {max_rows: 100}
    resources:
      cpu: "2"
      memory: 4Gi
      gpu: 1
      node_selector: {pool: gpu}
      tolerations:
        - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
""",
)

SETTINGS = K8sSettings(
    image="registry.example.com/ml/penguins:1.4.2",
    namespace="ml",
    env_vars={"MLFLOW_TRACKING_URI": "http://mlflow.ml.svc:5000"},
    env_secrets={"MLFLOW_TRACKING_TOKEN": {"secret": "mlflow", "key": "token"}},  # type: ignore[dict-item]
    labels={"team": "ml"},
)


@pytest.fixture
def defs(tmp_path: Path) -> dg.Definitions:
    return build_definitions(write_spec(tmp_path, SPEC), execution="kubernetes", k8s=SETTINGS)


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_the_pipeline_job_and_the_code_location_use_the_k8s_executor(defs: dg.Definitions) -> None:
    job = defs.resolve_job_def("toy")

    assert job.executor_def.name == "mlsteps_k8s"
    assert defs.executor is job.executor_def
    # Dagster resolves the configured executor against dagster-k8s's own schema.
    resolved = job.executor_def.config_schema.resolve_config({})  # type: ignore[attr-defined]
    assert resolved.success, resolved.errors
    config = resolved.value["config"]
    assert config["job_image"] == SETTINGS.image
    assert config["job_namespace"] == "ml"
    # Every step op carries its own pod config; nothing else changed about the assets.
    tags = {node.name: node.tags for node in job.graph.nodes}
    assert all(K8S_CONFIG_TAG in t for t in tags.values())
    assert len(defs.resolve_asset_graph().get_all_asset_keys()) == 6


def test_dagster_builds_the_real_executor_from_the_settings(defs: dg.Definitions, tmp_path: Path) -> None:
    """dagster-k8s's executor factory accepts the config (a kubeconfig is loaded, never contacted)."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.step_delegating import StepDelegatingExecutor

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    settings = SETTINGS.model_copy(
        update={"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    )
    job = build_definitions(write_spec(tmp_path, SPEC), execution="kubernetes", k8s=settings).resolve_job_def(
        "toy"
    )
    config = job.executor_def.config_schema.resolve_config({}).value  # type: ignore[attr-defined]

    with dg.instance_for_test() as instance:
        executor = job.executor_def.executor_creation_fn(  # type: ignore[misc]
            InitExecutorContext(
                job=InMemoryJob(job),
                executor_def=job.executor_def,
                executor_config=config["config"],
                instance=instance,
            )
        )

    assert isinstance(executor, StepDelegatingExecutor)
    handler = executor._step_handler
    run_config = handler._executor_container_context.run_k8s_config
    env = {e["name"]: e for e in run_config.container_config["env"]}
    assert env["MLFLOW_TRACKING_TOKEN"]["value_from"]["secret_key_ref"] == {"name": "mlflow", "key": "token"}
    assert handler._executor_image == SETTINGS.image


def test_step_resources_and_hardening_reach_the_rendered_job(defs: dg.Definitions) -> None:
    manifest = render_step_job(defs, "checked")

    assert manifest["kind"] == "Job"
    assert manifest["metadata"]["namespace"] == "ml"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlsteps"
    assert manifest["metadata"]["labels"]["team"] == "ml"
    pod = manifest["spec"]["template"]["spec"]
    main = container(manifest)
    assert main["image"] == SETTINGS.image
    assert main["args"] == ["dagster", "api", "execute_step"]
    assert main["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    sc = main["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]
    env = {e["name"]: e for e in main["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.ml.svc:5000"
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "mlflow", "key": "token"}}
    assert env["DAGSTER_RUN_STEP_KEY"]["value"] == "checked"
    assert env["HOME"]["value"] == "/tmp"


def test_a_step_without_resources_gets_no_requests_but_the_same_hardening(defs: dg.Definitions) -> None:
    main = container(render_step_job(defs, "total"))
    small = container(render_step_job(defs, "source"))

    assert not main.get("resources")
    assert small["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert main["securityContext"] == small["securityContext"]


@pytest.mark.parametrize("step", ["source", "total", "after", "checked", "copy"])
def test_every_rendered_step_job_validates_against_the_kubernetes_schema(
    defs: dg.Definitions, step: str
) -> None:
    manifest = render_step_job(defs, step)

    # strict: unknown fields (a typo in a tag, a misplaced key) are errors too.
    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True) == K8S_VERSION
    assert check_restricted([manifest]) == []  # Pod Security Standards, restricted profile


def test_the_rendered_job_passes_a_checkov_scan(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is missing at {CHECKOV}: create it with `make env-scan` (`make test` does)")
    scan = tmp_path / "scan"
    scan.mkdir()
    digest = "registry.example.com/ml/penguins@sha256:" + "0" * 64
    pinned = build_definitions(
        write_spec(tmp_path, SPEC), execution="kubernetes", k8s=SETTINGS.model_copy(update={"image": digest})
    )
    (scan / "job.yaml").write_text(yaml.safe_dump(render_step_job(pinned, "checked"), sort_keys=False))

    out = subprocess.run(
        [str(CHECKOV), "-d", str(scan), "--framework", "kubernetes", "-o", "json", "--skip-download"],
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


def test_default_execution_adds_no_pod_config(tmp_path: Path) -> None:
    defs = build_definitions(write_spec(tmp_path, SPEC))

    job = defs.resolve_job_def("toy")
    assert job.executor_def.name != "mlsteps_k8s"
    assert defs.executor is None
    assert all(K8S_CONFIG_TAG not in node.tags for node in job.graph.nodes)
    with pytest.raises(ValueError, match="execution='kubernetes'"):
        build_definitions(tmp_path / "pipeline.yaml", k8s=SETTINGS)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"image": "penguins:latest"}, "pinned by tag or digest"),
        ({"image": "penguins"}, "pinned by tag or digest"),
        ({"env_vars": {"BAD-NAME": "x"}}, "not valid environment variable names"),
        ({"run_as_user": 0}, "greater than or equal to 1"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_rejected_when_building(
    tmp_path: Path, settings: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError, match=expected):
        build_definitions(write_spec(tmp_path, SPEC), execution="kubernetes", k8s=settings)


def test_same_settings_share_one_executor_so_pipelines_merge(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    a = build_definitions(spec, key_prefix="a", execution="kubernetes", k8s=SETTINGS)
    b = build_definitions(spec, key_prefix="b", execution="kubernetes", k8s=SETTINGS.model_dump())

    merged = dg.Definitions.merge(a, b)

    assert merged.executor is a.executor is b.executor
    assert {j.name for j in merged.resolve_all_job_defs()} >= {"a_toy", "b_toy"}
    assert render_step_job(merged, "b__checked", job_name="b_toy")["metadata"]["labels"]["dagster/op"] == (
        "b__checked"
    )
