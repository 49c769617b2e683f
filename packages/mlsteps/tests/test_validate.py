"""Tests of the ``validate`` step against real Great Expectations (GX Core).

GX takes seconds to import; the import is paid once per test process, and each
validation after that runs in a fraction of a second, so every behaviour gets its
own small test on a 10-row penguins-like table written to ``tmp_path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlsteps.context import RunContext, RunKey
from mlsteps.data import describe_dataset
from mlsteps.errors import ConfigError, DataError, GateFailure
from mlsteps.hashing import hash_file
from mlsteps.refs import DatasetRef, ReportRef
from mlsteps.step import StepResult, execute_step
from mlsteps.steps.validate import ValidateStep, parse_age, suggest_expectations

LATEST = datetime(2024, 1, 15, 8, 0, tzinfo=UTC)


def penguins_frame() -> pd.DataFrame:
    """Ten penguins: bill_length_mm has 2 nulls, sex has 1, ids are unique."""
    return pd.DataFrame(
        {
            "penguin_id": pd.Series(range(1, 11), dtype="int64"),
            "event_timestamp": pd.to_datetime([LATEST - timedelta(hours=h) for h in range(10)], utc=True),
            "species": ["Adelie"] * 4 + ["Gentoo"] * 3 + ["Chinstrap"] * 3,
            "island": ["Torgersen", "Biscoe", "Dream", "Biscoe", "Biscoe"] * 2,
            "bill_length_mm": [39.1, 39.5, None, 36.7, 46.1, 50.0, None, 46.5, 50.0, 51.3],
            "body_mass_g": [3750.0, 3800, 3250, 3450, 4500, 5700, 5400, 3500, 3900, 3650],
            "sex": ["male", "female", None, "female", "female", "male", "male", "female", "male", "male"],
        }
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "penguins.parquet"
    penguins_frame().to_parquet(path, index=False)
    return path


def make_ctx(tmp_path: Path, run_id: str = "r1") -> RunContext:
    return RunContext(
        run_key=RunKey(run_id=run_id, step="validate", pipeline="t"),
        artifact_root=str(tmp_path / "art"),
        base_dir=tmp_path,
    )


def run(tmp_path: Path, config: dict[str, Any], inputs: dict[str, Any] | None = None) -> StepResult:
    return execute_step(ValidateStep, make_ctx(tmp_path), config, inputs or {})


def gate_failure(tmp_path: Path, config: dict[str, Any]) -> GateFailure:
    with pytest.raises(GateFailure) as info:
        run(tmp_path, config)
    return info.value


PASSING = [
    {"type": "column_exists", "column": "species"},
    {"type": "column_type", "column": "bill_length_mm", "dtype": "float64"},
    {"type": "column_type", "column": "penguin_id", "dtype": "int64"},
    {"type": "column_type", "column": "species", "dtype": "object"},
    {"type": "column_type", "column": "event_timestamp", "dtype": "datetime64[ns, UTC]"},
    {"type": "not_null", "column": "bill_length_mm", "mostly": 0.8},
    {"type": "between", "column": "body_mass_g", "min": 2000, "max": 7000},
    {"type": "in_set", "column": "species", "values": ["Adelie", "Chinstrap", "Gentoo"]},
    {"type": "unique", "column": "penguin_id"},
    {"type": "row_count_between", "min": 5, "max": 100},
    {"type": "regex", "column": "island", "pattern": "^[A-Z][a-z]+$"},
    {"type": "fresh", "column": "event_timestamp", "max_age": "2d"},
]


# --------------------------------------------------------------------------- passing and gating


def test_passing_suite_writes_report_and_refs(tmp_path: Path, data: Path) -> None:
    result = run(
        tmp_path, {"data": "penguins.parquet", "expectations": PASSING, "now": "2024-01-16T00:00:00Z"}
    )

    assert result.passed is True
    report = result.outputs["report"]
    assert isinstance(report, ReportRef)
    assert report.passed is True
    assert report.summary["evaluated"] == len(PASSING)
    assert report.summary["successful"] == len(PASSING)
    assert report.summary["failed_errors"] == report.summary["failed_warnings"] == 0
    assert report.summary["failing_columns"] == []
    assert [e["name"] for e in report.summary["expectations"]][:2] == [
        "column_exists(species)",
        "column_type(bill_length_mm)",
    ]
    assert result.metrics == {
        "evaluated_expectations": float(len(PASSING)),
        "failed_expectations": 0.0,
        "success_percent": 100.0,
    }

    json_path = Path(report.uri)
    assert json_path.parent == tmp_path / "art" / "runs" / "r1" / "validate"
    assert report.content_hash == hash_file(json_path)
    gx_result = json.loads(json_path.read_text())
    assert gx_result["success"] is True
    assert gx_result["statistics"]["evaluated_expectations"] == len(PASSING)
    gx_types = {r["expectation_config"]["type"] for r in gx_result["results"]}
    assert {
        "expect_column_to_exist",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_unique",
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_max_to_be_between",
    } == gx_types

    assert report.html_uri is not None
    page = Path(report.html_uri).read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http" not in page  # self-contained
    assert "in_set(species)" in page and "passed" in page

    dataset = result.outputs["dataset"]
    assert isinstance(dataset, DatasetRef)
    assert dataset.uri == str(data)
    assert dataset.content_hash == hash_file(data)
    assert dataset.rows == 10
    assert dataset.columns["event_timestamp"] == "datetime64[ns, UTC]"


def test_report_is_byte_identical_across_runs(tmp_path: Path, data: Path) -> None:
    """Same data and suite, same report hash: GX's per-run ids and times are left out."""
    config = {"data": "penguins.parquet", "expectations": PASSING, "now": "2024-01-16T00:00:00Z"}
    first = execute_step(ValidateStep, make_ctx(tmp_path, "r1"), config, {})
    second = execute_step(ValidateStep, make_ctx(tmp_path, "r2"), config, {})

    a, b = first.outputs["report"], second.outputs["report"]
    assert a.uri != b.uri
    assert a.content_hash == b.content_hash
    body = json.loads(Path(a.uri).read_text())
    assert "validation_time" not in body["meta"] and "run_id" not in body["meta"]
    assert all("id" not in r["expectation_config"] for r in body["results"])
    assert body["statistics"]["evaluated_expectations"] == len(PASSING)


