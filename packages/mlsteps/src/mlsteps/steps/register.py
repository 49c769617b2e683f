"""The ``register`` step: put an evaluated model into the MLflow Model Registry.

It refuses a model whose evaluation did not pass, creates (or, on a retry, finds)
one model version per run key, waits until it is ready, tags it with its lineage
and evaluation metrics, attaches a Markdown model card, and only then moves the
configured aliases onto it, so an alias never points at a half-documented version.
Promotion (``promote: true``) is a compare-and-set under a registry-wide lock: the
champion alias moves only onto a version that beats the current champion, so
concurrent pipelines leave it on the best of them (see :func:`promote`).
Stages are never used: MLflow deprecated them in favour of aliases and tags.

MLflow is imported only inside :meth:`RegisterStep.run`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from mlsteps._imports import require
from mlsteps.backends import mlflow as mlflow_backend
from mlsteps.backends.mlflow import ARTIFACT_HASH_TAG, artifact_tree_hash
from mlsteps.errors import BackendError, ConfigError, GateFailure, Problem
from mlsteps.lineage import package_versions
from mlsteps.refs import ModelRef, ModelVersionRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import atomic_write_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlsteps.context import RunContext
    from mlsteps.refs import BaseRef

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: MLflow's own alias rule (``^[\w\-]*$``, at most 255 characters), ASCII only.
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
#: MLflow reserves ``latest`` and ``v<N>`` (they already mean something in ``models:/`` URIs).
RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)
#: Characters MLflow accepts in tag keys.
TAG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.\- /]{1,250}$")
#: Tag-key prefixes owned by mlsteps and MLflow; user tags may not write them.
RESERVED_TAG_PREFIXES = ("mlsteps.", "mlflow.")

RUN_KEY_TAG = "mlsteps.run_key"
MODEL_HASH_TAG = "mlsteps.model_hash"
EVALUATION_TAG = "mlsteps.evaluation"
MODEL_CARD_TAG = "mlsteps.model_card"
LINEAGE_TAG = "mlsteps.lineage_record"
ATTEMPT_TAG = "mlsteps.attempt"
METRIC_TAG_PREFIX = "metric."
#: The logged-model tag through which the MLflow UI links a LoggedModel to its versions.
MLFLOW_MODEL_VERSIONS_TAG = "mlflow.modelVersions"

CARD_FILE = "model_card.md"
CARD_ARTIFACT_DIR = "model_card"
_POLL_S = 1.0


class RegisterConfig(StepConfig):
    """Configuration of the ``register`` step."""

    name: str = Field(
        description="Registered model name: letters, digits, '_', '.', '-'; 1-128 characters, "
        "starting with a letter or digit."
    )
    aliases: list[str] = Field(
        default_factory=lambda: ["challenger"],
        description="Aliases moved onto the new version (e.g. 'challenger'). May be empty.",
    )
    promote: bool = Field(False, description="Also move `champion_alias` onto the new version.")
    champion_alias: str = Field("champion", description="The alias that marks the production model.")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Extra model-version tags. Keys starting with 'mlsteps.' or 'mlflow.' are reserved.",
    )
    description: str | None = Field(None, description="Description of the new model version.")
    await_registration_s: int = Field(
        300, ge=0, le=86_400, description="Seconds to wait for the version to become READY."
    )
    promote_metric: str | None = Field(
        None,
        min_length=1,
        max_length=250,
        description="Metric (from the evaluation summary) the new version must beat the current champion "
        "on to be promoted; default the evaluation's champion-comparison metric, else the version number.",
    )
    greater_is_better: bool = Field(True, description="Direction of `promote_metric`.")
    promotion_lock_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Seconds to wait for another pipeline's promotion of the same model to finish.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(
                "expected a registered model name of letters, digits, '_', '.' and '-' "
                "(1-128 characters, starting with a letter or digit)"
            )
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        for alias in value:
            _check_alias(alias)
        return list(dict.fromkeys(value))  # drop duplicates, keep order

    @field_validator("champion_alias")
    @classmethod
    def _champion(cls, value: str) -> str:
        _check_alias(value)
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(
                    f"tag key {key!r} uses a reserved prefix ({', '.join(RESERVED_TAG_PREFIXES)})"
                )
            if not TAG_KEY_PATTERN.fullmatch(key):
                raise ValueError(
                    f"tag key {key!r} may only contain letters, digits, '_', '.', '-', ' ' and '/'"
                )
        return value

    @model_validator(mode="after")
    def _champion_needs_promote(self) -> RegisterConfig:
        if self.champion_alias in self.aliases and not self.promote:
            raise ValueError(
                f"aliases lists the champion alias {self.champion_alias!r}; "
                "set promote: true to promote a model instead"
            )
        return self

    def all_aliases(self) -> list[str]:
        """The aliases to set, champion last when promoting."""
        extra = [self.champion_alias] if self.promote and self.champion_alias not in self.aliases else []
        return [*self.aliases, *extra]


def _check_alias(alias: str) -> None:
    if not ALIAS_PATTERN.fullmatch(alias):
        raise ValueError(f"alias {alias!r} may only contain letters, digits, '_' and '-' (1-255 characters)")
    if RESERVED_ALIAS.fullmatch(alias):
        raise ValueError(f"alias {alias!r} is reserved by MLflow ('latest' and 'v<number>')")


class RegisterStep(Step[RegisterConfig]):
    """Register an evaluated model version, tag it, attach a model card and set its aliases."""

    name = "register"
    version = "1"
    description = "Register a model that passed evaluation in the MLflow Model Registry and set its aliases."
    config_model = RegisterConfig
    inputs: ClassVar[dict[str, InputSpec]] = {
        "model": InputSpec("model", description="The model logged by `train` (models:/m-...)."),
        "evaluation": InputSpec("report", description="The `evaluate` report; it must have passed."),
    }
    outputs: ClassVar[dict[str, RefKind]] = {"model_version": "model_version"}
    # Registering changes a live registry: a cached result is reused only while the model's
    # registry state is exactly the one this step left behind (nothing registered, deleted,
    # re-tagged or re-aliased since).
    stateful_cache = True

    def cache_state(
        self, ctx: RunContext, config: RegisterConfig, inputs: Mapping[str, BaseRef]
    ) -> str | None:
        """The registered model's registry fingerprint."""
        from mlsteps.backends.registry_state import model_fingerprint

        return model_fingerprint(ctx, config.name)

    def run(self, ctx: RunContext, config: RegisterConfig, inputs: dict[str, BaseRef]) -> StepResult:
        model = inputs["model"]
        evaluation = inputs["evaluation"]
        if not isinstance(model, ModelRef) or not isinstance(evaluation, ReportRef):
            raise ConfigError([Problem(None, "inputs", "register needs a model ref and a report ref")])
        _check_evaluation(model, evaluation)

        client = mlflow_backend.configure(ctx)
        source = _source_uri(model)
        key = ctx.run_key.idempotency_key
        _ensure_registered_model(client, config.name)

        found = _find_version(client, config.name, key=key, source=source, run_id=model.run_id)
        if found is None:
            # The same logged model registered by an earlier run (e.g. a re-run whose
            # training was served from cache): registering it again would only add a
            # duplicate version, so the existing one is reused and its aliases refreshed.
            found = _find_same_model(client, config.name, source=source)
        if found is not None:
            ctx.logger.info(
                "register: reusing %s v%s created for run key %s", config.name, found.version, key
            )
            version = str(found.version)
        else:
            version = _create_version(ctx, client, config, model=model, evaluation=evaluation, source=source)
        mv = _await_ready(client, config.name, version, timeout_s=config.await_registration_s)
        source_run_id = model.run_id or mv.run_id
        if not (mv.tags or {}).get(ARTIFACT_HASH_TAG):
            artifact_hash = artifact_tree_hash(ctx, f"models:/{config.name}/{version}")
            with _mlflow_errors(f"could not tag {config.name} v{version} with its artifact hash"):
                client.set_model_version_tag(config.name, version, ARTIFACT_HASH_TAG, artifact_hash)

        metrics = summary_metrics(evaluation.summary)
        with _mlflow_errors(f"could not tag {config.name} v{version}"):
            # The attempt that completes the registration is the one lineage records the output of.
            for tag, value in {
                LINEAGE_TAG: ctx.record_id,
                ATTEMPT_TAG: str(ctx.run_key.attempt),
                **{_metric_tag(name): _fmt(value) for name, value in metrics.items()},
            }.items():
                client.set_model_version_tag(config.name, version, tag, value)
            if model.model_id:
                _link_logged_model(ctx, client, model.model_id, config.name, version)

        card_uri = _publish_card(
            ctx,
            client,
            config,
            model=model,
            evaluation=evaluation,
            version=version,
            source_run_id=source_run_id,
        )
        with _mlflow_errors(f"could not tag {config.name} v{version} with its model card"):
            client.set_model_version_tag(config.name, version, MODEL_CARD_TAG, card_uri)

        for alias in config.aliases:
            if config.promote and alias == config.champion_alias:
                continue  # moved by promote(), compare-and-set
            set_alias(client, config.name, alias, version)
        promotion = (
            promote(ctx, client, config, version=version, evaluation=evaluation) if config.promote else None
        )

        with _mlflow_errors(f"could not read back {config.name} v{version}"):
            # search_model_versions returns no aliases; get_model_version does.
            final = client.get_model_version(config.name, version)
        ref = ModelVersionRef(
            uri=f"models:/{config.name}/{version}",
            name=config.name,
            version=version,
            aliases=sorted(final.aliases),
            source_run_id=source_run_id,
            content_hash=model.content_hash,
            metadata={
                "model_uri": model.uri,
                "model_id": model.model_id,
                "evaluation": evaluation.uri,
                "model_card": card_uri,
                "reused": found is not None,
            },
        )
        message = f"{'reused' if found is not None else 'registered'} {config.name} v{version}"
        if ref.aliases:
            message += f" @ {', '.join(ref.aliases)}"
        metrics = {"version": float(version)}
        if promotion is not None:
            ref.metadata["promotion"] = promotion.reason
            metrics["promoted"] = float(promotion.promoted)
            if not promotion.promoted:
                message += f"; not promoted: {promotion.reason}"
        return StepResult(
            outputs={"model_version": ref},
            metrics=metrics,
            message=message,
            cache_state=self.cache_state(ctx, config, inputs),
        )


