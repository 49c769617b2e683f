"""The ``kserve`` target: a KServe ``InferenceService`` serving the version's MLflow artifacts.

The predictor declares ``modelFormat: mlflow`` (protocol ``v2`` by default) and
no ``storageUri``: its init container (``verify_image``, running ``python -m
mlsteps.verify_model``) downloads ``models:/NAME/VERSION`` through the MLflow
registry into an emptyDir mounted read-only at ``/mnt/models`` (where the runtime
loads models from) and fails the pod when the files differ from the hash recorded
at registration, so artifacts changed after ``deploy``'s own check are not served. Canary
rollouts use KServe's own ``canaryTrafficPercent`` (Serverless mode, Knative
revisions): the new revision takes each step's share, the analysis hook decides
between steps, promotion removes the field, and a rollback sets it to 0 then
re-applies the previous spec.

Caveat: KServe's stock MLflow ServingRuntime (``kserve-mlserver``) is MLServer
based, and MLflow 3 removed its MLServer serving option; whether the stock
runtime loads a model logged with MLflow 3 depends on the MLServer version it
ships. ``runtime`` selects a custom ServingRuntime instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mlsteps.deploy import manifests as m
from mlsteps.deploy.base import AnalysisContext, DeploymentState, ModelSpec, StateFile, StrategyKind
from mlsteps.deploy.kubernetes import (
    Cluster,
    ClusterTarget,
    ClusterTargetConfig,
    PinnedImage,
    RolloutFailed,
    check_strategy,
    model_of,
    remember_model,
    run_analysis,
)
from mlsteps.errors import ConfigError, Problem

if TYPE_CHECKING:
    from mlsteps.context import RunContext
    from mlsteps.deploy.base import DeployRequest
    from mlsteps.refs import DeploymentRef

#: Why a revision will not become ready by waiting (KServe's modelStatus.transitionStatus).
FATAL_TRANSITIONS = frozenset({"BlockedByFailedLoad", "InvalidSpec"})


class KServeTargetConfig(ClusterTargetConfig):
    """Configuration of the ``kserve`` target."""

    type: Literal["kserve"] = "kserve"
    verify_image: PinnedImage = Field(
        description="Image of the predictor's init container, which downloads the version into /mnt/models "
        "and verifies it against the hash recorded at registration: it needs mlsteps and MLflow "
        "(`python -m mlsteps.verify_model`), pinned by tag or digest."
    )
    verify_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of verify_image."
    )
    runtime: str | None = Field(
        None,
        description="ServingRuntime name (default: KServe picks the runtime for modelFormat mlflow, "
        "the MLServer-based kserve-mlserver).",
    )
    protocol_version: Literal["v1", "v2"] = Field("v2", description="Inference protocol of the runtime.")
    min_replicas: int = Field(1, ge=0, le=1000, description="0 lets Knative scale to zero.")
    max_replicas: int = Field(3, ge=1, le=1000)
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the InferenceService (e.g. serving.kserve.io/deploymentMode).",
    )
    ready_timeout_s: float = Field(
        900.0, ge=30, le=86_400, description="Seconds a new revision has to become ready."
    )

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            problem = m.label_key_problem(key)
            if problem:
                raise ValueError(problem)
            if key.startswith("mlsteps.io/"):
                raise ValueError(f"annotation {key!r} is set by mlsteps; pick another key")
        return value

    @model_validator(mode="after")
    def _replicas(self) -> KServeTargetConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        mode = self.annotations.get("serving.kserve.io/deploymentMode")
        if mode not in (None, "Serverless", "RawDeployment", "Standard"):
            raise ValueError(f"unknown serving.kserve.io/deploymentMode {mode!r}")
        return self


def isvc_status(isvc: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether an InferenceService is ready at its latest generation, and why it failed (else None)."""
    meta = isvc.get("metadata") or {}
    status = isvc.get("status") or {}
    model_status = status.get("modelStatus") or {}
    if model_status.get("transitionStatus") in FATAL_TRANSITIONS:
        info = model_status.get("lastFailureInfo") or {}
        return (
            False,
            f"{model_status['transitionStatus']}: {info.get('reason', '')} {info.get('message', '')}".strip(),
        )
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("PredictorReady", "PredictorConfigurationReady"):
        cond = conditions.get(kind) or {}
        if cond.get("status") == "False" and cond.get("reason") in ("RevisionFailed", "RevisionMissing"):
            return False, f"{kind}: {cond.get('reason')}: {cond.get('message', '')}".rstrip(": ")
    observed = status.get("observedGeneration")
    if observed is not None and int(observed) < int(meta.get("generation") or 0):
        return False, None
    predictor = (status.get("components") or {}).get("predictor") or {}
    latest_created = predictor.get("latestCreatedRevision")
    if latest_created and predictor.get("latestReadyRevision") != latest_created:
        return False, None
    return (conditions.get("Ready") or {}).get("status") == "True", None