def test_error_failure_raises_gate_after_writing_report(tmp_path: Path, data: Path) -> None:
    exc = gate_failure(
        tmp_path,
        {
            "data": str(data),
            "expectations": [
                {"type": "column_exists", "column": "species"},
                {"type": "not_null", "column": "bill_length_mm"},
            ],
        },
    )

    assert exc.step == "validate"
    assert exc.reasons == ["not_null(bill_length_mm): 2 of 10 values are null (mostly=1.0)"]
    report = exc.report
    assert isinstance(report, ReportRef)
    assert report.passed is False
    assert report.summary["failed_errors"] == 1
    assert report.summary["failing_columns"] == ["bill_length_mm"]
    gx_result = json.loads(Path(report.uri).read_text())
    assert gx_result["success"] is False
    assert gx_result["statistics"]["unsuccessful_expectations"] == 1
    page = Path(str(report.html_uri)).read_text()
    assert "2 of 10 values are null" in page


def test_warn_failure_passes_and_is_reported(tmp_path: Path, data: Path) -> None:
    result = run(
        tmp_path,
        {
            "data": str(data),
            "expectations": [
                {"type": "unique", "column": "penguin_id"},
                {"type": "not_null", "column": "sex", "severity": "warn"},
            ],
        },
    )

    assert result.passed is True
    report = result.outputs["report"]
    assert isinstance(report, ReportRef)
    assert report.passed is True
    assert report.summary["failed_errors"] == 0
    assert report.summary["failed_warnings"] == 1
    assert report.summary["failing_columns"] == ["sex"]
    warned = report.summary["expectations"][1]
    assert warned["success"] is False and warned["severity"] == "warn"
    assert warned["reason"] == "not_null(sex): 1 of 10 values are null (mostly=1.0)"
    assert result.metrics["failed_expectations"] == 1.0
    assert result.metrics["success_percent"] == 50.0
    # The severity reaches GX too, so the JSON result says which failure was only a warning.
    gx_result = json.loads(Path(report.uri).read_text())
    severities = {
        r["expectation_config"]["kwargs"]["column"]: r["expectation_config"]["severity"]
        for r in gx_result["results"]
    }
    assert severities == {"penguin_id": "critical", "sex": "warning"}