def _check_evaluation(model: ModelRef, evaluation: ReportRef) -> None:
    """Refuse to register a model whose evaluation failed or was of another model."""
    if not evaluation.passed:
        reasons = evaluation.summary.get("reasons") or evaluation.summary.get("failures")
        detail = (
            "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else "passed=false"
        )
        raise GateFailure(
            "register", [f"evaluation did not pass: {detail} (report {evaluation.uri})"], report=None
        )
    evaluated = evaluation.summary.get("model_uri") or evaluation.metadata.get("model_uri")
    if isinstance(evaluated, str) and evaluated != model.uri:
        raise GateFailure(
            "register",
            [f"evaluation {evaluation.uri} is of model {evaluated}, not of {model.uri}"],
            report=None,
        )


def _source_uri(model: ModelRef) -> str:
    """The version's source: the ``models:/m-...`` URI as given, a ``runs:/`` URI resolved.

    MLflow 3 stores a ``models:/<model_id>`` source as is and resolves its storage
    location from the LoggedModel, as ``mlflow.register_model`` does.
    """
    if model.uri.startswith("runs:/"):
        repo = require("mlflow.store.artifact.runs_artifact_repo")
        with _mlflow_errors(f"could not resolve {model.uri}"):
            return str(repo.RunsArtifactRepository.get_underlying_uri(model.uri))
    return model.uri


