"""The ``deploy`` step: put a registered model version behind an endpoint, safely.

The step resolves the version to serve (the ``register`` step's output, or a
``models:/name@alias`` / ``models:/name/version`` URI), refuses a version whose
evaluation did not pass unless forced, and hands the deployment to a target
(``local``, ``kubernetes``, ``kserve``) that carries out the strategy and rolls
back on failure. The same step also rolls back and stops deployments
(``action``), so every change to what serves is one lineage record: who, which
version, when and why.

MLflow and the platform clients are imported only inside :meth:`DeployStep.run`.
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from mlsteps._imports import require
from mlsteps.backends.mlflow import ARTIFACT_HASH_TAG
from mlsteps.deploy.base import (
    DeployRequest,
    ModelSpec,
    StrategyConfig,
    Target,
    verify_registered_artifacts,
)
from mlsteps.errors import BackendError, ConfigError, GateFailure, Problem
from mlsteps.refs import DeploymentRef, ModelVersionRef, RefKind
from mlsteps.step import InputSpec, Step, StepConfig, StepResult

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from pydantic.json_schema import JsonSchemaValue

    from mlsteps.context import RunContext
    from mlsteps.deploy.kserve import KServeTargetConfig
    from mlsteps.deploy.kubernetes import KubernetesTargetConfig
    from mlsteps.deploy.local import LocalTargetConfig
    from mlsteps.refs import BaseRef

#: Target type -> ``module:Class``, imported only when a deployment uses it.
TARGETS: dict[str, str] = {
    "local": "mlsteps.deploy.local:LocalTarget",
    "kubernetes": "mlsteps.deploy.kubernetes:KubernetesTarget",
    "kserve": "mlsteps.deploy.kserve:KServeTarget",
}

#: Target type -> ``module:Class`` of its config model. Only the model of the type a spec
#: uses is imported and built: the Kubernetes and KServe models cost ~0.15 s of every
#: parse (Airflow, Dagster, Prefect) of a spec that deploys locally.
TARGET_CONFIGS: dict[str, str] = {
    "local": "mlsteps.deploy.local:LocalTargetConfig",
    "kubernetes": "mlsteps.deploy.kubernetes:KubernetesTargetConfig",
    "kserve": "mlsteps.deploy.kserve:KServeTargetConfig",
}


def load_target_config(kind: str) -> type[BaseModel]:
    """The config model of target type ``kind`` (lazy import; ``kind`` must be known)."""
    module, _, attr = TARGET_CONFIGS[kind].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert isinstance(cls, type) and issubclass(cls, BaseModel)
    return cls


@functools.cache
def _tagged(kind: str) -> type[BaseModel]:
    """A one-field model ``{kind: config}``: its errors carry the tag, as a discriminated union's do."""
    fields: dict[str, Any] = {kind: (load_target_config(kind), ...)}
    return create_model(f"_{kind}_target", **fields)


def _validate_target(value: Any) -> BaseModel:
    """``value`` validated by the config model its ``type`` names (a discriminated union, resolved lazily)."""
    if isinstance(value, BaseModel):
        kind = getattr(value, "type", None)
        if kind in TARGET_CONFIGS and isinstance(value, load_target_config(kind)):
            return value
        value = value.model_dump()
    if not isinstance(value, Mapping):
        raise PydanticCustomError(
            "model_attributes_type", "Input should be a valid dictionary or object to extract fields from"
        )
    if "type" not in value:
        raise PydanticCustomError("union_tag_not_found", "Unable to extract tag using discriminator 'type'")
    kind = value["type"]
    if not isinstance(kind, str) or kind not in TARGET_CONFIGS:
        expected = ", ".join(repr(k) for k in TARGET_CONFIGS)
        raise PydanticCustomError(
            "union_tag_invalid",
            "Input tag {tag} found using 'type' does not match any of the expected tags: {expected}",
            {"tag": repr(kind), "expected": expected},
        )
    config: BaseModel = getattr(_tagged(kind).model_validate({kind: value}), kind)
    return config


