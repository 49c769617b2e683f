"""Bad data, table-driven: each case fails at the first step that reads it, named precisely, nothing kept.

Every case is a copy of the penguins example's data (``examples/penguins/prepare_data.py``)
broken one way a real export breaks: an empty file, a header without rows, another
delimiter, text in a numeric column, a column of nulls, infinities, a missing or
single-class target, duplicated entity rows, timestamps in the future, a file that is
not what its extension says. It runs through a real ``mlsteps run`` of a small
``validate -> train -> evaluate -> register`` pipeline (or ``validate -> featurise``
on the example's Feast repo), and for each case:

- the exit code is the documented one (1: a step failed; 0 where the data is only
  suspicious and the run says so);
- the failing step is the first one that can tell, and its error has the documented
  type and a message naming the file, the column or field, and what to do;
- nothing partial is left: the failing step's lineage record says ``failed`` (or
  ``gate_failed``), no step after it ran, no run-cache entry comes from it, its output
  directory is empty, and the embedded MLflow database holds no run of it, no
  registered model and no model version.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _rel_pipeline import (
    build_penguins,
    check_failed_run_left_nothing,
    copy_feature_repo,
    lineage_records,
    run_pipeline,
    write_spec,
)

TRAIN_PIPELINE = ("validate", "train", "evaluate", "register")
FEATURISE_PIPELINE = ("validate", "featurise")

Writer = Callable[[pd.DataFrame, Path], None]


@dataclass(frozen=True)
class DataCase:
    """A broken data file, where it must be caught, and words the error must contain."""

    id: str
    file: str
    write: Writer
    fails_at: str | None
    says: tuple[str, ...]
    error_type: str = "DataError"
    status: str = "failed"
    pipeline: tuple[str, ...] = TRAIN_PIPELINE
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    expectations: list[dict[str, Any]] | None = None
    #: For a case that passes: words of the warning the run must log.
    warns: tuple[str, ...] = ()


# ---------------------------------------------------------------- writers


def parquet(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Writer:
    def write(df: pd.DataFrame, path: Path) -> None:
        change(df.copy()).to_parquet(path, index=False)

    return write


def csv(change: Callable[[pd.DataFrame], pd.DataFrame], **kwargs: Any) -> Writer:
    def write(df: pd.DataFrame, path: Path) -> None:
        change(df.copy()).to_csv(path, index=False, **kwargs)

    return write


def same(df: pd.DataFrame) -> pd.DataFrame:
    return df


def set_cells(column: str, rows: list[int], value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        if isinstance(value, str):
            df[column] = df[column].astype(object)
        df.loc[rows, column] = value
        return df

    return change


def all_null(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = np.nan
        return df

    return change


def empty_file(df: pd.DataFrame, path: Path) -> None:
    path.write_bytes(b"")


def header_only(df: pd.DataFrame, path: Path) -> None:
    path.write_text(",".join(df.columns) + "\n")


def csv_text(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False)


def parquet_bytes(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False)


def random_bytes(df: pd.DataFrame, path: Path) -> None:
    path.write_bytes(np.random.default_rng(11).integers(0, 256, 8192, dtype=np.uint8).tobytes())


def truncated_parquet(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def duplicated_rows(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, df.iloc[[4, 9, 9]]], ignore_index=True)


def one_class(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["species"] == "Adelie"].reset_index(drop=True)


def in_the_future(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[:6, "event_timestamp"] = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=400)
    return df


def no_entity_key(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["penguin_id"])


NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]

CASES = [
    # ---- the file itself: caught by validate, the first step that reads it
    DataCase(
        "empty-file", "d.parquet", empty_file, "validate", ("file is empty (0 bytes)", "write the data")
    ),
    DataCase("header-only-csv", "d.csv", header_only, "validate", ("no rows to validate", "has a header")),
    DataCase(
        "no-rows-parquet", "d.parquet", parquet(lambda df: df.iloc[:0]), "validate", ("no rows to validate",)
    ),
    DataCase(
        "semicolon-delimiter",
        "d.csv",
        csv(same, sep=";"),
        "validate",
        ("semicolon-separated", "re-export it comma-separated"),
    ),
    DataCase("tab-delimiter", "d.csv", csv(same, sep="\t"), "validate", ("tab-separated",)),
    DataCase(
        "csv-text-named-parquet",
        "d.parquet",
        csv_text,
        "validate",
        ("it is not a parquet file", "'penguin_id,event_timestamp", "rename it to .csv"),
    ),
    DataCase(
        "parquet-named-csv",
        "d.csv",
        parquet_bytes,
        "validate",
        ("it is a parquet file", "rename it to .parquet"),
    ),
    DataCase("binary-garbage-csv", "d.csv", random_bytes, "validate", ("not a CSV text file", "re-save it")),
    DataCase(
        "truncated-parquet",
        "d.parquet",
        truncated_parquet,
        "validate",
        ("could not be read as parquet", "re-export it if it was truncated"),
    ),
    DataCase(
        "unknown-extension",
        "d.txt",
        csv_text,
        "validate",
        ("cannot tell the format", "expected .parquet or .csv"),
    ),
    # ---- columns: caught by train, the first step that knows features and target
    DataCase(
        "strings-in-numeric-feature",
        "d.csv",
        csv(
            lambda df: set_cells("bill_length_mm", [3, 10], "unknown")(
                set_cells("bill_length_mm", [7], "39,5")(df)
            )
        ),
        "train",
        (
            "feature column 'bill_length_mm' holds numbers, but 3 of",
            "'39,5'",
            "'unknown'",
            "train.config.exclude",
        ),
    ),
    DataCase(
        "all-null-feature-parquet",
        "d.parquet",
        parquet(all_null("bill_depth_mm")),
        "train",
        ("feature column 'bill_depth_mm' has no values (all 344 rows are null)", "train.config.exclude"),
    ),
    DataCase(
        "all-null-feature-csv",
        "d.csv",
        csv(all_null("sex")),
        "train",
        ("feature column 'sex' has no values", "leave it out with train.config.exclude"),
    ),
    DataCase(
        "inf-in-feature",
        "d.parquet",
        parquet(set_cells("body_mass_g", [2, 30], np.inf)),
        "train",
        ("feature column 'body_mass_g' has 2 infinite value(s) (rows [2, 30])", "replace them"),
    ),
    DataCase(
        "nan-in-features-without-imputation",
        "d.parquet",
        parquet(same),  # penguins has 2 rows without measurements
        "train",
        ("feature column(s)", "'bill_length_mm'", "have missing values", "enable train.config.preprocessing"),
        overrides={
            "train": {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {},
                "features": NUMERIC_FEATURES,
                "exclude": [],
                "preprocessing": False,
            }
        },
    ),
    DataCase(
        "nan-in-target",
        "d.parquet",
        parquet(set_cells("species", [0, 1, 2], None)),
        "train",
        ("target column 'species' has 3 missing value(s)", "drop_na_target"),
    ),
    DataCase(
        "inf-in-target",
        "d.parquet",
        parquet(set_cells("body_mass_g", [5], -np.inf)),
        "train",
        ("target column 'body_mass_g' has 1 infinite value(s)", "drop those rows"),
        overrides={
            "train": {
                "target": "body_mass_g",
                "task": "regression",
                "estimator": "sklearn.linear_model.Ridge",
                "params": {},
                "drop_na_target": True,  # the 2 rows without measurements; the infinity stays
            },
            "evaluate": {"target": "body_mass_g", "thresholds": {}},
        },
    ),
    DataCase(
        "single-class-target",
        "d.parquet",
        parquet(one_class),
        "train",
        ("target column 'species' has 1 class(es) ['Adelie']", "needs at least 2", "add rows"),
    ),
    DataCase(
        "target-column-missing",
        "d.parquet",
        parquet(lambda df: df.rename(columns={"species": "kind"})),
        "train",
        ("target column 'species' not found", "'kind'"),
        expectations=[{"type": "column_exists", "column": "kind"}],
    ),
    DataCase(
        "excluded-column-missing",
        "d.parquet",
        parquet(lambda df: df.drop(columns=["penguin_id"])),
        "train",
        ("column(s) ['penguin_id'] named in train.config.exclude not found", "columns are"),
    ),
    DataCase(
        "expected-column-missing",
        "d.parquet",
        parquet(lambda df: df.drop(columns=["species"])),
        "validate",
        ("column_exists(species)", "column 'species' not found"),
        error_type="GateFailure",
        status="gate_failed",
    ),
    # ---- entity rows: caught by featurise (or by the example's own `unique` expectation)
    DataCase(
        "duplicate-entity-rows",
        "entities.parquet",
        parquet(duplicated_rows),
        "featurise",
        ("3 row(s) repeat an earlier row exactly", "penguin_id=5", "drop the duplicate rows"),
        pipeline=FEATURISE_PIPELINE,
    ),
    DataCase(
        "duplicate-entity-keys-example-gate",
        "entities.parquet",
        parquet(duplicated_rows),
        "validate",
        ("unique(penguin_id)",),
        error_type="GateFailure",
        status="gate_failed",
        pipeline=FEATURISE_PIPELINE,
        expectations=[{"type": "unique", "column": "penguin_id"}],
    ),
    DataCase(
        "entity-key-missing",
        "entities.parquet",
        parquet(no_entity_key),
        "featurise",
        ("missing column(s) ['penguin_id'] needed by featurise",),
        pipeline=FEATURISE_PIPELINE,
    ),
    DataCase(
        "future-timestamps-materialised-to-max-event-time",
        "entities.parquet",
        parquet(in_the_future),
        "featurise",
        ("7 of 344 row(s) have their 'event_timestamp' in the future", "set materialize_end: now"),
        pipeline=FEATURISE_PIPELINE,
        overrides={"featurise": {"materialize": True, "materialize_end": "max_event_time"}},
    ),
    DataCase(
        "future-timestamps-retrieved",
        "entities.parquet",
        parquet(in_the_future),
        None,
        (),
        pipeline=FEATURISE_PIPELINE,
        warns=(
            "7 of 344 row(s) have their 'event_timestamp' in the future",
            "latest feature values known now",
        ),
    ),
]


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    path = build_penguins(tmp_path_factory.mktemp("penguins"))
    return path, pd.read_parquet(path)


def test_the_table_covers_the_issue() -> None:
    assert len(CASES) >= 14
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data_fails_at_the_first_step_that_can_tell(
    case: DataCase,
    tmp_path: Path,
    penguins: tuple[Path, pd.DataFrame],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, frame = penguins
    data = tmp_path / case.file
    case.write(frame, data)
    repo = copy_feature_repo(tmp_path, source) if "featurise" in case.pipeline else None
    spec = write_spec(
        tmp_path,
        data=case.file,
        steps=case.pipeline,
        expectations=case.expectations,
        overrides=case.overrides,
    )
    root = tmp_path / "art"

    with caplog.at_level(logging.WARNING, logger="mlsteps"):
        run = run_pipeline(spec)

    if case.fails_at is None:
        # Suspicious, not wrong: the run succeeds, keeps every row and says what it saw.
        assert run.exit_code == 0, run.output
        assert all(s["status"] == "succeeded" for s in run.summary["steps"])
        assert run.step("featurise")["metrics"]["rows"] == len(frame)
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert str(data) in logged
        for words in case.warns:
            assert words in logged, logged
        return

    assert run.exit_code == 1, run.output
    failing = run.step(case.fails_at)
    assert failing["status"] == case.status
    message = str(failing["error"])
    if case.status == "gate_failed":
        # A gate's reasons name the columns; the report it keeps names the file.
        assert failing["outputs"]["report"]["metadata"]["data"] == str(data)
    else:
        assert str(data) in message, message  # the file, by its full path
    for words in case.says:
        assert words in message, message
    before = case.pipeline[: case.pipeline.index(case.fails_at)]
    assert [run.step(s)["status"] for s in before] == ["succeeded"] * len(before)

    error = check_failed_run_left_nothing(
        root, run, failed=case.fails_at, status=case.status, error_type=case.error_type
    )
    assert message in error
    if repo is not None and case.fails_at == "featurise":
        # Refused before Feast was touched: no registry, no online store.
        assert not (repo.parent / "data" / "feast").exists()


def test_a_failure_is_not_cached_and_the_fixed_file_runs(
    tmp_path: Path, penguins: tuple[Path, pd.DataFrame]
) -> None:
    """Run a bad file twice (the failure is not reused), then fix it in place: the pipeline registers."""
    _, frame = penguins
    data = tmp_path / "d.parquet"
    parquet(all_null("bill_depth_mm"))(frame, data)
    spec = write_spec(tmp_path, data=data.name, steps=TRAIN_PIPELINE)

    first, second = run_pipeline(spec), run_pipeline(spec)
    assert (first.exit_code, second.exit_code) == (1, 1)
    assert second.step("validate")["status"] == "cached"
    assert second.step("train")["status"] == "failed"  # run again, not served from the cache
    trains = [r for r in lineage_records(tmp_path / "art") if r["run_key"]["step"] == "train"]
    assert sorted(r["status"] for r in trains) == ["failed", "failed"]

    frame.to_parquet(data, index=False)
    fixed = run_pipeline(spec)
    assert fixed.exit_code == 0, fixed.output
    assert [s["status"] for s in fixed.summary["steps"]] == ["succeeded"] * 4
    assert fixed.step("register")["outputs"]["model_version"]["version"] == "1"


def test_the_real_cli_process_exits_1_on_bad_data(
    tmp_path: Path, penguins: tuple[Path, pd.DataFrame]
) -> None:
    """The exit code and the message survive the console script (a step's DataError is exit code 1)."""
    import subprocess
    import sys

    _, frame = penguins
    data = tmp_path / "d.csv"
    csv(same, sep=";")(frame, data)
    spec = write_spec(tmp_path, data=data.name, steps=("validate", "train"))
    mlsteps = Path(sys.executable).parent / "mlsteps"
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run(
        [str(mlsteps), "run", str(spec)], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{data}: read as a single column" in proc.stdout
    assert "semicolon-separated" in proc.stdout