@contextlib.contextmanager
def _mlflow_errors(doing: str) -> Iterator[None]:
    """Turn MLflow (and transport) failures into a BackendError keeping MLflow's message."""
    exceptions = require("mlflow.exceptions")
    try:
        yield
    except (exceptions.MlflowException, OSError) as exc:
        raise mlflow_backend.wrap(exc, doing) from exc


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create the registered model unless it exists (another run may create it concurrently)."""
    exceptions = require("mlflow.exceptions")
    try:
        client.create_registered_model(name)
    except exceptions.MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise mlflow_backend.wrap(exc, f"could not create registered model {name!r}") from exc
    except OSError as exc:
        raise mlflow_backend.wrap(exc, f"could not create registered model {name!r}") from exc


def _find_version(
    client: MlflowClient, name: str, *, key: str, source: str, run_id: str | None
) -> ModelVersion | None:
    """The version an earlier attempt of this run key created from this model, if any."""
    query = f"name='{name}'"
    if not any(c in key for c in "'\"`\\"):
        query += f" and tags.`{RUN_KEY_TAG}` = '{key}'"
    token: str | None = None
    match = None
    with _mlflow_errors(f"could not search versions of {name!r}"):
        while True:
            page = client.search_model_versions(query, page_token=token)
            for mv in page:
                if (
                    mv.tags.get(RUN_KEY_TAG) == key
                    and mv.source == source
                    and (run_id is None or mv.run_id in (None, run_id))
                    and mv.status != "FAILED_REGISTRATION"
                    and (match is None or int(mv.version) < int(match.version))
                ):
                    match = mv
            token = page.token
            if not token:
                return match


def _find_same_model(client: MlflowClient, name: str, *, source: str) -> ModelVersion | None:
    """The oldest live version of ``name`` registered from exactly this logged model, if any."""
    if not source.startswith("models:/m-"):
        return None  # only LoggedModel ids identify one model unambiguously
    match = None
    token: str | None = None
    with _mlflow_errors(f"could not search versions of {name!r}"):
        while True:
            page = client.search_model_versions(f"name='{name}'", page_token=token)
            for mv in page:
                if (
                    mv.source == source
                    and mv.status != "FAILED_REGISTRATION"
                    and (match is None or int(mv.version) < int(match.version))
                ):
                    match = mv
            token = page.token
            if not token:
                return match


def _create_version(
    ctx: RunContext,
    client: MlflowClient,
    config: RegisterConfig,
    *,
    model: ModelRef,
    evaluation: ReportRef,
    source: str,
) -> str:
    """Create the version with its idempotency tag in the same call, so no untagged duplicate can exist."""
    tags = {
        **config.tags,
        **ctx.tags(),
        EVALUATION_TAG: evaluation.uri,
    }
    if model.content_hash:
        tags[MODEL_HASH_TAG] = model.content_hash
    with _mlflow_errors(f"could not create a version of {config.name!r} from {source}"):
        mv = client.create_model_version(
            config.name,
            source=source,
            run_id=model.run_id,
            tags=tags,
            description=config.description,
            await_creation_for=0,
            model_id=model.model_id,
        )
    ctx.logger.info("register: created %s v%s from %s", config.name, mv.version, source)
    return str(mv.version)


def _await_ready(client: MlflowClient, name: str, version: str, *, timeout_s: int) -> ModelVersion:
    """Poll the version until READY; a failed or slow registration is a BackendError."""
    deadline = time.monotonic() + timeout_s
    while True:
        with _mlflow_errors(f"could not read {name} v{version}"):
            mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return mv
        if mv.status == "FAILED_REGISTRATION":
            raise BackendError("mlflow", f"registration of {name} v{version} failed: {mv.status_message}")
        if time.monotonic() >= deadline:
            raise BackendError(
                "mlflow",
                f"{name} v{version} is still {mv.status} after {timeout_s} s",
                hint="raise await_registration_s, or check the registry",
            )
        time.sleep(_POLL_S)


def _link_logged_model(ctx: RunContext, client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Record the version on the LoggedModel (as ``mlflow.register_model`` does) for the MLflow UI.

    Like MLflow, a LoggedModel the tracking store does not know (e.g. a registry
    on another server) only costs the UI link, not the registration.
    """
    exceptions = require("mlflow.exceptions")
    try:
        logged = client.get_logged_model(model_id)
    except exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        ctx.logger.warning(
            "register: logged model %s not found; %s v%s is not linked to it", model_id, name, version
        )
        return
    existing = logged.tags.get(MLFLOW_MODEL_VERSIONS_TAG)
    links: list[dict[str, Any]] = json.loads(existing) if existing else []
    entry = {"name": name, "version": version}
    if entry not in links:
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS_TAG: json.dumps([*links, entry])})


