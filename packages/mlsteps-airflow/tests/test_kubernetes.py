"""``build_dag(..., execution="kubernetes")``: one locked-down pod per step.

No cluster is reachable where these tests run, so they stop at the pod the
operator would create: its templates are rendered the way Airflow renders them
when the task runs (with the upstream tasks' XCom payloads), the pod object is
built by the provider's own ``build_pod_request_obj`` and validated against the
upstream Kubernetes schema (``kubernetes-validate``), and its command line is run
for real with the local ``mlsteps`` CLI to show a pod would run the step.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_testing import write_spec

from mlsteps.deploy.pss import check_restricted
from mlsteps.testing import registered_steps

SPEC = """\
name: toy_k8s
defaults:
  artifact_root: art
steps:
  source:
    uses: toy_source
    config: {count: 10}
    resources: {cpu: 500m, memory: 1Gi, node_selector: {pool: ml}, tolerations: [{key: spot, operator: Exists, effect: NoSchedule}]}
  total:
    uses: toy_sum
    retries: 2
    config: {min_sum: 40}
    inputs: {dataset: source.dataset}
"""
POD = {
    "image": "ghcr.io/example/toy:1.0",
    "spec_path": "/app/pipeline.yaml",
    "namespace": "ml",
    "tracking_uri": "http://mlflow.ml:5000",
    "env_secrets": {"MLFLOW_TRACKING_TOKEN": {"secret": "mlflow", "key": "token"}},
}


class _XComStore:
    """The upstream return values a running task would pull (what XCom holds after upstream pods)."""

    def __init__(self, values: dict[str, Any], try_number: int = 1) -> None:
        self.values = values
        self.try_number = try_number

    def xcom_pull(self, task_ids: str, **_: Any) -> Any:
        return self.values[task_ids]


def build(tmp_path: Path, **pod: Any) -> Any:
    from mlsteps_airflow.dag import build_dag

    spec = write_spec(tmp_path, SPEC)
    with registered_steps():
        return build_dag(spec, execution="kubernetes", pod={**POD, **pod})


def render_pod(task: Any, upstream: dict[str, Any]) -> dict[str, Any]:
    """Render the task's templates as at run time, build its pod and return it as a manifest dict."""
    from kubernetes.client import ApiClient

    context: dict[str, Any] = {"run_id": "manual__2026-11-28T10:00:00+00:00", "ti": _XComStore(upstream)}
    task.render_template_fields(context)
    pod = task.build_pod_request_obj(dry_run=True)  # the provider's own no-cluster path
    return ApiClient().sanitize_for_serialization(pod)


def test_each_step_is_a_pod_operator_wired_like_the_spec(tmp_path: Path) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    dag = build(tmp_path)

    assert set(dag.task_dict) == {"source", "total"}
    assert all(isinstance(t, KubernetesPodOperator) for t in dag.tasks)
    assert dag.task_dict["total"].upstream_task_ids == {"source"}
    assert dag.task_dict["total"].retries == 2
    assert dag.task_dict["source"].do_xcom_push


def test_rendered_pods_validate_against_the_kubernetes_schema(tmp_path: Path) -> None:
    import kubernetes_validate

    dag = build(tmp_path)
    dataset = {"kind": "dataset", "uri": "s3://bucket/d.parquet", "rows": 10, "content_hash": "sha256:ab"}
    source = render_pod(dag.task_dict["source"], {})
    total = render_pod(dag.task_dict["total"], {"source": {"outputs": {"dataset": dataset}}})

    for manifest in (source, total):
        kubernetes_validate.validate(manifest, "1.33", strict=True)
        assert check_restricted([manifest]) == []  # Pod Security Standards, restricted profile
        pod_sc = manifest["spec"]["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        (base,) = [c for c in manifest["spec"]["containers"] if c["name"] == "base"]
        sc = base["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        env = {e["name"]: e for e in base["env"]}
        assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "mlflow", "key": "token"}
        }
        assert "value" not in env["MLFLOW_TRACKING_TOKEN"]
        assert manifest["metadata"]["namespace"] == "ml"
        assert manifest["spec"].get("automountServiceAccountToken") is False

    (base,) = [c for c in source["spec"]["containers"] if c["name"] == "base"]
    assert base["resources"] == {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    assert source["spec"]["nodeSelector"] == {"pool": "ml"}
    assert source["spec"]["tolerations"] == [{"effect": "NoSchedule", "key": "spot", "operator": "Exists"}]
    (base,) = [c for c in total["spec"]["containers"] if c["name"] == "base"]
    args = base["args"]
    assert base["command"] == ["mlsteps"]
    assert args[:4] == ["step", "total", "--spec", "/app/pipeline.yaml"]
    assert args[args.index("--run-id") + 1] == "manual__2026-11-28T10:00:00+00:00"
    assert args[args.index("--attempt") + 1] == "1"
    assert args[args.index("--output") + 1] == "/airflow/xcom/return.json"
    name, _, ref = args[args.index("--input") + 1].partition("=")
    assert name == "dataset" and json.loads(ref) == dataset
    # The XCom sidecar reads the result file the step writes.
    assert any(c["name"] == "airflow-xcom-sidecar" for c in total["spec"]["containers"])


def test_the_pod_command_runs_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered command lines, run with the local CLI (the spec path rewritten to the test's)."""
    dag = build(tmp_path)
    spec = str(tmp_path / "pipeline.yaml")
    out = tmp_path / "xcom"
    out.mkdir()

    def run(task_id: str, upstream: dict[str, Any]) -> dict[str, Any]:
        manifest = render_pod(dag.task_dict[task_id], upstream)
        (base,) = [c for c in manifest["spec"]["containers"] if c["name"] == "base"]
        args = [spec if a == "/app/pipeline.yaml" else a for a in base["args"]]
        args[args.index("--output") + 1] = str(out / f"{task_id}.json")
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "mlsteps"), *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{shlex.join(args)}\n{proc.stderr}"
        return json.loads((out / f"{task_id}.json").read_text())

    source = run("source", {})
    total = run("total", {"source": source})
    assert total["status"] == "succeeded"
    assert total["metrics"]["sum"] == 45.0


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        ({"image": "ghcr.io/example/toy"}, "pinned by tag or digest"),
        ({"image": "ghcr.io/example/toy:latest"}, "pinned by tag or digest"),
        ({"env_secrets": {"BAD-NAME": {"secret": "s", "key": "k"}}}, "not valid environment variable names"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_pod_settings_are_rejected(tmp_path: Path, pod: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        build(tmp_path, **pod)


def test_kubernetes_execution_needs_pod_settings(tmp_path: Path) -> None:
    from mlsteps_airflow.dag import build_dag

    spec = write_spec(tmp_path, SPEC)
    with registered_steps(), pytest.raises(ValueError, match="needs pod settings"):
        build_dag(spec, execution="kubernetes")
