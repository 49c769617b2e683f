"""The contract between the ``deploy`` step and its serving targets.

The step (``mlsteps.steps.deploy``) resolves which model version to serve,
enforces the evaluation gate, and hands a :class:`DeployRequest` to a
:class:`Target`. A target knows one platform (a local process, Kubernetes,
KServe) and implements the strategies that platform supports. Every target
keeps its history in a :class:`DeploymentState` file under the artifact root,
so later deploys, rollbacks and ``mlsteps deploy status`` know what runs.

Nothing heavy is imported here: targets import their clients inside methods.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlsteps.errors import BackendError, GateFailure
from mlsteps.hashing import hash_path

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mlsteps.context import RunContext
    from mlsteps.refs import DeploymentRef

StrategyKind = Literal["replace", "canary", "shadow", "ab"]


class StrategyConfig(BaseModel):
    """How traffic moves to the new version."""

    model_config = ConfigDict(extra="forbid")

    kind: StrategyKind = Field("replace", description="replace | canary | shadow | ab.")
    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100],
        description="canary: percent of traffic on the candidate at each step; the last must be 100.",
    )
    analysis: str | None = Field(
        None,
        description="canary: 'module:function' called between steps with an AnalysisContext; "
        "a falsy return (or an exception) rolls back.",
    )
    pause_s: float = Field(0.0, ge=0, le=86_400, description="canary: seconds to wait before each analysis.")
    weight: int = Field(50, ge=1, le=99, description="ab: percent of traffic on the candidate.")
    mirror_percent: int = Field(100, ge=1, le=100, description="shadow: percent of traffic mirrored.")


@dataclass(frozen=True)
class ModelSpec:
    """The model version to serve, resolved from the registry by the step."""

    name: str
    version: str
    #: ``models:/name/version``: what MLflow serving loads.
    model_uri: str
    #: Where the artifacts physically live (for KServe's ``storageUri``), when known.
    storage_uri: str | None = None
    run_id: str | None = None
    #: Hash of the artifact files recorded at registration (``mlsteps.artifact_hash``), if any.
    artifact_hash: str | None = None


def check_artifacts(model: ModelSpec, directory: Path) -> None:
    """Refuse artifacts that differ from what was registered (``force`` does not override this).

    A version registered outside mlsteps has no recorded hash and is not checked
    (deploying it already needs ``force``: it has no evaluation either).
    """
    if model.artifact_hash is not None:
        _refuse_changed(model, hash_path(directory))


def verify_registered_artifacts(ctx: RunContext, model: ModelSpec) -> None:
    """Hash the version's artifacts in the registry and compare with the hash recorded at registration.

    For targets that do not download the model here (Kubernetes, KServe: the pods
    fetch it), so tampered artifacts are refused before anything is applied. The
    pods download again later; their init container (``python -m mlsteps.verify_model``)
    checks that copy against the same recorded hash, so a change in between fails the pod.
    """
    if model.artifact_hash is None:
        ctx.logger.warning("deploy: %s has no recorded artifact hash; not verified", model.model_uri)
        return
    from mlsteps.backends import mlflow as mlflow_backend

    mlflow_backend.configure(ctx)
    _refuse_changed(model, mlflow_backend.artifact_tree_hash(ctx, model.model_uri))


def _refuse_changed(model: ModelSpec, actual: str) -> None:
    if actual != model.artifact_hash:
        raise GateFailure(
            "deploy",
            [
                f"{model.model_uri}: its artifacts changed since registration (files hash to {actual}, "
                f"registration recorded {model.artifact_hash}); nothing was deployed. Find out who changed "
                "the artifact store, then register the model again",
            ],
            report=None,
        )


@dataclass(frozen=True)
class DeployRequest:
    """One deployment (or rollback) to carry out on a target."""

    deployment: str
    model: ModelSpec
    strategy: StrategyConfig
    #: Who asked (orchestrator run key or the CLI user) and why: recorded in the state history.
    actor: str
    reason: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class AnalysisContext:
    """What a canary analysis hook is given between two traffic steps."""

    deployment: str
    candidate: ModelSpec
    stable: ModelSpec | None
    percent: int
    endpoint: str | None
    extra: dict[str, Any] = field(default_factory=dict)


class HistoryEntry(BaseModel):
    """One deploy or rollback as it happened."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["deploy", "rollback", "auto_rollback", "stop"]
    version: str | None
    previous_version: str | None
    status: Literal["healthy", "failed", "rolled_back", "stopped"]
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: str = ""
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class DeploymentState(BaseModel):
    """What a deployment serves now and how it got there (one JSON file per deployment)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    deployment: str
    target: str
    model_name: str | None = None
    #: The version receiving (stable) traffic.
    live_version: str | None = None
    #: Version -> percent of traffic (canary/ab) or mirrored (shadow, under ``shadow``).
    traffic: dict[str, int] = Field(default_factory=dict)
    shadow_version: str | None = None
    endpoint: str | None = None
    #: Target-specific bookkeeping (process ids, ports, revision numbers, manifests).
    runtime: dict[str, Any] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)

    def previous_version(self) -> str | None:
        """The last healthy version before the live one: where a rollback goes."""
        seen_live = False
        for entry in reversed(self.history):
            if entry.status != "healthy" or entry.version is None:
                continue
            if not seen_live and entry.version == self.live_version:
                seen_live = True
                continue
            if seen_live and entry.version != self.live_version:
                return entry.version
        return None


#: The state file of a deployment, relative to the artifact root (see :class:`StateFile`).
STATE_DIR = "deployments"
STATE_FILE = "state.json"


class StateFile:
    """A deployment's :class:`DeploymentState` at ``<root>/deployments/<name>/state.json``.

    Writes are atomic (via the artifact store) and, on a local root, :meth:`locked`
    serialises every read-modify-write with a file lock, so two deploys of one
    deployment (a retry racing its predecessor, a hand rollback during a pipeline
    run) never interleave. Remote roots have no lock: one writer at a time there.
    """

    def __init__(self, ctx: RunContext, deployment: str) -> None:
        self.store = ctx.store
        self.deployment = deployment
        self.rel = f"{STATE_DIR}/{deployment}/{STATE_FILE}"
        self.uri = self.store.uri(self.rel)

    def directory(self) -> Path:
        """The deployment's local directory (local roots only): logs, model copies, the lock."""
        return self.store.local_dir(STATE_DIR, self.deployment)

    @contextlib.contextmanager
    def locked(self, timeout_s: float = 600.0) -> Iterator[None]:
        """Hold the deployment's lock (a no-op on remote roots)."""
        if not self.store.local:
            yield
            return
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.directory() / ".lock"), timeout=timeout_s)
        try:
            with lock:
                yield
        except Timeout:
            raise BackendError(
                "deploy",
                f"deployment {self.deployment!r} is locked by another deploy for over {timeout_s:.0f} s",
                hint=f"wait for it to finish, or remove {lock.lock_file} if no deploy is running",
            ) from None

    def load(self) -> DeploymentState | None:
        """The recorded state, or ``None`` if the deployment was never deployed here."""
        if not self.store.exists(self.rel):
            return None
        try:
            return DeploymentState.model_validate(self.store.read_json(self.rel))
        except (ValidationError, ValueError) as exc:
            raise BackendError(
                "deploy", f"deployment state {self.uri} is unreadable: {exc}", hint="restore or remove it"
            ) from exc

    def save(self, state: DeploymentState) -> None:
        self.store.write_bytes(self.rel, json.dumps(state.model_dump(mode="json"), indent=2).encode())