@pytest.mark.parametrize(
    ("expectation", "reason"),
    [
        (
            {"type": "between", "column": "bill_length_mm", "min": 30, "max": 47},
            "between(bill_length_mm): 3 of 8 non-null values are outside [30, 47] (mostly=1.0); e.g. [50.0, 51.3]",
        ),
        (
            {"type": "in_set", "column": "species", "values": ["Adelie", "Gentoo"], "mostly": 0.9},
            "in_set(species): 3 of 10 non-null values are not in ['Adelie', 'Gentoo'] (mostly=0.9); e.g. ['Chinstrap']",
        ),
        (
            {"type": "unique", "column": "island"},
            "unique(island): 10 of 10 non-null values are duplicated (mostly=1.0); e.g. ['Biscoe', 'Dream', 'Torgersen']",
        ),
        (
            {"type": "regex", "column": "island", "pattern": "^B"},
            "regex(island): 4 of 10 non-null values do not match '^B' (mostly=1.0); e.g. ['Dream', 'Torgersen']",
        ),
        (
            {"type": "row_count_between", "min": 100},
            "row_count_between: 10 rows, expected between 100 and inf",
        ),
        (
            {"type": "column_type", "column": "bill_length_mm", "dtype": "int64"},
            "column_type(bill_length_mm): expected dtype int64, found float64",
        ),
        (
            {"type": "fresh", "column": "event_timestamp", "max_age": "12h"},
            "fresh(event_timestamp): newest value 2024-01-15T08:00:00+00:00 is older than 12h "
            "(cutoff 2024-01-15T12:00:00+00:00)",
        ),
    ],
)
def test_failure_reasons_name_column_and_numbers(
    tmp_path: Path, data: Path, expectation: dict[str, Any], reason: str
) -> None:
    exc = gate_failure(
        tmp_path, {"data": str(data), "expectations": [expectation], "now": "2024-01-16T00:00:00"}
    )
    assert exc.reasons == [reason]


def test_fresh_on_naive_timestamps_is_taken_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "naive.csv"
    df = pd.DataFrame({"ts": pd.to_datetime(["2024-01-14 00:00", "2024-01-15 08:00"])})
    df.to_parquet(tmp_path / "naive.parquet", index=False)
    config: dict[str, Any] = {
        "data": "naive.parquet",
        "expectations": [{"type": "fresh", "column": "ts", "max_age": "1d"}],
        "now": "2024-01-16T07:00:00+00:00",
    }
    assert run(tmp_path, config).passed is True
    config["now"] = "2024-01-16T09:00:00+00:00"
    exc = gate_failure(tmp_path, config)
    assert exc.reasons[0].startswith("fresh(ts): newest value 2024-01-15T08:00:00 is older than 1d")
    # A fresh check on a column that does not hold timestamps is a data error, not a GX crash.
    df.assign(ts=df["ts"].astype(str)).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"naive\.csv: column 'ts' used by fresh\(ts\) holds object"):
        run(tmp_path, {**config, "data": "naive.csv"})


def test_missing_column_fails_the_gate_naming_it(tmp_path: Path, data: Path) -> None:
    exc = gate_failure(
        tmp_path,
        {
            "data": str(data),
            "expectations": [
                {"type": "column_exists", "column": "flipper_length_mm"},
                {"type": "not_null", "column": "flipper_length_mm", "severity": "warn"},
                {"type": "between", "column": "bill_depth_mm", "min": 10},
            ],
        },
    )

    assert len(exc.reasons) == 2
    assert exc.reasons[0].startswith(
        f"column_exists(flipper_length_mm): column 'flipper_length_mm' not found in {data}"
    )
    assert exc.reasons[1].startswith(f"between(bill_depth_mm): column 'bill_depth_mm' not found in {data}")
    assert "columns: penguin_id, event_timestamp, species" in exc.reasons[1]
    assert "Traceback" not in str(exc)
    assert isinstance(exc.report, ReportRef)
    assert exc.report.summary["failing_columns"] == ["bill_depth_mm", "flipper_length_mm"]
    assert exc.report.summary["failed_warnings"] == 1


# --------------------------------------------------------------------------- suite files and inputs


def write_suite(path: Path, expectations: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"name": "penguins_suite", "expectations": expectations, "meta": {}}))
    return path


