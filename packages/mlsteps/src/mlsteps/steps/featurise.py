"""The ``featurise`` step: a point-in-time correct training set from a Feast feature store.

The input dataset supplies the entity rows (join keys, an event time and the labels);
Feast supplies the feature values as they were known at each row's event time, so a
value written after an entity's event time never leaks into training. Feast is
imported only inside :meth:`FeaturiseStep.run` (it takes seconds to import).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mlsteps._imports import require
from mlsteps.data import read_dataframe, write_dataset
from mlsteps.errors import BackendError, ConfigError, DataError, MlstepsError, Problem
from mlsteps.hashing import hash_value
from mlsteps.refs import DatasetRef, RefKind
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import atomic_write_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import pandas as pd
    from pydantic import SecretStr

    from mlsteps.context import RunContext
    from mlsteps.refs import BaseRef

#: The column name Feast looks for in an entity dataframe.
FEAST_TIMESTAMP = "event_timestamp"
FEATURE_STORE_YAML = "feature_store.yaml"
TRAINING_FILE = "training.parquet"
#: Start of a feature view's first materialisation: its whole history.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How far past the current time an entity row's event time may be before it counts as "in the future".
FUTURE_SKEW = timedelta(minutes=5)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Loading a repo's definitions touches sys.path and sys.modules, which are process-wide.
_REPO_IMPORT_LOCK = threading.Lock()


#: Feast value types an inline ``schema`` may name (lower case), mapped to ``feast.types`` names.
INLINE_DTYPES: dict[str, str] = {
    "float32": "Float32",
    "float64": "Float64",
    "int32": "Int32",
    "int64": "Int64",
    "string": "String",
    "bool": "Bool",
    "bytes": "Bytes",
    "timestamp": "UnixTimestamp",
}
#: Entity join-key types (``feast.ValueType`` members).
INLINE_KEY_TYPES = ("INT64", "INT32", "STRING", "BYTES")
_INLINE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class InlineModel(StepConfig):
    """Base of the inline Feast declarations: names are Feast-safe identifiers."""

    name: str = Field(description="Object name: a letter or '_' then letters, digits, '_'.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _INLINE_NAME.fullmatch(value):
            raise ValueError("expected a letter or '_' followed by letters, digits and '_' (at most 128)")
        return value


class InlineEntity(InlineModel):
    """A Feast ``Entity``."""

    join_keys: list[str] = Field(min_length=1, description="Join-key columns.")
    value_type: Literal["INT64", "INT32", "STRING", "BYTES"] = Field(
        "INT64", description="Type of the join key(s)."
    )
    description: str = ""


class InlineSource(InlineModel):
    """A Feast ``FileSource`` (parquet); a relative path is taken from the spec's directory."""

    path: str = Field(description="Parquet file with the feature values.")
    timestamp_field: str = Field(FEAST_TIMESTAMP, description="Column with each value's event time.")
    created_timestamp_column: str = ""


class InlineFeatureView(InlineModel):
    """A Feast ``FeatureView`` over one source."""

    entities: list[str] = Field(min_length=1, description="Names of entities declared under `entities`.")
    source: str = Field(description="Name of a source declared under `sources`.")
    schema_: dict[str, str] = Field(
        alias="schema",
        min_length=1,
        description=f"Feature name -> type, one of {sorted(INLINE_DTYPES)}.",
    )
    ttl_s: int = Field(0, ge=0, description="How long a value stays valid, in seconds (0: forever).")
    online: bool = True
    description: str = ""

    @field_validator("schema_")
    @classmethod
    def _dtypes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in value.items() if v.lower() not in INLINE_DTYPES}
        if bad:
            raise ValueError(f"unknown feature type(s) {bad}; expected one of {sorted(INLINE_DTYPES)}")
        return {k: v.lower() for k, v in value.items()}


class InlineFeatureService(InlineModel):
    """A Feast ``FeatureService``: whole feature views, or some of their features."""

    features: list[str] = Field(
        min_length=1, description="Feature view names, or 'view:feature' for single features."
    )
    description: str = ""


