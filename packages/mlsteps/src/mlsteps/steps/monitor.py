"""The ``monitor`` step: compare production data with the training data and report drift.

The current data (a batch of production inputs, optionally with predictions and
late labels) is compared column by column with a reference: an explicit dataset,
or by default the training set of the deployed model, found by walking the
lineage from ``models:/NAME@champion`` back to its ``train`` step. Each column
gets the test configured for its type (KS, Wasserstein, PSI or Jensen-Shannon for
numbers; chi-squared, Jensen-Shannon or PSI for categories); the dataset drifts
when the share of drifted features reaches ``drift_share``, when the predictions
drift, or when the metrics on labelled current data fall below the champion's
recorded ones. Data is streamed in batches (see :mod:`mlsteps.steps._drift`).

Drift is a finding, not a failure: the step is not a gate. Its ``report`` output
has ``passed = (verdict == "no_drift")`` and ``summary["verdict"]``, which the
CLI (``mlsteps monitor --on-drift retrain``) and orchestrator adapters react to;
``fail_on_drift: true`` turns drift into a :class:`GateFailure` instead.
NumPy, SciPy, pyarrow and MLflow are imported inside :meth:`MonitorStep.run`.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mlsteps._imports import require
from mlsteps.errors import BackendError, ConfigError, DataError, GateFailure, MlstepsError, Problem
from mlsteps.hashing import hash_bytes, hash_file
from mlsteps.refs import DatasetRef, ModelRef, RefKind, ReportRef, parse_ref
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.storage import is_local, to_local_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlsteps.context import RunContext
    from mlsteps.lineage import LineageNode, LineageRecord
    from mlsteps.refs import BaseRef
    from mlsteps.steps._drift import ColumnOutcome, ColumnPlan, SideProfile

TestName = Literal["ks", "wasserstein", "psi", "jensenshannon", "chisquare"]
NUMERICAL_TESTS = ("ks", "wasserstein", "psi", "jensenshannon")
CATEGORICAL_TESTS = ("chisquare", "jensenshannon", "psi")
DEFAULT_THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "wasserstein": 0.1, "psi": 0.1, "jensenshannon": 0.1}
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")
PREDICTION = "prediction"
REPORT_JSON = "drift_report.json"
REPORT_HTML = "drift_report.html"
LINEAGE_TAG = "mlsteps.lineage_record"
METRIC_TAG_PREFIX = "metric."


class ColumnTest(StepConfig):
    """The test (and threshold) for one column."""

    test: TestName = Field(description="Drift test for this column.")
    threshold: float | None = Field(None, gt=0, description="Threshold; default the test's default.")


class MonitorConfig(StepConfig):
    """Configuration of the ``monitor`` step."""

    current: str | None = Field(
        None, description="Current data (parquet/CSV path) when the `current` input is not wired."
    )
    reference: str | None = Field(
        None,
        description="Reference data: a parquet/CSV path or a models:/ URI whose training data to use; "
        "default the training data of `model` (when the `reference` input is not wired).",
    )
    model: str | None = Field(
        None,
        description="The deployed model, models:/NAME@ALIAS or models:/NAME/VERSION: source of the default "
        "reference, feature list, predictions and recorded metrics; the MLflow run is tagged with it.",
    )
    columns: list[str] | None = Field(
        None, description="Columns to test; default the model's features, else every shared column."
    )
    exclude: list[str] = Field(default_factory=list, description="Columns never tested (ids, timestamps).")
    categorical: list[str] = Field(default_factory=list, description="Columns to treat as categorical.")
    numerical: list[str] = Field(default_factory=list, description="Columns to treat as numerical.")
    numerical_test: Literal["ks", "wasserstein", "psi", "jensenshannon"] = Field(
        "ks", description="Test for numerical columns."
    )
    categorical_test: Literal["chisquare", "jensenshannon", "psi"] = Field(
        "chisquare", description="Test for categorical columns."
    )
    thresholds: dict[TestName, float] = Field(
        default_factory=dict,
        description="Test -> threshold: a p-value level for ks/chisquare (drift below it), a distance "
        "for wasserstein/psi/jensenshannon (drift at or above it). Defaults: ks 0.05, chisquare 0.05, "
        "wasserstein 0.1, psi 0.1, jensenshannon 0.1.",
    )
    per_column: dict[str, ColumnTest] = Field(default_factory=dict, description="Column -> test override.")
    drift_share: float = Field(
        0.5, gt=0, le=1, description="The dataset drifts when this share of the tested features drifts."
    )
    prediction_column: str | None = Field(
        None, description="Column holding the model's predictions, tested for prediction drift."
    )
    predict: bool = Field(
        False, description="Predict with `model` on both datasets and test the predictions for drift."
    )
    target: str | None = Field(
        None, description="Label column; default the model's target. Tested for drift when in both sets."
    )
    performance_metrics: list[str] | None = Field(
        None, description="Metrics compared with the model's recorded ones; default those it recorded."
    )
    max_metric_drop: float = Field(
        0.1,
        ge=0,
        description="Relative drop (0.1 = 10 %) of a metric below the model's recorded value that counts "
        "as performance drift.",
    )
    max_rows_exact: int = Field(
        100_000,
        ge=1,
        description="Numeric columns are tested on every value when each side has at most this many rows; "
        "above it, on shared fine bins (memory stays bounded).",
    )
    bins: int = Field(4096, ge=16, le=1_000_000, description="Fine bins per numeric column when binned.")
    psi_bins: int = Field(10, ge=2, le=1000, description="Reference-quantile bins for numeric PSI / JS.")
    sample_size: int = Field(
        100_000, ge=1000, description="Reservoir sample per side that places the fine bins' edges."
    )
    max_categories: int = Field(
        1000, ge=2, description="A categorical column with more distinct values is skipped."
    )
    batch_rows: int = Field(65_536, ge=1024, description="Rows per streamed batch.")
    seed: int = Field(0, ge=0, description="Seed of the reservoir samples.")
    fail_on_drift: bool = Field(False, description="Raise a gate failure on drift instead of reporting it.")
    log_to_mlflow: bool = Field(True, description="Log the report and per-column scores to an MLflow run.")

    @field_validator("model")
    @classmethod
    def _model_uri(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_URI.match(value):
            raise ValueError("expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return value

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"thresholds must be > 0, got {bad}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MonitorConfig:
        both = sorted(set(self.categorical) & set(self.numerical))
        if both:
            raise ValueError(f"columns {both} are listed as both categorical and numerical")
        if self.predict and self.model is None:
            raise ValueError("predict: true needs `model`")
        return self


@dataclass
class ModelLineage:
    """A registered model version and the training data its lineage leads to."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    tags: dict[str, str]
    record_id: str
    train_record_id: str
    dataset: DatasetRef
    model: ModelRef | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def recorded_metrics(self) -> dict[str, float]:
        """The metric.* tags ``register`` put on the version."""
        out = {}
        for key, value in self.tags.items():
            if key.startswith(METRIC_TAG_PREFIX):
                try:
                    out[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
                except ValueError:
                    continue
        return out


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    match = MODEL_URI.match(uri)
    if match is None:
        raise ConfigError(f"expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    return match["name"], match["alias"], match["version"]


def resolve_model_lineage(ctx: RunContext, uri: str) -> ModelLineage:
    """Resolve ``models:/NAME@ALIAS`` to its version, then walk lineage back to the training data.

    ``register`` tags each version with the lineage record that registered it; that
    record's inputs lead (through ``evaluate``) to the ``train`` record, whose
    ``train_data`` output is the exact table the model was fitted on.
    """
    from mlsteps.backends import mlflow as backend
    from mlsteps.lineage import LineageRecorder, find_model_version, trace

    name, alias, version = parse_model_uri(uri)
    client = backend.configure(ctx)
    exceptions = require("mlflow.exceptions")
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias is not None
            else client.get_model_version(name, str(version))
        )
    except exceptions.MlflowException as exc:
        raise BackendError(
            "mlflow",
            f"{uri} does not exist in the registry at {ctx.registry_uri}: {exc}",
            hint="register a model first (the register step), or set monitor.config.reference",
        ) from exc
    version = str(mv.version)
    tags = dict(mv.tags or {})
    records = LineageRecorder(ctx.store).records()
    record_id = tags.get(LINEAGE_TAG)
    start = next((r for r in records if r.record_id == record_id), None) if record_id else None
    start = start or find_model_version(records, name, version)
    if start is None:
        raise MlstepsError(
            f"cannot find the training data of {uri} (version {version}): no lineage record under "
            f"{ctx.store.root} registered it (tag {LINEAGE_TAG}={record_id or 'missing'}). Was it registered "
            "with another artifact root, or outside mlsteps? Set monitor.config.reference to the training data."
        )
    train = _find_step(trace(records, start), "train")
    if train is None:
        raise MlstepsError(
            f"cannot find the training data of {uri} (version {version}): its lineage (record "
            f"{start.record_id}) has no train step; set monitor.config.reference"
        )
    link = train.outputs.get("train_data") or train.inputs.get("dataset")
    dataset = parse_ref(link.ref) if link is not None else None
    if not isinstance(dataset, DatasetRef):
        raise MlstepsError(
            f"cannot find the training data of {uri}: train record {train.record_id} records no dataset"
        )
    model_link = train.outputs.get("model")
    model = parse_ref(model_link.ref) if model_link is not None else None
    return ModelLineage(
        name=name,
        version=version,
        alias=alias,
        run_id=mv.run_id,
        tags=tags,
        record_id=start.record_id,
        train_record_id=train.record_id,
        dataset=dataset,
        model=model if isinstance(model, ModelRef) else None,
    )


def _find_step(node: LineageNode, step_type: str) -> LineageRecord | None:
    """The nearest record of ``step_type`` among ``node`` and its ancestors (breadth first)."""
    frontier = [node]
    while frontier:
        current = frontier.pop(0)
        if current.record.step_type == step_type:
            return current.record
        frontier.extend(current.parents.values())
    return None


@dataclass
class _Data:
    """A dataset to compare: where it is, its identity, and how it was chosen."""

    uri: str
    format: str
    content_hash: str | None
    source: str
    columns: list[str] = field(default_factory=list)


def _dataset_from_path(ctx: RunContext, path: str, *, field_name: str, source: str) -> _Data:
    from mlsteps.data import infer_format

    uri = ctx.resolve_path(path)
    if is_local(uri) and not to_local_path(uri).is_file():
        raise ConfigError([Problem(None, f"monitor.config.{field_name}", f"file not found: {uri}")])
    digest = hash_file(to_local_path(uri)) if is_local(uri) else None
    return _Data(uri, infer_format(uri), digest, source)


def _dataset_from_ref(ref: DatasetRef, source: str) -> _Data:
    if is_local(ref.uri):
        path = to_local_path(ref.uri)
        if not path.is_file():
            raise DataError(f"{ref.uri}: file not found ({source})")
        if ref.content_hash and hash_file(path) != ref.content_hash:
            raise DataError(f"{ref.uri}: content changed since it was recorded ({source})")
    return _Data(ref.uri, ref.format, ref.content_hash, source)


class MonitorStep(Step[MonitorConfig]):
    """Detect data, prediction and performance drift of production data against the training data."""

    name = "monitor"
    version = "1"
    description = "compare production data with the deployed model's training data; report drift"
    config_model = MonitorConfig
    gate = False
    # The default reference and the recorded metrics follow the registry's alias: a cached
    # verdict could be about another model.
    cacheable = False
    inputs: ClassVar[dict[str, InputSpec]] = {
        "current": InputSpec("dataset", required=False, description="The production batch to check."),
        "reference": InputSpec(
            "dataset", required=False, description="Reference data; default the model's training data."
        ),
    }
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def run(self, ctx: RunContext, config: MonitorConfig, inputs: dict[str, BaseRef]) -> StepResult:
        from mlsteps.steps import _drift

        current = self._current(ctx, config, inputs)
        lineage = resolve_model_lineage(ctx, config.model) if config.model else None
        reference = self._reference(ctx, config, inputs, lineage)
        ref_source = _drift.TableSource(reference.uri, reference.format)
        cur_source = _drift.TableSource(current.uri, current.format)
        ref_schema, cur_schema = ref_source.schema(), cur_source.schema()
        reference.columns, current.columns = list(ref_schema.names), list(cur_schema.names)

        model_meta = dict(lineage.model.metadata) if lineage and lineage.model else {}
        target = config.target or model_meta.get("target")
        features = self._features(config, model_meta, reference, current, target)
        plans, skipped = self._plans(config, features, ref_schema, cur_schema, reference, current)
        if target and target in reference.columns and target in current.columns and target not in features:
            kind = _drift.column_type(ref_schema.field(target).type)
            if kind is not None:
                plans.append(self._plan(config, target, kind, role="target"))

        predictor = _Predictor.load(ctx, lineage, model_meta) if config.predict and lineage else None
        pred_col = config.prediction_column
        if predictor is not None:
            plans.append(self._plan(config, PREDICTION, predictor.kind, role="prediction"))
        elif pred_col:
            if pred_col in reference.columns and pred_col in current.columns:
                kind = _drift.column_type(ref_schema.field(pred_col).type)
                if kind is not None:
                    plans.append(self._plan(config, pred_col, kind, role="prediction"))
            elif pred_col not in current.columns:
                raise DataError(f"{current.uri}: prediction column {pred_col!r} not found")

        # Performance: labels and predictions of the current batch, kept whole (the only part of
        # the comparison that grows with the data), so only when there are recorded metrics of a
        # model version to compare them with.
        perf_pred = PREDICTION if predictor is not None else pred_col
        perf_cols: list[str] = []
        if (
            lineage is not None
            and target
            and target in current.columns
            and perf_pred
            and (predictor or perf_pred in current.columns)
        ):
            perf_cols = [target, perf_pred]

        plan_names = {p.name for p in plans}
        model_features = predictor.features if predictor else []
        # PREDICTION is derived (not read) only when the model predicts; else a data column may bear the name.
        derived = {PREDICTION} if predictor is not None else set()
        ref_read = sorted((plan_names - derived | set(model_features)) & set(reference.columns))
        cur_read = sorted(
            (plan_names - derived | set(model_features) | set(perf_cols)) & set(current.columns)
        )
        ref_side, cur_side, outcomes = _drift.compute_drift(
            _drift.SideReader(ref_source, ref_read, predictor.transform if predictor else None),
            _drift.SideReader(
                cur_source,
                cur_read,
                predictor.transform if predictor else None,
                collect=[c for c in perf_cols if c in cur_read or c in derived],
            ),
            plans,
            max_rows_exact=config.max_rows_exact,
            bins=config.bins,
            psi_bins=config.psi_bins,
            sample_size=config.sample_size,
            max_categories=config.max_categories,
            batch_rows=config.batch_rows,
            seed=config.seed,
        )
        if ref_side.rows == 0:
            raise DataError(f"{reference.uri}: the reference data has no rows")
        if cur_side.rows == 0:
            raise DataError(f"{current.uri}: the current data has no rows")
        performance = (
            _performance(config, lineage, model_meta, cur_side, perf_cols) if perf_cols and lineage else None
        )
        report = _build_report(
            config, reference, current, ref_side, cur_side, outcomes, skipped, lineage, performance
        )
        report_ref = _write_report(ctx, report)
        if config.log_to_mlflow:
            _log_to_mlflow(ctx, report, report_ref, lineage)
        metrics = _step_metrics(report)
        drift = report["verdict"] == "drift"
        message = "; ".join(report["reasons"]) if drift else "no drift"
        if drift and config.fail_on_drift:
            raise GateFailure(self.name, list(report["reasons"]), report=report_ref)
        return StepResult(outputs={"report": report_ref}, metrics=metrics, passed=not drift, message=message)

    @staticmethod
    def _current(ctx: RunContext, config: MonitorConfig, inputs: dict[str, BaseRef]) -> _Data:
        ref = inputs.get("current")
        if isinstance(ref, DatasetRef):
            return _dataset_from_ref(ref, "input current")
        if config.current:
            return _dataset_from_path(ctx, config.current, field_name="current", source="config")
        raise ConfigError(
            [
                Problem(
                    None, "monitor.config.current", "required: no `current` input is wired and no path is set"
                )
            ]
        )

    @staticmethod
    def _reference(
        ctx: RunContext, config: MonitorConfig, inputs: dict[str, BaseRef], lineage: ModelLineage | None
    ) -> _Data:
        ref = inputs.get("reference")
        if isinstance(ref, DatasetRef):
            return _dataset_from_ref(ref, "input reference")
        if config.reference and not config.reference.startswith("models:/"):
            return _dataset_from_path(ctx, config.reference, field_name="reference", source="config")
        if config.reference:
            lineage = resolve_model_lineage(ctx, config.reference)
        if lineage is None:
            raise ConfigError(
                [
                    Problem(
                        None,
                        "monitor.config.reference",
                        "required: wire a `reference` input, set a path, or set `model` (models:/NAME@champion) "
                        "to use its training data",
                    )
                ]
            )
        return _dataset_from_ref(
            lineage.dataset,
            f"training data of models:/{lineage.name}/{lineage.version} (lineage record "
            f"{lineage.train_record_id})",
        )

    @staticmethod
    def _features(
        config: MonitorConfig,
        model_meta: dict[str, Any],
        reference: _Data,
        current: _Data,
        target: str | None,
    ) -> list[str]:
        excluded = set(config.exclude) | {config.prediction_column, target} - {None}
        if config.columns is not None:
            names = list(config.columns)
            where = "monitor.config.columns"
        elif isinstance(model_meta.get("features"), list) and model_meta["features"]:
            names = [str(f) for f in model_meta["features"]]
            where = "the model's features"
        else:
            names = [c for c in reference.columns if c in current.columns]
            where = ""
        names = [n for n in names if n not in excluded]
        if where:
            for data in (reference, current):
                missing = [n for n in names if n not in data.columns]
                if missing:
                    raise DataError(f"{data.uri}: column(s) {missing} ({where}) not found")
        if not names:
            raise DataError(f"{reference.uri} and {current.uri} share no column to test")
        return names

    @staticmethod
    def _plan(config: MonitorConfig, name: str, kind: str, *, role: str) -> ColumnPlan:
        from mlsteps.steps._drift import ColumnPlan

        custom = config.per_column.get(name)
        test = (
            custom.test
            if custom
            else config.numerical_test
            if kind == "numerical"
            else config.categorical_test
        )
        allowed = NUMERICAL_TESTS if kind == "numerical" else CATEGORICAL_TESTS
        if test not in allowed:
            raise ConfigError(
                [
                    Problem(
                        None,
                        f"monitor.config.per_column.{name}.test",
                        f"{test!r} does not apply to the {kind} column {name!r}; expected one of {list(allowed)}",
                    )
                ]
            )
        threshold = (
            (custom.threshold if custom else None) or config.thresholds.get(test) or DEFAULT_THRESHOLDS[test]
        )
        return ColumnPlan(name, kind, test, float(threshold), role)  # type: ignore[arg-type]

    def _plans(
        self,
        config: MonitorConfig,
        features: list[str],
        ref_schema: Any,
        cur_schema: Any,
        reference: _Data,
        current: _Data,
    ) -> tuple[list[ColumnPlan], dict[str, str]]:
        from mlsteps.steps._drift import column_type

        plans, skipped = [], {}
        for name in features:
            if name in config.categorical:
                kind: str | None = "categorical"
            elif name in config.numerical:
                kind = "numerical"
                for schema, data in ((ref_schema, reference), (cur_schema, current)):
                    if column_type(schema.field(name).type) != "numerical":
                        raise DataError(
                            f"{data.uri}: column {name!r} is {schema.field(name).type}, not numeric "
                            "(listed in monitor.config.numerical)"
                        )
            else:
                kind = column_type(ref_schema.field(name).type)
                if kind is not None and column_type(cur_schema.field(name).type) != kind:
                    raise DataError(
                        f"{current.uri}: column {name!r} is {cur_schema.field(name).type} but "
                        f"{ref_schema.field(name).type} in the reference {reference.uri}"
                    )
            if kind is None:
                skipped[name] = f"type {ref_schema.field(name).type} has no drift test"
                continue
            plans.append(self._plan(config, name, kind, role="feature"))
        return plans, skipped


@dataclass
class _Predictor:
    """The deployed model, predicting batch by batch inside the streaming passes."""

    model: Any
    features: list[str]
    kind: str

    @classmethod
    def load(cls, ctx: RunContext, lineage: ModelLineage, meta: dict[str, Any]) -> _Predictor:
        from mlsteps.steps.evaluate import _load_model

        features = meta.get("features")
        if not isinstance(features, list) or not features:
            raise MlstepsError(f"{lineage.uri}: its lineage records no feature list; cannot predict with it")
        flavour = lineage.model.flavour if lineage.model else "pyfunc"
        model = _load_model(lineage.uri, flavour)
        task = meta.get("task")
        kind = "numerical" if task == "regression" else "categorical"
        return cls(model, [str(f) for f in features], kind)

    def transform(self, batch: Any) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa

        from mlsteps.steps._common import normalise_features

        frame = normalise_features(batch.select(self.features).to_pandas())
        pred = np.asarray(self.model.predict(frame))
        if pred.ndim > 1:
            pred = pred[:, 0]
        if self.kind == "numerical":
            return {PREDICTION: pred.astype(np.float64)}
        return {PREDICTION: pa.array([str(v) for v in pred])}


def _performance(
    config: MonitorConfig,
    lineage: ModelLineage,
    meta: dict[str, Any],
    cur: SideProfile,
    perf_cols: list[str],
) -> dict[str, Any]:
    """Metrics on the labelled current data against the model's recorded (registered) metrics."""
    import numpy as np

    from mlsteps.steps._common import BUILTIN_METRICS, Predictions, compute_metrics

    target, pred_col = perf_cols
    y_true, y_pred = cur.collected_array(target), cur.collected_array(pred_col)
    known = np.array([v is not None and v == v for v in y_true], dtype=bool)
    y_true, y_pred = y_true[known], y_pred[known]
    task = meta.get("task") or (
        "regression" if np.issubdtype(y_true.dtype, np.floating) else "classification"
    )
    if task == "classification":
        y_true, y_pred = y_true.astype(str), y_pred.astype(str)
    recorded = lineage.recorded_metrics()
    names = config.performance_metrics or [
        n for n in recorded if n in BUILTIN_METRICS and BUILTIN_METRICS[n][0] == task
    ]
    names = [n for n in names if n in BUILTIN_METRICS and not BUILTIN_METRICS[n][2]]  # no probabilities here
    if len(y_true) == 0 or not names:
        return {"rows": len(y_true), "metrics": {}, "comparisons": [], "degraded": [], "task": task}
    values, skipped = compute_metrics(names, y_true, Predictions(y_pred=y_pred))
    comparisons, degraded = [], []
    for name, value in values.items():
        old = recorded.get(name)
        if old is None:
            continue
        gib = BUILTIN_METRICS[name][1]
        drop = (old - value) / abs(old) if old else (old - value)
        drop = drop if gib else -drop
        bad = drop > config.max_metric_drop
        comparisons.append(
            {"metric": name, "current": value, "recorded": old, "relative_drop": drop, "degraded": bad}
        )
        if bad:
            degraded.append(f"{name} {value:.4g} vs recorded {old:.4g} ({drop:.1%} worse)")
    return {
        "rows": len(y_true),
        "task": task,
        "metrics": values,
        "skipped_metrics": skipped,
        "comparisons": comparisons,
        "degraded": degraded,
        "max_metric_drop": config.max_metric_drop,
    }


def _build_report(
    config: MonitorConfig,
    reference: _Data,
    current: _Data,
    ref_side: SideProfile,
    cur_side: SideProfile,
    outcomes: list[ColumnOutcome],
    skipped: dict[str, str],
    lineage: ModelLineage | None,
    performance: dict[str, Any] | None,
) -> dict[str, Any]:
    exact = ref_side.exact and cur_side.exact
    columns: dict[str, Any] = {}
    for o in outcomes:
        r = o.result
        columns[o.plan.name] = {
            "role": o.plan.role,
            "type": o.plan.kind,
            "test": o.plan.test,
            "threshold": o.plan.threshold,
            "score": r.score if r else None,
            "statistic": r.statistic if r else None,
            "drifted": bool(r.drifted) if r else None,
            "method": r.method if r else None,
            "note": (r.note if r else None) or o.skipped,
            "skipped": o.skipped,
            "reference": o.reference,
            "current": o.current,
            "plot": o.plot,
        }
    for name, why in skipped.items():
        columns[name] = {"role": "feature", "type": None, "test": None, "skipped": why, "drifted": None}
    features = [n for n, c in columns.items() if c["role"] == "feature" and c["drifted"] is not None]
    drifted = [n for n in features if columns[n]["drifted"]]
    if not features:
        raise DataError(f"no feature column of {current.uri} could be tested: {skipped or 'see the report'}")
    share = len(drifted) / len(features)
    reasons = []
    if share >= config.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(features)} features drifted (share {share:.2f} >= {config.drift_share:g}): "
            + ", ".join(drifted)
        )
    prediction = next((n for n, c in columns.items() if c["role"] == "prediction"), None)
    prediction_drift = columns[prediction]["drifted"] if prediction else None
    if prediction is not None and prediction_drift:
        c = columns[prediction]
        reasons.append(f"prediction drift ({c['test']} score {c['score']:.4g}, threshold {c['threshold']:g})")
    if performance and performance["degraded"]:
        reasons.append("performance drift: " + "; ".join(performance["degraded"]))
    verdict = "drift" if reasons else "no_drift"
    target = next((n for n, c in columns.items() if c["role"] == "target"), None)
    method = (
        "exact: every value (scipy.stats.ks_2samp / wasserstein_distance)"
        if exact
        else f"binned: {config.bins} shared fine bins per numeric column (more than {config.max_rows_exact} rows)"
    )
    return {
        "verdict": verdict,
        "passed": verdict == "no_drift",
        "reasons": reasons,
        "dataset": {
            "features": len(features),
            "drifted": len(drifted),
            "drifted_features": drifted,
            "share": share,
            "drift_share": config.drift_share,
        },
        "prediction": {"column": prediction, "drifted": prediction_drift} if prediction else None,
        "target": {"column": target, "drifted": columns[target]["drifted"]} if target else None,
        "performance": performance,
        "reference": {
            "uri": reference.uri,
            "content_hash": reference.content_hash,
            "rows": ref_side.rows,
            "source": reference.source,
            "exact": ref_side.exact,
        },
        "current": {
            "uri": current.uri,
            "content_hash": current.content_hash,
            "rows": cur_side.rows,
            "source": current.source,
            "exact": cur_side.exact,
        },
        "model": (
            {
                "name": lineage.name,
                "version": lineage.version,
                "alias": lineage.alias,
                "run_id": lineage.run_id,
            }
            if lineage
            else None
        ),
        "numeric_method": method,
        "columns": columns,
    }