def test_suite_file_is_loaded_and_combined_with_inline(tmp_path: Path, data: Path) -> None:
    write_suite(
        tmp_path / "suite.json",
        [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "penguin_id"}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "body_mass_g", "min_value": 3000, "max_value": 6000},
                "severity": "critical",
            },
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "sex"},
                "severity": "warning",
            },
        ],
    )
    result = run(
        tmp_path,
        {
            "data": str(data),
            "suite": "suite.json",
            "expectations": [{"type": "unique", "column": "penguin_id"}],
        },
    )

    report = result.outputs["report"]
    assert isinstance(report, ReportRef)
    assert report.passed is True
    assert report.metadata["suite"] == "penguins_suite"
    assert [(e["name"], e["severity"], e["success"]) for e in report.summary["expectations"]] == [
        ("expect_column_values_to_not_be_null(penguin_id)", "error", True),
        ("expect_column_values_to_be_between(body_mass_g)", "error", True),
        ("expect_column_values_to_not_be_null(sex)", "warn", False),
        ("unique(penguin_id)", "error", True),
    ]
    assert json.loads(Path(report.uri).read_text())["suite_name"] == "penguins_suite"


def test_failing_suite_file_expectation_gates(tmp_path: Path, data: Path) -> None:
    write_suite(
        tmp_path / "suite.json",
        [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "body_mass_g", "min_value": 3500},
            }
        ],
    )
    exc = gate_failure(tmp_path, {"data": str(data), "suite": "suite.json"})
    assert exc.reasons == [
        "expect_column_values_to_be_between(body_mass_g): 2 of 10 values unexpected; e.g. [3250.0, 3450.0]"
    ]


def test_bad_suite_file_is_a_config_error(tmp_path: Path, data: Path) -> None:
    (tmp_path / "notjson.json").write_text("{nope")
    with pytest.raises(
        ConfigError, match=r"notjson\.json: validate\.config\.suite: not a readable JSON file"
    ):
        run(tmp_path, {"data": str(data), "suite": "notjson.json"})
    write_suite(tmp_path / "bad.json", [{"type": "expect_no_such_thing", "kwargs": {}}])
    with pytest.raises(
        ConfigError, match=r"bad\.json: validate\.config\.suite: not a valid GX ExpectationSuite"
    ):
        run(tmp_path, {"data": str(data), "suite": "bad.json"})
    with pytest.raises(ConfigError, match="suite file not found"):
        run(tmp_path, {"data": str(data), "suite": "missing.json"})


def test_dataset_input_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "penguins.csv"
    penguins_frame().to_csv(path, index=False)
    ref = describe_dataset(str(path), source="test")
    result = run(
        tmp_path,
        {
            "expectations": [
                {"type": "in_set", "column": "species", "values": ["Adelie", "Chinstrap", "Gentoo"]}
            ]
        },
        {"dataset": ref.model_dump(mode="json")},
    )
    out = result.outputs["dataset"]
    assert isinstance(out, DatasetRef)
    assert (out.uri, out.format, out.content_hash, out.rows) == (str(path), "csv", hash_file(path), 10)
    assert out.metadata == {"source": "test"}


# --------------------------------------------------------------------------- bad data and bad config


def test_empty_data_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    penguins_frame().head(0).to_parquet(empty, index=False)
    expectations = [{"type": "column_exists", "column": "species"}]
    with pytest.raises(DataError, match=rf"{empty}: no rows to validate"):
        run(tmp_path, {"data": str(empty), "expectations": expectations})
    zero = tmp_path / "zero.csv"
    zero.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{zero}: file is empty"):
        run(tmp_path, {"data": str(zero), "expectations": expectations})


def test_unreadable_file_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"these bytes are not a parquet file")
    with pytest.raises(DataError, match=rf"{bad}: could not be read as parquet"):
        run(tmp_path, {"data": "bad.parquet", "expectations": [{"type": "unique", "column": "x"}]})


def test_exactly_one_of_data_and_input(tmp_path: Path, data: Path) -> None:
    expectations = [{"type": "column_exists", "column": "species"}]
    with pytest.raises(ConfigError, match=r"validate\.config\.data: set exactly one .*neither was given"):
        run(tmp_path, {"expectations": expectations})
    ref = describe_dataset(str(data))
    with pytest.raises(ConfigError, match=r"validate\.config\.data: set exactly one .*both were given"):
        run(tmp_path, {"data": str(data), "expectations": expectations}, {"dataset": ref})


