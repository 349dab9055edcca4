"""A frame's schema, dtypes, ranges and null shares, checked against its declarations before it
is written anywhere.

A pipeline bug rarely raises: a join that loses its keys leaves a column of nulls, a unit slip
leaves rates above 1. Each declaration carries the checks of its column (``registry.Check``), and a
frame that breaks one is refused with a message naming the column and the rows (by the entity id),
so the bug is found where it is made rather than in a model's metrics weeks later.

A feature the history cannot compute (:mod:`features.availability`) is **unavailable**: its column
is all null, float64 whatever its declared dtype (an integer or a boolean has no null, and an
empty categorical does not read back from Parquet as one), and its declared checks do not apply.
Only a feature named unavailable may be so, and then it must be null on every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from erp_core.domain.errors import DomainError
from features.availability import check_unavailable
from features.registry import ColumnSpec, FeatureSet

SHOWN_ROWS = 5


@dataclass(frozen=True)
class Problem:
    """One broken expectation: the column, what is wrong, and (some of) the rows where."""

    column: str
    reason: str
    rows: tuple[Any, ...] = ()
    row_count: int = 0

    def describe(self, key: str) -> str:
        if not self.row_count:
            return f"{self.column}: {self.reason}"
        shown = ", ".join(str(row) for row in self.rows)
        more = (
            f" and {self.row_count - len(self.rows)} more"
            if self.row_count > len(self.rows)
            else ""
        )
        return f"{self.column}: {self.reason} ({self.row_count} rows: {key}={shown}{more})"


class FrameInvalid(DomainError):
    """A built frame broke its declared checks; nothing was written."""

    code = "frame_invalid"

    def __init__(self, feature_set: str, problems: list[Problem], key: str) -> None:
        lines = "; ".join(problem.describe(key) for problem in problems)
        # The message names every column and its rows; field and value would only repeat it.
        super().__init__(f"feature set {feature_set}: frame refused, nothing written: {lines}")
        self.problems = problems


def typed_frame(
    columns: Mapping[str, Any],
    feature_set: FeatureSet,
    unavailable: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The declared columns, in declared order, each converted to its declared dtype; the
    ``unavailable`` features null whatever was computed for them."""
    unavailable = unavailable or {}
    check_unavailable(unavailable, feature_set.feature_names)
    rows = len(np.asarray(columns[feature_set.keys[0].name])) if unavailable else 0
    return pd.DataFrame(
        {
            spec.name: np.full(rows, np.nan)
            if spec.name in unavailable
            else _as_dtype(columns[spec.name], spec)
            for spec in feature_set.columns
        }
    )


UNAVAILABLE_DTYPE = "float64"
"""The dtype of an unavailable feature's column, whatever its declared one."""


def _as_dtype(values: Any, spec: ColumnSpec) -> Any:
    if spec.dtype == "category":
        return _sorted_categories(values)
    if spec.dtype == "datetime64[us, UTC]":
        return pd.to_datetime(np.asarray(values, dtype=np.int64), unit="us", utc=True).as_unit("us")
    return np.asarray(values).astype(spec.dtype)


def _sorted_categories(values: Any) -> pd.Categorical:
    """Categories from the values present, sorted: the same rows give the same codes whatever
    else the source holds."""
    found = pd.Categorical(values).remove_unused_categories()
    return found.reorder_categories(sorted(found.categories))