def _write_report(ctx: RunContext, report: dict[str, Any]) -> ReportRef:
    """Write the JSON and HTML report under the artifact root; return the ref."""
    data = json.dumps(report, indent=2, sort_keys=True, default=str).encode()
    page = render_html(report).encode()
    if ctx.store.local:
        from mlsteps.storage import atomic_write_bytes

        step_dir = ctx.step_dir()
        json_path, html_path = step_dir / REPORT_JSON, step_dir / REPORT_HTML
        atomic_write_bytes(json_path, data)
        atomic_write_bytes(html_path, page)
        json_uri, html_uri = str(json_path), str(html_path)
    else:
        base = f"runs/{ctx.run_key.run_id}/{ctx.run_key.step}"
        json_uri = ctx.store.write_bytes(f"{base}/{REPORT_JSON}", data)
        html_uri = ctx.store.write_bytes(f"{base}/{REPORT_HTML}", page)
    perf = report["performance"]
    summary: dict[str, Any] = {
        "verdict": report["verdict"],
        "reasons": report["reasons"],
        "drift_share": report["dataset"]["share"],
        "drifted_features": report["dataset"]["drifted_features"],
        "features": report["dataset"]["features"],
        "prediction_drift": (report["prediction"] or {}).get("drifted"),
        "performance_degraded": bool(perf["degraded"]) if perf else None,
        "reference": report["reference"]["uri"],
        "current": report["current"]["uri"],
    }
    if report["model"]:
        summary["model"] = f"models:/{report['model']['name']}/{report['model']['version']}"
    return ReportRef(
        uri=json_uri,
        content_hash=hash_bytes(data),
        passed=bool(report["passed"]),
        summary=summary,
        html_uri=html_uri,
        metadata={"kind": "drift"},
    )


