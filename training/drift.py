"""Drift: how far the newest rows have moved from what a model was trained on, by the population
stability index (PSI) of each feature and of the score.

A model carries a compact profile of its training frame (per-feature bucket edges and shares,
missing values as their own bucket) and of its scores on its test window, so drift is measured
against the champion without rebuilding its old frame. PSI = sum over buckets of
(actual - expected) * ln(actual / expected); by the usual reading below 0.1 is stable, 0.1-0.25
a moderate shift, above 0.25 a major one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.registry import FeatureSpec

BUCKETS = 10
FLOOR = 1e-4
"""Shares are floored so an empty bucket does not make the index infinite."""
MODERATE, MAJOR = 0.10, 0.25


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    kind: str
    """``numeric`` (quantile buckets) or ``categorical`` (one bucket per level)."""
    edges: tuple[float, ...]
    levels: tuple[str, ...]
    shares: tuple[float, ...]
    """Per bucket (for categories: per level, then levels unseen in training), then the
    missing share last."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ColumnProfile:
        """Back from its JSON form (lists become the tuples they were)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def profile_column(name: str, values: pd.Series | np.ndarray, categorical: bool) -> ColumnProfile:
    series = pd.Series(values)
    if categorical:
        levels = tuple(sorted(str(v) for v in series.dropna().unique()))
        return ColumnProfile(name, "categorical", (), levels, _categorical_shares(series, levels))
    numbers = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
    present = numbers[~np.isnan(numbers)]
    edges: tuple[float, ...] = ()
    if len(present):
        inner = np.quantile(present, np.linspace(0, 1, BUCKETS + 1)[1:-1])
        edges = tuple(float(e) for e in np.unique(inner))
    return ColumnProfile(name, "numeric", edges, (), _numeric_shares(numbers, edges))


def profile_frame(frame: pd.DataFrame, specs: Sequence[FeatureSpec]) -> dict[str, ColumnProfile]:
    return {
        spec.name: profile_column(spec.name, frame[spec.name], spec.dtype in ("category", "bool"))
        for spec in specs
    }


def _numeric_shares(numbers: np.ndarray, edges: tuple[float, ...]) -> tuple[float, ...]:
    missing = np.isnan(numbers)
    buckets = np.searchsorted(np.asarray(edges), numbers[~missing], side="right")
    counts = np.bincount(buckets, minlength=len(edges) + 1).astype(np.float64)
    return _shares(np.append(counts, missing.sum()))


def _categorical_shares(series: pd.Series, levels: tuple[str, ...]) -> tuple[float, ...]:
    text = series.astype("string")
    counts = [float((text == level).sum()) for level in levels]
    unseen = float((text.notna() & ~text.isin(levels)).sum())
    return _shares(np.array([*counts, unseen, float(text.isna().sum())]))


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = counts.sum()
    return tuple(float(c) for c in (counts / total if total else counts))


def psi(expected: ColumnProfile, values: pd.Series | np.ndarray) -> float:
    """PSI of ``values`` against a profile, bucketed the profile's way."""
    series = pd.Series(values)
    if expected.kind == "categorical":
        actual = _categorical_shares(series, expected.levels)
    else:
        numbers = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
        actual = _numeric_shares(numbers, expected.edges)
    e = np.maximum(np.asarray(expected.shares), FLOOR)
    a = np.maximum(np.asarray(actual), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_drift(profiles: dict[str, ColumnProfile], frame: pd.DataFrame) -> dict[str, float]:
    return {name: psi(profile, frame[name]) for name, profile in profiles.items()}


def verdict(value: float) -> str:
    if value >= MAJOR:
        return "major"
    return "moderate" if value >= MODERATE else "stable"
