"""``mlsteps.data.check_feature_columns``: the feature columns train refuses, and the message it gives.

The check parses each distinct text once rather than each row (a benchmark change);
these tests pin what it refuses and says on the column shapes that matter, including
object columns that mix booleans and numbers, where ``True == 1`` would merge the two
values if they were compared before being turned into text.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mlsteps.data import check_feature_columns
from mlsteps.errors import DataError

URI = "data/features.parquet"
FIELD = "train.config.exclude"


def refused(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    with pytest.raises(DataError) as err:
        check_feature_columns(df, columns or list(df.columns), uri=URI, exclude_field=FIELD)
    return str(err.value)


def accepted(df: pd.DataFrame) -> None:
    check_feature_columns(df, list(df.columns), uri=URI, exclude_field=FIELD)


def test_a_numeric_text_column_spoilt_by_a_few_cells_names_them_their_rows_and_the_fix() -> None:
    df = pd.DataFrame({"mass": ["3750", " 3800 ", "39,5", "4000", "unknown", "3650.5", "4100"]})
    message = refused(df)
    assert message.startswith(f"{URI}: feature column 'mass' holds numbers, but 2 of its 7 values")
    assert "e.g. ['39,5', 'unknown']" in message
    assert "(rows [2, 4])" in message
    assert FIELD in message


def test_an_object_column_mixing_booleans_and_numbers_counts_the_booleans_as_not_numbers() -> None:
    # True == 1 and False == 0: compared as objects they would fall together with the numbers.
    df = pd.DataFrame({"flag_or_count": pd.Series([1, True, 2, 3, 0, False, 5, 1], dtype=object)})
    message = refused(df)
    assert "holds numbers, but 2 of its 8 values are not numbers" in message
    assert "e.g. ['False', 'True']" in message
    assert "(rows [1, 5])" in message


def test_a_column_that_is_mostly_text_or_all_numbers_is_accepted() -> None:
    accepted(
        pd.DataFrame(
            {
                "species": ["Adelie", "Gentoo", "12", "Chinstrap", "Adelie"],  # text with a stray number
                "numbers_as_text": ["1", "2.5", " 3 ", "-4", "5e3"],
                "with_missing": ["1", None, "3", None, "5"],
                "flags": [True, False, True, True, False],
            }
        )
    )


def test_a_string_dtype_column_is_checked_like_an_object_column() -> None:
    df = pd.DataFrame({"x": pd.Series(["1.5", "2.5", "n/a", "3.5", "4.5"], dtype="string")})
    message = refused(df)
    assert "holds numbers, but 1 of its 5 values are not numbers, e.g. ['n/a'] (rows [2])" in message


def test_an_empty_column_and_infinite_values_are_refused_together() -> None:
    df = pd.DataFrame(
        {
            "empty": [None, None, None],
            "ratio": [1.0, math.inf, -math.inf],
            "fine": [1, 2, 3],
        }
    )
    message = refused(df)
    lines = message.splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        f"{URI}: feature column 'empty' has no values (all 3 rows are null): fill it, "
        f"or leave it out with {FIELD}"
    )
    assert lines[1].startswith(f"{URI}: feature column 'ratio' has 2 infinite value(s) (rows [1, 2])")


def test_only_the_named_columns_are_checked() -> None:
    df = pd.DataFrame({"id": [None, None], "x": [1.0, 2.0]})
    check_feature_columns(df, ["x"], uri=URI, exclude_field=FIELD)
    assert "'id' has no values" in refused(df, ["id", "x"])
