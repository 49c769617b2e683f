"""The ``kubernetes`` and ``kserve`` deploy targets.

Without a cluster (every run): rendering for every strategy x target, validation
against the upstream Kubernetes schemas (kubernetes-validate) and the vendored
CRD schemas (jsonschema), a checkov scan of everything rendered, configuration
errors, the pure rollout/readiness logic, and the real client's errors against
an unreachable API server.

With a cluster (``@pytest.mark.cluster``, only when ``KUBECONFIG`` and the kind
workflow's variables are set; see .github/workflows/kind.yml): a real rollout,
an automatic rollback of a broken image and of a version whose pods' init
container refuses its artifacts (a wrong recorded hash), a rollback by hand, a
dry run, a canary with its analysis hook, and stop. These have not been run on
the development machine (no cluster is reachable there).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsteps.backends.mlflow import download_tree_hash
from mlsteps.context import RunContext, RunKey, build_context
from mlsteps.deploy import manifests as m
from mlsteps.deploy.base import (
    AnalysisContext,
    DeploymentState,
    DeployRequest,
    ModelSpec,
    StateFile,
    StrategyConfig,
)
from mlsteps.deploy.kserve import KServeTarget, KServeTargetConfig, isvc_status
from mlsteps.deploy.kubernetes import (
    KubernetesTarget,
    KubernetesTargetConfig,
    current_replicaset,
    image_problem,
    pod_problem,
    rollout_status,
    run_analysis,
)
from mlsteps.deploy.pss import check_restricted, pod_specs
from mlsteps.errors import BackendError, ConfigError
from mlsteps.steps.deploy import DeployStep

ROOT = Path(__file__).resolve().parents[3]
CHECKOV = ROOT / ".venvs" / "scan" / "bin" / "checkov"
DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"registry.example.com/models/penguins-server:1.4.2@{DIGEST}"
STRATEGIES = ("replace", "canary", "shadow", "ab")
#: checkov checks a rendered manifest may fail, each with its reason (docs/deploy/kubernetes.md repeats it).
ALLOWED_FAILURES = {
    # MLflow reads its tracking URI and the artifact store's credentials from environment variables
    # only; they come from Secrets through secretKeyRef (never inline values). Mounting them as
    # files would need a wrapper script in every model image.
    "CKV_K8S_35": "secrets as environment variables (secretKeyRef)",
}

#: The hashes register recorded (mlsteps.artifact_hash) for v3 and v2.
HASH_V3 = "sha256:" + "3" * 64
HASH_V2 = "sha256:" + "2" * 64
MODEL = ModelSpec(
    name="penguins",
    version="3",
    model_uri="models:/penguins/3",
    storage_uri="s3://models/1/models/m-0a1b2c/artifacts",
    run_id="0a1b2c",
    artifact_hash=HASH_V3,
)
STABLE = ModelSpec(name="penguins", version="2", model_uri="models:/penguins/2", artifact_hash=HASH_V2)


def k8s_config(**overrides: Any) -> KubernetesTargetConfig:
    base: dict[str, Any] = {
        "image": IMAGE,
        "namespace": "models",
        "tracking_uri_secret": {"secret": "mlflow-tracking", "key": "uri"},
        "secret_env": [{"name": "AWS_SECRET_ACCESS_KEY", "secret": "artifact-store", "key": "secret-key"}],
        "env": {"MLFLOW_S3_ENDPOINT_URL": "https://minio.storage:9000"},
        "labels": {"team": "ml"},
    }
    return KubernetesTargetConfig.model_validate({**base, **overrides})


#: What every kserve target config needs: the init container's image and the tracking URI.
KSERVE_BASE: dict[str, Any] = {
    "type": "kserve",
    "verify_image": IMAGE,
    "tracking_uri_secret": {"secret": "mlflow-tracking", "key": "uri"},
}


def kserve_config(**overrides: Any) -> KServeTargetConfig:
    return KServeTargetConfig.model_validate(
        {**KSERVE_BASE, "namespace": "models", "service_account": "kserve-s3", **overrides}
    )


def request(kind: str = "replace", **strategy: Any) -> DeployRequest:
    return DeployRequest(
        deployment="penguins", model=MODEL, strategy=StrategyConfig(kind=kind, **strategy), actor="alice"
    )


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def render_everything() -> dict[str, list[dict[str, Any]]]:
    """Every manifest set the targets render: each strategy, with and without autoscaling, plus KServe."""
    out: dict[str, list[dict[str, Any]]] = {}
    for auto in (None, {"min_replicas": 2, "max_replicas": 6}):
        target = KubernetesTarget(k8s_config(autoscaling=auto))
        for kind in STRATEGIES:
            suffix = "-hpa" if auto else ""
            out[f"k8s-{kind}{suffix}"] = target.render(request(kind))
            if kind != "replace":
                # What the target applies mid-rollout: both Deployments and the route.
                out[f"k8s-{kind}-both{suffix}"] = m.render_kubernetes(
                    target.config,
                    "penguins",
                    MODEL,
                    strategy=kind,
                    stable=STABLE,
                    percent=50,
                    run_key="a/b/c/d",
                )
    kserve = KServeTarget(kserve_config(runtime="mlflow-mlserver-custom"))
    for kind in ("replace", "canary"):
        out[f"kserve-{kind}"] = kserve.render(request(kind))
    return out


# --------------------------------------------------------------------------- rendering


def test_replace_renders_a_hardened_mlflow_scoring_server() -> None:
    objects = KubernetesTarget(k8s_config()).render(request("replace"))
    assert [o["kind"] for o in objects] == ["NetworkPolicy", "Service", "Deployment"]
    (dep,) = by_kind(objects, "Deployment")
    assert dep["metadata"]["name"] == "penguins"
    assert dep["metadata"]["namespace"] == "models"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[m.VERSION_LABEL] == "3"
    assert labels[m.MODEL_LABEL] == "penguins"
    assert labels[m.TRACK_LABEL] == "stable"
    assert labels["team"] == "ml"
    # The selector is immutable: it must not name the version, or the next deploy could not apply.
    assert dep["spec"]["selector"]["matchLabels"] == {m.INSTANCE_LABEL: "penguins", m.TRACK_LABEL: "stable"}
    assert dep["spec"]["replicas"] == 2
    c = container(dep)
    assert c["image"] == IMAGE
    # The server loads the copy the init container verified, not models:/ (no second download).
    assert c["command"][:5] == ["mlflow", "models", "serve", "--model-uri", "/mnt/models"]
    assert c["command"][-2:] == ["--env-manager", "local"]
    assert "0.0.0.0" in c["command"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/ping", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {
        "name": "MLFLOW_TRACKING_URI",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-tracking", "key": "uri", "optional": False}},
    }
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "artifact-store"
    assert env["HOME"]["value"] == "/tmp"
    assert c["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == [
        "python",
        "-m",
        "mlsteps.verify_model",
        "--model-uri",
        "models:/penguins/3",
        "--dest",
        "/mnt/models",
        "--expected-hash",
        HASH_V3,
    ]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["volumes"] == [
        {"name": "scratch-0", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "model", "emptyDir": {"sizeLimit": "2Gi"}},
    ]
    assert c["volumeMounts"] == [
        {"name": "scratch-0", "mountPath": "/tmp"},
        {"name": "model", "mountPath": "/mnt/models", "readOnly": True},
    ]
    (svc,) = by_kind(objects, "Service")
    assert svc["spec"]["selector"] == {m.INSTANCE_LABEL: "penguins"}
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    # A plain render (GitOps) names no run; applied objects do (see the labelled render below).
    assert m.RUN_KEY_LABEL not in dep["metadata"]["labels"]
    labelled = m.deployment_manifest(
        k8s_config(),
        "penguins",
        MODEL,
        track="stable",
        run_key="airflow/train/2025-01-01T00:00:00+00:00/deploy",
    )
    assert labelled["metadata"]["annotations"][m.RUN_KEY_ANNOTATION] == (
        "airflow/train/2025-01-01T00:00:00+00:00/deploy"
    )
    assert m.label_problem(m.RUN_KEY_LABEL, labelled["metadata"]["labels"][m.RUN_KEY_LABEL]) is None
    # YAML anchors would make GitOps diffs unreadable: every rendered dict is its own object.
    assert "&id" not in yaml.safe_dump_all(objects)


@pytest.mark.parametrize(
    ("kind", "weights", "mirror"),
    [("canary", [100, 0], None), ("ab", [70, 30], None), ("shadow", [100], 100.0)],
)
def test_istio_strategies_route_between_stable_and_candidate(
    kind: str, weights: list[int], mirror: float | None
) -> None:
    strategy: dict[str, Any] = {"weight": 30} if kind == "ab" else {}
    objects = KubernetesTarget(k8s_config()).render(request(kind, **strategy))
    assert [o["kind"] for o in objects] == [
        "NetworkPolicy",
        "Service",
        "Deployment",
        "DestinationRule",
        "VirtualService",
    ]
    (dep,) = by_kind(objects, "Deployment")
    assert dep["metadata"]["name"] == "penguins-candidate"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["template"]["metadata"]["labels"][m.TRACK_LABEL] == "candidate"
    (dr,) = by_kind(objects, "DestinationRule")
    assert dr["apiVersion"] == "networking.istio.io/v1"
    assert dr["spec"]["host"] == "penguins.models.svc.cluster.local"
    assert dr["spec"]["subsets"] == [
        {"name": "stable", "labels": {m.TRACK_LABEL: "stable"}},
        {"name": "candidate", "labels": {m.TRACK_LABEL: "candidate"}},
    ]
    (vs,) = by_kind(objects, "VirtualService")
    (http,) = vs["spec"]["http"]
    if kind == "canary":
        # The render shows the first step of the default steps [10, 50, 100].
        weights = [90, 10]
    assert [r["weight"] for r in http["route"]] == weights
    assert [r["destination"]["subset"] for r in http["route"]] == ["stable", "candidate"][: len(weights)]
    if mirror is None:
        assert "mirror" not in http
    else:
        assert http["mirror"]["subset"] == "candidate"
        assert http["mirrorPercentage"] == {"value": mirror}


def test_autoscaling_adds_an_hpa_and_leaves_replicas_to_it() -> None:
    objects = KubernetesTarget(k8s_config(autoscaling={"min_replicas": 2, "max_replicas": 5})).render(
        request()
    )
    (dep,) = by_kind(objects, "Deployment")
    assert "replicas" not in dep["spec"]
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "penguins",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)


def test_kserve_renders_an_mlflow_inference_service() -> None:
    (isvc,) = KServeTarget(kserve_config(runtime="mlflow-custom")).render(request("replace"))
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "mlflow"}
    assert predictor["model"]["protocolVersion"] == "v2"
    # No storageUri: KServe's storage initializer would download unverified files; the
    # init container downloads and verifies them into /mnt/models instead.
    assert "storageUri" not in predictor["model"]
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in predictor["model"][
        "volumeMounts"
    ]
    # The runtime needs no registry access: only the init container gets the tracking URI.
    assert "MLFLOW_TRACKING_URI" not in {e["name"] for e in predictor["model"].get("env", [])}
    assert predictor["model"]["runtime"] == "mlflow-custom"
    assert predictor["serviceAccountName"] == "kserve-s3"
    assert "canaryTrafficPercent" not in predictor
    assert predictor["model"]["securityContext"]["readOnlyRootFilesystem"] is True
    (canary,) = KServeTarget(kserve_config()).render(request("canary", steps=[20, 60, 100]))
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert "runtime" not in canary["spec"]["predictor"]["model"]
    # The artifact location is no longer needed: the init container resolves models:/ itself.
    without_storage = DeployRequest(
        deployment="penguins",
        model=ModelSpec(name="p", version="1", model_uri="models:/p/1", artifact_hash=HASH_V2),
        strategy=StrategyConfig(),
        actor="a",
    )
    (plain,) = KServeTarget(kserve_config()).render(without_storage)
    assert _verify_args(plain["spec"]["predictor"]["initContainers"][0]) == ("models:/p/1", HASH_V2)


def _verify_args(init: dict[str, Any]) -> tuple[str, str | None]:
    """The model URI and expected hash an init container's ``mlsteps.verify_model`` command names."""
    command = init["command"]
    assert command[:3] == ["python", "-m", "mlsteps.verify_model"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args["--dest"] == "/mnt/models"
    return args["--model-uri"], args.get("--expected-hash")


def _pods_with_versions(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(version label, pod spec, serving container) of every Deployment and InferenceService."""
    found = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            found.append((obj["metadata"]["labels"][m.VERSION_LABEL], pod, container(obj)))
        elif obj["kind"] == "InferenceService":
            pod = obj["spec"]["predictor"]
            found.append((obj["metadata"]["labels"][m.VERSION_LABEL], pod, pod["model"]))
    return found


def test_every_rendered_pod_verifies_the_registered_hash_before_serving_a_local_copy() -> None:
    """Each strategy's Deployments (stable and candidate) and each InferenceService: an init container
    downloads the version it serves and checks the hash recorded at registration; the server reads
    the verified copy, mounted read-only, and is not told to download anything."""
    hashes = {"3": HASH_V3, "2": HASH_V2}
    seen: set[str] = set()
    for name, objects in render_everything().items():
        for version, pod, server in _pods_with_versions(objects):
            seen.add(f"{name.split('-')[0]}:{version}")
            (init,) = pod["initContainers"]
            assert init["name"] == "verify-model", name
            assert _verify_args(init) == (f"models:/penguins/{version}", hashes[version]), name
            # As hardened and bounded as the server (checked again by the PSS and checkov tests).
            assert init["securityContext"] == server["securityContext"], name
            assert init["resources"] == server["resources"], name
            assert init["image"] == IMAGE, name
            env = {e["name"]: e for e in init["env"]}
            assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-tracking"
            # The init container writes the copy; the server only reads it.
            assert {"name": "model", "mountPath": "/mnt/models"} in init["volumeMounts"], name
            assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in server["volumeMounts"]
            assert {"name": "model", "emptyDir": {"sizeLimit": "2Gi"}} in pod["volumes"], name
            assert "storageUri" not in server
            assert "models:/" not in " ".join(server.get("command", [])), name
    assert seen == {"k8s:3", "k8s:2", "kserve:3"}


def test_a_version_without_a_recorded_hash_is_downloaded_but_not_verified() -> None:
    unhashed = dataclasses.replace(MODEL, artifact_hash=None)
    (dep,) = by_kind(
        m.render_kubernetes(k8s_config(), "penguins", unhashed, strategy="replace"), "Deployment"
    )
    assert _verify_args(dep["spec"]["template"]["spec"]["initContainers"][0]) == ("models:/penguins/3", None)


def test_the_recorded_hash_survives_in_the_state_for_later_renders() -> None:
    """The stable Deployment beside a canary and a rollback are rendered from the state file's
    record of a version (model_of), not from the registry: the hash must be in that record."""
    from mlsteps.deploy.kubernetes import model_of, remember_model

    state = DeploymentState(deployment="penguins", target="kubernetes", model_name="penguins")
    remember_model(state, MODEL)
    again = model_of(state, "3")
    assert again is not None
    assert (again.artifact_hash, again.storage_uri) == (HASH_V3, MODEL.storage_uri)
    (dep,) = by_kind(m.render_kubernetes(k8s_config(), "penguins", again, strategy="replace"), "Deployment")
    assert _verify_args(dep["spec"]["template"]["spec"]["initContainers"][0])[1] == HASH_V3
    # A state written before hashes were recorded: the version renders unverified, not broken.
    assert model_of(DeploymentState(deployment="p", target="kubernetes", model_name="p"), "1") is not None


# --------------------------------------------------------------------------- schemas


def test_every_rendered_manifest_validates_against_upstream_schemas() -> None:
    rendered = render_everything()
    kinds = set()
    for objects in rendered.values():
        for obj in objects:
            kinds.add(obj["kind"])
            assert m.manifest_problems(obj, kubernetes_version="1.33") == [], m.describe(obj)
    assert kinds == {
        "NetworkPolicy",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "DestinationRule",
        "VirtualService",
        "InferenceService",
    }


def test_every_rendered_pod_meets_the_restricted_pod_security_standard() -> None:
    pods = 0
    for name, objects in render_everything().items():
        assert check_restricted(objects) == [], name
        pods += sum(1 for obj in objects for _ in pod_specs(obj))
    # 12 Kubernetes sets (6 with a candidate beside the stable Deployment) and 2 KServe predictors.
    assert pods == 12 + 6 + 2 + 2


def _set(path: str, value: Any) -> Any:
    """A mutation of a rendered Deployment: ``path`` is dotted, ``[0]`` picks the container."""

    def apply(deployment: dict[str, Any]) -> None:
        node: Any = deployment["spec"]["template"]["spec"]
        keys = path.split(".")
        for key in keys[:-1]:
            node = node["containers"][0] if key == "[0]" else node.setdefault(key, {})
        node[keys[-1]] = value

    return apply


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (_set("hostNetwork", True), "hostNetwork"),
        (_set("hostPID", True), "hostPID"),
        (_set("volumes", [{"name": "h", "hostPath": {"path": "/"}}]), "hostPath"),
        (_set("securityContext.runAsUser", 0), "runAsUser must not be 0"),
        (_set("securityContext.runAsNonRoot", False), "runAsNonRoot must not be false"),
        (_set("securityContext.seccompProfile", {"type": "Unconfined"}), "Unconfined"),
        (_set("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "kernel.msgmax"),
        (_set("[0].securityContext.privileged", True), "privileged"),
        (_set("[0].securityContext.allowPrivilegeEscalation", True), "allowPrivilegeEscalation"),
        (_set("[0].securityContext.capabilities", {"drop": ["NET_RAW"]}), "drop must include ALL"),
        (_set("[0].securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}), "SYS_ADMIN"),
        (_set("[0].securityContext.procMount", "Unmasked"), "procMount"),
        (_set("[0].ports", [{"containerPort": 8080, "hostPort": 8080}]), "hostPort"),
        (_set("[0].securityContext.seLinuxOptions", {"type": "spc_t"}), "seLinuxOptions"),
    ],
)
def test_the_restricted_check_catches_each_violation(mutate: Any, words: str) -> None:
    (deployment,) = by_kind(KubernetesTarget(k8s_config()).render(request()), "Deployment")
    broken = copy.deepcopy(deployment)
    mutate(broken)
    problems = check_restricted([broken])
    assert problems, f"not caught: {words}"
    assert any(words in p for p in problems), problems


def test_the_restricted_check_covers_the_init_container() -> None:
    for objects in (
        KubernetesTarget(k8s_config()).render(request()),
        KServeTarget(kserve_config()).render(request()),
    ):
        broken = copy.deepcopy(objects[-1])
        (pod,) = [p for _, p in pod_specs(broken)]
        pod["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        problems = check_restricted([broken])
        assert any("initContainers[verify-model]" in p and "allowPrivilegeEscalation" in p for p in problems)


def test_schema_validation_reports_mistakes_with_their_path() -> None:
    objects = KubernetesTarget(k8s_config()).render(request("canary"))
    dep = copy.deepcopy(by_kind(objects, "Deployment")[0])
    container(dep)["imagePullPolicyy"] = "Always"
    (problem,) = m.manifest_problems(dep, kubernetes_version="1.33")
    assert "spec.template.spec.containers[0]" in problem
    assert "imagePullPolicyy" in problem

    dep = copy.deepcopy(by_kind(objects, "Deployment")[0])
    dep["spec"]["replicas"] = "two"
    assert "spec.replicas" in m.manifest_problems(dep, kubernetes_version="1.33")[0]

    vs = copy.deepcopy(by_kind(objects, "VirtualService")[0])
    vs["spec"]["http"][0]["route"][0]["weight"] = "90"
    vs["spec"]["http"][0]["mirrorPercent"] = 5  # deprecated upstream; not in the vendored subset
    problems = m.manifest_problems(vs, kubernetes_version="1.33")
    assert any("spec.http[0].route[0].weight" in p and "integer" in p for p in problems)
    assert any("mirrorPercent" in p for p in problems)

    dr = copy.deepcopy(by_kind(objects, "DestinationRule")[0])
    del dr["spec"]["subsets"][0]["name"]
    assert "'name' is a required property" in m.manifest_problems(dr, kubernetes_version="1.33")[0]

    (isvc,) = KServeTarget(kserve_config()).render(request())
    isvc = copy.deepcopy(isvc)
    isvc["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
    isvc["metadata"]["name"] = "Penguins_Model"
    problems = m.manifest_problems(isvc, kubernetes_version="1.33")
    assert any("storageURI" in p for p in problems)
    assert any("DNS-1123" in p for p in problems)
    del isvc["spec"]["predictor"]
    assert any(
        "'predictor' is a required property" in p
        for p in m.manifest_problems(isvc, kubernetes_version="1.33")
    )

    with pytest.raises(ConfigError) as err:
        m.validate_manifests([dep, vs], kubernetes_version="1.33")
    assert len(err.value.problems) == 3
    assert all(p.path == "deploy.config.target" for p in err.value.problems)


def test_vendored_crd_schemas_are_strict_and_documented() -> None:
    readme = (m.SCHEMA_DIR / "README.md").read_text()
    for (api_version, kind), filename in m.CRD_SCHEMAS.items():
        assert (m.SCHEMA_DIR / filename).is_file()
        assert filename in readme
        schema = m.crd_schema(api_version, kind)
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}
    isvc = m.crd_schema("serving.kserve.io/v1beta1", "InferenceService")
    predictor = isvc["properties"]["spec"]["properties"]["predictor"]
    assert predictor["additionalProperties"] is False
    # status keeps x-kubernetes-preserve-unknown-fields: no additionalProperties clamp there.
    assert "additionalProperties" not in isvc["properties"]["status"]
    assert "x-kubernetes-int-or-string" not in json.dumps(isvc)
    init = predictor["properties"]["initContainers"]["items"]
    assert (init["additionalProperties"], init["required"]) == (False, ["name"])
    with pytest.raises(KeyError):
        m.crd_schema("networking.istio.io/v1", "Gateway")


# --------------------------------------------------------------------------- security scan


def _checkov(directory: Path) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is missing at {CHECKOV}: create it with `make env-scan` (`make test` does)")
    out = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # --skip-download: no call to the vendor's API (no network here; severities are not needed).
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    # checkov exits 1 when a check failed; anything else (2...) is an error of its own.
    assert out.returncode in (0, 1), out.stderr[-3000:]
    report = json.loads(out.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    return reports


def test_rendered_manifests_pass_the_checkov_scan_and_a_regression_fails_it(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for name, objects in render_everything().items():
        (good / f"{name}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    # Regressions the scan must catch: each copy breaks one rule of the hardened pod.
    bad = tmp_path / "regressed"
    bad.mkdir()
    base = by_kind(KubernetesTarget(k8s_config()).render(request()), "Deployment")[0]
    regressions = {
        "CKV_K8S_22": lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False),
        "CKV_K8S_20": lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=True),
        "CKV_K8S_13": lambda c, p: c["resources"].pop("limits"),
        "CKV_K8S_43": lambda c, p: c.update(image="registry.example.com/models/penguins-server:1.4.2"),
        "CKV_K8S_38": lambda c, p: p.update(automountServiceAccountToken=True),
        "CKV_K8S_8": lambda c, p: c.pop("livenessProbe"),
    }
    for check, breaks in regressions.items():
        broken = copy.deepcopy(base)
        broken["metadata"]["name"] = f"regressed-{check.lower().replace('_', '-')}"
        breaks(container(broken), broken["spec"]["template"]["spec"])
        (bad / f"{check}.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))
    # The same scan covers the verifying init container.
    init_regressions = ("CKV_K8S_22", "CKV_K8S_20", "CKV_K8S_13")
    for check in init_regressions:
        broken = copy.deepcopy(base)
        broken["metadata"]["name"] = f"regressed-init-{check.lower().replace('_', '-')}"
        (init,) = broken["spec"]["template"]["spec"]["initContainers"]
        regressions[check](init, broken["spec"]["template"]["spec"])
        (bad / f"init-{check}.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))

    reports = _checkov(tmp_path)
    (report,) = [r for r in reports if r.get("check_type") == "kubernetes"]
    results = report["results"]
    failed = results["failed_checks"]
    good_failed = [f for f in failed if "/good/" in f["file_path"]]
    unexpected = [
        f"{f['check_id']} {f['check_name']} in {f['file_path']} ({f['resource']})"
        for f in good_failed
        if f["check_id"] not in ALLOWED_FAILURES
    ]
    assert unexpected == [], "rendered manifests fail checkov:\n" + "\n".join(unexpected)
    # The allowed failure is only where the reason holds: Deployments reading Secrets into env.
    assert {f["resource"].split(".")[0] for f in good_failed} <= {"Deployment"}
    passed_good = [p for p in results["passed_checks"] if "/good/" in p["file_path"]]
    assert len(passed_good) > 300
    for check in regressions:
        hits = [f for f in failed if f["check_id"] == check and f"/regressed/{check}.yaml" in f["file_path"]]
        assert hits, f"checkov did not flag the regression {check}"
    for check in init_regressions:
        hits = [
            f for f in failed if f["check_id"] == check and f"/regressed/init-{check}.yaml" in f["file_path"]
        ]
        assert hits, f"checkov did not flag the init container's regression {check}"


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("target", "path", "words"),
    [
        ({"image": "repo/server"}, "deploy.config.target.kubernetes.image", "no tag or digest"),
        (
            {"image": "repo/server:latest"},
            "deploy.config.target.kubernetes.image",
            "':latest' is not a pinned version",
        ),
        ({"tracking_uri_secret": None}, "deploy.config.target.kubernetes", "tracking_uri_secret is required"),
        ({"env": {"DB_PASSWORD": "x"}}, "deploy.config.target.kubernetes.env", "looks like a credential"),
        (
            {"env": {"MLFLOW_TRACKING_URI": "https://u:p@mlflow"}},
            "deploy.config.target.kubernetes.env",
            "embeds a password",
        ),
        ({"namespace": "Models"}, "deploy.config.target.kubernetes.namespace", "not a namespace name"),
        ({"labels": {"mlsteps.io/x": "y"}}, "deploy.config.target.kubernetes.labels", "set by mlsteps"),
        ({"labels": {"team": "a b"}}, "deploy.config.target.kubernetes.labels", "at most 63"),
        (
            {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"}}},
            "deploy.config.target.kubernetes.resources.requests.cpu",
            "Kubernetes quantity",
        ),
        (
            {"secret_env": [{"name": "TOKEN", "secret": "Bad_Name", "key": "k"}]},
            "deploy.config.target.kubernetes.secret_env.0.secret",
            "not a Secret name",
        ),
        (
            {"env": {"LOG_LEVEL": "info"}, "secret_env": [{"name": "LOG_LEVEL", "secret": "s", "key": "k"}]},
            "deploy.config.target.kubernetes",
            "set twice",
        ),
        ({"run_as_user": 0}, "deploy.config.target.kubernetes.run_as_user", "greater than or equal to 10000"),
        ({"writable_dirs": ["tmp"]}, "deploy.config.target.kubernetes.writable_dirs", "absolute directory"),
        (
            {"writable_dirs": ["/mnt/models/x"]},
            "deploy.config.target.kubernetes.writable_dirs",
            "holds the verified model copy",
        ),
    ],
)
def test_kubernetes_config_errors_name_the_field(target: dict[str, Any], path: str, words: str) -> None:
    base = {"type": "kubernetes", "image": IMAGE, "tracking_uri_secret": {"secret": "mlflow-tracking"}}
    with pytest.raises(ConfigError) as err:
        DeployStep.parse_config({"name": "penguins", "target": {**base, **target}})
    assert [p.path for p in err.value.problems] == [path]
    assert words in str(err.value)


def test_strategy_and_kserve_config_errors() -> None:
    with pytest.raises(ConfigError) as err:
        DeployStep.parse_config({"name": "penguins", "target": KSERVE_BASE, "strategy": {"kind": "shadow"}})
    assert "'shadow' is not supported by the 'kserve' target" in str(err.value)
    assert "['canary', 'replace']" in str(err.value)
    config = DeployStep.parse_config(
        {
            "name": "penguins",
            "target": {**KSERVE_BASE, "protocol_version": "v1"},
            "strategy": {"kind": "canary"},
        }
    )
    assert isinstance(config.target, KServeTargetConfig)
    with pytest.raises(ConfigError, match="max_replicas must be >= min_replicas"):
        DeployStep.parse_config(
            {"name": "p", "target": {**KSERVE_BASE, "min_replicas": 4, "max_replicas": 2}}
        )
    with pytest.raises(ConfigError, match=r"unknown serving\.kserve\.io/deploymentMode"):
        DeployStep.parse_config(
            {
                "name": "p",
                "target": {**KSERVE_BASE, "annotations": {"serving.kserve.io/deploymentMode": "Fast"}},
            }
        )
    # The init container's image and the tracking URI are required: nothing serves unverified files.
    for missing, words in (("verify_image", "verify_image"), ("tracking_uri_secret", "tracking_uri_secret")):
        target = {k: v for k, v in KSERVE_BASE.items() if k != missing}
        with pytest.raises(ConfigError, match=words):
            DeployStep.parse_config({"name": "p", "target": target})
    with pytest.raises(ConfigError, match="':latest' is not a pinned version"):
        DeployStep.parse_config({"name": "p", "target": {**KSERVE_BASE, "verify_image": "verify:latest"}})
    assert image_problem(f"localhost:5000/server@{DIGEST}") is None
    assert image_problem("localhost:5000/server") is not None
    assert "digest" in str(image_problem("server:1@sha256:abc"))


def test_canary_steps_must_end_at_100(tmp_path: Path) -> None:
    ctx = build_context(RunKey(run_id="r", step="deploy"), artifact_root=str(tmp_path))
    bad = DeployRequest(
        deployment="penguins", model=MODEL, strategy=StrategyConfig(kind="canary", steps=[10, 50]), actor="a"
    )
    with pytest.raises(ConfigError, match="last canary step must be 100"):
        KubernetesTarget(k8s_config()).deploy(ctx, bad)
    unordered = DeployRequest(
        deployment="penguins",
        model=MODEL,
        strategy=StrategyConfig(kind="canary", steps=[50, 10, 100]),
        actor="a",
    )
    with pytest.raises(ConfigError, match="increase strictly"):
        KServeTarget(kserve_config()).deploy(ctx, unordered)


# --------------------------------------------------------------------------- pure rollout logic


def _deployment(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": 4, "uid": "u1", "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 4, **status},
    }


def test_rollout_status_follows_kubectl_rollout_status() -> None:
    assert rollout_status(_deployment(replicas=2, updatedReplicas=2, availableReplicas=2)) == (True, None)
    # Old pods still terminating, new ones not yet available, or a generation not yet observed: wait.
    assert rollout_status(_deployment(replicas=3, updatedReplicas=2, availableReplicas=2)) == (False, None)
    assert rollout_status(_deployment(replicas=2, updatedReplicas=2, availableReplicas=1)) == (False, None)
    stale = _deployment(replicas=2, updatedReplicas=2, availableReplicas=2, observedGeneration=3)
    assert rollout_status(stale) == (False, None)
    stuck = _deployment(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "RS slow",
            }
        ]
    )
    done, failure = rollout_status(stuck)
    assert not done
    assert failure == "progress deadline exceeded: RS slow"


def test_pod_problems_and_the_current_replicaset() -> None:
    def pod(reason: str, restarts: int = 0) -> dict[str, Any]:
        return {
            "metadata": {"name": "p-1"},
            "status": {
                "containerStatuses": [
                    {
                        "restartCount": restarts,
                        "state": {"waiting": {"reason": reason, "message": "msg"}},
                        "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
                    }
                ]
            },
        }

    assert pod_problem(pod("ErrImagePull"), max_restarts=2) == "pod p-1: ErrImagePull: msg"
    assert pod_problem(pod("CreateContainerConfigError"), max_restarts=2) is not None
    assert pod_problem(pod("ContainerCreating"), max_restarts=2) is None
    assert pod_problem(pod("CrashLoopBackOff", restarts=1), max_restarts=2) is None
    assert "CrashLoopBackOff after 2 restarts (Error exit 1)" in str(
        pod_problem(pod("CrashLoopBackOff", restarts=2), max_restarts=2)
    )
    # The verifying init container refusing the artifacts: a pod status of that shape (the pod
    # stays in Init:CrashLoopBackOff), whose termination message is the refusal from its log.
    refusal = "mlsteps.verify_model: REFUSED models:/penguins/3: its artifacts changed since registration"
    refused = {
        "metadata": {"name": "p-2"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "verify-model",
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"reason": "Error", "exitCode": 1, "message": refusal + "\n"}
                    },
                }
            ],
            "containerStatuses": [{"name": "model", "state": {"waiting": {"reason": "PodInitializing"}}}],
        },
    }
    assert pod_problem(refused, max_restarts=2) == (
        f"pod p-2: init container verify-model: CrashLoopBackOff after 2 restarts (Error exit 1): {refusal}"
    )
    assert pod_problem(refused, max_restarts=3) is None

    def rs(revision: str, owner: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": f"rs-{revision}",
                "annotations": {"deployment.kubernetes.io/revision": revision},
                "ownerReferences": [{"uid": owner}],
            }
        }

    found = current_replicaset(_deployment(), [rs("2", "u1"), rs("3", "other"), rs("3", "u1")])
    assert found is not None
    assert found["metadata"]["ownerReferences"] == [{"uid": "u1"}]
    assert current_replicaset(_deployment(), [rs("2", "u1")]) is None


def test_inference_service_readiness() -> None:
    def isvc(conditions: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
        return {
            "metadata": {"generation": 2},
            "status": {"observedGeneration": 2, "conditions": conditions, **status},
        }

    ready = [{"type": "Ready", "status": "True"}]
    assert isvc_status(isvc(ready)) == (True, None)
    assert isvc_status(isvc(ready, observedGeneration=1)) == (False, None)
    rolling = {"predictor": {"latestCreatedRevision": "p-2", "latestReadyRevision": "p-1"}}
    assert isvc_status(isvc(ready, components=rolling)) == (False, None)
    failed = [
        {"type": "Ready", "status": "False"},
        {
            "type": "PredictorReady",
            "status": "False",
            "reason": "RevisionFailed",
            "message": "bad storageUri",
        },
    ]
    assert isvc_status(isvc(failed)) == (False, "PredictorReady: RevisionFailed: bad storageUri")
    blocked = {"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {"reason": "ModelLoadFailed"}}
    assert isvc_status(isvc(ready, modelStatus=blocked))[1] == "BlockedByFailedLoad: ModelLoadFailed"


def test_analysis_hooks_decide_and_their_exceptions_roll_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"k8s_hooks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            seen = []

            def healthy(ctx):
                seen.append((ctx.deployment, ctx.percent, ctx.candidate.version, ctx.stable.version))
                return ctx.percent < 50

            def broken(ctx):
                raise RuntimeError("metrics backend down")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = AnalysisContext(deployment="penguins", candidate=MODEL, stable=STABLE, percent=10, endpoint=None)
    assert run_analysis(f"{module}:healthy", ctx) == (True, f"analysis {module}:healthy returned True")
    late = AnalysisContext(deployment="penguins", candidate=MODEL, stable=STABLE, percent=50, endpoint=None)
    assert run_analysis(f"{module}:healthy", late)[0] is False
    assert sys.modules[module].seen == [("penguins", 10, "3", "2"), ("penguins", 50, "3", "2")]
    ok, said = run_analysis(f"{module}:broken", ctx)
    assert not ok
    assert "RuntimeError: metrics backend down" in said
    assert run_analysis(None, ctx) == (True, "no analysis hook")
    with pytest.raises(ConfigError, match="cannot import module"):
        run_analysis("no_such_module_xyz:f", ctx)


# --------------------------------------------------------------------------- the real client, no cluster


@pytest.fixture
def unreachable(tmp_path: Path) -> KubernetesTargetConfig:
    """A kubeconfig whose API server is a closed local port: the real client, a real connection error."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": "https://127.0.0.1:9", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return k8s_config(kubeconfig=str(kubeconfig), context="ctx")


def _ctx(tmp_path: Path, run_id: str = "r1") -> RunContext:
    return build_context(
        RunKey(run_id=run_id, step="deploy", pipeline="p"), artifact_root=str(tmp_path / "art")
    )


def test_an_unreachable_cluster_is_a_backend_error_and_status_says_so(
    tmp_path: Path, unreachable: KubernetesTargetConfig
) -> None:
    target = KubernetesTarget(unreachable)
    with pytest.raises(BackendError) as err:
        target.deploy(_ctx(tmp_path), request())
    assert err.value.backend == "kubernetes"
    assert "cluster reachable" in str(err.value) or "127.0.0.1" in str(err.value)
    ctx = _ctx(tmp_path)
    assert target.status(ctx, "penguins") is None
    state = DeploymentState(
        deployment="penguins", target="kubernetes", model_name="penguins", live_version="3"
    )
    StateFile(ctx, "penguins").save(state)
    observed = target.status(ctx, "penguins")
    assert observed is not None
    assert "error" in observed.runtime["observed"]


def test_rollbacks_and_redeploys_refuse_what_the_state_forbids(
    tmp_path: Path, unreachable: KubernetesTargetConfig
) -> None:
    ctx = _ctx(tmp_path)
    target = KubernetesTarget(unreachable)
    with pytest.raises(ConfigError, match="no deployment 'penguins'"):
        target.rollback(ctx, "penguins", to_version=None, actor="a", reason="")
    state = DeploymentState(
        deployment="penguins",
        target="kubernetes",
        model_name="penguins",
        live_version="3",
        runtime={"namespace": "models"},
    )
    StateFile(ctx, "penguins").save(state)
    with pytest.raises(ConfigError, match="no earlier healthy version"):
        target.rollback(ctx, "penguins", to_version=None, actor="a", reason="")
    with pytest.raises(ConfigError, match="v7 never served"):
        target.rollback(ctx, "penguins", to_version="7", actor="a", reason="")
    other = DeployRequest(
        deployment="penguins",
        model=ModelSpec(name="iris", version="1", model_uri="models:/iris/1"),
        strategy=StrategyConfig(),
        actor="a",
    )
    with pytest.raises(ConfigError, match="serves model 'penguins', not 'iris'"):
        target.deploy(ctx, other)
    moved = KubernetesTarget(k8s_config(namespace="elsewhere", kubeconfig=unreachable.kubeconfig))
    with pytest.raises(ConfigError, match="lives in namespace 'models'"):
        moved.deploy(ctx, request())
    with pytest.raises(ConfigError, match="served by target 'kubernetes', not 'kserve'"):
        KServeTarget(kserve_config()).deploy(ctx, request())


# --------------------------------------------------------------------------- live cluster (kind workflow)

CLUSTER_VARS = ("KUBECONFIG", "MLSTEPS_KIND_IMAGE", "MLSTEPS_KIND_TRACKING_URI")


def _need_cluster() -> None:
    missing = [v for v in CLUSTER_VARS if not os.environ.get(v)]
    if missing:
        reason = f"no cluster for the live tests: {', '.join(missing)} not set (.github/workflows/kind.yml sets them)"
        if os.environ.get("MLSTEPS_REQUIRE_CLUSTER"):
            pytest.fail(reason)
        pytest.skip(reason)


class Kind:
    """The kind cluster of the workflow: its namespace, image, MLflow server and two registered versions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.namespace = os.environ.get("MLSTEPS_KIND_NAMESPACE", "mlsteps-e2e")
        self.image = os.environ["MLSTEPS_KIND_IMAGE"]
        self.tracking_uri = os.environ["MLSTEPS_KIND_TRACKING_URI"]
        self.name = f"kind-{uuid.uuid4().hex[:6]}"
        self.versions: dict[str, ModelSpec] = {}

    def register(self) -> None:
        import mlflow
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment("mlsteps-kind")
        x, y = load_iris(return_X_y=True, as_frame=True)
        client = mlflow.MlflowClient()
        for c in (0.5, 1.0):
            with mlflow.start_run():
                model = LogisticRegression(C=c, max_iter=500).fit(x, y)
                info = mlflow.sklearn.log_model(
                    model, name="model", registered_model_name=self.name, input_example=x.head(3)
                )
            version = str(info.registered_model_version)
            uri = f"models:/{self.name}/{version}"
            with tempfile.TemporaryDirectory() as tmp:
                # What register records (mlsteps.artifact_hash): the pods' init container checks it.
                recorded = download_tree_hash(uri, tmp)
            self.versions[version] = ModelSpec(
                name=self.name,
                version=version,
                model_uri=uri,
                storage_uri=client.get_model_version_download_uri(self.name, version),
                artifact_hash=recorded,
            )

    def config(self, **overrides: Any) -> KubernetesTargetConfig:
        return KubernetesTargetConfig.model_validate(
            {
                "namespace": self.namespace,
                "image": self.image,
                "image_pull_policy": "IfNotPresent",
                "tracking_uri_secret": {"secret": "mlflow-tracking", "key": "uri"},
                "replicas": 1,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "384Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "rollout_timeout_s": 300,
                **overrides,
            }
        )

    def ctx(self, run_id: str) -> RunContext:
        return build_context(
            RunKey(run_id=run_id, step="deploy", pipeline="kind"), artifact_root=str(self.root)
        )

    def request(self, deployment: str, version: str, kind: str = "replace", **strategy: Any) -> DeployRequest:
        return DeployRequest(
            deployment=deployment,
            model=self.versions[version],
            strategy=StrategyConfig(kind=kind, **strategy),
            actor="kind-test",
        )


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Kind:
    _need_cluster()
    cluster = Kind(tmp_path_factory.mktemp("kind"))
    cluster.register()
    return cluster


def _serving(target: KubernetesTarget, name: str) -> tuple[str | None, str | None, bool]:
    dep = target.cluster.get("apps/v1", "Deployment", name)
    assert dep is not None
    labels = dep["spec"]["template"]["metadata"]["labels"]
    return labels.get(m.VERSION_LABEL), container(dep)["image"], rollout_status(dep)[0]


def _predict(target: KubernetesTarget, deployment: str) -> Any:
    """A real prediction through the API server's service proxy."""
    path = (
        f"/api/v1/namespaces/{target.config.namespace}/services/{deployment}:{target.config.service_port}"
        "/proxy/invocations"
    )
    body = {
        "dataframe_split": {
            "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
            "data": [[5.1, 3.5, 1.4, 0.2]],
        }
    }
    response = target.cluster.dynamic.request(
        "post", path, body=body, content_type="application/json", serialize=False
    )
    return json.loads(response.data)["predictions"]


@pytest.mark.cluster
def test_kind_rollout_auto_rollback_manual_rollback_dry_run_and_stop(kind: Kind) -> None:
    name = "iris-e2e"
    target = KubernetesTarget(kind.config())
    first = target.deploy(kind.ctx("d1"), kind.request(name, "1"))
    assert first.status == "healthy", first.metadata
    assert _serving(target, name) == ("1", kind.image, True)
    assert _predict(target, name) == [0]

    # The pod's init container refuses files that do not hash to the recorded value (as if the
    # artifacts had changed after deploy's own check): the rollout fails and v1 keeps serving.
    wrong = dataclasses.replace(kind.versions["2"], artifact_hash="sha256:" + "0" * 64)
    refused = target.deploy(kind.ctx("d-hash"), dataclasses.replace(kind.request(name, "2"), model=wrong))
    assert refused.status == "rolled_back", refused.metadata
    assert "init container verify-model" in refused.metadata["error"]
    assert "changed since registration" in refused.metadata["error"]
    assert _serving(target, name) == ("1", kind.image, True)

    broken = KubernetesTarget(kind.config(image=kind.image.rsplit(":", 1)[0] + ":no-such-tag"))
    failed = broken.deploy(kind.ctx("d2"), kind.request(name, "2"))
    assert failed.status == "rolled_back", failed.metadata
    assert "ErrImagePull" in failed.metadata["error"] or "ImagePullBackOff" in failed.metadata["error"]
    assert _serving(target, name) == ("1", kind.image, True)
    state = target.status(kind.ctx("s"), name)
    assert state is not None
    assert (state.live_version, state.history[-1].action) == ("1", "auto_rollback")

    second = target.deploy(kind.ctx("d3"), kind.request(name, "2"))
    assert second.status == "healthy", second.metadata
    assert _serving(target, name) == ("2", kind.image, True)

    back = target.rollback(kind.ctx("rb"), name, to_version=None, actor="kind-test", reason="by hand")
    assert back.status == "healthy", back.metadata
    assert _serving(target, name) == ("1", kind.image, True)
    assert _predict(target, name) == [0]
    again = target.rollback(kind.ctx("rb"), name, to_version=None, actor="kind-test", reason="retry")
    assert again.metadata.get("reused") is True
    state = target.status(kind.ctx("s"), name)
    assert state is not None
    assert [e.action for e in state.history] == [
        "deploy",
        "auto_rollback",
        "auto_rollback",
        "deploy",
        "rollback",
    ]

    dry = target.deploy(kind.ctx("dry"), dataclasses.replace(kind.request(name, "2"), dry_run=True))
    assert dry.status == "pending"
    assert _serving(target, name) == ("1", kind.image, True)

    stopped = target.stop(kind.ctx("stop"), name, actor="kind-test", reason="done")
    assert stopped is not None
    assert stopped.status == "stopped"
    assert target.cluster.get("apps/v1", "Deployment", name) is None


@pytest.mark.cluster
def test_kind_canary_steps_with_analysis_and_rolls_back_when_it_says_no(
    kind: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = KubernetesTarget(kind.config())
    if not target.cluster.serves("networking.istio.io/v1", "VirtualService"):
        pytest.fail("Istio's CRDs are not installed in the cluster (the kind workflow installs istio/base)")
    module = f"kind_hooks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "seen = []\n\ndef yes(ctx):\n    seen.append(ctx.percent)\n    return True\n\n\ndef no(ctx):\n    return False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "iris-canary"
    assert target.deploy(kind.ctx("c1"), kind.request(name, "1", "canary")).status == "healthy"
    promoted = target.deploy(
        kind.ctx("c2"), kind.request(name, "2", "canary", steps=[50, 100], analysis=f"{module}:yes")
    )
    assert promoted.status == "healthy", promoted.metadata
    assert sys.modules[module].seen == [50, 100]
    assert _serving(target, name) == ("2", kind.image, True)
    assert target.cluster.get("apps/v1", "Deployment", f"{name}-candidate") is None
    vs = target.cluster.get("networking.istio.io/v1", "VirtualService", name)
    assert vs is not None
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [100]

    refused = target.deploy(
        kind.ctx("c3"), kind.request(name, "1", "canary", steps=[50, 100], analysis=f"{module}:no")
    )
    assert refused.status == "rolled_back"
    assert _serving(target, name) == ("2", kind.image, True)
    assert target.cluster.get("apps/v1", "Deployment", f"{name}-candidate") is None
    target.stop(kind.ctx("c4"), name, actor="kind-test", reason="done")