def validate_frame(
    frame: pd.DataFrame, feature_set: FeatureSet, unavailable: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`FrameInvalid` naming every broken check; return quietly when all pass.
    ``unavailable``: the features the frame holds as nulls, with why."""
    key = feature_set.keys[0].name
    problems = frame_problems(frame, feature_set, unavailable)
    if problems:
        raise FrameInvalid(feature_set.name, problems, key)


def frame_problems(
    frame: pd.DataFrame, feature_set: FeatureSet, unavailable: Mapping[str, str] | None = None
) -> list[Problem]:
    unavailable = unavailable or {}
    check_unavailable(unavailable, feature_set.feature_names)
    declared = [spec.name for spec in feature_set.columns]
    problems = _schema_problems(list(frame.columns), declared)
    if problems:
        return problems
    key_values = frame[feature_set.keys[0].name]
    problems.extend(_duplicate_keys(frame, feature_set))
    for spec in feature_set.columns:
        check = _unavailable_problems if spec.name in unavailable else _column_problems
        problems.extend(check(frame[spec.name], spec, key_values))
    return problems


def _unavailable_problems(values: pd.Series, spec: ColumnSpec, keys: pd.Series) -> list[Problem]:
    """An unavailable feature is null on every row, in its null dtype."""
    if not _dtype_matches(values, UNAVAILABLE_DTYPE):
        return [
            Problem(spec.name, f"unavailable: dtype {values.dtype}, expected {UNAVAILABLE_DTYPE}")
        ]
    held = values.notna().to_numpy()
    if held.any():
        return [_rows_problem(spec.name, "unavailable but holds values", keys[held])]
    return []


def _schema_problems(present: list[str], declared: list[str]) -> list[Problem]:
    problems = [
        Problem(name, "declared but missing from the frame")
        for name in declared
        if name not in present
    ]
    problems += [
        Problem(name, "in the frame but not declared") for name in present if name not in declared
    ]
    if not problems and present != declared:
        problems.append(Problem(present[0], f"columns out of declared order: {present}"))
    return problems


def _duplicate_keys(frame: pd.DataFrame, feature_set: FeatureSet) -> list[Problem]:
    """Rows whose key columns together repeat (a line id alone; a SKU, location and day for a
    demand row), named by the first key."""
    names = [key.name for key in feature_set.keys]
    repeated = frame.duplicated(names, keep=False).to_numpy()
    if not repeated.any():
        return []
    keys = frame[names[0]]
    return [_rows_problem(str(keys.name), "the same entity appears twice", keys[repeated])]


def _column_problems(values: pd.Series, spec: ColumnSpec, keys: pd.Series) -> list[Problem]:
    if not _dtype_matches(values, spec.dtype):
        return [Problem(spec.name, f"dtype {values.dtype}, declared {spec.dtype}")]
    problems = []
    nulls = values.isna()
    share = float(nulls.mean()) if len(values) else 0.0
    if share > spec.check.max_null_share:
        problems.append(
            _rows_problem(
                spec.name,
                f"{share:.1%} null, at most {spec.check.max_null_share:.0%} allowed",
                keys[nulls],
            )
        )
    if spec.dtype in ("float64", "int64"):
        problems.extend(_range_problems(values, spec, keys))
    return problems


def _range_problems(values: pd.Series, spec: ColumnSpec, keys: pd.Series) -> list[Problem]:
    numbers = values.to_numpy(dtype=np.float64)
    problems = []
    infinite = np.isinf(numbers)
    if infinite.any():
        problems.append(_rows_problem(spec.name, "infinite values", keys[infinite]))
    low, high = spec.check.minimum, spec.check.maximum
    with np.errstate(invalid="ignore"):
        if low is not None and (below := numbers < low).any():
            problems.append(_rows_problem(spec.name, f"values below {low:g}", keys[below]))
        if high is not None and (above := numbers > high).any():
            problems.append(_rows_problem(spec.name, f"values above {high:g}", keys[above]))
    return problems


def _dtype_matches(values: pd.Series, dtype: str) -> bool:
    if dtype == "category":
        return isinstance(values.dtype, pd.CategoricalDtype)
    return str(values.dtype) == dtype


def _rows_problem(column: str, reason: str, keys: pd.Series) -> Problem:
    shown = tuple(_plain(key) for key in keys.iloc[:SHOWN_ROWS])
    return Problem(column, reason, shown, len(keys))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