class KServeTarget(ClusterTarget):
    """Serve registered MLflow models as KServe InferenceServices, with KServe's canary rollouts."""

    name: ClassVar[str] = "kserve"
    strategies: ClassVar[frozenset[StrategyKind]] = frozenset({"replace", "canary"})
    config: KServeTargetConfig

    def __init__(self, config: KServeTargetConfig, cluster: Cluster | None = None) -> None:
        super().__init__(config, cluster)

    def render(self, request: DeployRequest) -> list[dict[str, Any]]:
        """The InferenceService a deploy applies first (a canary's first step carries its percent)."""
        percent = request.strategy.steps[0] if request.strategy.kind == "canary" else None
        objects = [
            m.inference_service_manifest(
                self.config, request.deployment, request.model, canary_percent=percent, actor=request.actor
            )
        ]
        return self._validated(objects)

    def _validated(self, objects: list[m.Manifest]) -> list[m.Manifest]:
        m.validate_manifests(objects, kubernetes_version=self.config.kubernetes_version)
        return objects

    def _manifest(
        self, ctx: RunContext, request: DeployRequest, model: ModelSpec, percent: int | None
    ) -> m.Manifest:
        manifest = m.inference_service_manifest(
            self.config,
            request.deployment,
            model,
            canary_percent=percent,
            run_key=ctx.run_key.idempotency_key,
            actor=request.actor,
        )
        self._validated([manifest])
        return manifest

    # ----------------------------------------------------------------- Target API

    def deploy(self, ctx: RunContext, request: DeployRequest) -> DeploymentRef:
        check_strategy(request)
        if request.strategy.kind not in self.strategies:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "deploy.config.strategy.kind",
                        f"the kserve target supports {sorted(self.strategies)}, not {request.strategy.kind!r}",
                    )
                ]
            )
        state_file = StateFile(ctx, request.deployment)
        with state_file.locked():
            state = self._load(state_file, request.deployment, request.model.name)
            stable = model_of(state, state.live_version)
            canary = request.strategy.kind == "canary" and stable is not None
            if request.dry_run:
                percent = request.strategy.steps[0] if canary else None
                manifest = self._manifest(ctx, request, request.model, percent)
                self.cluster.apply(manifest, dry_run=True)
                return self._ref(
                    state_file,
                    state,
                    model_uri=request.model.model_uri,
                    status="pending",
                    extra={
                        "dry_run": True,
                        "checked": [m.describe(manifest)],
                        "plan": f"{'canary' if canary else 'replace'}: serve {request.model.storage_uri} "
                        f"as InferenceService {self.config.namespace}/{request.deployment}",
                    },
                )
            if self._retried(ctx, state, "deploy", request.model.version):
                return self._ref(
                    state_file,
                    state,
                    model_uri=request.model.model_uri,
                    status="healthy",
                    extra={"reused": True},
                )
            state.model_name = request.model.name
            remember_model(state, request.model)
            if canary:
                assert stable is not None
                return self._canary(ctx, state_file, state, request, stable)
            return self._promote(ctx, state_file, state, request, request.model, action="deploy")

    def rollback(
        self, ctx: RunContext, deployment: str, *, to_version: str | None, actor: str, reason: str
    ) -> DeploymentRef:
        state_file = StateFile(ctx, deployment)
        with state_file.locked():
            state_file, state = self._existing(ctx, deployment)
            last = state.history[-1] if state.history else None
            if (
                last is not None
                and last.action == "rollback"
                and last.status == "healthy"
                and last.details.get("run_key") == ctx.run_key.idempotency_key
            ):
                return self._ref(
                    state_file,
                    state,
                    model_uri=f"models:/{state.model_name}/{last.version}",
                    status="healthy",
                    extra={"reused": True},
                )
            target = self._rollback_target(state, to_version)
            model = model_of(state, target)
            assert model is not None
            from mlsteps.deploy.base import DeployRequest, StrategyConfig

            request = DeployRequest(
                deployment=deployment, model=model, strategy=StrategyConfig(), actor=actor, reason=reason
            )
            return self._promote(ctx, state_file, state, request, model, action="rollback")

    def status(self, ctx: RunContext, deployment: str) -> DeploymentState | None:
        from mlsteps.errors import BackendError

        state = StateFile(ctx, deployment).load()
        if state is None:
            return None
        try:
            isvc = self.cluster.get(m.KSERVE_API, "InferenceService", deployment)
        except BackendError as exc:
            state.runtime["observed"] = {"error": exc.backend_message}
            return state
        if isvc is None:
            state.runtime["observed"] = {"error": f"InferenceService {deployment} not found"}
        else:
            status = isvc.get("status") or {}
            state.runtime["observed"] = {
                "url": status.get("url"),
                "ready": isvc_status(isvc)[0],
                "traffic": ((status.get("components") or {}).get("predictor") or {}).get("traffic"),
            }
        return state

    # ----------------------------------------------------------------- strategies

    def _promote(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        model: ModelSpec,
        *,
        action: Literal["deploy", "rollback"],
        details: dict[str, Any] | None = None,
    ) -> DeploymentRef:
        """Apply ``model`` with all traffic on its revision; on failure re-apply the previous spec."""
        manifest = self._manifest(ctx, request, model, None)
        previous_manifest = state.runtime.get("manifest")
        previous = state.live_version
        started = time.monotonic()
        self.cluster.apply(manifest)
        try:
            url = self._await_ready(request.deployment)
        except RolloutFailed as exc:
            return self._restore(ctx, state_file, state, request, previous_manifest, str(exc), action)
        state.live_version = model.version
        state.traffic = {model.version: 100}
        state.endpoint = url
        state.runtime["manifest"] = manifest
        state.runtime.setdefault("manifests", {})[model.version] = manifest["spec"]
        rollout_s = round(time.monotonic() - started, 3)
        state.history.append(
            self._entry(
                ctx,
                action,
                model.version,
                previous,
                "healthy",
                request.actor,
                request.reason,
                **{"strategy": "replace", **(details or {})},
                rollout_s=rollout_s,
                url=url,
            )
        )
        state_file.save(state)
        return self._ref(
            state_file, state, model_uri=model.model_uri, status="healthy", extra={"rollout_s": rollout_s}
        )

    def _canary(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        stable: ModelSpec,
    ) -> DeploymentRef:
        """The new revision takes each step's share of traffic; the analysis hook decides between steps."""
        model, strategy = request.model, request.strategy
        previous_manifest = state.runtime.get("manifest")
        steps: list[dict[str, Any]] = []
        for percent in strategy.steps:
            if percent == 100:
                break
            self.cluster.apply(self._manifest(ctx, request, model, percent))
            try:
                url = self._await_ready(request.deployment)
            except RolloutFailed as exc:
                return self._restore(
                    ctx, state_file, state, request, previous_manifest, str(exc), "deploy", cut=True
                )
            state.traffic = {stable.version: 100 - percent, model.version: percent}
            state_file.save(state)
            if strategy.pause_s:
                self.sleep(strategy.pause_s)
            ok, said = run_analysis(
                strategy.analysis,
                AnalysisContext(
                    deployment=request.deployment,
                    candidate=model,
                    stable=stable,
                    percent=percent,
                    endpoint=url,
                    extra={"namespace": self.config.namespace, "target": self.name},
                ),
            )
            steps.append({"percent": percent, "ok": ok, "analysis": said})
            if not ok:
                return self._restore(
                    ctx, state_file, state, request, previous_manifest, said, "deploy", cut=True, steps=steps
                )
        return self._promote(
            ctx,
            state_file,
            state,
            request,
            model,
            action="deploy",
            details={"strategy": "canary", "steps": steps},
        )

    def _restore(
        self,
        ctx: RunContext,
        state_file: StateFile,
        state: DeploymentState,
        request: DeployRequest,
        previous_manifest: m.Manifest | None,
        problem: str,
        action: Literal["deploy", "rollback"],
        *,
        cut: bool = False,
        steps: list[dict[str, Any]] | None = None,
    ) -> DeploymentRef:
        """The new revision failed: traffic back (``canaryTrafficPercent: 0``), then the previous spec."""
        model = request.model
        if previous_manifest is None:
            error = f"{model.name} v{model.version} did not become ready: {problem}; nothing served before"
            state.history.append(
                self._entry(
                    ctx, action, model.version, None, "failed", request.actor, request.reason, error=problem
                )
            )
            state_file.save(state)
            return self._ref(
                state_file, state, model_uri=model.model_uri, status="failed", extra={"error": error}
            )
        if cut:
            # Fastest way back: the previous rolled-out revision takes 100 % at once.
            self.cluster.apply(self._manifest(ctx, request, model, 0))
        self.cluster.apply(previous_manifest)
        outcome: Literal["rolled_back", "failed"] = "rolled_back"
        try:
            self._await_ready(request.deployment)
            error = f"{model.name} v{model.version}: {problem}; v{state.live_version} serves again"
        except RolloutFailed as again:
            outcome = "failed"
            error = (
                f"{model.name} v{model.version}: {problem}; restoring v{state.live_version} failed: {again}"
            )
        state.traffic = {str(state.live_version): 100}
        state.history.append(
            self._entry(
                ctx,
                "auto_rollback",
                model.version,
                state.live_version,
                outcome,
                request.actor,
                request.reason,
                error=problem,
                requested=action,
                steps=steps or [],
            )
        )
        state_file.save(state)
        return self._ref(state_file, state, model_uri=model.model_uri, status=outcome, extra={"error": error})

    def _await_ready(self, name: str) -> str | None:
        """Wait until the InferenceService is ready at its latest generation; its URL."""
        deadline = time.monotonic() + self.config.ready_timeout_s
        while True:
            isvc = self.cluster.get(m.KSERVE_API, "InferenceService", name)
            if isvc is None:
                raise RolloutFailed(f"InferenceService {name} disappeared")
            ready, failure = isvc_status(isvc)
            if ready:
                url = (isvc.get("status") or {}).get("url")
                return str(url) if url else None
            if failure:
                raise RolloutFailed(failure)
            if time.monotonic() >= deadline:
                raise RolloutFailed(f"not ready within {self.config.ready_timeout_s:.0f} s")
            self.sleep(self.config.poll_s)
