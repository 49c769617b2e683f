"""The monitor step's statistics: false-alarm rates, power on known shifts, streaming vs in-memory,
agreement with Evidently, and the report files.

The many-seed checks call the test functions on in-memory profiles with small samples
so they stay fast; the rest run the real step on parquet/CSV files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlsteps.context import RunContext, RunKey
from mlsteps.errors import ConfigError, GateFailure
from mlsteps.refs import ReportRef
from mlsteps.step import execute_step
from mlsteps.steps import _drift
from mlsteps.steps.monitor import MonitorStep

ALPHA = 0.05
SEEDS = 200


def numeric(values: np.ndarray) -> _drift.NumericProfile:
    p = _drift.NumericProfile(exact=True, sample_size=1000)
    p.add(np.asarray(values, dtype=np.float64), None)
    return p


def categorical(values: list[str]) -> _drift.CategoricalProfile:
    import pyarrow as pa

    p = _drift.CategoricalProfile(max_categories=100)
    p.add(pa.array(values))
    return p


def binned(
    a: np.ndarray, b: np.ndarray, bins: int = 64
) -> tuple[_drift.NumericProfile, _drift.NumericProfile]:
    """Profiles compared through the binned path (shared quantile edges of both samples)."""
    r, c = numeric(a), numeric(b)
    edges = _drift.fine_edges(r, c, bins)
    _drift.bin_exact(r, edges)
    _drift.bin_exact(c, edges)
    return r, c


def false_alarm_bound() -> int:
    """The largest false-alarm count over SEEDS runs still plausible at level ALPHA (p = 0.001)."""
    return int(stats.binom.ppf(0.999, SEEDS, ALPHA))


# --------------------------------------------------------------------------- false alarms


def test_exact_ks_false_alarm_rate_matches_alpha() -> None:
    alarms = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        r = _drift.compare_numeric_exact(
            numeric(rng.normal(size=150)), numeric(rng.normal(size=120)), "ks", ALPHA, psi_bins=10
        )
        alarms += r.drifted
    # KS is slightly conservative on finite samples, but never more alarmist than alpha.
    assert 1 <= alarms <= false_alarm_bound(), alarms


def test_binned_ks_is_conservative() -> None:
    """A binned D is a lower bound of the exact one: it cannot raise more alarms than alpha."""
    alarms = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(1000 + seed)
        r, c = binned(rng.normal(size=300), rng.normal(size=300))
        alarms += _drift.compare_numeric_binned(r, c, "ks", ALPHA, psi_bins=10).drifted
    assert alarms <= false_alarm_bound(), alarms


def test_chisquare_false_alarm_rate_matches_alpha() -> None:
    alarms = 0
    cats = np.array(["a", "b", "c", "d"])
    probs = [0.4, 0.3, 0.2, 0.1]
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        r = categorical(list(rng.choice(cats, 200, p=probs)))
        c = categorical(list(rng.choice(cats, 150, p=probs)))
        alarms += _drift.compare_categorical(r, c, "chisquare", ALPHA).drifted
    assert 1 <= alarms <= false_alarm_bound(), alarms


@pytest.mark.parametrize(("test", "threshold"), [("wasserstein", 0.1), ("psi", 0.1), ("jensenshannon", 0.1)])
def test_distance_tests_stay_quiet_on_identical_distributions(test: str, threshold: float) -> None:
    alarms = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        alarms += _drift.compare_numeric_exact(
            numeric(rng.normal(size=2000)), numeric(rng.normal(size=2000)), test, threshold, psi_bins=10
        ).drifted
    assert alarms == 0


# --------------------------------------------------------------------------- power


@pytest.mark.parametrize("path", ["exact", "binned"])
def test_detects_a_mean_shift(path: str) -> None:
    hits: dict[str, int] = {"ks": 0, "wasserstein": 0, "psi": 0}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=1000), rng.normal(0.5, 1.0, size=1000)
        for test in hits:
            threshold = _drift.DEFAULT_THRESHOLDS[test]
            if path == "exact":
                res = _drift.compare_numeric_exact(numeric(a), numeric(b), test, threshold, psi_bins=10)
            else:
                res = _drift.compare_numeric_binned(*binned(a, b), test, threshold, psi_bins=10)
            hits[test] += res.drifted
    assert hits == {"ks": 20, "wasserstein": 20, "psi": 20}


def test_detects_a_variance_shift_with_the_same_mean() -> None:
    detected = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(0, 1.0, size=1000), rng.normal(0, 1.6, size=1000)
        detected += _drift.compare_numeric_exact(numeric(a), numeric(b), "ks", ALPHA, psi_bins=10).drifted
        detected += _drift.compare_numeric_binned(*binned(a, b), "ks", ALPHA, psi_bins=10).drifted
    assert detected == 40


@pytest.mark.parametrize("test", ["chisquare", "jensenshannon", "psi"])
def test_detects_a_new_category(test: str) -> None:
    rng = np.random.default_rng(0)
    ref = list(rng.choice(["a", "b", "c"], 1000))
    cur = list(rng.choice(["a", "b", "c"], 700)) + ["new"] * 300
    res = _drift.compare_categorical(
        categorical(ref), categorical(cur), test, _drift.DEFAULT_THRESHOLDS[test]
    )
    assert res.drifted
    assert res.note is not None and "new" in res.note


def test_ks_matches_scipy_exactly_and_binned_is_within_one_bin() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=5000), rng.normal(0.05, size=4000)
    exact = _drift.compare_numeric_exact(numeric(a), numeric(b), "ks", ALPHA, psi_bins=10)
    ref = stats.ks_2samp(a, b)
    assert exact.statistic == pytest.approx(ref.statistic) and exact.score == pytest.approx(ref.pvalue)
    r, c = binned(a, b, bins=512)
    approx = _drift.compare_numeric_binned(r, c, "ks", ALPHA, psi_bins=10)
    assert r.counts is not None and c.counts is not None
    bin_mass = max(r.counts.max() / len(a), c.counts.max() / len(b))
    assert approx.statistic is not None
    assert ref.statistic - bin_mass <= approx.statistic <= ref.statistic + 1e-12


def test_discrete_columns_are_exact_when_binned() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 7, 3000).astype(float), rng.integers(0, 8, 2000).astype(float)
    exact = _drift.compare_numeric_exact(numeric(a), numeric(b), "ks", ALPHA, psi_bins=10)
    approx = _drift.compare_numeric_binned(*binned(a, b), "ks", ALPHA, psi_bins=10)
    assert approx.statistic == pytest.approx(exact.statistic, abs=1e-12)


def test_parquet_batches_hold_one_row_group_at_a_time(tmp_path: Path) -> None:
    """Arrow memory while streaming stays at a few row groups' worth, however many the file has.

    (One ``iter_batches`` over the whole file kept allocations of every row group read so
    far: 71 MB after 16 row groups of 3.2 MB, against 11 MB reading them one at a time.)
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    path = tmp_path / "groups.parquet"
    rows, groups = 100_000, 24
    group_bytes = rows * 4 * 8  # random floats do not compress
    with pq.ParquetWriter(path, pa.schema([(f"v{i}", pa.float64()) for i in range(4)])) as writer:
        for _ in range(groups):
            writer.write_table(pa.table({f"v{i}": rng.random(rows) for i in range(4)}))
    before, most, seen = pa.total_allocated_bytes(), 0, 0
    for batch in _drift.TableSource(str(path), "parquet").batches(["v0", "v1", "v2", "v3"], 8192):
        seen += batch.num_rows
        most = max(most, pa.total_allocated_bytes() - before)
    assert seen == rows * groups
    assert most < 5 * group_bytes, f"{most / 1e6:.1f} MB of arrow memory while streaming"


