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


def read_dataframe(source: DatasetRef | str, *, fmt: str | None = None) -> pd.DataFrame:
    """Load a dataset into pandas, with errors that name the file."""
    pd = require("pandas")
    uri = source.uri if isinstance(source, DatasetRef) else source
    fmt = fmt or (source.format if isinstance(source, DatasetRef) else infer_format(uri))
    if is_local(uri):
        path = to_local_path(uri)
        if not path.exists():
            raise DataError(f"{uri}: file not found")
        if path.stat().st_size == 0:
            raise DataError(f"{uri}: file is empty")
    try:
        df = pd.read_parquet(uri) if fmt == "parquet" else pd.read_csv(uri)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{uri}: could not be read as {fmt}: {exc}") from exc
    if isinstance(source, DatasetRef) and source.content_hash and is_local(uri):
        actual = hash_file(to_local_path(uri))
        if actual != source.content_hash:
            raise DataError(
                f"{uri}: content changed since it was recorded (recorded {source.content_hash}, now {actual})"
            )
    return df


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