#: Suffix of the registered model used as the promotion lock of ``<name>`` (see :func:`promotion_lock`).
LOCK_SUFFIX = ".mlsteps-lock"
LOCK_OWNER_TAG = "mlsteps.lock_owner"
LOCK_EXPIRES_TAG = "mlsteps.lock_expires"
#: How long a promotion lock is honoured; a holder dead for longer is assumed gone and its lock broken.
LOCK_LEASE_S = 60.0


@dataclass(frozen=True)
class Promotion:
    """Whether the champion alias moved onto the new version, and why (or why not)."""

    promoted: bool
    reason: str


def promote(
    ctx: RunContext, client: MlflowClient, config: RegisterConfig, *, version: str, evaluation: ReportRef
) -> Promotion:
    """Compare-and-set the champion alias: move it onto ``version`` only if ``version`` beats the champion.

    MLflow has no conditional alias update, so the read-compare-set runs under
    :func:`promotion_lock`. "Beats" is by the promotion metric (ties go to the newer version), or by
    version number when no metric is known: concurrent promoters therefore leave
    the champion on the best of them, whatever order they finish in. When the
    evaluation scored the very champion that still holds the alias, on the same
    rows (evaluate's champion comparison), that head-to-head score is compared;
    otherwise the champion's recorded ``metric.<name>`` tag (its own test split).
    """
    name, alias = config.name, config.champion_alias
    metric, greater = promotion_metric(config, evaluation)
    mine = summary_metrics(evaluation.summary).get(metric) if metric else None
    exceptions = require("mlflow.exceptions")
    with promotion_lock(ctx, client, name, wait_s=config.promotion_lock_s):
        try:
            current: ModelVersion | None = client.get_model_version_by_alias(name, alias)
        except exceptions.MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise mlflow_backend.wrap(exc, f"could not read {name}@{alias}") from exc
            current = None
        except OSError as exc:
            raise mlflow_backend.wrap(exc, f"could not read {name}@{alias}") from exc
        decision = _beats(
            version,
            mine,
            current,
            metric=metric,
            greater_is_better=greater,
            head_to_head=_same_rows_score(evaluation, current, metric, model=f"{name}@{alias}"),
        )
        if decision.promoted and (current is None or str(current.version) != version):
            set_alias(client, name, alias, version)
    ctx.logger.info("register: %s", decision.reason)
    return decision