class InlineRepo(StepConfig):
    """A Feast repo declared in the pipeline spec instead of a directory of Python files."""

    project: str = Field(description="Feast project name.")
    entities: list[InlineEntity] = Field(min_length=1)
    sources: list[InlineSource] = Field(min_length=1)
    feature_views: list[InlineFeatureView] = Field(min_length=1)
    feature_services: list[InlineFeatureService] = Field(default_factory=list)
    online_store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "sqlite"},
        description="Online store section; SQLite under the artifact root by default. String values may "
        "use ${NAME}, filled at run time from the run's secrets or the environment (never written to disk).",
    )

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not _INLINE_NAME.fullmatch(value):
            raise ValueError("expected a letter or '_' followed by letters, digits and '_'")
        return value

    @model_validator(mode="after")
    def _wiring(self) -> InlineRepo:
        problems: list[str] = []
        for kind in ("entities", "sources", "feature_views", "feature_services"):
            names = [obj.name for obj in getattr(self, kind)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(f"{kind}: duplicate name(s) {dupes}")
        entities = {e.name for e in self.entities}
        sources = {s.name for s in self.sources}
        views = {v.name: v for v in self.feature_views}
        for i, view in enumerate(self.feature_views):
            unknown = sorted(set(view.entities) - entities)
            if unknown:
                problems.append(
                    f"feature_views.{i}.entities: unknown entity {unknown}; declared: {sorted(entities)}"
                )
            if view.source not in sources:
                problems.append(
                    f"feature_views.{i}.source: unknown source {view.source!r}; declared: {sorted(sources)}"
                )
        for i, service in enumerate(self.feature_services):
            for ref in service.features:
                view_name, _, feature = ref.partition(":")
                known = views.get(view_name)
                if known is None:
                    problems.append(f"feature_services.{i}.features: unknown feature view {view_name!r}")
                elif feature and feature not in known.schema_:
                    problems.append(
                        f"feature_services.{i}.features: view {view_name!r} has no feature {feature!r}"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class FeaturiseConfig(StepConfig):
    """Configuration of the ``featurise`` step."""

    repo_path: str | None = Field(
        None,
        description="Feast feature repo (the directory holding feature_store.yaml), relative to the spec. "
        "Exactly one of this and `inline`.",
    )
    inline: InlineRepo | None = Field(
        None, description="Entities, sources, feature views and services declared in the spec itself."
    )
    feature_service: str | None = Field(
        None, description="Name of the FeatureService to retrieve. Exactly one of this and `features`."
    )
    features: list[str] | None = Field(
        None,
        description="Feature references as 'feature_view:feature'. Exactly one of this and `feature_service`.",
    )
    entity_columns: list[str] = Field(
        min_length=1, description="Join keys taken from the dataset, e.g. ['penguin_id']."
    )
    event_timestamp_column: str = Field(
        FEAST_TIMESTAMP, min_length=1, description="Dataset column holding each row's event time."
    )
    label_columns: list[str] = Field(
        default_factory=list, description="Dataset columns kept next to the features (labels, weights...)."
    )
    apply: bool = Field(
        True, description="Register the repo's definitions first, like `feast apply` (without chdir)."
    )
    materialize: bool = Field(
        False, description="After retrieval, load the retrieved feature views into the online store."
    )
    materialize_end: Literal["now", "max_event_time"] = Field(
        "now",
        description="End of the materialisation window: the current time, or the dataset's latest event time.",
    )
    online_store: dict[str, Any] | None = Field(
        None,
        description=(
            "Replaces the `online_store` section of feature_store.yaml for this run, e.g. "
            "{type: redis, connection_string: '127.0.0.1:6379,db=0'}. String values may use "
            "${NAME}, filled at run time from the run's secrets or the environment, so a password "
            "never enters the config (which lineage records)."
        ),
    )

    @field_validator("features")
    @classmethod
    def _feature_refs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("expected at least one 'feature_view:feature' reference")
        bad = [ref for ref in value if ref.count(":") != 1 or not all(ref.split(":"))]
        if bad:
            raise ValueError(f"expected 'feature_view:feature' references, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("feature references must be unique")
        return value

    @field_validator("online_store")
    @classmethod
    def _online_store_type(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("type"), str):
            raise ValueError("expected a mapping with a 'type' key (e.g. redis, sqlite)")
        return value

    @model_validator(mode="after")
    def _check(self) -> FeaturiseConfig:
        problems: list[Problem] = []
        if (self.repo_path is None) == (self.inline is None):
            problems.append(
                Problem(None, "featurise.config.repo_path", "set exactly one of `repo_path` and `inline`")
            )
        if self.inline is not None and not self.apply:
            problems.append(
                Problem(
                    None,
                    "featurise.config.apply",
                    "an inline repo exists only in the spec: it must be applied (apply: true)",
                )
            )
        if self.inline is not None and self.online_store is not None:
            problems.append(
                Problem(
                    None,
                    "featurise.config.online_store",
                    "with `inline`, set the online store as `inline.online_store`",
                )
            )
        if (self.feature_service is None) == (self.features is None):
            problems.append(
                Problem(
                    None,
                    "featurise.config.feature_service",
                    "set exactly one of `feature_service` and `features`",
                )
            )
        keys = [*self.entity_columns, self.event_timestamp_column]
        if len(set(keys)) != len(keys):
            problems.append(
                Problem(
                    None,
                    "featurise.config.entity_columns",
                    "entity columns and the event timestamp column must be distinct",
                )
            )
        overlap = sorted(set(self.label_columns) & set(keys))
        if overlap or len(set(self.label_columns)) != len(self.label_columns):
            problems.append(
                Problem(
                    None,
                    "featurise.config.label_columns",
                    f"label columns must be unique and not entity/timestamp columns (got {overlap or 'duplicates'})",
                )
            )
        if problems:
            raise ConfigError(problems)
        return self


class FeaturiseStep(Step[FeaturiseConfig]):
    """Join Feast features onto the dataset's entity rows, point in time, into a training set."""

    name: ClassVar[str] = "featurise"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "Build a point-in-time correct training set from a Feast feature store "
        "(optionally applying the repo and materialising the online store)."
    )
    config_model: ClassVar[type[StepConfig]] = FeaturiseConfig
    inputs: ClassVar[dict[str, InputSpec]] = {
        "dataset": InputSpec(
            "dataset", description="Entity rows: join keys, event timestamp and label columns."
        ),
    }
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset"}

    def run(self, ctx: RunContext, config: FeaturiseConfig, inputs: dict[str, BaseRef]) -> StepResult:
        source = inputs["dataset"]
        assert isinstance(source, DatasetRef)
        repo = _inline_repo_dir(ctx, config.inline) if config.inline else _repo_dir(ctx, config)
        entity_df = _entity_df(read_dataframe(source), source.uri, config)
        _check_future_times(entity_df, source.uri, config, ctx)
        from filelock import FileLock

        # One featurise at a time per repo on this machine: Feast's file registry has no locking,
        # and a feature view left MATERIALIZING can then only be a crashed run's.
        with FileLock(str(repo / ".mlsteps-featurise.lock")):
            return self._run_locked(ctx, config, repo, entity_df)

    def _run_locked(
        self, ctx: RunContext, config: FeaturiseConfig, repo: Path, entity_df: pd.DataFrame
    ) -> StepResult:
        require("feast")
        store = _feature_store(repo, config, secrets=ctx.secrets)
        missing = None if config.apply else _missing_registry(store, repo)
        if missing is None:
            return self._featurise(ctx, config, repo, entity_df, store)
        try:
            return self._featurise(ctx, config, repo, entity_df, store)
        except BackendError as exc:
            # Feast creates an empty registry file on first use; it must not look applied next time.
            if missing.is_file() and not _registry_holds_definitions(missing):
                missing.unlink()
            raise BackendError(
                "feast",
                exc.backend_message,
                hint=f"the Feast registry {missing} did not exist and featurise.config.apply is false, so "
                f"nothing registered the feature definitions: run `feast apply` in {repo} (or set "
                f"apply: true), or fix `registry` in {repo / FEATURE_STORE_YAML}",
            ) from exc

    def _featurise(
        self, ctx: RunContext, config: FeaturiseConfig, repo: Path, entity_df: pd.DataFrame, store: Any
    ) -> StepResult:
        project = store.project
        if config.apply:
            contents = (
                _inline_contents(ctx, config.inline)
                if config.inline
                else _load_repo_contents(repo, store.project)
            )
            _apply_repo(store, repo, contents, ctx)
        _reset_stuck_materializing(store, ctx)
        with _feast_errors("looking up the feature service", store=_registry_label(store, repo)):
            request: Any = (
                store.get_feature_service(config.feature_service)
                if config.feature_service
                else list(config.features or [])
            )
        feature_refs = _feature_refs(request)
        feature_cols = [ref.split(":", 1)[1] for ref in feature_refs]
        problems = []
        if len(set(feature_cols)) != len(feature_cols):
            problems.append(
                Problem(
                    None,
                    f"featurise.config.{'feature_service' if config.feature_service else 'features'}",
                    f"two requested features share a name ({feature_refs}); output columns must be unique",
                )
            )
        clash = sorted(set(feature_cols) & set(entity_df.columns))
        if clash:
            problems.append(
                Problem(
                    None,
                    "featurise.config.label_columns",
                    f"columns {clash} are both dataset columns and requested features",
                )
            )
        if problems:
            raise ConfigError(problems)
        training = _retrieve(
            store,
            entity_df,
            request,
            feature_refs,
            keys=[*config.entity_columns, FEAST_TIMESTAMP],
            labels=list(config.label_columns),
        )
        training = _tidy(training, config, feature_cols)

        # The registry identity is taken before materialising (which updates the registry), and the
        # training set is written after it: a failed materialisation leaves no output behind.
        identity = _registry_identity(store)
        if config.materialize:
            end = (
                entity_df[FEAST_TIMESTAMP].max().to_pydatetime()
                if config.materialize_end == "max_event_time"
                else datetime.now(UTC)
            )
            _materialize(store, feature_refs, end, ctx)
        ref = write_dataset(
            training,
            str(ctx.step_dir() / TRAINING_FILE),
            features=feature_refs,
            feature_service=config.feature_service,
            feast_project=project,
            feast_repo=str(repo),
            label_columns=list(config.label_columns),
            entity_columns=list(config.entity_columns),
            event_timestamp_column=config.event_timestamp_column,
            **identity,
        )
        ctx.logger.info(
            "featurise: %d rows x %d features from Feast project %r -> %s",
            len(training),
            len(feature_cols),
            project,
            ref.uri,
        )
        return StepResult(
            outputs={"dataset": ref},
            metrics={"rows": float(len(training)), "features": float(len(feature_cols))},
        )


def _repo_problem(message: str) -> ConfigError:
    return ConfigError([Problem(None, "featurise.config.repo_path", message)])


def _repo_dir(ctx: RunContext, config: FeaturiseConfig) -> Path:
    """The absolute repo directory; a clear error when it or its feature_store.yaml is missing."""
    assert config.repo_path is not None
    repo = Path(ctx.resolve_path(config.repo_path))
    if not repo.is_dir():
        raise _repo_problem(f"{repo} is not a directory (expected a Feast feature repo)")
    if not (repo / FEATURE_STORE_YAML).is_file():
        raise _repo_problem(f"{repo} has no {FEATURE_STORE_YAML}; it is not a Feast feature repo")
    return repo


def _entity_df(df: pd.DataFrame, uri: str, config: FeaturiseConfig) -> pd.DataFrame:
    """The entity dataframe Feast expects: join keys, ``event_timestamp`` in UTC, labels."""
    pd = require("pandas")
    ts = config.event_timestamp_column
    wanted = [*config.entity_columns, ts, *config.label_columns]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(
            f"{uri}: missing column(s) {missing} needed by featurise; the file has {sorted(map(str, df.columns))}"
        )
    if df.empty:
        raise DataError(f"{uri}: no rows to featurise")
    out = df[wanted].copy()
    for col in [*config.entity_columns, ts]:
        nulls = int(out[col].isna().sum())
        if nulls:
            raise DataError(
                f"{uri}: column {col!r} has {nulls} null value(s); entity keys and times must be set"
            )
    try:
        # Naive times are taken as UTC, aware ones converted to UTC.
        out[ts] = pd.to_datetime(out[ts], utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{uri}: column {ts!r} is not a timestamp: {exc}") from exc
    repeated = out.duplicated(keep="first")
    if repeated.any():
        first = out.loc[repeated].iloc[0]
        example = ", ".join(f"{c}={first[c]}" for c in [*config.entity_columns, ts])
        raise DataError(
            f"{uri}: {int(repeated.sum())} row(s) repeat an earlier row exactly (same "
            f"{[*config.entity_columns, ts, *config.label_columns]}), e.g. {example}; each copy would become "
            "a training row of its own (and could land in both the train and the test split): drop the "
            "duplicate rows (rows with the same keys and time but different labels are kept)"
        )
    if ts != FEAST_TIMESTAMP:
        out = out.rename(columns={ts: FEAST_TIMESTAMP})
    return out


def _check_future_times(entity_df: pd.DataFrame, uri: str, config: FeaturiseConfig, ctx: RunContext) -> int:
    """Entity rows dated in the future (beyond :data:`FUTURE_SKEW`): a warning, or an error when materialising.

    The point-in-time join gives such rows the latest values known now (or nothing,
    where those are older than a view's TTL), which is rarely what a row from the
    future meant: usually a time zone or unit mistake. Materialising up to the latest
    event time (``materialize_end: max_event_time``) would record the online store as
    loaded up to that future time, so incremental materialisations would then skip every
    value written until it: that is refused. Returns the number of such rows.
    """
    pd = require("pandas")
    now = pd.Timestamp(datetime.now(UTC))
    times = entity_df[FEAST_TIMESTAMP]
    future = times > now + FUTURE_SKEW
    count = int(future.sum())
    if not count:
        return 0
    column = config.event_timestamp_column
    latest = times[future].max()
    what = (
        f"{uri}: {count} of {len(times)} row(s) have their {column!r} in the future (the latest "
        f"{latest.isoformat()}, now {now.isoformat(timespec='seconds')})"
    )
    if config.materialize and config.materialize_end == "max_event_time":
        raise DataError(
            f"{what}; materialising up to the latest event time would mark the online store as loaded "
            "until then, and later materialisations would skip every value written before it: fix the "
            "timestamps (time zone? milliseconds read as seconds?) or set materialize_end: now"
        )
    ctx.logger.warning(
        "featurise: %s; they get the latest feature values known now (or none where those are older "
        "than a view's TTL): check the timestamps (time zone? milliseconds read as seconds?)",
        what,
    )
    return count


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_secrets(
    value: Any, secrets: Mapping[str, SecretStr], *, field: str, used: list[str] | None = None
) -> Any:
    """``${NAME}`` in every string of ``value``, from ``secrets`` first, then the environment.

    The expanded value exists only in memory for the run: the config recorded in
    lineage and hashed into the cache key keeps the ``${NAME}`` reference. The
    values filled in are appended to ``used`` (to scrub them from error messages).
    """
    used = [] if used is None else used
    if isinstance(value, dict):
        return {k: expand_secrets(v, secrets, field=f"{field}.{k}", used=used) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_secrets(v, secrets, field=f"{field}[{i}]", used=used) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in secrets or name in os.environ:
            filled = secrets[name].get_secret_value() if name in secrets else os.environ[name]
            if filled:
                used.append(filled)
            return filled
        raise ConfigError(
            [
                Problem(
                    None,
                    field,
                    f"${{{name}}} is not set: give it as a secret of the run or an environment variable",
                )
            ]
        )

    return _VAR.sub(one, value)


def _feature_store(repo: Path, config: FeaturiseConfig, *, secrets: Mapping[str, SecretStr]) -> Any:
    """A FeatureStore on ``repo``, with the online store replaced when the config says so.

    An inline repo's store always goes this way, so ``${NAME}`` references in it are
    filled in memory while its generated feature_store.yaml keeps them.

    The override builds the ``RepoConfig`` in memory from the repo's YAML rather than
    copying the repo, so relative paths (FileSource, registry) keep resolving against
    the real repo directory.
    """
    yaml = require("yaml")
    feast = require("feast")
    from feast.repo_config import RepoConfig

    override, field = config.online_store, "featurise.config.online_store"
    if config.inline is not None:
        # The generated feature_store.yaml keeps any ${NAME} references; values go in memory only.
        override, field = _inline_online_store(config.inline), "featurise.config.inline.online_store"
    if override is None:
        try:
            return feast.FeatureStore(repo_path=str(repo))
        except Exception as exc:
            raise _repo_problem(f"{repo / FEATURE_STORE_YAML}: {exc}") from exc
    yaml_path = repo / FEATURE_STORE_YAML
    try:
        raw = yaml.safe_load(os.path.expandvars(yaml_path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise _repo_problem(f"{yaml_path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise _repo_problem(f"{yaml_path}: expected a mapping at the top level")
    filled: list[str] = []
    raw["online_store"] = expand_secrets(dict(override), secrets, field=field, used=filled)
    try:
        repo_config = RepoConfig(**raw)
        repo_config.repo_path = repo
        # Build the online store config now so a bad override fails here, not mid-run.
        _ = repo_config.online_store
        return feast.FeatureStore(repo_path=str(repo), config=repo_config)
    except Exception as exc:  # noqa: BLE001 - any Feast failure here is a bad override
        message = str(exc)
        for value in filled:
            message = message.replace(value, "***")
        raise ConfigError([Problem(None, field, f"not a valid Feast online store: {message}")]) from None


@contextlib.contextmanager
def _feast_errors(action: str, *, store: str | None = None) -> Iterator[None]:
    """Turn any Feast failure into a BackendError that keeps Feast's message."""
    try:
        yield
    except MlstepsError:
        raise
    except Exception as exc:
        hint = None
        if "NotFound" in type(exc).__name__:
            hint = (
                "check the name against the repo's definitions; with `apply: false` the registry "
                "must already hold it (run `feast apply` in the repo)"
            )
        elif _is_connection_error(exc):
            what = store or "a server Feast needs (its registry or online store)"
            hint = (
                f"{what} is unreachable: start it, or fix its address in the repo's feature_store.yaml "
                "(`registry`, `online_store`) or in featurise.config.online_store"
            )
        raise BackendError("feast", f"{action}: {type(exc).__name__}: {exc}", hint=hint) from exc


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a server could not be reached."""
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__}: {seen}".lower()
        if isinstance(seen, ConnectionError | TimeoutError) or any(
            marker in text
            for marker in ("connectionerror", "connection refused", "timeouterror", "could not connect")
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _registry_label(store: Any, repo: Path | None) -> str:
    """``the Feast registry <where>`` for messages, with any password in a SQL URL masked."""
    config = store.config.registry
    raw = config if isinstance(config, str) else str(getattr(config, "path", "") or "")
    kind = str(getattr(config, "registry_type", "file") or "file")
    if "://" in raw:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(raw)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            raw = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    elif repo is not None and raw and not Path(raw).is_absolute():
        raw = str(repo / raw)
    return f"the Feast {kind} registry at {raw}" if raw else f"the Feast {kind} registry"


def _online_store_label(store: Any) -> str:
    """``redis at host:port`` / ``sqlite`` for messages: the store type and address, never credentials."""
    online = store.config.online_store
    kind = str(getattr(online, "type", "") or type(online).__name__)
    address = str(getattr(online, "connection_string", "") or "").split(",", 1)[0]
    if "@" in address:  # user:password@host
        address = address.rsplit("@", 1)[1]
    return f"the Feast {kind} online store at {address}" if address else f"the Feast {kind} online store"


@contextlib.contextmanager
def _log_stdout(ctx: RunContext, what: str) -> Iterator[None]:
    """Capture what Feast prints (apply diffs, materialisation notes) into the step's logger."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        text = _ANSI.sub("", buf.getvalue()).strip()
        if text:
            ctx.logger.info("feast %s:\n%s", what, text)


@contextlib.contextmanager
def _repo_on_path(repo: Path) -> Iterator[None]:
    """Import a repo's modules by their repo-relative names, then forget them.

    ``feast apply`` does this by chdir-ing into the repo; a step must not change the
    process's working directory, and must not let a second repo with a module of the
    same name (every repo has a ``definitions``-like module) get the first one's
    cached module.
    """
    with _REPO_IMPORT_LOCK:
        before = dict(sys.modules)
        old_bytecode = sys.dont_write_bytecode
        sys.path.insert(0, str(repo))
        sys.dont_write_bytecode = True
        try:
            yield
        finally:
            sys.dont_write_bytecode = old_bytecode
            with contextlib.suppress(ValueError):
                sys.path.remove(str(repo))
            root = str(repo.resolve())
            for name, module in list(sys.modules.items()):
                origin = getattr(module, "__file__", None) or ""
                if name not in before and os.path.abspath(origin).startswith(root + os.sep):
                    del sys.modules[name]
            for name, module in before.items():
                sys.modules.setdefault(name, module)


def _load_repo_contents(repo: Path, project: str) -> Any:
    """Collect a repo's Feast objects the way ``feast.repo_operations.parse_repo`` does."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
    from feast.data_source import DataSource, KafkaSource, KinesisSource, PushSource
    from feast.feature_view import DUMMY_ENTITY
    from feast.labeling.label_view import LabelView
    from feast.permissions.permission import Permission
    from feast.repo_contents import RepoContents
    from feast.repo_operations import get_repo_files
    from feast.stream_feature_view import StreamFeatureView

    found: dict[str, list[Any]] = {field: [] for field in RepoContents._fields}

    def add(kind: str, obj: Any) -> None:
        if obj is not None and not any(obj is seen for seen in found[kind]):
            found[kind].append(obj)

    order = [
        (StreamFeatureView, "stream_feature_views"),
        (FeatureView, "feature_views"),  # also BatchFeatureView
        (OnDemandFeatureView, "on_demand_feature_views"),
        (LabelView, "label_views"),
        (Entity, "entities"),
        (FeatureService, "feature_services"),
        (Permission, "permissions"),
        (Project, "projects"),
        (DataSource, "data_sources"),
    ]
    with _repo_on_path(repo):
        # Stale cached modules with these names (from another repo) must not be reused.
        files = get_repo_files(repo)
        names = [".".join(f.relative_to(repo.resolve()).with_suffix("").parts) for f in files]
        for name in names:
            sys.modules.pop(name, None)
        for name, path in zip(names, files, strict=True):
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                raise _repo_problem(
                    f"cannot import Feast definitions {path}: {type(exc).__name__}: {exc}"
                ) from exc
            for attr in dir(module):
                obj = getattr(module, attr)
                for cls, kind in order:
                    if isinstance(obj, cls):
                        add(kind, obj)
                        break
                if isinstance(obj, FeatureView):
                    add("data_sources", obj.batch_source)
                    add("data_sources", obj.stream_source)
                elif isinstance(obj, PushSource | KafkaSource | KinesisSource):
                    add("data_sources", obj.batch_source)
                elif isinstance(obj, LabelView):
                    add("data_sources", obj.source)
                    if isinstance(obj.source, PushSource):
                        add("data_sources", obj.source.batch_source)
    found["entities"].append(DUMMY_ENTITY)
    projects = found["projects"]
    if not projects:
        projects.append(Project(name=project, description=""))
    elif len(projects) > 1 or projects[0].name != project:
        raise _repo_problem(
            f"the repo defines project(s) {[p.name for p in projects]}, "
            f"but {FEATURE_STORE_YAML} names project {project!r}"
        )
    return RepoContents(**found)


def _inline_repo_dir(ctx: RunContext, inline: InlineRepo) -> Path:
    """A generated repo directory under the artifact root holding the inline repo's feature_store.yaml.

    Feast needs a repo directory for its config; the registry and a default SQLite online
    store live there too, so each inline project keeps its own state between runs.
    """
    yaml = require("yaml")
    repo = ctx.store.local_dir("feast", inline.project)
    body = {
        "project": inline.project,
        "provider": "local",
        "registry": "registry.db",
        "online_store": _inline_online_store(inline),
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    text = "# Generated by mlsteps from the spec's featurise.config.inline; edits are overwritten.\n"
    text += yaml.safe_dump(body, sort_keys=False)
    target = repo / FEATURE_STORE_YAML
    if not target.is_file() or target.read_text() != text:
        atomic_write_bytes(target, text.encode())
    return repo


def _inline_online_store(inline: InlineRepo) -> dict[str, Any]:
    """The inline repo's online store section: a SQLite store defaults to a file in the repo directory."""
    online = dict(inline.online_store)
    if online.get("type") == "sqlite" and "path" not in online:
        online["path"] = "online_store.db"
    return online


def _inline_contents(ctx: RunContext, inline: InlineRepo) -> Any:
    """The Feast objects an inline repo declares, as ``feast apply`` would collect them."""
    import feast.types as ftypes
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, Project, ValueType
    from feast.feature_view import DUMMY_ENTITY
    from feast.repo_contents import RepoContents

    entities = {
        e.name: Entity(
            name=e.name,
            join_keys=list(e.join_keys),
            value_type=getattr(ValueType, e.value_type),
            description=e.description,
        )
        for e in inline.entities
    }
    sources = {
        s.name: FileSource(
            name=s.name,
            path=ctx.resolve_path(s.path),
            timestamp_field=s.timestamp_field,
            created_timestamp_column=s.created_timestamp_column,
        )
        for s in inline.sources
    }
    views = {
        v.name: FeatureView(
            name=v.name,
            entities=[entities[name] for name in v.entities],
            ttl=timedelta(seconds=v.ttl_s),
            schema=[Field(name=f, dtype=getattr(ftypes, INLINE_DTYPES[t])) for f, t in v.schema_.items()],
            source=sources[v.source],
            online=v.online,
            description=v.description,
        )
        for v in inline.feature_views
    }
    services = []
    for s in inline.feature_services:
        picked: dict[str, list[str]] = {}
        for ref in s.features:
            view_name, _, feature = ref.partition(":")
            chosen = picked.setdefault(view_name, [])
            if feature:
                chosen.append(feature)
        features = [views[n][chosen] if chosen else views[n] for n, chosen in picked.items()]
        services.append(FeatureService(name=s.name, features=features, description=s.description))
    return RepoContents(
        projects=[Project(name=inline.project, description="")],
        data_sources=list(sources.values()),
        feature_views=list(views.values()),
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[*entities.values(), DUMMY_ENTITY],
        feature_services=services,
        permissions=[],
    )


def _apply_repo(store: Any, repo: Path, contents: Any, ctx: RunContext) -> None:
    """Register the repo's definitions and update infrastructure, like ``feast apply``.

    Uses ``feast.repo_operations.apply_total_with_repo_instance`` (what the CLI's
    ``apply_total`` calls after ``os.chdir``), which also deletes registry objects
    that are no longer defined in the repo.
    """
    from feast.repo_operations import apply_total_with_repo_instance

    _set_aside_torn_registry(store, repo, ctx)
    with _feast_errors(f"applying {repo}", store=_registry_label(store, repo)), _log_stdout(ctx, "apply"):
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=False
        )


def _file_registry_path(store: Any, repo: Path) -> Path | None:
    """The local file of a file registry (relative paths are the repo's); None for other registries."""
    config = store.config.registry
    raw = config if isinstance(config, str) else getattr(config, "path", None)
    if getattr(config, "registry_type", "file") != "file" or not isinstance(raw, str) or "://" in raw:
        return None
    return Path(raw) if Path(raw).is_absolute() else repo / raw


def _missing_registry(store: Any, repo: Path) -> Path | None:
    """The path of a file registry that does not exist yet (None if it exists or is not a file)."""
    path = _file_registry_path(store, repo)
    return path if path is not None and not path.is_file() else None


def _registry_holds_definitions(path: Path) -> bool:
    """Whether a file registry records any feature view, entity or service (an empty one does not)."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    proto = RegistryProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception:  # noqa: BLE001 - a registry that does not parse is not ours to delete
        return True
    return bool(proto.feature_views or proto.entities or proto.feature_services or proto.data_sources)


def _set_aside_torn_registry(store: Any, repo: Path, ctx: RunContext) -> None:
    """Move a file registry that no longer parses aside, so the apply that follows rebuilds it.

    Feast writes its file registry in place (truncate, then write): a process killed
    mid-write leaves a torn file that fails every later run with a DecodeError. The
    apply about to run re-registers every definition; only materialisation progress
    is lost (the next materialisation starts from the beginning).
    """
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    path = _file_registry_path(store, repo)
    if path is None or not path.is_file():
        return
    try:
        RegistryProto().ParseFromString(path.read_bytes())
    except DecodeError:
        aside = path.with_name(f"{path.name}.torn-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}")
        os.replace(path, aside)
        ctx.logger.warning("featurise: the Feast registry %s was torn by a crash; moved to %s", path, aside)


def _reset_stuck_materializing(store: Any, ctx: RunContext) -> None:
    """Release feature views a killed run left in Feast's MATERIALIZING state.

    Feast marks a view MATERIALIZING in the registry while it materialises and
    refuses to serve it meanwhile; a process killed mid-way never clears the mark,
    and every later retrieval fails. Under the repo lock no other run of this step
    materialises, so the mark is stale: the view goes back to AVAILABLE_ONLINE if it
    was materialised before, else to the neutral state a new view has.
    """
    from feast.feature_view import FeatureViewState

    with _feast_errors("checking feature view states", store=_registry_label(store, None)):
        for view in store.list_feature_views(allow_cache=False):
            if getattr(view, "state", None) != FeatureViewState.MATERIALIZING:
                continue
            view.state = (
                FeatureViewState.AVAILABLE_ONLINE
                if view.materialization_intervals
                else FeatureViewState.STATE_UNSPECIFIED
            )
            store.registry.apply_feature_view(view, store.project, commit=True)
            ctx.logger.warning(
                "featurise: feature view %r was left MATERIALIZING by an interrupted run; reset to %s",
                view.name,
                view.state.name,
            )


def _utc_ns(series: pd.Series) -> pd.Series:
    return series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _retrieve(
    store: Any,
    entity_df: pd.DataFrame,
    request: Any,
    feature_refs: list[str],
    *,
    keys: list[str],
    labels: list[str],
) -> pd.DataFrame:
    """Point-in-time join of the requested features onto every entity row, in output order.

    Feast 0.67's file (dask) offline store collapses entity rows with equal keys and
    time, and drops an entity row outright when a view's only values for it are
    later than its time (or older than the TTL) instead of returning nulls. So Feast
    is asked for the unique (keys, time) rows, one feature view at a time, and the
    answers are joined back: every entity row survives, with nulls where no value was
    known yet.

    The rows are put in output order (keys, time, labels; a stable sort, so equal
    inputs give byte-identical output) before the join. Each answer is then lined up
    with them by sorting it the same way: when it holds exactly the requested keys
    (the usual case) its columns are taken as they are; only otherwise is it merged.
    At a million rows the two merges this replaces cost more than writing the
    training set.
    """
    rows = entity_df.copy()
    rows[FEAST_TIMESTAMP] = _utc_ns(rows[FEAST_TIMESTAMP])
    rows = rows.sort_values([*keys, *labels], kind="mergesort", na_position="last", ignore_index=True)
    repeated = rows.duplicated(keys)
    unique = rows.loc[~repeated, keys].reset_index(drop=True) if repeated.any() else rows[keys]
    joined = unique.copy()
    with _feast_errors("retrieving historical features"):
        parts = _split_by_view(store, request, feature_refs)
    for part, columns in parts:
        with _feast_errors("retrieving historical features"):
            got = store.get_historical_features(entity_df=unique, features=part).to_df()
        missing = [c for c in [*keys, *columns] if c not in got.columns]
        if missing:
            raise BackendError("feast", f"get_historical_features returned no column(s) {missing}")
        got = got[[*keys, *columns]].copy()
        got[FEAST_TIMESTAMP] = _utc_ns(got[FEAST_TIMESTAMP])
        if got.duplicated(keys).any():
            raise BackendError("feast", "get_historical_features returned several rows for one entity row")
        if not _same_keys(got, unique, keys):
            got = got.sort_values(keys, kind="mergesort", ignore_index=True)
        if _same_keys(got, unique, keys):
            for column in columns:
                joined[column] = got[column].set_axis(joined.index)
        else:  # Feast left some rows out: a left merge keeps every row, in order, with nulls
            joined = joined.merge(got, on=keys, how="left", validate="one_to_one")
    if len(unique) == len(rows):  # every (keys, time) once: joined lines up with rows
        for column in joined.columns.difference(keys, sort=False):
            rows[column] = joined[column].set_axis(rows.index)
        return rows
    return rows.merge(joined, on=keys, how="left", validate="many_to_one")


def _same_keys(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> bool:
    """Whether ``a`` and ``b`` hold the same key values, row for row (same length, same dtypes)."""
    return len(a) == len(b) and all(
        a[k].reset_index(drop=True).equals(b[k].reset_index(drop=True)) for k in keys
    )


def _split_by_view(store: Any, request: Any, feature_refs: list[str]) -> list[tuple[Any, list[str]]]:
    """Feature requests to send one by one, each with its output columns.

    One request per plain feature view; the whole request at once when it involves
    on-demand views (which combine several views) or projections with an alias or a
    join-key mapping, which plain 'view:feature' references cannot express.
    """
    plain = {view.name for view in store.list_feature_views()}
    whole = [(request, [ref.split(":", 1)[1] for ref in feature_refs])]
    if not isinstance(request, list):
        for projection in request.feature_view_projections:
            if projection.name not in plain or projection.name_alias or projection.join_key_map:
                return whole
    by_view: dict[str, list[str]] = {}
    for ref in feature_refs:
        view = ref.split(":", 1)[0]
        if view not in plain:
            return whole
        by_view.setdefault(view, []).append(ref)
    return [(refs, [ref.split(":", 1)[1] for ref in refs]) for refs in by_view.values()]


def _feature_refs(request: Any) -> list[str]:
    """'view:feature' references of a feature list or FeatureService, in retrieval order."""
    if isinstance(request, list):
        return [str(r) for r in request]
    return [
        f"{projection.name}:{feature.name}"
        for projection in request.feature_view_projections
        for feature in projection.features
    ]


def _tidy(df: pd.DataFrame, config: FeaturiseConfig, feature_cols: list[str]) -> pd.DataFrame:
    """Fixed column order (rows are already in order: :func:`_retrieve`), the time column's own name."""
    keys = [*config.entity_columns, FEAST_TIMESTAMP]
    df = df[[*keys, *config.label_columns, *feature_cols]]
    if config.event_timestamp_column != FEAST_TIMESTAMP:
        df = df.rename(columns={FEAST_TIMESTAMP: config.event_timestamp_column})
    return df


def _drop_meta(msg: Any) -> None:
    """Clear every nested ``meta`` message (creation/update times, materialisation state)."""
    for field, value in msg.ListFields():
        if field.name == "meta":
            msg.ClearField("meta")
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                values = value.values()
            elif (
                field.is_repeated
                if hasattr(field, "is_repeated")  # protobuf >= 6; `label` before
                else field.label == field.LABEL_REPEATED
            ):
                values = value
            else:
                values = [value]
            for item in values:
                if hasattr(item, "ListFields"):
                    _drop_meta(item)


def _registry_identity(store: Any) -> dict[str, Any]:
    """Which registry state the features came from, for lineage.

    ``registry_fingerprint`` hashes the project's object definitions (specs only, no
    timestamps or materialisation state), so it changes exactly when a definition
    does; ``registry_last_updated`` is the registry's own update time.
    """
    with _feast_errors("reading the registry"):
        proto = store.registry.proto()
        project = store.project
        specs: list[tuple[str, str, str]] = []
        for kind in (
            "entities",
            "feature_views",
            "on_demand_feature_views",
            "stream_feature_views",
            "feature_services",
            "data_sources",
        ):
            for obj in getattr(proto, kind):
                body = obj.spec if "spec" in obj.DESCRIPTOR.fields_by_name else obj
                if getattr(body, "project", project) != project:
                    continue
                msg = type(body)()
                msg.CopyFrom(body)
                _drop_meta(msg)
                specs.append(
                    (kind, str(getattr(body, "name", "")), msg.SerializeToString(deterministic=True).hex())
                )
        updated = proto.last_updated.ToDatetime(tzinfo=UTC) if proto.HasField("last_updated") else None
    return {
        "registry_fingerprint": hash_value(sorted(specs)),
        "registry_last_updated": updated.isoformat() if updated else None,
    }


def _materialize(store: Any, feature_refs: list[str], end: datetime, ctx: RunContext) -> None:
    """Load the retrieved feature views into the online store up to ``end``.

    A view materialised before continues incrementally; a view never materialised
    loads its whole history, since ``materialize_incremental`` would otherwise start
    at ``now - ttl`` (or a year ago) and skip older data.
    """
    wanted = {ref.split(":", 1)[0] for ref in feature_refs}
    with _feast_errors("materializing", store=_online_store_label(store)), _log_stdout(ctx, "materialize"):
        fresh: list[str] = []
        seen: list[str] = []
        # On-demand views are computed at read time and are not materialised.
        for view in sorted(store.list_feature_views(), key=lambda v: v.name):
            if view.name in wanted:
                (seen if view.most_recent_end_time is not None else fresh).append(view.name)
        if fresh:
            store.materialize(start_date=EPOCH, end_date=end, feature_views=fresh)
        if seen:
            store.materialize_incremental(end_date=end, feature_views=seen)