# --------------------------------------------------------------------------- the step on files


def make_ctx(tmp_path: Path, step: str = "monitor") -> RunContext:
    return RunContext(
        run_key=RunKey(run_id="m1", step=step, pipeline="mon"),
        artifact_root=str(tmp_path / "art"),
        base_dir=tmp_path,
    )


def frames(n_ref: int, n_cur: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current data with known drift: three drifted columns, three stable ones."""
    rng = np.random.default_rng(seed)

    def frame(n: int, drift: bool) -> pd.DataFrame:
        cats = ["a", "b", "c"]
        return pd.DataFrame(
            {
                "num_same": rng.normal(size=n),
                "num_shift": rng.normal(0.6 if drift else 0.0, 1.0, size=n),
                "num_scale": rng.normal(0, 2.0 if drift else 1.0, size=n) * 10 + 100,
                "cat_same": rng.choice(cats, n, p=[0.5, 0.3, 0.2]),
                "cat_shift": rng.choice(cats, n, p=[0.2, 0.3, 0.5] if drift else [0.5, 0.3, 0.2]),
                "int_same": rng.integers(0, 5, n),
            }
        )

    ref, cur = frame(n_ref, False), frame(n_cur, True)
    ref.loc[::50, "num_same"] = np.nan
    return ref, cur


def write(df: pd.DataFrame, path: Path, **kw: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False, **kw)
    return str(path)


def run_monitor(
    tmp_path: Path, config: dict[str, Any], step: str = "monitor"
) -> tuple[ReportRef, dict[str, Any]]:
    result = execute_step(MonitorStep, make_ctx(tmp_path, step), {"log_to_mlflow": False, **config}, {})
    report = result.outputs["report"]
    assert isinstance(report, ReportRef)
    assert result.passed is report.passed
    return report, json.loads(Path(report.uri).read_text())


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("drift")
    ref, cur = frames(20_000, 15_000)
    same, _ = frames(15_000, 10, seed=9)
    return {
        "ref": write(ref, d / "ref.parquet", row_group_size=3000),
        "cur": write(cur, d / "cur.parquet", row_group_size=3000),
        "cur_csv": write(cur, d / "cur.csv"),
        "same": write(same, d / "same.parquet"),
    }


def test_report_verdict_columns_and_files(tmp_path: Path, data_files: dict[str, str]) -> None:
    report, body = run_monitor(tmp_path, {"current": data_files["cur"], "reference": data_files["ref"]})
    assert report.summary["verdict"] == "drift" and report.passed is False
    assert sorted(report.summary["drifted_features"]) == ["cat_shift", "num_scale", "num_shift"]
    assert report.summary["drift_share"] == pytest.approx(0.5)
    cols = body["columns"]
    assert cols["num_shift"]["test"] == "ks" and cols["cat_shift"]["test"] == "chisquare"
    assert cols["num_same"]["reference"]["missing"] == 400
    assert body["reference"]["exact"] is True and body["numeric_method"].startswith("exact")
    page = Path(report.html_uri or "").read_text()
    assert "<svg" in page and "drift" in page and "num_shift" in page
    assert page.count("<figure>") == 6


def test_no_drift_on_a_sample_of_the_same_distribution(tmp_path: Path, data_files: dict[str, str]) -> None:
    report, _ = run_monitor(tmp_path, {"current": data_files["same"], "reference": data_files["ref"]})
    assert report.summary["verdict"] == "no_drift" and report.passed is True


def test_drift_share_rule_and_fail_on_drift(tmp_path: Path, data_files: dict[str, str]) -> None:
    files = {"current": data_files["cur"], "reference": data_files["ref"]}
    report, _ = run_monitor(tmp_path, {**files, "drift_share": 0.6})
    assert report.summary["verdict"] == "no_drift"  # 3 of 6 < 0.6
    with pytest.raises(GateFailure) as info:
        run_monitor(tmp_path, {**files, "fail_on_drift": True}, step="gate")
    assert info.value.report is not None and info.value.report.summary["verdict"] == "drift"


def test_a_data_column_named_prediction_is_read(tmp_path: Path, data_files: dict[str, str]) -> None:
    """``prediction`` names the model's derived column only with ``predict: true``; otherwise it is data.

    (It used to be left out of the columns read, so the step failed with ``KeyError: 'prediction'``.)
    """
    ref, cur = (pd.read_parquet(data_files[k]) for k in ("ref", "cur"))
    files = {
        side: write(df.assign(prediction=df["cat_shift"]), tmp_path / f"{side}.parquet")
        for side, df in (("reference", ref), ("current", cur))
    }
    _, as_feature = run_monitor(tmp_path, files, step="feature")
    assert as_feature["columns"]["prediction"]["role"] == "feature"
    assert as_feature["columns"]["prediction"]["drifted"] is True
    _, as_prediction = run_monitor(
        tmp_path, {**files, "prediction_column": "prediction", "target": "cat_same"}, step="prediction"
    )
    assert as_prediction["prediction"] == {"column": "prediction", "drifted": True}
    assert as_prediction["target"] == {"column": "cat_same", "drifted": False}
    assert as_prediction["performance"] is None  # no model: no recorded metrics to compare with


def test_streaming_binned_path_agrees_with_the_in_memory_path(
    tmp_path: Path, data_files: dict[str, str]
) -> None:
    for test in ("ks", "wasserstein", "psi"):
        base = {"current": data_files["cur"], "reference": data_files["ref"], "numerical_test": test}
        _, exact = run_monitor(tmp_path, base, step=f"exact_{test}")
        _, streamed = run_monitor(
            tmp_path,
            {**base, "max_rows_exact": 1000, "batch_rows": 2048, "bins": 2048},
            step=f"binned_{test}",
        )
        assert exact["reference"]["exact"] and not streamed["reference"]["exact"]
        for name, col in exact["columns"].items():
            other = streamed["columns"][name]
            assert other["drifted"] == col["drifted"], (test, name)
            if col["type"] == "categorical":
                assert other["score"] == col["score"]
            elif test == "ks":
                assert other["method"] == "binned"
                assert other["statistic"] == pytest.approx(col["statistic"], abs=2e-3)
            else:
                assert other["score"] == pytest.approx(col["score"], rel=0.05, abs=2e-3)
    # A CSV has no row count up front: the reader falls back to binning once it passes max_rows_exact.
    _, csv = run_monitor(
        tmp_path,
        {"current": data_files["cur_csv"], "reference": data_files["ref"], "max_rows_exact": 5000},
        step="csv",
    )
    assert csv["current"]["exact"] is False and csv["current"]["rows"] == 15_000
    assert sorted(csv["dataset"]["drifted_features"]) == ["cat_shift", "num_scale", "num_shift"]


def test_per_column_tests_and_type_overrides(tmp_path: Path, data_files: dict[str, str]) -> None:
    _, body = run_monitor(
        tmp_path,
        {
            "current": data_files["cur"],
            "reference": data_files["ref"],
            "categorical": ["int_same"],
            "per_column": {"num_shift": {"test": "wasserstein", "threshold": 0.9}},
            "thresholds": {"chisquare": 0.01},
            "exclude": ["num_scale"],
        },
    )
    cols = body["columns"]
    assert "num_scale" not in cols
    assert cols["int_same"]["type"] == "categorical" and cols["int_same"]["threshold"] == 0.01
    assert cols["num_shift"]["test"] == "wasserstein" and cols["num_shift"]["drifted"] is False


def test_config_errors_name_the_field(tmp_path: Path, data_files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"monitor\.config\.current"):
        execute_step(MonitorStep, make_ctx(tmp_path), {"reference": data_files["ref"]}, {})
    with pytest.raises(ConfigError, match=r"per_column\.num_shift\.test"):
        execute_step(
            MonitorStep,
            make_ctx(tmp_path),
            {
                **{"current": data_files["cur"], "reference": data_files["ref"]},
                "per_column": {"num_shift": {"test": "chisquare"}},
            },
            {},
        )
    with pytest.raises(ConfigError, match=r"monitor\.config\.model"):
        MonitorStep.parse_config({"model": "penguins@champion"})
    with pytest.raises(ConfigError, match=r"monitor\.config\.reference"):
        execute_step(MonitorStep, make_ctx(tmp_path), {"current": data_files["cur"]}, {})


# --------------------------------------------------------------------------- Evidently


def evidently_verdicts(
    ref: pd.DataFrame, cur: pd.DataFrame, num: str, cat: str, threshold: float | None
) -> tuple[dict[str, bool], dict[str, float]]:
    """Per-column verdicts of Evidently's DataDriftPreset with the given stattests.

    The preset reports each column's score (ValueDrift); the verdict applies Evidently's
    own rule for that stattest (read from evidently/legacy/calculations/stattests).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical = [c for c in ref.columns if c.startswith(("num", "int"))]
    categorical = [c for c in ref.columns if c.startswith("cat")]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(num_method=num, cat_method=cat, threshold=threshold)
    snapshot = Report([preset]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    verdicts, scores = {}, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        column, method, value = config["column"], config["method"], float(metric["value"])
        limit = config.get("threshold") or _drift.DEFAULT_THRESHOLDS[method]
        verdicts[column] = (
            value <= limit if method == "ks" else value < limit if method == "chisquare" else value >= limit
        )
        scores[column] = value
    return verdicts, scores


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside evidently's own imports
@pytest.mark.parametrize(
    ("num", "cat", "threshold"),
    [("ks", "chisquare", 0.05), ("wasserstein", "jensenshannon", 0.1), ("psi", "psi", 0.1)],
)
def test_verdicts_agree_with_evidently(tmp_path: Path, num: str, cat: str, threshold: float) -> None:
    ref, cur = frames(3000, 2500, seed=5)
    ref = ref.dropna()
    ours_cfg = {
        "current": write(cur, tmp_path / "cur.parquet"),
        "reference": write(ref, tmp_path / "ref.parquet"),
        "numerical_test": num,
        "categorical_test": cat,
        "thresholds": {num: threshold, cat: threshold},
    }
    _, body = run_monitor(tmp_path, ours_cfg)
    theirs, scores = evidently_verdicts(ref, cur, num, cat, threshold)
    ours = {name: col["drifted"] for name, col in body["columns"].items()}
    assert ours == theirs
    assert ours["num_shift"] and ours["cat_shift"] and not ours["num_same"] and not ours["cat_same"]
    if num in ("ks", "wasserstein"):  # the same SciPy computation on the same values
        for name in ("num_same", "num_shift", "num_scale", "int_same"):
            assert body["columns"][name]["score"] == pytest.approx(scores[name], rel=1e-9, abs=1e-300)


# --------------------------------------------------------------------------- light imports


def test_step_and_cli_modules_import_no_numeric_libraries() -> None:
    code = (
        "import sys, mlsteps.steps.monitor, mlsteps.cli_monitor, mlsteps.cli\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'pandas', 'pyarrow', 'mlflow', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
