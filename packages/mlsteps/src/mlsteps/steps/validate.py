"""The ``validate`` step: a data-quality gate run by Great Expectations (GX Core).

Expectations are declared inline in the pipeline YAML (a small, typed vocabulary
that maps onto real GX expectation classes) and/or loaded from a GX
ExpectationSuite JSON file. The step runs them on the whole dataframe in an
ephemeral GX context, writes the GX result as JSON plus a self-contained HTML
page, and fails the gate when an error-severity expectation fails. GX takes
seconds to import, so it is imported only inside :meth:`ValidateStep.run`.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlsteps._imports import require
from mlsteps.data import describe_dataset, read_dataframe
from mlsteps.errors import BackendError, ConfigError, DataError, GateFailure, MlstepsError, Problem
from mlsteps.hashing import hash_file
from mlsteps.refs import DatasetRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import atomic_write_bytes, is_local, to_local_path

if TYPE_CHECKING:
    import pandas as pd

    from mlsteps.context import RunContext
    from mlsteps.refs import BaseRef

RESULT_JSON = "validation.json"
RESULT_HTML = "validation.html"
#: Key under each GX expectation's ``meta`` that ties a result back to its declaration.
META_KEY = "mlsteps"
#: GX severities that fail the gate; ``warning`` and ``info`` only show in the report.
GX_ERROR_SEVERITIES = {"critical"}

Severity = Literal["error", "warn"]
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SCALAR = str | int | float | bool


def parse_age(text: str) -> timedelta:
    """Turn an age such as ``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` or ``"45s"`` into a timedelta."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"expected an age like '30d', '12h', '90m', '2w' or '45s', got {text!r}")
    value = float(match.group(1))
    if value <= 0:
        raise ValueError(f"the age must be positive, got {text!r}")
    return timedelta(**{_AGE_UNITS[match.group(2)]: value})


# --------------------------------------------------------------------------- inline expectations


class _Expectation(BaseModel):
    """Fields every inline expectation has."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Name of the GX expectation class in ``great_expectations.expectations``.
    gx_class: ClassVar[str] = ""

    type: str = Field(description="Which expectation this is (the discriminator).")
    severity: Severity = Field("error", description="`error` fails the gate; `warn` is only reported.")

    @property
    def column_name(self) -> str | None:
        return getattr(self, "column", None)

    def label(self) -> str:
        """A short name for reports and gate reasons, e.g. ``not_null(bill_length_mm)``."""
        return f"{self.type}({self.column_name})" if self.column_name else self.type

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        """Keyword arguments of the GX expectation class (without severity and meta)."""
        raise NotImplementedError


class _ColumnExpectation(_Expectation):
    column: str = Field(min_length=1, description="The column the expectation is about.")


class _MostlyMixin(BaseModel):
    """The ``mostly`` tolerance shared by row-wise expectations."""

    mostly: float = Field(
        1.0, gt=0, le=1, description="Fraction of (non-null) values that must pass, in (0, 1]."
    )


class ColumnExists(_ColumnExpectation):
    """The column is present."""

    type: Literal["column_exists"]
    gx_class: ClassVar[str] = "ExpectColumnToExist"

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column}


class ColumnType(_ColumnExpectation):
    """The column's values are of a pandas dtype (e.g. float64, int64, object, datetime64[ns, UTC])."""

    type: Literal["column_type"]
    dtype: str = Field(
        min_length=1, description="Expected pandas dtype, as `str(df[column].dtype)` prints it."
    )
    gx_class: ClassVar[str] = "ExpectColumnValuesToBeOfType"

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column, "type_": gx_type_name(self.dtype)}


class NotNull(_ColumnExpectation, _MostlyMixin):
    """At least ``mostly`` of the values are not null."""

    type: Literal["not_null"]
    gx_class: ClassVar[str] = "ExpectColumnValuesToNotBeNull"

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column, "mostly": self.mostly}


class Between(_ColumnExpectation, _MostlyMixin):
    """Non-null values lie in ``[min, max]`` (either bound may be left out)."""

    type: Literal["between"]
    min: float | None = Field(None, description="Smallest allowed value (inclusive).")
    max: float | None = Field(None, description="Largest allowed value (inclusive).")
    gx_class: ClassVar[str] = "ExpectColumnValuesToBeBetween"

    @model_validator(mode="after")
    def _bounds(self) -> Between:
        _check_bounds(self.min, self.max)
        return self

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column, "min_value": self.min, "max_value": self.max, "mostly": self.mostly}


class InSet(_ColumnExpectation, _MostlyMixin):
    """Non-null values are among ``values``."""

    type: Literal["in_set"]
    values: list[_SCALAR] = Field(min_length=1, description="The allowed values.")
    gx_class: ClassVar[str] = "ExpectColumnValuesToBeInSet"

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column, "value_set": list(self.values), "mostly": self.mostly}


class Unique(_ColumnExpectation, _MostlyMixin):
    """Values are unique (every row holding a duplicated value counts as unexpected)."""

    type: Literal["unique"]
    gx_class: ClassVar[str] = "ExpectColumnValuesToBeUnique"

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column, "mostly": self.mostly}


class RowCountBetween(_Expectation):
    """The number of rows lies in ``[min, max]`` (either bound may be left out)."""

    type: Literal["row_count_between"]
    min: int | None = Field(None, ge=0, description="Fewest allowed rows (inclusive).")
    max: int | None = Field(None, ge=0, description="Most allowed rows (inclusive).")
    gx_class: ClassVar[str] = "ExpectTableRowCountToBeBetween"

    @model_validator(mode="after")
    def _bounds(self) -> RowCountBetween:
        _check_bounds(self.min, self.max)
        return self

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"min_value": self.min, "max_value": self.max}


class Fresh(_ColumnExpectation):
    """The newest timestamp in the column is at most ``max_age`` old (relative to ``now``)."""

    type: Literal["fresh"]
    max_age: str = Field(description="Largest allowed age of the newest value, e.g. '30d', '12h', '90m'.")
    gx_class: ClassVar[str] = "ExpectColumnMaxToBeBetween"

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: str) -> str:
        parse_age(value)
        return value

    def cutoff(self, now: datetime) -> datetime:
        return now - parse_age(self.max_age)

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        cutoff = self.cutoff(now)
        if self.column in df.columns and getattr(df[self.column].dtype, "tz", None) is None:
            # A naive timestamp column is taken to be in UTC; GX cannot compare naive and aware.
            cutoff = cutoff.astimezone(UTC).replace(tzinfo=None)
        return {"column": self.column, "min_value": cutoff}


class Regex(_ColumnExpectation, _MostlyMixin):
    """Non-null values match a regular expression (Python syntax, searched anywhere unless anchored)."""

    type: Literal["regex"]
    pattern: str = Field(
        min_length=1, description="Regular expression; anchor with ^...$ to match whole values."
    )
    gx_class: ClassVar[str] = "ExpectColumnValuesToMatchRegex"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def gx_kwargs(self, *, now: datetime, df: pd.DataFrame) -> dict[str, Any]:
        return {"column": self.column, "regex": self.pattern, "mostly": self.mostly}


Expectation = Annotated[
    ColumnExists | ColumnType | NotNull | Between | InSet | Unique | RowCountBetween | Fresh | Regex,
    Field(discriminator="type"),
]


def _check_bounds(low: float | None, high: float | None) -> None:
    if low is None and high is None:
        raise ValueError("set `min`, `max` or both")
    if low is not None and high is not None and low > high:
        raise ValueError(f"`min` ({low}) is greater than `max` ({high})")


def gx_type_name(dtype: str) -> str:
    """The ``type_`` GX's pandas type check accepts for a pandas dtype string.

    GX compares the scalar type of the column's dtype: numpy dtypes pass by name
    ("float64", "datetime64[ns]"), extension dtypes by their scalar type's name
    ("datetime64[ns, UTC]" -> "Timestamp", "category" -> "CategoricalDtypeType").
    """
    pd = require("pandas")
    np = require("numpy")
    parsed = pd.api.types.pandas_dtype(dtype)
    if isinstance(parsed, np.dtype):
        return str(parsed)
    return str(parsed.type.__name__)


# --------------------------------------------------------------------------- config


class ValidateConfig(StepConfig):
    """Configuration of the ``validate`` step."""

    data: str | None = Field(
        None,
        description=(
            "Parquet or CSV file (path relative to the spec, or an fsspec URL) to validate. "
            "Exactly one of this and the `dataset` input."
        ),
    )
    expectations: list[Expectation] = Field(
        default_factory=list, description="Inline expectations, each with a `type` (see the table)."
    )
    suite: str | None = Field(
        None, description="Path to a GX ExpectationSuite JSON file, run in addition to `expectations`."
    )
    now: datetime | None = Field(
        None,
        description="Reference time for `fresh` expectations (naive times are UTC); default: the current time.",
    )

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _something_to_check(self) -> ValidateConfig:
        if not self.expectations and self.suite is None:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "validate.config.expectations",
                        "nothing to validate: give inline `expectations`, a `suite` file, or both",
                    )
                ]
            )
        return self


# --------------------------------------------------------------------------- the step


class _Check:
    """One expectation as run: how it was declared, and how it came out."""

    def __init__(self, *, index: int, label: str, severity: Severity, column: str | None, spec: Any) -> None:
        self.index = index
        self.label = label
        self.severity = severity
        self.column = column
        self.spec = spec  # the inline model, or None for a suite-file expectation
        self.gx_type = ""
        self.success = False
        self.observed = ""
        self.reason = ""


class ValidateStep(Step[ValidateConfig]):
    """Run data-quality expectations with Great Expectations; a gate on error-severity failures."""

    name: ClassVar[str] = "validate"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "Validate a dataset with Great Expectations (inline expectations and/or a suite file); "
        "fails the pipeline when an error-severity expectation fails."
    )
    config_model: ClassVar[type[StepConfig]] = ValidateConfig
    inputs: ClassVar[dict[str, InputSpec]] = {
        "dataset": InputSpec(
            "dataset", required=False, description="The dataset to validate (or set `data` in the config)."
        ),
    }
    outputs: ClassVar[dict[str, RefKind]] = {"dataset": "dataset", "report": "report"}
    gate: ClassVar[bool] = True

    def run(self, ctx: RunContext, config: ValidateConfig, inputs: dict[str, BaseRef]) -> StepResult:
        source = _source(ctx, config, inputs)
        df = read_dataframe(source)
        uri = source.uri if isinstance(source, DatasetRef) else source
        if df.empty:
            raise DataError(
                f"{uri}: no rows to validate ({len(df.columns)} column(s), 0 rows); the file has a header "
                "but no data: check the job that wrote it, or point the config at the right file"
            )
        dataset_ref = _dataset_ref(source, df)
        now = config.now or datetime.now(UTC)
        _check_fresh_columns(config, df, uri)

        gx = _import_gx()
        context = _gx_context(gx)
        checks, suite = _build_suite(ctx, config, gx, df=df, now=now)
        result = _run_suite(gx, context, suite, df)

        _read_results(checks, result, df=df, uri=uri)
        out_dir = ctx.step_dir()
        json_path = out_dir / RESULT_JSON
        html_path = out_dir / RESULT_HTML
        result_json = _stable(result.to_json_dict())
        atomic_write_bytes(json_path, json.dumps(result_json, indent=2, default=str).encode())
        stats = result.statistics
        failed_errors = [c for c in checks if not c.success and c.severity == "error"]
        failed_warnings = [c for c in checks if not c.success and c.severity == "warn"]
        passed = not failed_errors
        atomic_write_bytes(
            html_path,
            _render_html(
                checks, uri=uri, rows=len(df), passed=passed, stats=stats, suite=suite.name
            ).encode(),
        )
        summary = {
            "evaluated": int(stats["evaluated_expectations"]),
            "successful": int(stats["successful_expectations"]),
            "failed_errors": len(failed_errors),
            "failed_warnings": len(failed_warnings),
            "failing_columns": sorted({c.column for c in checks if not c.success and c.column}),
            "expectations": [
                {
                    "name": c.label,
                    "severity": c.severity,
                    "success": c.success,
                    "observed": c.observed,
                    **({"reason": c.reason} if not c.success else {}),
                }
                for c in checks
            ],
        }
        report = ReportRef(
            uri=str(json_path),
            content_hash=hash_file(json_path),
            passed=passed,
            summary=summary,
            html_uri=str(html_path),
            metadata={"data": uri, "suite": suite.name},
        )
        metrics = {
            "evaluated_expectations": float(stats["evaluated_expectations"]),
            "failed_expectations": float(stats["unsuccessful_expectations"]),
            "success_percent": float(stats["success_percent"] or 0.0),
        }
        ctx.logger.info(
            "validate: %d expectations on %s: %d failed (%d errors, %d warnings) -> %s",
            summary["evaluated"],
            uri,
            len(failed_errors) + len(failed_warnings),
            len(failed_errors),
            len(failed_warnings),
            html_path,
        )
        if not passed:
            raise GateFailure(self.name, [c.reason for c in failed_errors], report=report)
        return StepResult(
            outputs={"dataset": dataset_ref, "report": report},
            metrics=metrics,
            passed=True,
            message=f"{summary['successful']}/{summary['evaluated']} expectations passed"
            + (f"; {len(failed_warnings)} warning(s)" if failed_warnings else ""),
        )


def _source(ctx: RunContext, config: ValidateConfig, inputs: dict[str, BaseRef]) -> DatasetRef | str:
    """The data to validate: the `dataset` input or the `data` path, exactly one of them."""
    given = inputs.get("dataset")
    if (given is None) == (config.data is None):
        which = "both were given" if given is not None else "neither was given"
        raise ConfigError(
            [
                Problem(
                    None,
                    "validate.config.data",
                    f"set exactly one of `data` and the `dataset` input ({which})",
                )
            ]
        )
    if given is not None:
        assert isinstance(given, DatasetRef)
        return given
    assert config.data is not None
    return ctx.resolve_path(config.data)


def _dataset_ref(source: DatasetRef | str, df: pd.DataFrame) -> DatasetRef:
    """The ref of the validated data: the same file, with its hash, rows and columns."""
    columns = {str(c): str(t) for c, t in df.dtypes.items()}
    if isinstance(source, str):
        return describe_dataset(source, df=df)
    content_hash = source.content_hash
    if content_hash is None and is_local(source.uri):
        content_hash = hash_file(to_local_path(source.uri))
    return source.model_copy(update={"content_hash": content_hash, "rows": len(df), "columns": columns})


def _check_fresh_columns(config: ValidateConfig, df: pd.DataFrame, uri: str) -> None:
    """A `fresh` column that exists must hold timestamps; a missing one is reported by GX."""
    pd = require("pandas")
    for exp in config.expectations:
        if isinstance(exp, Fresh) and exp.column in df.columns:
            dtype = df[exp.column].dtype
            if not pd.api.types.is_datetime64_any_dtype(dtype):
                raise DataError(
                    f"{uri}: column {exp.column!r} used by {exp.label()} holds {dtype}, not timestamps; "
                    "convert it to datetime64 before validating"
                )


def _load_suite_file(ctx: RunContext, config: ValidateConfig) -> tuple[str, list[Any]]:
    """The name and expectations of a GX ExpectationSuite JSON file.

    Each expectation is built on its own: ``gx.ExpectationSuite(**raw)`` only logs and
    drops an expectation it cannot build, and a gate must not silently check less.
    """
    assert config.suite is not None
    path = ctx.resolve_path(config.suite)

    def problem(message: str) -> ConfigError:
        return ConfigError([Problem(path, "validate.config.suite", message)])

    try:
        if is_local(path):
            raw = json.loads(Path(path).read_text())
        else:
            fsspec = require("fsspec")
            with fsspec.open(path, "r") as fh:
                raw = json.load(fh)
    except FileNotFoundError:
        raise problem("suite file not found") from None
    except (OSError, ValueError) as exc:
        raise problem(f"not a readable JSON file: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise problem("expected a GX ExpectationSuite: a JSON object with `name` and an `expectations` list")
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    known = {"type", "kwargs", "meta", "notes", "description", "severity"}
    expectations = []
    for i, item in enumerate(raw["expectations"]):
        kind = item.get("type") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise TypeError("expected a JSON object with `type` and `kwargs`")
            conf = ExpectationConfiguration(**{k: v for k, v in item.items() if k in known})
            expectations.append(conf.to_domain_obj())
        except Exception as exc:
            raise problem(
                f"not a valid GX ExpectationSuite: expectations[{i}] ({kind}): {type(exc).__name__}: {exc}"
            ) from exc
    name = raw.get("name")
    return (name if isinstance(name, str) and name else Path(path).stem), expectations


def _build_suite(
    ctx: RunContext, config: ValidateConfig, gx: Any, *, df: pd.DataFrame, now: datetime
) -> tuple[list[_Check], Any]:
    """One GX suite holding the suite file's expectations followed by the inline ones."""
    checks: list[_Check] = []
    name = f"{ctx.run_key.pipeline}.{ctx.run_key.step}"
    from_file: list[Any] = []
    if config.suite:
        name, from_file = _load_suite_file(ctx, config)
    suite = gx.ExpectationSuite(name=name)

    def add(expectation: Any, check: _Check, path: str) -> None:
        expectation.meta = {**(expectation.meta or {}), META_KEY: {"index": check.index, "name": check.label}}
        before = len(suite.expectations)
        suite.add_expectation(expectation)
        if len(suite.expectations) == before:
            raise ConfigError([Problem(None, path, f"{check.label} duplicates an earlier expectation")])
        checks.append(check)

    for i, exp in enumerate(from_file):
        severity: Severity = "error" if str(exp.severity.value) in GX_ERROR_SEVERITIES else "warn"
        column = getattr(exp, "column", None)
        kind = str(exp.expectation_type)
        label = f"{kind}({column})" if column else kind
        add(
            exp,
            _Check(index=len(checks), label=label, severity=severity, column=column, spec=None),
            f"validate.config.suite.expectations.{i}",
        )
    for i, inline in enumerate(config.expectations):
        cls = getattr(gx.expectations, inline.gx_class)
        path = f"validate.config.expectations.{i}"
        try:
            expectation = cls(
                **inline.gx_kwargs(now=now, df=df),
                severity="critical" if inline.severity == "error" else "warning",
            )
        except MlstepsError:
            raise
        except Exception as exc:
            raise ConfigError([Problem(None, path, f"{inline.label()}: {exc}")]) from exc
        add(
            expectation,
            _Check(
                index=len(checks),
                label=inline.label(),
                severity=inline.severity,
                column=inline.column_name,
                spec=inline,
            ),
            path,
        )
    return checks, suite


def _import_gx() -> Any:
    """Import GX with analytics off and its import-time INFO chatter kept out of our logs."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    return require("great_expectations")


def _gx_context(gx: Any) -> Any:
    """A throwaway in-memory GX context without analytics or progress bars."""
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.enable_analytics(False)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        return context
    except Exception as exc:
        raise BackendError("great_expectations", f"{type(exc).__name__}: {exc}") from exc


def _run_suite(gx: Any, context: Any, suite: Any, df: pd.DataFrame) -> Any:
    """Validate the whole of ``df`` against ``suite``; GX errors become BackendError."""
    try:
        batch_def = (
            context.data_sources.add_pandas("mlsteps")
            .add_dataframe_asset("data")
            .add_batch_definition_whole_dataframe("all")
        )
        suite = context.suites.add(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="mlsteps-validate", data=batch_def, suite=suite)
        )
        return definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    except Exception as exc:
        raise BackendError("great_expectations", f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- reading results


def _read_results(checks: list[_Check], result: Any, *, df: pd.DataFrame, uri: str) -> None:
    """Copy each GX result onto its check, with an observed value and, on failure, a reason."""
    by_index = {c.index: c for c in checks}
    columns = [str(c) for c in df.columns]
    for res in result.results:
        cfg = res.expectation_config
        check = by_index[int((cfg.meta or {})[META_KEY]["index"])]
        check.gx_type = str(cfg.type)
        check.success = bool(res.success)
        detail = dict(res.result or {})
        check.observed = _observed(check, detail, df)
        if check.success:
            continue
        check.reason = _reason(
            check, cfg.kwargs, detail, error=_exception_message(res.exception_info), columns=columns, uri=uri
        )


def _exception_message(info: Any) -> str | None:
    """GX's error message for an expectation it could not evaluate, if any."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    # Metric errors are keyed by metric id: {"MetricConfigurationID(...)": {...}}.
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _shorten(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _observed(check: _Check, detail: dict[str, Any], df: pd.DataFrame) -> str:
    if check.column is not None and check.column not in df.columns:
        return "column missing"
    if isinstance(check.spec, ColumnExists):
        return "present"
    if isinstance(check.spec, ColumnType):
        return str(df[check.column].dtype)
    if "observed_value" in detail:
        return _shorten(detail["observed_value"])
    if "unexpected_count" in detail:
        what = "null" if isinstance(check.spec, NotNull) else "unexpected"
        return f"{detail['unexpected_count']} of {detail.get('element_count', '?')} {what}"
    return ""


def _fmt_num(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


def _fmt_time(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


def _examples(detail: dict[str, Any], limit: int = 5) -> str:
    counts = detail.get("partial_unexpected_counts") or []
    values: list[Any] = [c.get("value") for c in counts[:limit] if isinstance(c, dict)]
    if not values:
        values = list(dict.fromkeys(map(str, detail.get("partial_unexpected_list") or [])))[:limit]
    return f"; e.g. {values}" if values else ""


def _reason(
    check: _Check,
    kwargs: dict[str, Any],
    detail: dict[str, Any],
    *,
    error: str | None,
    columns: list[str],
    uri: str,
) -> str:
    """One sentence saying why an expectation failed, naming its column."""
    head = check.label
    if check.column is not None and check.column not in columns:
        shown = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
        return f"{head}: column {check.column!r} not found in {uri} (columns: {shown})"
    if error:
        return f"{head}: GX could not evaluate it: {error}"
    spec = check.spec
    unexpected = detail.get("unexpected_count")
    total = detail.get("element_count")
    missing = detail.get("missing_count") or 0
    mostly = f" (mostly={kwargs.get('mostly', 1.0)})"
    if isinstance(spec, ColumnType):
        return f"{head}: expected dtype {spec.dtype}, found {check.observed}"
    if isinstance(spec, NotNull):
        return f"{head}: {unexpected} of {total} values are null{mostly}"
    if isinstance(spec, Between):
        low = "-inf" if spec.min is None else _fmt_num(spec.min)
        high = "inf" if spec.max is None else _fmt_num(spec.max)
        return (
            f"{head}: {unexpected} of {_nonnull(total, missing)} non-null values are outside "
            f"[{low}, {high}]{mostly}{_examples(detail)}"
        )
    if isinstance(spec, InSet):
        return (
            f"{head}: {unexpected} of {_nonnull(total, missing)} non-null values are not in "
            f"{list(spec.values)}{mostly}{_examples(detail)}"
        )
    if isinstance(spec, Unique):
        return f"{head}: {unexpected} of {_nonnull(total, missing)} non-null values are duplicated{mostly}{_examples(detail)}"
    if isinstance(spec, Regex):
        return (
            f"{head}: {unexpected} of {_nonnull(total, missing)} non-null values do not match "
            f"{spec.pattern!r}{mostly}{_examples(detail)}"
        )
    if isinstance(spec, RowCountBetween):
        low = "0" if spec.min is None else str(spec.min)
        high = "inf" if spec.max is None else str(spec.max)
        return f"{head}: {detail.get('observed_value')} rows, expected between {low} and {high}"
    if isinstance(spec, Fresh):
        return (
            f"{head}: newest value {_fmt_time(detail.get('observed_value'))} is older than {spec.max_age} "
            f"(cutoff {_fmt_time(kwargs.get('min_value'))})"
        )
    # Suite-file expectations: say what GX observed.
    if unexpected is not None:
        return f"{head}: {unexpected} of {total} values unexpected{_examples(detail)}"
    if "observed_value" in detail:
        return f"{head}: observed {_shorten(detail['observed_value'])}"
    return f"{head}: failed"


def _nonnull(total: Any, missing: Any) -> Any:
    try:
        return int(total) - int(missing)
    except (TypeError, ValueError):
        return total


# --------------------------------------------------------------------------- HTML report

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.4rem;margin-bottom:.2rem}.meta{color:#59636e;margin-bottom:1rem}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.pass{background:#1a7f37}.fail{background:#cf222e}.warn{background:#9a6700}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d1d9e0;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right}code{font-size:.85rem}
"""


#: Per-run values GX writes into a validation result (random ids, load and run times).
#: They are dropped so that the same data and suite give a byte-identical report,
#: hence the same content hash under every runner; the lineage record has the times.
_RUN_SPECIFIC_META = ("validation_id", "run_id", "validation_time")


def _stable(result: dict[str, Any]) -> dict[str, Any]:
    """The GX result without its per-run ids and times."""
    out: dict[str, Any] = json.loads(json.dumps(result, default=str))
    for item in out.get("results", []):
        config = item.get("expectation_config")
        if isinstance(config, dict):
            config.pop("id", None)
    meta = out.get("meta", {})
    for key in _RUN_SPECIFIC_META:
        meta.pop(key, None)
    if isinstance(meta.get("batch_markers"), dict):
        meta["batch_markers"].pop("ge_load_time", None)
    return out


def _render_html(
    checks: list[_Check], *, uri: str, rows: int, passed: bool, stats: dict[str, Any], suite: str
) -> str:
    """A self-contained page (inline CSS, no scripts) listing every expectation and its outcome."""
    esc = html.escape
    body_rows = []
    for c in checks:
        if c.success:
            badge = '<span class="badge pass">pass</span>'
        elif c.severity == "warn":
            badge = '<span class="badge warn">warn</span>'
        else:
            badge = '<span class="badge fail">fail</span>'
        body_rows.append(
            "<tr>"
            f'<td class="num">{c.index + 1}</td>'
            f"<td><code>{esc(c.label)}</code><br><small>{esc(c.gx_type)}</small></td>"
            f"<td>{esc(c.column or '')}</td>"
            f"<td>{esc(c.severity)}</td>"
            f"<td>{badge}</td>"
            f"<td>{esc(c.observed)}</td>"
            f"<td>{esc(c.reason)}</td>"
            "</tr>"
        )
    verdict = '<span class="badge pass">passed</span>' if passed else '<span class="badge fail">failed</span>'
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Validation of {esc(Path(uri).name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Validation {verdict}</h1>"
        f"<div class='meta'>Data <code>{esc(uri)}</code> ({rows} rows) &middot; suite <code>{esc(suite)}</code>"
        f" &middot; {stats['successful_expectations']} of {stats['evaluated_expectations']} expectations passed"
        f" ({float(stats['success_percent'] or 0):.1f}%) &middot; generated"
        f" {esc(datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))}</div>"
        "<table><thead><tr><th>#</th><th>Expectation</th><th>Column</th><th>Severity</th>"
        "<th>Result</th><th>Observed</th><th>Reason</th></tr></thead><tbody>"
        + "".join(body_rows)
        + "</tbody></table></body></html>\n"
    )


# --------------------------------------------------------------------------- profiling


def suggest_expectations(df: pd.DataFrame, *, max_set_size: int = 20) -> list[dict[str, Any]]:
    """Profile ``df`` into a starter list of inline expectations to paste into a pipeline.

    Every column gets ``column_exists`` and ``column_type``; columns with values get
    ``not_null`` with the observed non-null fraction as ``mostly`` (rounded down);
    numeric columns get ``between`` with the observed range; string and category
    columns with at most ``max_set_size`` distinct values get ``in_set``. Review the
    result: it describes the data you have, not the data you want.
    """
    pd = require("pandas")
    suggestions: list[dict[str, Any]] = []
    rows = len(df)
    for raw_name in df.columns:
        name = str(raw_name)
        col = df[raw_name]
        dtype = col.dtype
        suggestions.append({"type": "column_exists", "column": name})
        suggestions.append({"type": "column_type", "column": name, "dtype": str(dtype)})
        non_null = int(col.notna().sum())
        if rows and non_null:
            mostly = math.floor(non_null / rows * 100) / 100
            if mostly > 0:
                suggestions.append({"type": "not_null", "column": name, "mostly": mostly})
        if not non_null:
            continue
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            low, high = col.min(), col.max()
            suggestions.append({"type": "between", "column": name, "min": _plain(low), "max": _plain(high)})
        elif pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype | pd.StringDtype):
            values = col.dropna().unique()
            if len(values) <= max_set_size and all(isinstance(v, str) for v in values):
                suggestions.append({"type": "in_set", "column": name, "values": sorted(values)})
    return suggestions


def _plain(value: Any) -> int | float:
    """A numpy scalar as a plain Python number (for YAML and JSON)."""
    item = value.item() if hasattr(value, "item") else value
    return int(item) if isinstance(item, bool | int) else float(item)