def _metric_key(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", ".".join(parts))


def _step_metrics(report: dict[str, Any]) -> dict[str, float]:
    metrics = {
        "drift_share": float(report["dataset"]["share"]),
        "drifted_features": float(report["dataset"]["drifted"]),
        "features": float(report["dataset"]["features"]),
        "drift": 1.0 if report["verdict"] == "drift" else 0.0,
    }
    if report["performance"]:
        metrics.update({f"current_{k}": float(v) for k, v in report["performance"]["metrics"].items()})
    return metrics


def _log_to_mlflow(
    ctx: RunContext, report: dict[str, Any], ref: ReportRef, lineage: ModelLineage | None
) -> None:
    """One MLflow run per step run (found again on a retry), tagged with the model, holding the report."""
    import tempfile
    from pathlib import Path

    from mlsteps.backends import mlflow as backend

    client = backend.configure(ctx)
    experiment_id = backend.ensure_experiment(ctx, client)
    metrics = _step_metrics(report)
    for name, col in report["columns"].items():
        if col.get("score") is not None:
            metrics[_metric_key("drift_score", name)] = float(col["score"])
            metrics[_metric_key("drifted", name)] = 1.0 if col["drifted"] else 0.0
    tags = {
        **ctx.tags(),
        "mlsteps.step_type": "monitor",
        "mlsteps.monitor.verdict": report["verdict"],
    }
    if lineage is not None:
        tags.update({"mlsteps.monitor.model": lineage.name, "mlsteps.monitor.model_version": lineage.version})
    try:
        run_id = _existing_run(client, experiment_id, ctx.run_key.idempotency_key)
        if run_id is None:
            run_name = f"monitor {lineage.name} v{lineage.version}" if lineage else ctx.run_key.step
            run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        else:
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            client.log_batch(run_id, metrics=items[i : i + 1000])
        with tempfile.TemporaryDirectory() as tmp:
            for uri, name in ((ref.uri, REPORT_JSON), (ref.html_uri, REPORT_HTML)):
                if uri is None:
                    continue
                if is_local(uri):
                    client.log_artifact(run_id, str(to_local_path(uri)), artifact_path="drift")
                else:
                    copy = Path(tmp) / name
                    copy.write_bytes(ctx.store.read_bytes(uri))
                    client.log_artifact(run_id, str(copy), artifact_path="drift")
        client.set_terminated(run_id, "FINISHED")
    except MlstepsError:
        raise
    except Exception as exc:
        raise backend.wrap(exc, "could not log the drift report to MLflow") from exc


def _existing_run(client: MlflowClient, experiment_id: str, key: str) -> str | None:
    """The run an earlier attempt of this step run created, if any."""
    escaped = key.replace("'", "\\'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.\"mlsteps.run_key\" = '{escaped}' and tags.\"mlsteps.step_type\" = 'monitor'",
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


# --------------------------------------------------------------------------- HTML


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _svg_bars(plot: dict[str, Any], kind: str) -> str:
    """Grouped bars (reference blue, current orange) of shares per bin or category, as inline SVG."""
    ref, cur = plot.get("reference") or [], plot.get("current") or []
    if not ref:
        return ""
    width, height, pad = 420, 150, 22
    n = len(ref)
    top = max(max(ref), max(cur), 1e-12)
    step = (width - 2 * pad) / n
    bar = max(step / 2 - 0.5, 0.5)
    rects = []
    for i, (a, b) in enumerate(zip(ref, cur, strict=True)):
        x = pad + i * step
        for j, (v, colour) in enumerate(((a, "#4c78a8"), (b, "#f58518"))):
            h = (height - 2 * pad) * v / top
            rects.append(
                f'<rect x="{x + j * bar:.1f}" y="{height - pad - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{"reference" if j == 0 else "current"}: {v:.3f}</title></rect>'
            )
    if kind == "numerical":
        edges = plot["edges"]
        labels = (
            f'<text x="{pad}" y="{height - 6}" font-size="10">{edges[0]:.4g}</text>'
            f'<text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">{edges[-1]:.4g}</text>'
        )
    else:
        labels = "".join(
            f'<text x="{pad + (i + 0.5) * step:.1f}" y="{height - 6}" font-size="9" text-anchor="middle">'
            f"{html.escape(str(c))[:10]}</text>"
            for i, c in enumerate(plot["categories"])
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
        + "".join(rects)
        + labels
        + "</svg>"
    )


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: verdict, reasons, the per-column table and an inline SVG plot per column."""
    verdict = report["verdict"]
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in report["reasons"]) or "<li>none</li>"
    rows, plots = [], []
    for name, c in report["columns"].items():
        status = "skipped" if c.get("skipped") else "DRIFT" if c.get("drifted") else "ok"
        rows.append(
            f"<tr class='{status}'><td>{html.escape(name)}</td><td>{_fmt(c.get('role'))}</td>"
            f"<td>{_fmt(c.get('type'))}</td><td>{_fmt(c.get('test'))}</td><td>{_fmt(c.get('score'))}</td>"
            f"<td>{_fmt(c.get('threshold'))}</td><td>{status}</td><td>{_fmt(c.get('method'))}</td>"
            f"<td>{_fmt(c.get('note'))}</td></tr>"
        )
        if c.get("plot"):
            plots.append(
                f"<figure><figcaption><b>{html.escape(name)}</b> ({status}; "
                f"<span style='color:#4c78a8'>reference</span> vs <span style='color:#f58518'>current</span>)"
                f"</figcaption>{_svg_bars(c['plot'], c['type'])}</figure>"
            )
    perf = report.get("performance")
    perf_html = "<p>No labelled predictions in the current data.</p>"
    if perf and perf.get("comparisons"):
        perf_html = (
            "<table><tr><th>metric</th><th>current</th><th>recorded</th><th>relative drop</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(c['metric'])}</td><td>{_fmt(c['current'])}</td><td>{_fmt(c['recorded'])}</td>"
                f"<td>{c['relative_drop']:.1%}</td></tr>"
                for c in perf["comparisons"]
            )
            + "</table>"
        )
    model = report.get("model")
    model_line = (
        f"<p>Model: models:/{html.escape(model['name'])}/{html.escape(str(model['version']))}"
        f"{' @' + html.escape(model['alias']) if model.get('alias') else ''}</p>"
        if model
        else ""
    )
    ref, cur = report["reference"], report["current"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}tr.DRIFT td{{background:#fde0dc}}
tr.skipped td{{color:#888}}figure{{display:inline-block;margin:0.5em}}.drift{{color:#b00}}.no_drift{{color:#080}}</style>
</head><body>
<h1>Drift report: <span class="{verdict}">{verdict}</span></h1>
{model_line}
<p>Reference: {html.escape(ref["uri"])} ({ref["rows"]} rows; {html.escape(ref["source"])})<br>
Current: {html.escape(cur["uri"])} ({cur["rows"]} rows)<br>
Numeric tests: {html.escape(report["numeric_method"])}</p>
<p>{report["dataset"]["drifted"]} of {report["dataset"]["features"]} features drifted
(share {report["dataset"]["share"]:.2f}; the dataset drifts at {report["dataset"]["drift_share"]:g}).</p>
<h2>Reasons</h2><ul>{reasons}</ul>
<h2>Columns</h2>
<table><tr><th>column</th><th>role</th><th>type</th><th>test</th><th>score</th><th>threshold</th><th>verdict</th>
<th>method</th><th>note</th></tr>{"".join(rows)}</table>
<h2>Performance</h2>{perf_html}
<h2>Distributions</h2>{"".join(plots)}
</body></html>
"""