@pytest.mark.parametrize(
    ("expectation", "path", "message"),
    [
        ({"type": "not_null", "colum": "x"}, "validate.config.expectations.0.not_null.colum", "unknown key"),
        ({"type": "not_null"}, "validate.config.expectations.0.not_null.column", "required field is missing"),
        (
            {"type": "nonsense", "column": "x"},
            "validate.config.expectations.0",
            "does not match any of the expected tags",
        ),
        (
            {"type": "not_null", "column": "x", "mostly": 0},
            "validate.config.expectations.0.not_null.mostly",
            "greater than 0",
        ),
        (
            {"type": "in_set", "column": "x", "values": [], "mostly": 1},
            "validate.config.expectations.0.in_set.values",
            "at least 1 item",
        ),
        (
            {"type": "between", "column": "x"},
            "validate.config.expectations.0.between",
            "set `min`, `max` or both",
        ),
        (
            {"type": "between", "column": "x", "min": 5, "max": 1},
            "validate.config.expectations.0.between",
            "greater than `max`",
        ),
        (
            {"type": "fresh", "column": "x", "max_age": "soon"},
            "validate.config.expectations.0.fresh.max_age",
            "expected an age like",
        ),
        (
            {"type": "regex", "column": "x", "pattern": "("},
            "validate.config.expectations.0.regex.pattern",
            "not a valid regular expression",
        ),
        (
            {"type": "unique", "column": "x", "severity": "fatal"},
            "validate.config.expectations.0.unique.severity",
            "'error' or 'warn'",
        ),
    ],
)
def test_bad_expectation_is_a_config_error_with_its_path(
    tmp_path: Path, expectation: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        run(tmp_path, {"data": "d.parquet", "expectations": [expectation]})
    problems = [p for p in info.value.problems if p.path == path]
    assert problems, [str(p) for p in info.value.problems]
    assert message in problems[0].message


def test_config_needs_something_to_validate_and_rejects_duplicates(tmp_path: Path, data: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to validate"):
        run(tmp_path, {"data": str(data)})
    twice = {"type": "unique", "column": "penguin_id"}
    with pytest.raises(ConfigError, match=r"expectations\.1: unique\(penguin_id\) duplicates an earlier"):
        run(tmp_path, {"data": str(data), "expectations": [twice, twice]})
    with pytest.raises(
        ConfigError, match=r"expectations\.0: column_type\(species\): data type 'strnig' not understood"
    ):
        run(
            tmp_path,
            {
                "data": str(data),
                "expectations": [{"type": "column_type", "column": "species", "dtype": "strnig"}],
            },
        )


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("1.5h") == timedelta(minutes=90)
    assert parse_age(" 2w ") == timedelta(weeks=2)
    with pytest.raises(ValueError, match="positive"):
        parse_age("0d")


# --------------------------------------------------------------------------- profiling and imports


def test_suggest_expectations_round_trips_through_the_step(tmp_path: Path, data: Path) -> None:
    suggestions = suggest_expectations(penguins_frame())

    assert {"type": "not_null", "column": "bill_length_mm", "mostly": 0.8} in suggestions
    assert {"type": "not_null", "column": "penguin_id", "mostly": 1.0} in suggestions
    assert {"type": "between", "column": "body_mass_g", "min": 3250.0, "max": 5700.0} in suggestions
    assert {"type": "between", "column": "penguin_id", "min": 1, "max": 10} in suggestions
    assert {
        "type": "in_set",
        "column": "species",
        "values": ["Adelie", "Chinstrap", "Gentoo"],
    } in suggestions
    assert {"type": "column_type", "column": "event_timestamp", "dtype": "datetime64[ns, UTC]"} in suggestions
    assert not any(s["type"] == "between" and s["column"] == "species" for s in suggestions)
    json.dumps(suggestions)  # plain Python values, ready for YAML or JSON

    # What the profile describes, the step accepts and passes.
    result = run(tmp_path, {"data": str(data), "expectations": suggestions})
    assert result.passed is True
    assert result.metrics["evaluated_expectations"] == len(suggestions)


def test_importing_the_step_stays_light() -> None:
    code = (
        "import sys, mlsteps.steps.validate\n"
        "heavy = [m for m in ('great_expectations', 'pandas', 'pyarrow', 'numpy') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