def set_alias(client: MlflowClient, name: str, alias: str, version: str, *, tries: int = 5) -> None:
    """Point ``alias`` at ``version``, retrying MLflow's race on a brand-new alias.

    MLflow's SQL store sets an alias by looking it up, then inserting or updating:
    two pipelines setting the same new alias at once make the second insert break
    the unique key (a BAD_REQUEST naming the constraint). Retrying turns it into an
    update; the alias then ends on whichever set it last, as MLflow intends.
    """
    exceptions = require("mlflow.exceptions")
    for attempt in range(tries):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except exceptions.MlflowException as exc:
            text = str(exc).lower()
            raced = "unique" in text or "integrity" in text or "duplicate key" in text
            if not raced or attempt == tries - 1:
                raise mlflow_backend.wrap(exc, f"could not set alias {alias!r} on {name} v{version}") from exc
            time.sleep(random.uniform(0.01, 0.1) * (attempt + 1))
        except OSError as exc:
            raise mlflow_backend.wrap(exc, f"could not set alias {alias!r} on {name} v{version}") from exc


def promotion_metric(config: RegisterConfig, evaluation: ReportRef) -> tuple[str | None, bool]:
    """The metric promotion compares and its direction: configured, else evaluate's champion comparison."""
    if config.promote_metric:
        return config.promote_metric, config.greater_is_better
    champion = evaluation.summary.get("champion")
    comparisons = champion.get("comparisons") if isinstance(champion, dict) else None
    if isinstance(comparisons, list) and comparisons and isinstance(comparisons[0], dict):
        first = comparisons[0]
        if isinstance(first.get("metric"), str):
            return first["metric"], bool(first.get("greater_is_better", True))
    return None, True


