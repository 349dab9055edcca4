"""Validation refuses a frame that breaks its declarations, naming the column and the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from erp_core.domain.errors import InvalidValue
from features.registry import Check, FeatureSet, FeatureSpec, KeySpec, LabelSpec
from features.schema import FrameInvalid, frame_problems, typed_frame, validate_frame

TINY = FeatureSet(
    name="tiny",
    entity="order_line",
    description="for tests",
    keys=(KeySpec("line_id", "int64", "the line"),),
    features=(
        FeatureSpec("rate", "order_line", "float64", "a rate between 0 and 1", "g", Check(0, 1)),
        FeatureSpec("flag", "order_line", "bool", "a flag", "g"),
        FeatureSpec("tier", "order_line", "category", "a tier", "g"),
        FeatureSpec("maybe", "order_line", "float64", "often null", "g", Check(max_null_share=0.5)),
    ),
    labels=(LabelSpec("label_late", "float64", "an outcome"),),
    builder="nowhere:nothing",
)


def good_columns() -> dict:
    return {
        "line_id": np.arange(1, 5),
        "rate": np.array([0.1, 0.5, 1.0, 0.0]),
        "flag": np.array([True, False, True, False]),
        "tier": np.array(["gold", "silver", "gold", "bronze"], dtype=object),
        "maybe": np.array([np.nan, 1.0, np.nan, 2.0]),
        "label_late": np.array([np.nan, np.nan, 1.0, np.nan]),
    }


def test_a_frame_that_keeps_its_declarations_passes() -> None:
    frame = typed_frame(good_columns(), TINY)
    validate_frame(frame, TINY)
    assert list(frame["tier"].cat.categories) == ["bronze", "gold", "silver"]


def test_a_value_out_of_range_is_refused_naming_the_feature_and_the_rows() -> None:
    columns = good_columns()
    columns["rate"] = np.array([0.1, 1.5, 1.0, -0.2])
    with pytest.raises(FrameInvalid) as refused:
        validate_frame(typed_frame(columns, TINY), TINY)
    message = refused.value.message
    assert "rate: values below 0 (1 rows: line_id=4)" in message
    assert "rate: values above 1 (1 rows: line_id=2)" in message
    assert "nothing written" in message


def test_too_many_nulls_are_refused_with_the_share_and_the_rows() -> None:
    columns = good_columns()
    columns["rate"] = np.array([np.nan, 0.5, np.nan, 0.1])
    columns["maybe"] = np.array([np.nan, np.nan, np.nan, 2.0])
    problems = frame_problems(typed_frame(columns, TINY), TINY)
    described = [problem.describe("line_id") for problem in problems]
    assert "rate: 50.0% null, at most 0% allowed (2 rows: line_id=1, 3)" in described
    assert "maybe: 75.0% null, at most 50% allowed (3 rows: line_id=1, 2, 3)" in described


def test_a_wrong_dtype_a_missing_column_and_a_duplicate_row_are_each_named() -> None:
    frame = typed_frame(good_columns(), TINY)
    assert [p.column for p in frame_problems(frame.drop(columns="flag"), TINY)] == ["flag"]
    retyped = frame.assign(flag=frame["flag"].astype("int64"))
    assert "dtype int64, declared bool" in frame_problems(retyped, TINY)[0].reason
    doubled = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    assert frame_problems(doubled, TINY)[0].reason == "the same entity appears twice"


def test_infinite_values_are_refused_even_without_bounds() -> None:
    columns = good_columns()
    columns["maybe"] = np.array([np.inf, 1.0, np.nan, 2.0])
    problems = frame_problems(typed_frame(columns, TINY), TINY)
    assert [(p.column, p.reason) for p in problems] == [("maybe", "infinite values")]


# --- unavailable features ------------------------------------------------------------------------

NOT_HERE = {"flag": "the source does not record it", "tier": "nor this", "rate": "nor this"}


def test_unavailable_features_are_null_whatever_was_computed_and_pass() -> None:
    frame = typed_frame(good_columns(), TINY, NOT_HERE)
    assert frame[list(NOT_HERE)].isna().all().all()
    for name in NOT_HERE:  # a bool has no null; an empty category does not survive Parquet
        assert str(frame[name].dtype) == "float64", name
    assert frame["maybe"].notna().sum() == 2  # the others are as computed
    validate_frame(frame, TINY, NOT_HERE)


def test_an_all_null_feature_not_declared_unavailable_is_still_refused() -> None:
    frame = typed_frame(good_columns(), TINY, NOT_HERE)
    problems = frame_problems(frame, TINY)
    assert {p.column: p.reason for p in problems} == {
        "flag": "dtype float64, declared bool",
        "tier": "dtype float64, declared category",
        "rate": "100.0% null, at most 0% allowed",
    }


def test_an_unavailable_feature_must_be_null_on_every_row_in_its_null_dtype() -> None:
    frame = typed_frame(good_columns(), TINY, NOT_HERE)
    frame.loc[2, "rate"] = 0.5
    problems = frame_problems(frame, TINY, NOT_HERE)
    assert [(p.column, p.reason, p.rows) for p in problems] == [
        ("rate", "unavailable but holds values", (3,))
    ]
    computed = typed_frame(good_columns(), TINY)
    problems = frame_problems(computed, TINY, {"flag": "not recorded"})
    assert [(p.column, p.reason) for p in problems] == [
        ("flag", "unavailable: dtype bool, expected float64")
    ]


@pytest.mark.parametrize(
    ("unavailable", "named"),
    [({"label_late": "no"}, "label_late"), ({"line_id": "no"}, "line_id"), ({"flag": ""}, "flag")],
    ids=["a label", "a key", "no reason"],
)
def test_only_a_feature_with_a_reason_can_be_unavailable(
    unavailable: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidValue, match=f"unavailable='{named}'"):
        typed_frame(good_columns(), TINY, unavailable)
    with pytest.raises(InvalidValue, match=f"unavailable='{named}'"):
        validate_frame(typed_frame(good_columns(), TINY), TINY, unavailable)