class _LazyTargetUnion:
    """Pydantic hooks for ``DeployConfig.target``: a union discriminated by ``type`` whose members
    are imported and built only when used (for validation) or documented (for the JSON schema)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(_validate_target)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        from pydantic import TypeAdapter

        members: Any = functools.reduce(operator.or_, map(load_target_config, TARGET_CONFIGS))
        union: Any = Annotated[members, Field(discriminator="type")]
        return handler(TypeAdapter(union).core_schema)


if TYPE_CHECKING:
    TargetConfig = LocalTargetConfig | KubernetesTargetConfig | KServeTargetConfig
else:
    TargetConfig = Annotated[Any, _LazyTargetUnion()]


def _default_target() -> Any:
    return load_target_config("local")()


#: A DNS-1123 label: valid as a Kubernetes object name and as a directory name.
DEPLOYMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")
EVALUATION_TAG = "mlsteps.evaluation"


def load_target(kind: str) -> type[Target]:
    """The target class registered for ``kind`` (lazy import)."""
    spec = TARGETS.get(kind)
    if spec is None:
        raise ConfigError(
            [
                Problem(
                    None,
                    "deploy.config.target.type",
                    f"unknown target {kind!r}; expected one of {sorted(TARGETS)}",
                )
            ]
        )
    module, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise ConfigError([Problem(None, "deploy.config.target.type", f"{spec} is not a deploy Target")])
    return cls


class DeployConfig(StepConfig):
    """Configuration of the ``deploy`` step."""

    name: str = Field(
        description="Deployment name: lower-case letters, digits and '-', at most 63 characters "
        "(a Kubernetes object name)."
    )
    model: str | None = Field(
        None,
        description="models:/NAME@ALIAS or models:/NAME/VERSION; default the `model_version` input "
        "(the register step's output).",
    )
    target: TargetConfig = Field(
        default_factory=_default_target, description="Where to serve: type local | kubernetes | kserve."
    )
    strategy: StrategyConfig = Field(default_factory=StrategyConfig, description="How traffic moves.")
    force: bool = Field(
        False, description="Deploy even if the version's evaluation did not pass (or is unknown)."
    )
    action: Literal["deploy", "rollback", "stop"] = Field(
        "deploy", description="deploy a version, rollback to the previous healthy one, or stop serving."
    )
    to_version: str | None = Field(
        None,
        pattern=r"^\d+$",
        description="rollback: the version to serve again (default: the previous one).",
    )
    reason: str = Field(
        "", max_length=1000, description="Why: recorded in the deployment history and lineage."
    )
    actor: str | None = Field(None, max_length=200, description="Who: default the run key.")
    dry_run: bool = Field(False, description="Resolve and check everything, change nothing.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DEPLOYMENT_NAME.fullmatch(value):
            raise ValueError(
                "expected lower-case letters, digits and '-', starting and ending with a letter or digit "
                "(at most 63 characters)"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_URI.fullmatch(value):
            raise ValueError("expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return value

    @field_validator("strategy")
    @classmethod
    def _supported(cls, value: StrategyConfig, info: ValidationInfo) -> StrategyConfig:
        target = info.data.get("target")
        if target is not None:
            supported = load_target(target.type).strategies
            if value.kind not in supported:
                raise ValueError(
                    f"strategy kind {value.kind!r} is not supported by the {target.type!r} target; "
                    f"it supports {sorted(supported)}"
                )
        return value

    @model_validator(mode="after")
    def _rollback_only(self) -> DeployConfig:
        if self.to_version is not None and self.action != "rollback":
            raise ValueError("to_version is only used with action: rollback")
        return self


class DeployStep(Step[DeployConfig]):
    """Deploy (or roll back, or stop) a registered model version on a serving target."""

    name = "deploy"
    version = "1"
    description = "Serve a registered model version (local process, Kubernetes or KServe), with rollback."
    config_model = DeployConfig
    inputs: ClassVar[dict[str, InputSpec]] = {
        "model_version": InputSpec(
            "model_version", required=False, description="The version to deploy (from `register`)."
        ),
    }
    outputs: ClassVar[dict[str, RefKind]] = {"deployment": "deployment"}
    # Deploying changes what serves traffic: a re-run must reach the target, never reuse a cached result.
    cacheable = False

    def run(self, ctx: RunContext, config: DeployConfig, inputs: dict[str, BaseRef]) -> StepResult:
        target = build_target(config)
        actor = config.actor or str(ctx.run_key)
        if config.action == "rollback":
            ref = target.rollback(
                ctx, config.name, to_version=config.to_version, actor=actor, reason=config.reason
            )
        elif config.action == "stop":
            try:
                stopped = target.stop(ctx, config.name, actor=actor, reason=config.reason)
            except NotImplementedError as exc:
                raise ConfigError([Problem(None, "deploy.config.action", str(exc))]) from None
            if stopped is None:
                raise ConfigError(
                    [
                        Problem(
                            None,
                            "deploy.config.name",
                            f"no deployment {config.name!r} under {ctx.store.root}",
                        )
                    ]
                )
            ref = stopped
        else:
            request = prepare_request(ctx, config, inputs.get("model_version"), actor=actor)
            if not target.checks_artifacts:
                verify_registered_artifacts(ctx, request.model)
            ref = target.deploy(ctx, request)
        if ref.status in ("failed", "rolled_back"):
            raise BackendError(
                target.name,
                str(ref.metadata.get("error") or f"{config.action} of {ref.model_uri} ended {ref.status}"),
                hint=f"`mlsteps deploy status` shows the deployment's history; server log: {ref.metadata['log']}"
                if ref.metadata.get("log")
                else "`mlsteps deploy status` shows the deployment's history",
            )
        metrics: dict[str, float] = {}
        live = ref.metadata.get("live_version")
        if isinstance(live, str) and live.isdigit():
            metrics["version"] = float(live)
        if isinstance(ref.metadata.get("startup_s"), int | float):
            metrics["startup_s"] = float(ref.metadata["startup_s"])
        return StepResult(outputs={"deployment": ref}, metrics=metrics, message=_message(config, ref))


def _message(config: DeployConfig, ref: DeploymentRef) -> str:
    live = ref.metadata.get("live_version")
    if ref.status == "stopped":
        return f"{config.name} stopped"
    if ref.status == "pending":
        return f"dry run: {ref.metadata.get('plan', 'nothing changed')}"
    verb = {"deploy": "serving", "rollback": "rolled back to"}[config.action]
    reused = " (already live)" if ref.metadata.get("reused") else ""
    return f"{config.name}: {verb} v{live}{reused} at {ref.endpoint}"


def build_target(config: DeployConfig) -> Target:
    """The target the config names, built from its ``target`` section."""
    return load_target(config.target.type)(config.target)


def prepare_request(
    ctx: RunContext, config: DeployConfig, model_version: BaseRef | None, *, actor: str
) -> DeployRequest:
    """Resolve the model version and enforce the evaluation gate; the request for the target."""
    client = _client(ctx)
    model, mv = resolve_model(client, config, model_version)
    reasons = evaluation_problems(ctx, mv, fallback=_ref_evaluation(model_version))
    reason = config.reason
    if reasons:
        if not config.force:
            raise GateFailure(
                "deploy",
                [
                    *reasons,
                    f"{model.name} v{model.version} is not deployed; set force: true (--force) to override",
                ],
                report=None,
            )
        ctx.logger.warning("deploy: forcing %s v%s: %s", model.name, model.version, "; ".join(reasons))
        reason = f"{reason} [forced: {'; '.join(reasons)}]".strip()
    return DeployRequest(
        deployment=config.name,
        model=model,
        strategy=config.strategy,
        actor=actor,
        reason=reason,
        dry_run=config.dry_run,
    )


def _client(ctx: RunContext) -> MlflowClient:
    from mlsteps.backends import mlflow as mlflow_backend

    return mlflow_backend.configure(ctx)


def resolve_model(
    client: MlflowClient, config: DeployConfig, model_version: BaseRef | None
) -> tuple[ModelSpec, ModelVersion]:
    """The registered version to serve: ``config.model`` or the ``model_version`` input, not both."""
    if config.model is not None and model_version is not None:
        raise ConfigError(
            [
                Problem(
                    None,
                    "deploy.config.model",
                    "set either config.model or the model_version input, not both",
                )
            ]
        )
    if config.model is None and model_version is None:
        raise ConfigError(
            [
                Problem(
                    None,
                    "deploy.config.model",
                    "no model to deploy: wire inputs.model_version (e.g. register.model_version) "
                    "or set model: models:/NAME@ALIAS",
                )
            ]
        )
    from mlsteps.backends import mlflow as mlflow_backend

    if isinstance(model_version, ModelVersionRef):
        uri = f"models:/{model_version.name}/{model_version.version}"
    else:
        assert config.model is not None
        uri = config.model
    parsed = mlflow_backend.parse_model_uri(uri, field="deploy.config.model")
    name = parsed.name
    mv = mlflow_backend.get_model_version(client, parsed)
    version = str(mv.version)
    exceptions = require("mlflow.exceptions")
    try:
        storage = client.get_model_version_download_uri(name, version)
    except (exceptions.MlflowException, OSError) as exc:
        raise mlflow_backend.wrap(exc, f"could not resolve {uri}") from exc
    if mv.status != "READY":
        raise BackendError("mlflow", f"{name} v{version} is {mv.status}, not READY: it cannot be served yet")
    spec = ModelSpec(
        name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        storage_uri=str(storage) if storage else None,
        run_id=mv.run_id,
        artifact_hash=(mv.tags or {}).get(ARTIFACT_HASH_TAG),
    )
    return spec, mv


def _ref_evaluation(ref: BaseRef | None) -> str | None:
    value = ref.metadata.get("evaluation") if ref is not None else None
    return value if isinstance(value, str) else None


def evaluation_problems(ctx: RunContext, mv: ModelVersion, *, fallback: str | None = None) -> list[str]:
    """Why ``mv`` must not be deployed (empty when its evaluation passed).

    The evaluation is the report the version's ``mlsteps.evaluation`` tag points
    at (set by ``register``); its ``passed`` flag decides. A version without one,
    or whose report cannot be read, is refused too: nothing says it is fit to serve.
    """
    label = f"{mv.name} v{mv.version}"
    uri = (mv.tags or {}).get(EVALUATION_TAG) or fallback
    if not uri:
        return [f"{label} has no evaluation (no {EVALUATION_TAG!r} tag): it was not registered by mlsteps"]
    try:
        report: Any = ctx.store.read_json(uri)
    except (OSError, ValueError) as exc:
        return [f"the evaluation of {label} ({uri}) cannot be read: {exc}"]
    if not isinstance(report, dict) or report.get("passed") is not True:
        failing = report.get("failing") if isinstance(report, dict) else None
        detail = (
            "; ".join(str(f) for f in failing)
            if isinstance(failing, list) and failing
            else "passed is not true"
        )
        return [f"the evaluation of {label} did not pass ({uri}): {detail}"]
    return []
