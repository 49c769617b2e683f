"""The ``evaluate`` step: score a model on held-out data and gate on the result.

The step loads a logged model, computes metrics on a dataset (typically
``train.test_data``), checks them against thresholds and, when a champion is
configured, against the current champion from the MLflow Model Registry scored
on the same rows. It writes ``evaluation.json`` and a self-contained
``evaluation.html``, logs both and the metrics (prefixed ``eval_``) to the
model's MLflow run, and fails the gate when a criterion is not met.

Metrics are computed directly with ``sklearn.metrics`` rather than with
``mlflow.models.evaluate`` (still present in MLflow 3.17): that API logs to an
active or new run under its own metric names and averaging (``f1_score`` is
weighted for multiclass by default), whereas this step needs exactly the named
metrics, the same definitions as ``train``, the champion scored without creating
runs for it, and probabilities from the sklearn model itself.
"""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from mlsteps.errors import ConfigError, DataError, GateFailure, MlstepsError, Problem
from mlsteps.hashing import hash_file
from mlsteps.refs import BaseRef, DatasetRef, ModelRef, RefKind, ReportRef
from mlsteps.step import InputSpec, Step, StepConfig, StepResult
from mlsteps.steps._common import (
    BUILTIN_METRICS,
    DEFAULT_METRICS,
    DEFAULT_PRIMARY,
    Predictions,
    Task,
    check_target,
    compute_metrics,
    feature_columns,
    import_object,
    infer_task,
    normalise_features,
    predict,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd
    from mlflow import MlflowClient

    from mlsteps.context import RunContext

MetricName = Literal[
    "accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "r2",
    "mape",
]

_THRESHOLD = re.compile(r"^\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
#: The comparison that holds when a threshold fails, for messages ("0.81 < threshold 0.9").
_NEGATION = {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!="}
NO_CHAMPION_NOTE = "no champion: thresholds only"
NO_CHAMPION_STATE = "no champion comparison"


def parse_threshold(expression: str) -> tuple[str, float]:
    """Split ``">= 0.9"`` into ``(">=", 0.9)``; a ValueError explains the expected form."""
    match = _THRESHOLD.match(expression)
    if match is None:
        raise ValueError("expected a comparison such as '>= 0.9' or '<= 12.5' (operators >=, >, <=, <, ==)")
    return match.group(1), float(match.group(2))


def _check_threshold(expression: str) -> str:
    parse_threshold(expression)
    return expression


Threshold = Annotated[str, AfterValidator(_check_threshold)]


class CustomMetric(StepConfig):
    """A user metric: ``fn(y_true, y_pred) -> float``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Metric name in reports and MLflow.")
    function: str = Field(description="Import path of fn(y_true, y_pred) -> float.")
    greater_is_better: bool = Field(True, description="Direction used by champion comparisons.")


class ChampionConfig(StepConfig):
    """Compare against the registered model version that holds an alias."""

    model_name: str = Field(min_length=1, description="Registered model name in the MLflow Model Registry.")
    alias: str = Field("champion", min_length=1, description="Alias of the version to beat.")
    primary_metric: str | None = Field(
        None, description="Metric the challenger must not lose on; default f1_macro (classification) or rmse."
    )
    min_improvement: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> how much the challenger must beat the champion by (in the metric's "
        "better direction; negative tolerates a small regression). The primary metric defaults to 0.",
    )


class EvaluateConfig(StepConfig):
    """Configuration of the ``evaluate`` step."""

    target: str | None = Field(None, description="Target column; default the model's training target.")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: the task the model was trained for, else guessed from the target."
    )
    metrics: list[MetricName] | None = Field(
        None,
        description="Built-in metrics to compute; default accuracy, f1_macro, roc_auc (classification) "
        "or rmse, mae, r2 (regression). Metrics named in thresholds or champion are added.",
    )
    custom_metrics: list[CustomMetric] = Field(default_factory=list, description="User metric functions.")
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="Metric -> required comparison, e.g. {accuracy: '>= 0.9'}."
    )
    champion: ChampionConfig | None = Field(None, description="Compare with the current champion, if any.")
    slice_by: str | None = Field(None, description="Column to report per-value metrics for (not gated).")

    @model_validator(mode="after")
    def _known_metrics(self) -> EvaluateConfig:
        custom = [m.name for m in self.custom_metrics]
        dupes = sorted({n for n in custom if custom.count(n) > 1} | (set(custom) & set(BUILTIN_METRICS)))
        if dupes:
            raise ValueError(f"custom metric names must be unique and not built-in names: {dupes}")
        known = set(BUILTIN_METRICS) | set(custom)
        named = {f"thresholds.{k}": k for k in self.thresholds}
        if self.champion is not None:
            named.update({f"champion.min_improvement.{k}": k for k in self.champion.min_improvement})
            if self.champion.primary_metric:
                named["champion.primary_metric"] = self.champion.primary_metric
        unknown = [f"{where} ({name!r})" for where, name in named.items() if name not in known]
        if unknown:
            raise ValueError(f"unknown metric in {', '.join(unknown)}; expected one of {sorted(known)}")
        return self


class EvaluateStep(Step[EvaluateConfig]):
    """Score a model, compare it with thresholds and the champion, and gate on the result."""

    name = "evaluate"
    version = "1"
    description = "score a model on held-out data against thresholds and the champion"
    config_model = EvaluateConfig
    gate = True
    # The verdict also depends on the registry's current champion: a cached verdict is
    # reused only while the champion model's registry state is the one it was made against.
    stateful_cache = True
    inputs: ClassVar[dict[str, InputSpec]] = {
        "model": InputSpec("model", description="The model to evaluate (train.model)."),
        "dataset": InputSpec("dataset", description="Held-out data with the target (train.test_data)."),
    }
    outputs: ClassVar[dict[str, RefKind]] = {"report": "report"}

    def cache_state(
        self, ctx: RunContext, config: EvaluateConfig, inputs: Mapping[str, BaseRef]
    ) -> str | None:
        """The champion model's registry fingerprint (a constant without champion comparison)."""
        if config.champion is None:
            return NO_CHAMPION_STATE
        from mlsteps.backends.registry_state import model_fingerprint

        return model_fingerprint(ctx, config.champion.model_name, tags=False)

    def run(self, ctx: RunContext, config: EvaluateConfig, inputs: dict[str, BaseRef]) -> StepResult:
        from mlsteps.backends import mlflow as backend
        from mlsteps.data import read_dataframe

        state_before = self.cache_state(ctx, config, inputs)

        model_ref, dataset = inputs["model"], inputs["dataset"]
        assert isinstance(model_ref, ModelRef) and isinstance(dataset, DatasetRef)
        client = backend.configure(ctx)
        df = read_dataframe(dataset)
        if df.empty:
            raise DataError(f"{dataset.uri}: the dataset has no rows")

        target = config.target or model_ref.metadata.get("target")
        if not target:
            raise ConfigError(
                [
                    Problem(
                        None, "evaluate.config.target", "required: the model ref does not record its target"
                    )
                ]
            )
        if target not in df.columns:
            raise DataError(
                f"{dataset.uri}: target column {target!r} not found; columns are {list(df.columns)}"
            )
        if config.slice_by and config.slice_by not in df.columns:
            raise DataError(f"{dataset.uri}: slice_by column {config.slice_by!r} not found")
        y = df[target]
        task: Task
        if config.task != "auto":
            task = config.task
        elif model_ref.metadata.get("task") in ("classification", "regression"):
            task = model_ref.metadata["task"]
        else:
            task = infer_task(y)
        check_target(y, task=task, uri=dataset.uri, column=target, min_classes=1)

        names = _metric_names(config, task)
        custom = [
            (m, import_object(m.function, config_path=f"evaluate.config.custom_metrics[{i}].function"))
            for i, m in enumerate(config.custom_metrics)
        ]
        scorer = _Scorer(names=names, custom=custom, task=task)

        model = _load_model(model_ref.uri, model_ref.flavour)
        features = feature_columns(model_ref.metadata, model_ref.uri, [str(c) for c in df.columns], target)
        X = _features(df, features, uri=dataset.uri)
        pred = _predict(model, X, task)
        metrics, skipped = scorer.score(y, pred)

        failing: list[str] = []
        threshold_rows = []
        for metric, expression in config.thresholds.items():
            op, bound = parse_threshold(expression)
            actual = metrics.get(metric)
            if actual is None:
                ok = False
                failing.append(f"{metric} could not be computed ({skipped.get(metric, 'unknown')})")
            else:
                ok = _compare(actual, op, bound)
                if not ok:
                    failing.append(f"{metric} {actual:.4g} {_NEGATION[op]} threshold {bound:g}")
            threshold_rows.append(
                {"metric": metric, "expression": expression, "actual": actual, "passed": ok}
            )

        champion = (
            _champion(ctx, client, config, scorer, df, target, metrics, failing)
            if config.champion is not None
            else None
        )
        slices = _slices(df, config.slice_by, y, pred, scorer) if config.slice_by else None

        passed = not failing
        report = {
            "passed": passed,
            "task": task,
            "target": target,
            "rows": len(df),
            "model": {
                "uri": model_ref.uri,
                "run_id": model_ref.run_id,
                "model_id": model_ref.model_id,
                "content_hash": model_ref.content_hash,
            },
            "dataset": {"uri": dataset.uri, "content_hash": dataset.content_hash},
            "metrics": metrics,
            "skipped_metrics": skipped,
            "thresholds": threshold_rows,
            "champion": champion,
            "slices": slices,
            "failing": failing,
        }
        report_ref = _write_report(ctx, report, y, pred, task)
        _log_to_run(ctx, client, model_ref, metrics, champion, slices, report_ref, config.slice_by)
        if not passed:
            raise GateFailure(self.name, failing, report=report_ref)
        # Cacheable only if the champion did not move while it was being compared.
        state = state_before if state_before == self.cache_state(ctx, config, inputs) else None
        return StepResult(
            outputs={"report": report_ref}, metrics=metrics, passed=True, message="passed", cache_state=state
        )


class _Scorer:
    """Computes the configured built-in and custom metrics for one set of predictions."""

    def __init__(self, *, names: list[str], custom: list[tuple[CustomMetric, Any]], task: Task) -> None:
        self.names = names
        self.custom = custom
        self.task = task

    def greater_is_better(self, metric: str) -> bool:
        if metric in BUILTIN_METRICS:
            return BUILTIN_METRICS[metric][1]
        return next(m.greater_is_better for m, _ in self.custom if m.name == metric)

    def score(self, y_true: Any, pred: Predictions) -> tuple[dict[str, float], dict[str, str]]:
        values, skipped = compute_metrics(self.names, y_true, pred)
        for spec, fn in self.custom:
            try:
                value = float(fn(y_true, pred.y_pred))
            except Exception as exc:
                raise MlstepsError(f"custom metric {spec.name!r} ({spec.function}) failed: {exc}") from exc
            if math.isfinite(value):
                values[spec.name] = value
            else:
                skipped[spec.name] = f"not finite ({value})"
        return values, skipped


def _metric_names(config: EvaluateConfig, task: Task) -> list[str]:
    """The built-in metrics to compute, checked against the task."""
    names: list[str] = list(config.metrics) if config.metrics else list(DEFAULT_METRICS[task])
    wanted = list(config.thresholds)
    if config.champion is not None:
        wanted += [config.champion.primary_metric or DEFAULT_PRIMARY[task], *config.champion.min_improvement]
    names += [n for n in wanted if n in BUILTIN_METRICS and n not in names]
    wrong = [n for n in dict.fromkeys(names) if BUILTIN_METRICS[n][0] != task]
    if wrong:
        raise ConfigError(
            [
                Problem(
                    None,
                    "evaluate.config",
                    f"metric(s) {wrong} do not apply to {task}; "
                    f"{task} metrics are {sorted(k for k, v in BUILTIN_METRICS.items() if v[0] == task)}",
                )
            ]
        )
    return list(dict.fromkeys(names))


def _compare(actual: float, op: str, bound: float) -> bool:
    if op == ">=":
        return actual >= bound
    if op == ">":
        return actual > bound
    if op == "<=":
        return actual <= bound
    if op == "<":
        return actual < bound
    return math.isclose(actual, bound, rel_tol=1e-9, abs_tol=1e-12)


def _features(df: pd.DataFrame, features: Sequence[str], *, uri: str) -> pd.DataFrame:
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DataError(f"{uri}: feature column(s) {missing} the model was trained on are missing")
    return normalise_features(df[list(features)])


def _load_model(uri: str, flavour: str) -> Any:
    """Load a logged model: the sklearn flavour when it has one (for predict_proba), else pyfunc."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    from mlsteps.backends.mlflow import wrap

    try:
        if flavour == "sklearn":
            return mlflow.sklearn.load_model(uri)
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise wrap(exc, f"could not load model {uri}") from exc


def _predict(model: Any, X: pd.DataFrame, task: Task) -> Predictions:
    import numpy as np

    pred = predict(model, X, task=task)
    y_pred = pred.y_pred
    if hasattr(y_pred, "to_numpy"):  # pyfunc models may answer with a Series or DataFrame
        y_pred = y_pred.to_numpy()
    pred.y_pred = np.asarray(y_pred).reshape(len(X), -1)[:, 0] if np.ndim(y_pred) > 1 else np.asarray(y_pred)
    return pred


def _champion(
    ctx: RunContext,
    client: MlflowClient,
    config: EvaluateConfig,
    scorer: _Scorer,
    df: pd.DataFrame,
    target: str,
    metrics: dict[str, float],
    failing: list[str],
) -> dict[str, Any]:
    """Score the current champion on the same rows and compare; appends failures to ``failing``."""
    from mlflow.exceptions import MlflowException

    from mlsteps.backends.mlflow import wrap

    champ = config.champion
    assert champ is not None
    info: dict[str, Any] = {"model_name": champ.model_name, "alias": champ.alias}
    try:
        version = client.get_model_version_by_alias(champ.model_name, champ.alias)
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            ctx.logger.info(
                "evaluate: %s@%s does not exist; %s", champ.model_name, champ.alias, NO_CHAMPION_NOTE
            )
            return {**info, "note": NO_CHAMPION_NOTE}
        raise wrap(exc, f"could not look up {champ.model_name}@{champ.alias}") from exc

    uri = f"models:/{champ.model_name}@{champ.alias}"
    import mlflow.models

    try:
        flavours = mlflow.models.get_model_info(uri).flavors
    except (MlflowException, OSError) as exc:
        raise wrap(exc, f"could not read the champion model {uri}") from exc
    model = _load_model(uri, "sklearn" if "sklearn" in flavours else "pyfunc")
    features = feature_columns({}, uri, [str(c) for c in df.columns], target)
    X = _features(df, features, uri=f"{uri} on the evaluation data")
    champion_metrics, champion_skipped = scorer.score(df[target], _predict(model, X, scorer.task))

    primary = champ.primary_metric or DEFAULT_PRIMARY[scorer.task]
    required = {primary: 0.0, **champ.min_improvement}
    comparisons = []
    for metric, delta in required.items():
        new, old = metrics.get(metric), champion_metrics.get(metric)
        gib = scorer.greater_is_better(metric)
        if new is None or old is None:
            ok = False
            failing.append(
                f"{metric} could not be compared with the champion (challenger {new}, champion {old})"
            )
        else:
            gain = new - old if gib else old - new
            ok = gain >= delta - 1e-12
            if not ok:
                failing.append(f"{metric} {new:.4g} does not beat champion {old:.4g} by >= {delta:g}")
        comparisons.append(
            {
                "metric": metric,
                "challenger": new,
                "champion": old,
                "min_improvement": delta,
                "greater_is_better": gib,
                "passed": ok,
            }
        )
    return {
        **info,
        "version": str(version.version),
        "run_id": version.run_id,
        "primary_metric": primary,
        "metrics": champion_metrics,
        "skipped_metrics": champion_skipped,
        "comparisons": comparisons,
    }


def _slices(df: pd.DataFrame, column: str, y: Any, pred: Predictions, scorer: _Scorer) -> dict[str, Any]:
    """Metrics per value of ``column`` (missing values form their own slice)."""
    keys = df[column].astype(object).where(df[column].notna(), None)
    out: dict[str, Any] = {}
    for value in sorted(keys.unique(), key=lambda v: (v is None, str(v))):
        mask = (keys.isna() if value is None else keys == value).to_numpy()
        part = Predictions(
            y_pred=pred.y_pred[mask],
            proba=None if pred.proba is None else pred.proba[mask],
            classes=pred.classes,
        )
        values, skipped = scorer.score(y[mask], part)
        out[str(value)] = {"rows": int(mask.sum()), "metrics": values, "skipped_metrics": skipped}
    return {"column": column, "values": out}


#: At most this many points in the residual plot (an even sample of larger test sets).
MAX_PLOT_POINTS = 2000


def _plot(y: Any, pred: Predictions, task: Task) -> tuple[str, str]:
    """An inline SVG (confusion matrix or residuals) and what it shows.

    Drawn as SVG text rather than with matplotlib: importing matplotlib alone took
    about 0.5 s of every evaluate run (the largest cost mlsteps added to the
    example's end-to-end run, issue #10), and the page stays self-contained.
    """
    import numpy as np

    if task == "classification":
        from sklearn.metrics import confusion_matrix

        labels = sorted(set(map(str, np.asarray(y))) | set(map(str, pred.y_pred)))
        cm = confusion_matrix(np.asarray(y).astype(str), np.asarray(pred.y_pred).astype(str), labels=labels)
        return _svg_confusion(labels, cm.tolist()), "confusion matrix"
    y_true = np.asarray(y, dtype=float)
    y_hat = np.asarray(pred.y_pred, dtype=float)
    if len(y_hat) > MAX_PLOT_POINTS:
        keep = np.linspace(0, len(y_hat) - 1, MAX_PLOT_POINTS).astype(int)
        y_true, y_hat = y_true[keep], y_hat[keep]
    return _svg_residuals(y_hat.tolist(), (y_true - y_hat).tolist()), "residuals"


def _svg(width: int, height: int, title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'font-family="sans-serif"><title>{html.escape(title)}</title>{body}</svg>'
    )


def _svg_confusion(labels: list[str], cm: list[list[int]]) -> str:
    """Counts per (true, predicted) label as a shaded grid, darker for more."""
    n = len(labels)
    cell, left, top = 56, 110, 40
    width, height = left + n * cell + 20, top + n * cell + 100
    peak = max((c for row in cm for c in row), default=0) or 1
    parts = [
        f'<text x="{left + n * cell / 2:.0f}" y="22" font-size="14" text-anchor="middle">Confusion matrix</text>'
    ]
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            share = count / peak
            # white to a dark blue; counts above half the peak in white text
            shade = tuple(round(255 - share * (255 - c)) for c in (8, 48, 107))
            x, yy = left + j * cell, top + i * cell
            parts.append(
                f'<rect x="{x}" y="{yy}" width="{cell}" height="{cell}" fill="rgb{shade}" stroke="#ddd">'
                f"<title>true {html.escape(labels[i])}, predicted {html.escape(labels[j])}: {count}</title></rect>"
                f'<text x="{x + cell / 2:.0f}" y="{yy + cell / 2 + 5:.0f}" font-size="13" text-anchor="middle" '
                f'fill="{"white" if share > 0.5 else "black"}">{count}</text>'
            )
    for i, label in enumerate(labels):
        text = html.escape(label[:14])
        parts.append(
            f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4:.0f}" font-size="11" text-anchor="end">{text}</text>'
        )
        cx, cy = left + i * cell + cell / 2, top + n * cell + 8
        parts.append(
            f'<text x="{cx:.0f}" y="{cy:.0f}" font-size="11" text-anchor="end" '
            f'transform="rotate(-45 {cx:.0f} {cy:.0f})">{text}</text>'
        )
    parts.append(
        f'<text x="{left + n * cell / 2:.0f}" y="{height - 8}" font-size="12" text-anchor="middle">predicted</text>'
        f'<text x="14" y="{top + n * cell / 2:.0f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + n * cell / 2:.0f})">true</text>'
    )
    return _svg(width, height, "Confusion matrix", "".join(parts))


def _svg_residuals(predicted: list[float], residuals: list[float]) -> str:
    """Residual (true - predicted) against predicted, one dot per row, with the zero line."""
    width, height, left, right, top, bottom = 500, 400, 70, 20, 36, 50
    x_lo, x_hi = min(predicted, default=0.0), max(predicted, default=1.0)
    r_abs = max((abs(r) for r in residuals), default=0.0) or 1.0
    x_span = (x_hi - x_lo) or 1.0

    def px(v: float) -> float:
        return left + (v - x_lo) / x_span * (width - left - right)

    def py(r: float) -> float:
        return top + (r_abs - r) / (2 * r_abs) * (height - top - bottom)

    dots = "".join(
        f'<circle cx="{px(p):.1f}" cy="{py(r):.1f}" r="2.5"/>'
        for p, r in zip(predicted, residuals, strict=True)
    )
    body = (
        f'<text x="{(left + width - right) / 2:.0f}" y="22" font-size="14" text-anchor="middle">Residuals</text>'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#999"/>'
        f'<line x1="{left}" y1="{py(0):.1f}" x2="{width - right}" y2="{py(0):.1f}" stroke="grey"/>'
        f'<g fill="#1f77b4" fill-opacity="0.7">{dots}</g>'
        f'<text x="{left}" y="{height - bottom + 16}" font-size="11">{x_lo:.4g}</text>'
        f'<text x="{width - right}" y="{height - bottom + 16}" font-size="11" text-anchor="end">{x_hi:.4g}</text>'
        f'<text x="{left - 6}" y="{top + 10}" font-size="11" text-anchor="end">{r_abs:.4g}</text>'
        f'<text x="{left - 6}" y="{py(0) + 4:.1f}" font-size="11" text-anchor="end">0</text>'
        f'<text x="{left - 6}" y="{height - bottom}" font-size="11" text-anchor="end">{-r_abs:.4g}</text>'
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 10}" font-size="12" text-anchor="middle">predicted</text>'
        f'<text x="14" y="{(top + height - bottom) / 2:.0f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + height - bottom) / 2:.0f})">residual (true - predicted)</text>'
    )
    return _svg(width, height, "Residuals", body)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _html(report: dict[str, Any], plot: str, plot_kind: str) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    champion = report["champion"]
    champ_metrics = (champion or {}).get("metrics", {})
    metric_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td><td>{_fmt(champ_metrics.get(k))}</td></tr>"
        for k, v in report["metrics"].items()
    )
    threshold_rows = "".join(
        f"<tr><td>{html.escape(t['metric'])}</td><td>{html.escape(t['expression'])}</td>"
        f"<td>{_fmt(t['actual'])}</td><td>{'pass' if t['passed'] else 'FAIL'}</td></tr>"
        for t in report["thresholds"]
    )
    if champion is None:
        champion_html = "<p>No champion comparison configured.</p>"
    elif "note" in champion:
        champion_html = f"<p>{html.escape(champion['note'])} ({html.escape(champion['model_name'])}@{html.escape(champion['alias'])} does not exist).</p>"
    else:
        comp = "".join(
            f"<tr><td>{html.escape(c['metric'])}</td><td>{_fmt(c['challenger'])}</td><td>{_fmt(c['champion'])}</td>"
            f"<td>{_fmt(c['min_improvement'])}</td><td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
            for c in champion["comparisons"]
        )
        champion_html = (
            f"<p>Champion: {html.escape(champion['model_name'])}@{html.escape(champion['alias'])} "
            f"(version {html.escape(champion['version'])})</p>"
            "<table><tr><th>metric</th><th>challenger</th><th>champion</th><th>min improvement</th>"
            f"<th>verdict</th></tr>{comp}</table>"
        )
    failing = "".join(f"<li>{html.escape(r)}</li>" for r in report["failing"]) or "<li>none</li>"
    slices = ""
    if report["slices"]:
        names = sorted({k for v in report["slices"]["values"].values() for k in v["metrics"]})
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        body = "".join(
            f"<tr><td>{html.escape(value)}</td><td>{s['rows']}</td>"
            + "".join(f"<td>{_fmt(s['metrics'].get(n))}</td>" for n in names)
            + "</tr>"
            for value, s in report["slices"]["values"].items()
        )
        slices = (
            f"<h2>By {html.escape(report['slices']['column'])}</h2>"
            f"<table><tr><th>value</th><th>rows</th>{head}</tr>{body}</table>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Evaluation: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.PASSED{{color:#080}}.FAILED{{color:#b00}}</style>
</head><body>
<h1>Evaluation <span class="{verdict}">{verdict}</span></h1>
<p>Model {html.escape(report["model"]["uri"])} on {html.escape(report["dataset"]["uri"])}
({report["rows"]} rows, {html.escape(report["task"])}, target {html.escape(report["target"])})</p>
<h2>Failing criteria</h2><ul>{failing}</ul>
<h2>Metrics</h2><table><tr><th>metric</th><th>model</th><th>champion</th></tr>{metric_rows}</table>
<h2>Thresholds</h2><table><tr><th>metric</th><th>required</th><th>actual</th><th>verdict</th></tr>{threshold_rows}</table>
<h2>Champion</h2>{champion_html}
<h2>{html.escape(plot_kind.capitalize())}</h2>{plot}
{slices}
</body></html>
"""


def _write_report(
    ctx: RunContext, report: dict[str, Any], y: Any, pred: Predictions, task: Task
) -> ReportRef:
    """Write evaluation.json and evaluation.html under the step directory; return the report ref."""
    import json

    from mlsteps.storage import atomic_write_bytes

    plot, plot_kind = _plot(y, pred, task)
    report["plot"] = plot_kind
    step_dir = ctx.step_dir()
    json_path, html_path = step_dir / "evaluation.json", step_dir / "evaluation.html"
    # The JSON names the model and data by content hash only; where they live (paths,
    # MLflow ids, which differ per run and per registry) goes into the ref's metadata.
    # So the same model on the same data gives a byte-identical report on every runner.
    locations = {"model": report["model"], "dataset": report["dataset"]}
    content = {
        **report,
        "model": {"content_hash": report["model"]["content_hash"]},
        "dataset": {"content_hash": report["dataset"]["content_hash"]},
    }
    atomic_write_bytes(json_path, json.dumps(content, indent=2, sort_keys=True, default=str).encode())
    atomic_write_bytes(html_path, _html(report, plot, plot_kind).encode())
    champion = report["champion"]
    summary: dict[str, Any] = {
        "metrics": report["metrics"],
        "thresholds": report["thresholds"],
        "failing": report["failing"],
    }
    if champion is not None:
        summary["champion"] = (
            {"note": champion["note"]}
            if "note" in champion
            else {
                "model": f"{champion['model_name']}@{champion['alias']}",
                "version": champion["version"],
                "metrics": champion["metrics"],
                "comparisons": champion["comparisons"],
            }
        )
    return ReportRef(
        uri=str(json_path),
        content_hash=hash_file(json_path),
        passed=bool(report["passed"]),
        summary=summary,
        html_uri=str(html_path),
        metadata=locations,
    )


def _metric_key(*parts: str) -> str:
    """An MLflow-safe metric key (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", "_".join(parts))


def _log_to_run(
    ctx: RunContext,
    client: MlflowClient,
    model_ref: ModelRef,
    metrics: dict[str, float],
    champion: dict[str, Any] | None,
    slices: dict[str, Any] | None,
    report: ReportRef,
    slice_by: str | None,
) -> None:
    """Log eval_* metrics and the report files to the run that produced the model."""
    if model_ref.run_id is None:
        ctx.logger.warning("evaluate: the model ref has no MLflow run id; metrics are not logged to MLflow")
        return
    from mlsteps.backends.mlflow import wrap

    values = {_metric_key("eval", k): v for k, v in metrics.items()}
    if champion and "metrics" in champion:
        values.update({_metric_key("eval_champion", k): v for k, v in champion["metrics"].items()})
    if slices and slice_by:
        for value, part in slices["values"].items():
            values.update(
                {_metric_key("eval_slice", slice_by, value, k): v for k, v in part["metrics"].items()}
            )
    try:
        for key, value in values.items():
            client.log_metric(model_ref.run_id, key, value, model_id=model_ref.model_id)
        client.set_tag(model_ref.run_id, "mlsteps.evaluation.passed", str(report.passed).lower())
        client.log_artifact(model_ref.run_id, report.uri, artifact_path="evaluation")
        if report.html_uri:
            client.log_artifact(model_ref.run_id, report.html_uri, artifact_path="evaluation")
    except Exception as exc:
        raise wrap(exc, f"could not log the evaluation to MLflow run {model_ref.run_id}") from exc