class Target(ABC):
    """A serving platform. Implementations live in ``mlsteps.deploy.<name>``.

    The step builds a target as ``TargetClass(config)`` from its ``target`` config
    (a pydantic model with a ``type`` discriminator). When a deploy fails, a target
    rolls back and either returns a ref with status ``rolled_back`` or ``failed``
    (``metadata["error"]`` saying why) or raises; the step fails the run either way.
    """

    name: ClassVar[str]
    #: The strategies this target implements; the step refuses the others with a clear error.
    strategies: ClassVar[frozenset[StrategyKind]]
    #: Whether the target checks the artifacts against ``ModelSpec.artifact_hash`` itself
    #: (it downloads them); otherwise the deploy step does before calling :meth:`deploy`.
    checks_artifacts: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @abstractmethod
    def deploy(self, ctx: RunContext, request: DeployRequest) -> DeploymentRef:
        """Serve ``request.model`` with ``request.strategy``; roll back automatically on failure.

        Must be safe to retry with the same request: a retry finds what an earlier
        attempt did (state file, labels on cluster objects) and finishes or reuses it.
        """

    @abstractmethod
    def rollback(
        self, ctx: RunContext, deployment: str, *, to_version: str | None, actor: str, reason: str
    ) -> DeploymentRef:
        """Serve the previous healthy version (or ``to_version``) again."""

    @abstractmethod
    def status(self, ctx: RunContext, deployment: str) -> DeploymentState | None:
        """The recorded state of ``deployment``, or ``None`` if it was never deployed."""

    def render(self, request: DeployRequest) -> list[dict[str, Any]]:
        """The manifests a deploy would apply (Kubernetes targets); none for process targets."""
        return []

    @staticmethod
    def _entry(
        ctx: RunContext,
        action: Literal["deploy", "rollback", "auto_rollback", "stop"],
        version: str | None,
        previous: str | None,
        status: Literal["healthy", "failed", "rolled_back", "stopped"],
        actor: str,
        reason: str,
        **details: Any,
    ) -> HistoryEntry:
        """A history entry tied to this step run (its run key makes retries recognisable)."""
        return HistoryEntry(
            action=action,
            version=version,
            previous_version=previous,
            status=status,
            actor=actor,
            reason=reason,
            details={"run_key": ctx.run_key.idempotency_key, "record_id": ctx.record_id, **details},
        )

    def _ref(
        self,
        state_file: StateFile,
        state: DeploymentState,
        *,
        model_uri: str,
        status: Literal["pending", "healthy", "failed", "rolled_back", "stopped"],
        extra: dict[str, Any] | None = None,
    ) -> DeploymentRef:
        """The deployment ref a target returns: where the state is, what serves, how traffic is split."""
        from mlsteps.refs import DeploymentRef

        last = state.history[-1] if state.history else None
        return DeploymentRef(
            uri=state_file.uri,
            target=self.name,
            endpoint=state.endpoint,
            model_uri=model_uri,
            traffic=dict(state.traffic),
            status=status,
            metadata={
                "deployment": state.deployment,
                "live_version": state.live_version,
                "previous_version": last.previous_version if last else None,
                **self._ref_metadata(state),
                **(extra or {}),
            },
        )

    def _ref_metadata(self, state: DeploymentState) -> dict[str, Any]:
        """Target-specific metadata of the deployment ref (e.g. the namespace)."""
        return {}

    def stop(self, ctx: RunContext, deployment: str, *, actor: str, reason: str) -> DeploymentRef | None:
        """Stop serving ``deployment`` (local servers); cluster targets may leave this unimplemented."""
        raise NotImplementedError(f"target {self.name!r} cannot stop deployments")
