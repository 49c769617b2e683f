"""Drift statistics for the ``monitor`` step: streaming column profiles and per-column tests.

Both datasets are read batch by batch (parquet row groups via
``ParquetFile.iter_batches``, CSV blocks via ``pyarrow.csv.open_csv``), so memory
stays bounded whatever the file size. A numeric column is tested *exactly* when
each side has at most ``max_rows_exact`` rows: its values are kept and handed to
``scipy.stats.ks_2samp`` / ``wasserstein_distance``. Above that, a second pass
counts values into fine bins shared by both sides (edges at quantiles of a
reservoir sample of both sides); the KS statistic is then the largest gap between
the two binned CDFs (exact when the column has fewer distinct values than bins,
otherwise a lower bound within one bin's mass of the exact one) with its p-value
from ``scipy.stats.kstwo`` as ``ks_2samp``'s asymptotic method computes it, and the
Wasserstein distance is SciPy's on the per-bin means weighted by the counts.
Categorical columns are exact in either mode: they are category counts.

This module imports NumPy, SciPy and pyarrow at import time; the step imports it
only inside ``run``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsteps._imports import require
from mlsteps.errors import DataError
from mlsteps.storage import is_local, to_local_path

ColumnType = Literal["numerical", "categorical"]
TestName = Literal["ks", "wasserstein", "psi", "jensenshannon", "chisquare"]

NUMERICAL_TESTS: tuple[TestName, ...] = ("ks", "wasserstein", "psi", "jensenshannon")
CATEGORICAL_TESTS: tuple[TestName, ...] = ("chisquare", "jensenshannon", "psi")
#: Tests whose score is a p-value: drift when it is below the threshold (else when the score reaches it).
P_VALUE_TESTS = frozenset({"ks", "chisquare"})
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "jensenshannon": 0.1,
}
#: Bars shown per column in the report's plots.
DISPLAY_BINS = 30
TOP_CATEGORIES = 20


# --------------------------------------------------------------------------- reading


class TableSource:
    """A parquet or CSV file read in batches of selected columns."""

    def __init__(self, uri: str, fmt: str) -> None:
        self.uri = uri
        self.fmt = fmt
        if is_local(uri):
            path = to_local_path(uri)
            if not path.is_file():
                raise DataError(f"{uri}: file not found")
            self._location: Any = str(path)
            self._fs: Any = None
        else:
            from pyarrow import fs

            self._fs, self._location = fs.FileSystem.from_uri(uri)

    def _open(self) -> Any:
        return self._location if self._fs is None else self._fs.open_input_file(self._location)

    def schema(self) -> pa.Schema:
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                return pq.ParquetFile(self._open()).schema_arrow
            import pyarrow.csv as pcsv

            return pcsv.open_csv(self._open()).schema
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.uri}: could not be read as {self.fmt}: {exc}") from exc

    def num_rows(self) -> int | None:
        """The row count when the file records it (parquet), else None."""
        if self.fmt != "parquet":
            return None
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(self._open()).metadata.num_rows)

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                # One reader per row group: a single iter_batches over the whole file keeps
                # allocations of every row group read so far (pyarrow 25: 15 -> 113 MB over the
                # 21 row groups of a 21M-row file), so memory grew with the file.
                file = pq.ParquetFile(self._open())
                for group in range(file.metadata.num_row_groups):
                    yield from file.iter_batches(
                        batch_size=batch_rows, row_groups=[group], columns=list(columns)
                    )
                return
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(
                self._open(),
                read_options=pcsv.ReadOptions(block_size=1 << 24),
                convert_options=pcsv.ConvertOptions(include_columns=list(columns)),
            )
            yield from reader
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.uri}: could not be read as {self.fmt}: {exc}") from exc


def column_type(dtype: pa.DataType) -> ColumnType | None:
    """How a column is tested, from its arrow type; None for types without a drift test (dates...)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_boolean(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "categorical"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numerical"
    return None


# --------------------------------------------------------------------------- profiles


@dataclass
class NumericProfile:
    """One side of one numeric column: moments, extremes, and either every value or a sample."""

    exact: bool
    sample_size: int
    n: int = 0
    nulls: int = 0
    nonfinite: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    chunks: list[np.ndarray[Any, Any]] = field(default_factory=list)
    sample_keys: np.ndarray[Any, Any] | None = None
    sample: np.ndarray[Any, Any] | None = None
    counts: np.ndarray[Any, Any] | None = None
    sums: np.ndarray[Any, Any] | None = None
    _values: np.ndarray[Any, Any] | None = None

    def add(self, values: np.ndarray[Any, Any], keys: np.ndarray[Any, Any] | None) -> None:
        """Fold in one batch of finite values (``keys``: the rows' random sampling keys)."""
        k = len(values)
        if k == 0:
            return
        b_mean = float(values.mean())
        b_m2 = float(((values - b_mean) ** 2).sum())
        total = self.n + k
        delta = b_mean - self.mean
        self.mean += delta * k / total
        self.m2 += b_m2 + delta * delta * self.n * k / total  # Chan et al.'s parallel variance update
        self.n = total
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        if self.exact:
            self.chunks.append(values)
        elif keys is not None:
            self._sample(values, keys)

    def _sample(self, values: np.ndarray[Any, Any], keys: np.ndarray[Any, Any]) -> None:
        """Keep the values with the smallest random keys: a uniform sample without replacement."""
        if self.sample is None or self.sample_keys is None:
            all_keys, all_values = keys, values
        else:
            all_keys = np.concatenate([self.sample_keys, keys])
            all_values = np.concatenate([self.sample, values])
        if len(all_keys) > self.sample_size:
            keep = np.argpartition(all_keys, self.sample_size)[: self.sample_size]
            all_keys, all_values = all_keys[keep], all_values[keep]
        self.sample_keys, self.sample = all_keys, all_values

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0)."""
        return math.sqrt(self.m2 / self.n) if self.n else float("nan")

    def values(self) -> np.ndarray[Any, Any]:
        """Every finite value (exact profiles only)."""
        if self._values is None:
            self._values = np.concatenate(self.chunks) if self.chunks else np.empty(0)
            self.chunks = [self._values]
        return self._values

    def sample_values(self) -> np.ndarray[Any, Any]:
        if self.exact:
            return self.values()
        return self.sample if self.sample is not None else np.empty(0)

    def describe(self) -> dict[str, Any]:
        total = self.n + self.nulls + self.nonfinite
        return {
            "rows": total,
            "missing": self.nulls,
            "missing_share": self.nulls / total if total else None,
            "non_finite": self.nonfinite,
            "mean": self.mean if self.n else None,
            "std": self.std if self.n else None,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
        }


@dataclass
class CategoricalProfile:
    """One side of one categorical column: counts per category (as strings)."""

    max_categories: int
    counts: dict[str, int] | None = field(default_factory=dict)
    nulls: int = 0

    def add(self, array: pa.Array) -> None:
        self.nulls += array.null_count
        if self.counts is None:
            return
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        vc = pc.value_counts(array.drop_null())
        for value, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            key = str(value)
            self.counts[key] = self.counts.get(key, 0) + int(count)
        if len(self.counts) > self.max_categories:
            self.counts = None  # too many to be a category; reported as skipped

    @property
    def n(self) -> int:
        return sum(self.counts.values()) if self.counts else 0

    def describe(self) -> dict[str, Any]:
        n = self.n
        total = n + self.nulls
        top = sorted((self.counts or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
        return {
            "rows": total,
            "missing": self.nulls,
            "missing_share": self.nulls / total if total else None,
            "categories": len(self.counts) if self.counts is not None else None,
            "top": {k: v / n for k, v in top} if n else {},
        }


Profile = NumericProfile | CategoricalProfile


@dataclass
class SideProfile:
    """Everything measured on one dataset in the streaming passes."""

    uri: str
    rows: int = 0
    exact: bool = True
    columns: dict[str, Profile] = field(default_factory=dict)
    collected: dict[str, list[Any]] = field(default_factory=dict)

    def collected_array(self, name: str) -> np.ndarray[Any, Any]:
        parts = self.collected.get(name, [])
        return np.concatenate(parts) if parts else np.empty(0)


#: Adds derived columns (e.g. model predictions) to a batch.
Transform = Callable[[pa.RecordBatch], dict[str, Any]]


def _float64(array: pa.Array) -> np.ndarray[Any, Any]:
    """A numeric arrow array as float64 with NaN for nulls, read from its buffers.

    (``Array.to_numpy`` and ``pa.scalar`` import pandas, seconds and a hundred MB this path avoids.)
    """
    floats = array.cast(pa.float64())
    n, offset = len(floats), floats.offset
    validity, data = floats.buffers()[:2]
    values = np.frombuffer(data, dtype=np.float64, count=n, offset=offset * 8) if data else np.full(n, np.nan)
    if floats.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[offset : offset + n]
        values = np.where(bits.astype(bool), values, np.nan)
    return values


def _numeric_values(array: Any) -> tuple[np.ndarray[Any, Any], int, int, np.ndarray[Any, Any] | None]:
    """Finite float64 values of an arrow or NumPy array, its missing (null/NaN) and ±inf counts.

    The last item is the mask of finite rows, or None when every row is finite.
    """
    if isinstance(array, np.ndarray):
        values = array.astype(np.float64, copy=False)
    else:
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        values = _float64(array)
    finite = np.isfinite(values)
    if finite.all():
        return values, 0, 0, None
    missing = int(np.isnan(values).sum())
    return values[finite], missing, int(len(values) - finite.sum()) - missing, finite


def profile_dataset(
    source: TableSource,
    *,
    types: dict[str, ColumnType],
    read_columns: Sequence[str],
    max_rows_exact: int,
    sample_size: int,
    max_categories: int,
    batch_rows: int,
    seed: int,
    transform: Transform | None = None,
    collect: Sequence[str] = (),
) -> SideProfile:
    """Pass 1: moments, extremes and counts of every column, with exact values or a sample.

    ``types`` names the profiled columns (derived ones included); ``collect`` names
    columns kept whole (labels and predictions for performance metrics).
    """
    known = source.num_rows()
    exact = known is not None and known <= max_rows_exact
    side = SideProfile(uri=source.uri, exact=exact)
    side.columns = {
        name: NumericProfile(exact=exact, sample_size=sample_size)
        if kind == "numerical"
        else CategoricalProfile(max_categories=max_categories)
        for name, kind in types.items()
    }
    side.collected = {name: [] for name in collect}
    rng = np.random.default_rng(seed)
    for batch in source.batches(read_columns, batch_rows):
        side.rows += batch.num_rows
        if side.exact and side.rows > max_rows_exact:
            # Only reachable when the row count was unknown up front (CSV): fall back to binning.
            side.exact = False
            for profile in side.columns.values():
                if isinstance(profile, NumericProfile):
                    profile.exact = False
                    profile.chunks = []
                    profile._values = None
        data: dict[str, Any] = {name: batch.column(name) for name in batch.schema.names}
        if transform is not None:
            data.update(transform(batch))
        keys = None if side.exact else rng.random(batch.num_rows)
        for name, profile in side.columns.items():
            column = data[name]
            if isinstance(profile, NumericProfile):
                values, missing, nonfinite, finite = _numeric_values(column)
                profile.nulls += missing
                profile.nonfinite += nonfinite
                col_keys = keys if keys is None or finite is None else keys[finite]
                profile.add(values, col_keys)
            else:
                profile.add(column if isinstance(column, pa.Array) else pa.array(column))
        for name in collect:
            column = data[name]
            side.collected[name].append(
                column if isinstance(column, np.ndarray) else column.to_numpy(zero_copy_only=False)
            )
    return side


def fine_edges(ref: NumericProfile, cur: NumericProfile, bins: int) -> np.ndarray[Any, Any]:
    """Shared bin edges: distinct quantiles of both sides' samples (or values), plus both extremes."""
    pooled = np.concatenate([ref.sample_values(), cur.sample_values()])
    qs = np.quantile(pooled, np.linspace(0.0, 1.0, bins + 1)) if len(pooled) else np.empty(0)
    extremes = [v for v in (ref.min, ref.max, cur.min, cur.max) if math.isfinite(v)]
    return np.unique(np.concatenate([qs, np.asarray(extremes, dtype=np.float64)]))