def _same_rows_score(
    evaluation: ReportRef, current: ModelVersion | None, metric: str | None, *, model: str
) -> float | None:
    """The champion's ``metric`` on the candidate's evaluation rows, if evaluate scored this very champion."""
    champion = evaluation.summary.get("champion")
    if current is None or metric is None or not isinstance(champion, dict) or champion.get("model") != model:
        return None
    if str(champion.get("version")) != str(current.version):
        return None  # the champion moved since the evaluation: its recorded score is all there is
    value = (champion.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _beats(
    version: str,
    mine: float | None,
    current: ModelVersion | None,
    *,
    metric: str | None,
    greater_is_better: bool,
    head_to_head: float | None = None,
) -> Promotion:
    if current is None:
        return Promotion(True, f"v{version} promoted: there was no champion")
    held = str(current.version)
    if held == version:
        return Promotion(True, f"v{version} is already the champion")
    newer = int(version) > int(held)
    if metric is None:
        if newer:
            return Promotion(True, f"v{version} promoted over v{held} (newer; no promotion metric)")
        return Promotion(False, f"champion v{held} is newer than v{version} (no promotion metric)")
    where = " on the same rows" if head_to_head is not None else ""
    theirs: float | None = head_to_head
    if theirs is None:
        raw = (current.tags or {}).get(_metric_tag(metric))
        try:
            theirs = float(raw) if raw is not None else None
        except ValueError:
            theirs = None
    if mine is None:
        return Promotion(False, f"v{version} has no {metric!r} in its evaluation; champion v{held} stays")
    if theirs is None or not math.isfinite(theirs):
        return Promotion(True, f"v{version} promoted over v{held}, which records no {metric!r}")
    better = mine > theirs if greater_is_better else mine < theirs
    if better or (mine == theirs and newer):
        return Promotion(
            True, f"v{version} promoted: {metric} {mine:.6g} beats v{held}'s {theirs:.6g}{where}"
        )
    return Promotion(False, f"{metric} {mine:.6g} does not beat champion v{held}'s {theirs:.6g}{where}")


@contextlib.contextmanager
def promotion_lock(ctx: RunContext, client: MlflowClient, name: str, *, wait_s: float) -> Iterator[None]:
    """Hold the registry-wide promotion lock of ``name`` (works with any MLflow tracking server).

    The lock is a registered model ``<name>.mlsteps-lock``: creating a registered
    model is atomic and fails if the name exists (a unique key in the registry's
    database), which makes it a test-and-set. The lock records its owner (run key)
    and an expiry; a retry of the owner's run key takes it over at once (its
    previous attempt died holding it) and anyone breaks it once expired.
    """
    exceptions = require("mlflow.exceptions")
    lock = f"{name}{LOCK_SUFFIX}"
    key = ctx.run_key.idempotency_key
    owner = f"{key}#{ctx.record_id}"
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            with _mlflow_errors(f"could not take the promotion lock {lock!r}"):
                client.create_registered_model(
                    lock,
                    tags={LOCK_OWNER_TAG: owner, LOCK_EXPIRES_TAG: f"{time.time() + LOCK_LEASE_S:.3f}"},
                    description=f"mlsteps: promotion of {name!r} in progress (safe to delete when none is)",
                )
            break
        except BackendError as exc:
            cause = exc.__cause__
            # RESOURCE_DOES_NOT_EXIST: the server hit the unique key, then found no lock when it
            # looked (its holder released it in between): contention all the same.
            if not (
                isinstance(cause, exceptions.MlflowException)
                and cause.error_code
                in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")
            ):
                raise
        holder, expires = _lock_holder(client, lock)
        if holder is None:
            continue  # released between our attempt and the look
        if holder.split("#", 1)[0] == key or expires < time.time():
            ctx.logger.warning("register: breaking promotion lock %s held by %s", lock, holder)
            _delete_lock(client, lock)
            continue
        if time.monotonic() >= deadline:
            raise BackendError(
                "mlflow",
                f"the promotion lock {lock!r} is held by {holder} for over {wait_s:.0f} s",
                hint=f"another pipeline is promoting {name!r}; if none is, delete the registered model {lock!r}",
            )
        time.sleep(delay + random.uniform(0, delay))
        delay = min(delay * 2, 1.0)
    try:
        yield
    finally:
        holder, _ = _lock_holder(client, lock)
        if holder == owner:
            _delete_lock(client, lock)


def _lock_holder(client: MlflowClient, lock: str) -> tuple[str | None, float]:
    exceptions = require("mlflow.exceptions")
    try:
        tags = client.get_registered_model(lock).tags or {}
    except exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None, 0.0
        raise mlflow_backend.wrap(exc, f"could not read the promotion lock {lock!r}") from exc
    try:
        expires = float(tags.get(LOCK_EXPIRES_TAG, "0"))
    except ValueError:
        expires = 0.0
    return tags.get(LOCK_OWNER_TAG, ""), expires


def _delete_lock(client: MlflowClient, lock: str) -> None:
    exceptions = require("mlflow.exceptions")
    try:
        client.delete_registered_model(lock)
    except exceptions.MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise mlflow_backend.wrap(exc, f"could not release the promotion lock {lock!r}") from exc


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Metric values from an evaluation summary.

    Reads ``summary["metrics"]`` (``name -> number`` or ``name -> {"value": number}``);
    without that key, the summary's own top-level numbers. Non-finite values are dropped.
    """
    source = summary.get("metrics")
    if not isinstance(source, dict):
        source = summary
    out: dict[str, float] = {}
    for name, raw in source.items():
        value = raw.get("value") if isinstance(raw, dict) else raw
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[str(name)] = float(value)
    return out


def _metric_tag(name: str) -> str:
    return METRIC_TAG_PREFIX + re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", name)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _publish_card(
    ctx: RunContext,
    client: MlflowClient,
    config: RegisterConfig,
    *,
    model: ModelRef,
    evaluation: ReportRef,
    version: str,
    source_run_id: str | None,
) -> str:
    """Write the model card under the step's directory and log it to the source run.

    Returns the URI the version's ``mlsteps.model_card`` tag points at: the run
    artifact when there is a source run, else the card's own location.
    """
    text = render_model_card(
        ctx, config, model=model, evaluation=evaluation, version=version, source_run_id=source_run_id
    )
    data = text.encode()
    if ctx.store.local:
        path = ctx.step_dir() / CARD_FILE
        atomic_write_bytes(path, data)
        local_uri = path.as_uri()
    else:
        local_uri = ctx.store.write_bytes(f"runs/{ctx.run_key.run_id}/{ctx.run_key.step}/{CARD_FILE}", data)
    if source_run_id is None:
        return local_uri
    with (
        tempfile.TemporaryDirectory() as tmp,
        _mlflow_errors(f"could not log the model card to run {source_run_id}"),
    ):
        # log_artifact keeps the file name, so the card is logged from a copy named model_card.md.
        copy = Path(tmp) / CARD_FILE
        copy.write_bytes(data)
        client.log_artifact(source_run_id, str(copy), artifact_path=CARD_ARTIFACT_DIR)
    return f"runs:/{source_run_id}/{CARD_ARTIFACT_DIR}/{CARD_FILE}"


def _cell(value: Any) -> str:
    """A value fit for a Markdown table cell."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: Mapping[str, Any], header: tuple[str, str]) -> list[str]:
    if not rows:
        return ["_none recorded_", ""]
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows.items()]
    return [*lines, ""]


