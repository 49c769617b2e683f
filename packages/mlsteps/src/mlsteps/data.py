"""Reading and writing tabular datasets, and describing them as refs.

pandas and pyarrow are imported inside the functions: this module is imported
by light code paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsteps._imports import require
from mlsteps.errors import DataError
from mlsteps.hashing import hash_file
from mlsteps.refs import DatasetRef
from mlsteps.storage import is_local, to_local_path

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def infer_format(uri: str) -> str:
    suffix = Path(uri.split("?")[0]).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise DataError(
            f"{uri}: cannot tell the format from the extension {suffix!r}; expected .parquet or .csv"
        )
    return fmt


#: Delimiters a CSV file is sometimes written with instead of ','.
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
PARQUET_MAGIC = b"PAR1"


def sniff(path: Path, size: int = 4096) -> tuple[str, str]:
    """What a local file holds, judged by its first bytes: ``(kind, detail)``.

    ``kind`` is ``"parquet"`` (parquet's magic bytes), ``"binary"`` (NUL bytes, or not
    UTF-8) or ``"text"``; ``detail`` says why (or quotes the first line of text).
    """
    with path.open("rb") as fh:
        head = fh.read(size)
    if head.startswith(PARQUET_MAGIC):
        return "parquet", "it starts with parquet's magic bytes PAR1"
    nul = head.find(b"\0")
    if nul >= 0:
        return "binary", f"it holds NUL bytes (the first at offset {nul})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut off by the sample's end
            return "binary", f"it is not UTF-8 text (byte {head[exc.start]:#04x} at offset {exc.start})"
        text = head[: exc.start].decode("utf-8")
    first = text.splitlines()[0] if text else ""
    return "text", f"it starts with {first[:60]!r}"


def _unreadable(uri: str, fmt: str, path: Path | None, exc: BaseException | None) -> DataError:
    """A DataError for a file that is not what its format says, with what it seems to be instead."""
    kind, detail = sniff(path) if path is not None else ("", "")
    if fmt == "parquet" and kind == "text":
        return DataError(
            f"{uri}: could not be read as parquet: it is not a parquet file: {detail}, so it looks like "
            "CSV or other text; rename it to .csv if it is CSV, or write it as parquet"
        )
    if fmt == "csv" and kind == "parquet":
        return DataError(
            f"{uri}: could not be read as csv: it is a parquet file ({detail}); rename it to .parquet"
        )
    if fmt == "csv" and kind == "binary":
        return DataError(
            f"{uri}: could not be read as csv: it is not a CSV text file: {detail}; CSV files are read "
            "as UTF-8 text, so re-save it as UTF-8 CSV (or parquet), or point the config at the right file"
        )
    reason = f": {exc}" if exc is not None else ""
    return DataError(
        f"{uri}: could not be read as {fmt}{reason}; check that the file is a complete, valid {fmt} file "
        "(re-export it if it was truncated or corrupted)"
    )


def read_dataframe(source: DatasetRef | str, *, fmt: str | None = None) -> pd.DataFrame:
    """Load a dataset into pandas, with errors that name the file and say what to do.

    A file that is not what its format says (CSV text in a ``.parquet`` file, a parquet or
    binary file named ``.csv``) and a CSV file that uses another delimiter than ``,`` are
    reported as such, not as a parser's error.
    """
    pd = require("pandas")
    uri = source.uri if isinstance(source, DatasetRef) else source
    fmt = fmt or (source.format if isinstance(source, DatasetRef) else infer_format(uri))
    path: Path | None = None
    if is_local(uri):
        path = to_local_path(uri)
        if not path.exists():
            raise DataError(f"{uri}: file not found")
        if path.stat().st_size == 0:
            raise DataError(f"{uri}: file is empty (0 bytes); write the data into it, or fix the path")
        if fmt == "csv" and sniff(path)[0] != "text":
            raise _unreadable(uri, fmt, path, None)
    try:
        df = pd.read_parquet(uri) if fmt == "parquet" else pd.read_csv(uri)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise _unreadable(uri, fmt, path, exc) from exc
    if fmt == "csv" and len(df.columns) == 1:
        header = str(df.columns[0])
        for delimiter, name in _OTHER_DELIMITERS.items():
            if delimiter in header:
                raise DataError(
                    f"{uri}: read as a single column {header[:80]!r}: the file looks {name}-separated, "
                    "but CSV files are read with ',' as the delimiter; re-export it comma-separated "
                    "(or as parquet)"
                )
    if isinstance(source, DatasetRef) and source.content_hash and is_local(uri):
        actual = hash_file(to_local_path(uri))
        if actual != source.content_hash:
            raise DataError(
                f"{uri}: content changed since it was recorded (recorded {source.content_hash}, now {actual})"
            )
    return df


def check_feature_columns(df: pd.DataFrame, columns: Sequence[str], *, uri: str, exclude_field: str) -> None:
    """Refuse feature columns no model can learn from, naming the file, the columns and the fix.

    - a column with no values at all (every row null);
    - infinite values in a numeric column;
    - a text column whose values are mostly numbers but some are not (``"39,5"``,
      ``"unknown"``): a numeric column spoilt by a few cells, which would otherwise be
      one-hot encoded as categories without a word.

    Missing values in some rows are not refused: the built-in preprocessing imputes them.
    ``exclude_field`` is the config field that leaves a column out (named in the advice).
    """
    pd = require("pandas")
    np = require("numpy")
    api = pd.api.types
    problems: list[str] = []
    for col in columns:
        series = df[col]
        rows = len(series)
        nulls = int(series.isna().sum())
        if rows and nulls == rows:
            problems.append(
                f"feature column {col!r} has no values (all {rows} rows are null): "
                f"fill it, or leave it out with {exclude_field}"
            )
            continue
        if api.is_bool_dtype(series.dtype):
            continue
        if api.is_numeric_dtype(series.dtype):
            values = series.to_numpy(dtype=float, na_value=np.nan)
            infinite = np.flatnonzero(np.isinf(values))
            if infinite.size:
                problems.append(
                    f"feature column {col!r} has {infinite.size} infinite value(s) (rows "
                    f"{[int(i) for i in infinite[:5]]}): replace them with a finite value or a missing "
                    "value, or drop those rows"
                )
        elif api.is_object_dtype(series.dtype) or api.is_string_dtype(series.dtype):
            present = series.dropna()
            # Parsed once per distinct text, not per row: a category column has a handful of
            # values in a million rows, and stripping and parsing every row took seconds there.
            text = present.astype(str)
            distinct = pd.Series(text.unique(), dtype=object)
            is_number = pd.to_numeric(distinct.str.strip(), errors="coerce").notna()
            if is_number.all() or not is_number.any():
                continue  # no bad cells, or no numbers at all (a text column): nothing to say
            bad = present[text.isin(distinct[~is_number])]
            if len(bad) * 2 <= len(present):
                examples = sorted({str(v) for v in bad})[:5]
                problems.append(
                    f"feature column {col!r} holds numbers, but {len(bad)} of its {len(present)} values "
                    f"are not numbers, e.g. {examples} (rows {[int(i) for i in bad.index[:5]]}): fix "
                    "those cells (or leave them empty: empty cells are read as missing and imputed), "
                    f"or leave the column out with {exclude_field}"
                )
    if problems:
        raise DataError("\n".join(f"{uri}: {p}" for p in problems))


def describe_dataset(
    uri: str, *, fmt: str | None = None, df: pd.DataFrame | None = None, **metadata: Any
) -> DatasetRef:
    """A ref for a local dataset file: content hash, row count and column dtypes."""
    fmt = fmt or infer_format(uri)
    if df is None:
        df = read_dataframe(uri, fmt=fmt)
    return DatasetRef(
        uri=uri,
        format=fmt,
        content_hash=hash_file(to_local_path(uri)) if is_local(uri) else None,
        rows=len(df),
        columns={str(c): str(t) for c, t in df.dtypes.items()},
        metadata=metadata,
    )


def write_dataset(df: pd.DataFrame, uri: str, **metadata: Any) -> DatasetRef:
    """Write ``df`` as parquet (atomically for local paths) and return its ref."""
    if is_local(uri):
        path = to_local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        df.to_parquet(tmp, index=False)
        tmp.replace(path)
    else:
        df.to_parquet(uri, index=False)
    return describe_dataset(uri, fmt="parquet", df=df, **metadata)