def histogram_pass(
    side: SideProfile,
    source: TableSource,
    edges: dict[str, np.ndarray[Any, Any]],
    *,
    read_columns: Sequence[str],
    batch_rows: int,
    transform: Transform | None = None,
) -> None:
    """Pass 2 (binned sides only): count values and sum them per fine bin."""
    for name, e in edges.items():
        profile = side.columns[name]
        assert isinstance(profile, NumericProfile)
        profile.counts = np.zeros(len(e) + 1, dtype=np.int64)
        profile.sums = np.zeros(len(e) + 1, dtype=np.float64)
    for batch in source.batches(read_columns, batch_rows):
        data: dict[str, Any] = {name: batch.column(name) for name in batch.schema.names}
        if transform is not None:
            data.update(transform(batch))
        for name, e in edges.items():
            profile = side.columns[name]
            assert isinstance(profile, NumericProfile)
            values = _numeric_values(data[name])[0]
            _accumulate(profile, e, values)


def _accumulate(profile: NumericProfile, edges: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> None:
    idx = np.searchsorted(edges, values, side="right")
    size = len(edges) + 1
    assert profile.counts is not None and profile.sums is not None
    profile.counts += np.bincount(idx, minlength=size)
    profile.sums += np.bincount(idx, weights=values, minlength=size)


def bin_exact(profile: NumericProfile, edges: np.ndarray[Any, Any]) -> None:
    """Fine-bin an exact side, for a column compared against a binned side."""
    profile.counts = np.zeros(len(edges) + 1, dtype=np.int64)
    profile.sums = np.zeros(len(edges) + 1, dtype=np.float64)
    _accumulate(profile, edges, profile.values())


# --------------------------------------------------------------------------- tests


@dataclass
class DriftScore:
    """The outcome of one drift test on one column."""

    test: str
    threshold: float
    score: float
    drifted: bool
    statistic: float | None = None
    method: str = "exact"
    note: str | None = None


def _decide(test: str, score: float, threshold: float) -> bool:
    """Drift verdict of one score (a NaN score is no evidence of drift)."""
    return score < threshold if test in P_VALUE_TESTS else score >= threshold


def fill_zeros(p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Replace empty bins by a small share so PSI's logarithm is finite (Evidently's rule).

    The share is 1e-4, or the smallest non-empty share / 1e6 when that is already below 1e-4.
    """
    out = p.astype(np.float64, copy=True)
    nonzero = out[out > 0]
    if len(nonzero) == 0:
        return out
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return out


def psi(ref_counts: np.ndarray[Any, Any], cur_counts: np.ndarray[Any, Any]) -> float:
    """Population stability index of two count vectors over the same bins."""
    p = fill_zeros(ref_counts / ref_counts.sum())
    q = fill_zeros(cur_counts / cur_counts.sum())
    return float(np.sum((p - q) * np.log(p / q)))


def jensenshannon(ref_counts: np.ndarray[Any, Any], cur_counts: np.ndarray[Any, Any]) -> float:
    distance = require("scipy.spatial.distance")
    return float(distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))


def compare_categorical(
    ref: CategoricalProfile, cur: CategoricalProfile, test: str, threshold: float
) -> DriftScore:
    """chi-squared (two-sample, on the 2 x k contingency table), Jensen-Shannon or PSI on category shares."""
    assert ref.counts is not None and cur.counts is not None
    keys = sorted(set(ref.counts) | set(cur.counts))
    r = np.array([ref.counts.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([cur.counts.get(k, 0) for k in keys], dtype=np.float64)
    new = [k for k in keys if k not in ref.counts]
    note = f"categories not in the reference: {new[:10]}" if new else None
    if test == "chisquare":
        stats = require("scipy.stats")
        if len(keys) < 2:
            return DriftScore(test, threshold, 1.0, False, 0.0, note="a single category: nothing to compare")
        res = stats.chi2_contingency(np.vstack([r, c]), correction=False)
        p = float(res.pvalue)
        return DriftScore(test, threshold, p, _decide(test, p, threshold), float(res.statistic), note=note)
    score = jensenshannon(r, c) if test == "jensenshannon" else psi(r, c)
    return DriftScore(test, threshold, score, _decide(test, score, threshold), score, note=note)


def _psi_bins_exact(ref_values: np.ndarray[Any, Any], n_bins: int) -> np.ndarray[Any, Any]:
    inner: np.ndarray[Any, Any] = np.unique(np.quantile(ref_values, np.linspace(0, 1, n_bins + 1))[1:-1])
    return inner


def compare_numeric_exact(
    ref: NumericProfile, cur: NumericProfile, test: str, threshold: float, *, psi_bins: int
) -> DriftScore:
    """KS / Wasserstein on every value; PSI / Jensen-Shannon on reference-quantile bins."""
    a, b = ref.values(), cur.values()
    if test == "ks":
        res = require("scipy.stats").ks_2samp(a, b)
        p = float(res.pvalue)
        return DriftScore(test, threshold, p, _decide(test, p, threshold), float(res.statistic))
    if test == "wasserstein":
        stats = require("scipy.stats")
        score = float(stats.wasserstein_distance(a, b)) / max(float(np.std(a)), 0.001)
        return DriftScore(test, threshold, score, _decide(test, score, threshold), score)
    inner = _psi_bins_exact(a, psi_bins)
    size = len(inner) + 1
    rc = np.bincount(np.searchsorted(inner, a, side="right"), minlength=size).astype(np.float64)
    cc = np.bincount(np.searchsorted(inner, b, side="right"), minlength=size).astype(np.float64)
    score = psi(rc, cc) if test == "psi" else jensenshannon(rc, cc)
    return DriftScore(test, threshold, score, _decide(test, score, threshold), score)


def compare_numeric_binned(
    ref: NumericProfile, cur: NumericProfile, test: str, threshold: float, *, psi_bins: int
) -> DriftScore:
    """The same tests on shared fine bins (see the module docstring for their exactness)."""
    stats = require("scipy.stats")
    assert ref.counts is not None and cur.counts is not None and ref.sums is not None and cur.sums is not None
    rc, cc = ref.counts.astype(np.float64), cur.counts.astype(np.float64)
    n, m = rc.sum(), cc.sum()
    if test == "ks":
        gap = np.abs(np.cumsum(rc) / n - np.cumsum(cc) / m)
        d = float(gap.max())
        bin_mass = float(max((rc / n).max(), (cc / m).max()))
        p = float(np.clip(stats.kstwo.sf(d, round(n * m / (n + m))), 0.0, 1.0))
        return DriftScore(
            test,
            threshold,
            p,
            _decide(test, p, threshold),
            d,
            method="binned",
            note=f"KS from binned CDFs: D within {bin_mass:.2g} (largest bin share) of the exact statistic",
        )
    if test == "wasserstein":
        rmask, cmask = rc > 0, cc > 0
        score = float(
            stats.wasserstein_distance(
                ref.sums[rmask] / rc[rmask], cur.sums[cmask] / cc[cmask], rc[rmask], cc[cmask]
            )
        ) / max(ref.std, 0.001)
        return DriftScore(test, threshold, score, _decide(test, score, threshold), score, method="binned")
    # PSI / Jensen-Shannon: merge fine bins at the reference's quantiles.
    cdf = np.cumsum(rc) / n
    targets = np.linspace(0, 1, psi_bins + 1)[1:-1]
    cuts = np.unique(np.searchsorted(cdf, targets, side="left"))
    starts = np.concatenate([[0], cuts + 1])
    starts = np.unique(starts[starts < len(rc)])
    rm, cm = np.add.reduceat(rc, starts), np.add.reduceat(cc, starts)
    score = psi(rm, cm) if test == "psi" else jensenshannon(rm, cm)
    return DriftScore(test, threshold, score, _decide(test, score, threshold), score, method="binned")


# --------------------------------------------------------------------------- plots


def numeric_display(ref: NumericProfile, cur: NumericProfile) -> dict[str, Any]:
    """Shares per equal-width display bin over both sides' central 99% (ends clipped in)."""
    pooled = np.concatenate([ref.sample_values(), cur.sample_values()])
    if len(pooled) == 0:
        return {"edges": [], "reference": [], "current": []}
    lo, hi = (float(v) for v in np.quantile(pooled, [0.005, 0.995]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, DISPLAY_BINS + 1)

    def shares(p: NumericProfile) -> list[float]:
        if p.counts is not None and p.sums is not None:
            # A binned side: place each fine bin's mass at its mean.
            mask = p.counts > 0
            means = p.sums[mask] / p.counts[mask]
            idx = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, DISPLAY_BINS - 1)
            counts = np.bincount(idx, weights=p.counts[mask], minlength=DISPLAY_BINS)
        else:
            values = p.values()
            idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, DISPLAY_BINS - 1)
            counts = np.bincount(idx, minlength=DISPLAY_BINS).astype(np.float64)
        total = counts.sum()
        return [float(v) for v in (counts / total if total else counts)]

    return {"edges": [float(e) for e in edges], "reference": shares(ref), "current": shares(cur)}