def _by_metric(value: Any) -> dict[str, Any]:
    """A ``metric -> x`` mapping out of a summary entry (a dict, or a dict holding ``metrics``)."""
    if isinstance(value, dict):
        inner = value.get("metrics")
        return dict(inner) if isinstance(inner, dict) else dict(value)
    return {}


def render_model_card(
    ctx: RunContext,
    config: RegisterConfig,
    *,
    model: ModelRef,
    evaluation: ReportRef,
    version: str,
    source_run_id: str | None,
) -> str:
    """The model card: identity, source, data, features, config, metrics vs thresholds and champion, packages."""
    summary = evaluation.summary
    metrics = summary_metrics(summary)
    thresholds = _by_metric(summary.get("thresholds"))
    champion = summary.get("champion")
    champion_metrics = _by_metric(champion)
    meta = dict(model.metadata)
    features = meta.pop("features", None)

    lines = [
        f"# Model card: {config.name} v{version}",
        "",
        f"Registered by mlsteps on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}.",
        "",
        "## Model",
        "",
        *_table(
            {
                "registered model": f"models:/{config.name}/{version}",
                "aliases": ", ".join(config.all_aliases()) or "(none)",
                "description": config.description or "",
                "logged model": model.uri,
                "model id": model.model_id or "",
                "flavour": model.flavour,
                "content hash": model.content_hash or "",
                "source run": source_run_id or "",
                "run key": ctx.run_key.idempotency_key,
                "lineage record": ctx.record_id,
            },
            ("field", "value"),
        ),
        "## Data",
        "",
        *_table(meta, ("key", "value")),
        "## Features",
        "",
    ]
    if isinstance(features, list) and features:
        lines += [f"- `{f}`" for f in features] + [""]
    else:
        lines += ["_not recorded on the model ref_", ""]
    lines += [
        "## Evaluation",
        "",
        f"Report: `{evaluation.uri}` (passed: {evaluation.passed})",
        "",
    ]
    names = list(dict.fromkeys([*metrics, *thresholds]))
    if names:
        lines += ["| metric | value | threshold | champion |", "|---|---|---|---|"]
        for name in names:
            lines.append(
                f"| {_cell(name)} | {_cell(metrics.get(name, ''))} | {_cell(thresholds.get(name, ''))} "
                f"| {_cell(champion_metrics.get(name, ''))} |"
            )
        lines.append("")
    else:
        lines += ["_no metrics in the evaluation summary_", ""]
    if champion is not None:
        lines += [f"Champion at evaluation time: `{_cell(champion)}`", ""]
    lines += [
        "<details><summary>Full evaluation summary</summary>",
        "",
        "```json",
        json.dumps(summary, indent=2, sort_keys=True, default=str),
        "```",
        "",
        "</details>",
        "",
        "## Registration config",
        "",
        "```json",
        json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True),
        "```",
        "",
        "## Packages",
        "",
        *_table(package_versions(), ("package", "version")),
    ]
    return "\n".join(lines)