def categorical_display(ref: CategoricalProfile, cur: CategoricalProfile) -> dict[str, Any]:
    """Shares of the most frequent categories (over both sides)."""
    rc, cc = ref.counts or {}, cur.counts or {}
    rn, cn = max(sum(rc.values()), 1), max(sum(cc.values()), 1)
    keys = sorted(set(rc) | set(cc), key=lambda k: (-(rc.get(k, 0) / rn + cc.get(k, 0) / cn), k))
    keys = keys[:TOP_CATEGORIES]
    return {
        "categories": keys,
        "reference": [rc.get(k, 0) / rn for k in keys],
        "current": [cc.get(k, 0) / cn for k in keys],
    }


# --------------------------------------------------------------------------- the whole comparison


@dataclass
class ColumnPlan:
    """What to test on one column."""

    name: str
    kind: ColumnType
    test: str
    threshold: float
    role: Literal["feature", "prediction", "target"] = "feature"


@dataclass
class ColumnOutcome:
    """One column's drift result (or why it was skipped), summaries of both sides and plot data."""

    plan: ColumnPlan
    result: DriftScore | None
    skipped: str | None
    reference: dict[str, Any]
    current: dict[str, Any]
    plot: dict[str, Any]


@dataclass
class SideReader:
    """A dataset with the columns to read from it and optional derived columns."""

    source: TableSource
    read_columns: list[str]
    transform: Transform | None = None
    collect: list[str] = field(default_factory=list)


def compute_drift(
    reference: SideReader,
    current: SideReader,
    plans: Sequence[ColumnPlan],
    *,
    max_rows_exact: int,
    bins: int,
    psi_bins: int,
    sample_size: int,
    max_categories: int,
    batch_rows: int,
    seed: int,
) -> tuple[SideProfile, SideProfile, list[ColumnOutcome]]:
    """Profile both sides (one pass each, a second over binned sides) and test every planned column."""
    types = {p.name: p.kind for p in plans}
    sides = []
    for i, reader in enumerate((reference, current)):
        sides.append(
            profile_dataset(
                reader.source,
                types=types,
                read_columns=reader.read_columns,
                max_rows_exact=max_rows_exact,
                sample_size=sample_size,
                max_categories=max_categories,
                batch_rows=batch_rows,
                seed=seed + i,
                transform=reader.transform,
                collect=reader.collect,
            )
        )
    ref_side, cur_side = sides
    numeric = [p for p in plans if p.kind == "numerical"]
    if numeric and not (ref_side.exact and cur_side.exact):
        edges = {}
        for p in numeric:
            r, c = ref_side.columns[p.name], cur_side.columns[p.name]
            assert isinstance(r, NumericProfile) and isinstance(c, NumericProfile)
            if r.n and c.n:
                edges[p.name] = fine_edges(r, c, bins)
        for side, reader in ((ref_side, reference), (cur_side, current)):
            if side.exact:
                for name, e in edges.items():
                    profile = side.columns[name]
                    assert isinstance(profile, NumericProfile)
                    bin_exact(profile, e)
            else:
                histogram_pass(
                    side,
                    reader.source,
                    edges,
                    read_columns=reader.read_columns,
                    batch_rows=batch_rows,
                    transform=reader.transform,
                )
    binned = not (ref_side.exact and cur_side.exact)
    outcomes = []
    for plan in plans:
        r, c = ref_side.columns[plan.name], cur_side.columns[plan.name]
        result: DriftScore | None = None
        skipped: str | None = None
        plot: dict[str, Any] = {}
        if isinstance(r, NumericProfile) and isinstance(c, NumericProfile):
            if not r.n or not c.n:
                skipped = f"no finite values in the {'reference' if not r.n else 'current'} data"
            elif binned:
                result = compare_numeric_binned(r, c, plan.test, plan.threshold, psi_bins=psi_bins)
            else:
                result = compare_numeric_exact(r, c, plan.test, plan.threshold, psi_bins=psi_bins)
            if skipped is None:
                plot = numeric_display(r, c)
        elif isinstance(r, CategoricalProfile) and isinstance(c, CategoricalProfile):
            if r.counts is None or c.counts is None:
                skipped = (
                    f"more than {r.max_categories} distinct values: not a categorical column "
                    "(exclude it, or list it under numerical)"
                )
            elif not r.n or not c.n:
                skipped = f"no values in the {'reference' if not r.n else 'current'} data"
            else:
                result = compare_categorical(r, c, plan.test, plan.threshold)
                plot = categorical_display(r, c)
        outcomes.append(ColumnOutcome(plan, result, skipped, r.describe(), c.describe(), plot))
    return ref_side, cur_side, outcomes
