"""A feature frame as the numeric matrix a model reads, the same way at training and at serving.

Categories are coded by the levels seen in training (a level never seen becomes missing, which
LightGBM sends down the learned default branch); booleans become 0/1; everything is float64 with
NaN for missing. Building the numpy matrix once, in a fixed column order, keeps the scoring path
off pandas (a DataFrame input costs LightGBM several times a numpy one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from erp_core.domain.errors import InvalidValue
from features.registry import FeatureSpec

SMALL_FRAME = 1000
"""Up to this many rows (an order at entry, a batch of them) text categories are coded by a dict
lookup per value; a training frame takes pandas' vectorised path."""


class FrameEncoder:
    """Learns the category levels of the declared features in ``fit``; ``transform`` applies them.

    Follows scikit-learn's contract: ``__init__`` stores, ``fit`` learns (``levels_``) and returns
    ``self``."""

    def __init__(self, features: Sequence[FeatureSpec]) -> None:
        self.features = features

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, spec in enumerate(self.features) if spec.dtype == "category"]

    def fit(self, frame: pd.DataFrame) -> FrameEncoder:
        self.check_columns(frame)
        self.__dict__.pop("_lookup_cache", None)
        self.levels_ = {
            spec.name: sorted(str(v) for v in pd.unique(frame[spec.name].dropna()))
            for spec in self.features
            if spec.dtype == "category"
        }
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_columns(frame)
        matrix = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for i, spec in enumerate(self.features):
            matrix[:, i] = self._column(frame[spec.name], spec)
        return matrix

    def transform_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """``transform`` of the frame these columns would make, without building it: the
        online path hands over one array per feature for the few lines of an order."""
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise InvalidValue(
                "frame", ", ".join(missing), "the model needs these features; the frame lacks them"
            )
        rows = len(next(iter(columns.values()))) if columns else 0
        matrix = np.empty((rows, len(self.features)), dtype=np.float64)
        for i, spec in enumerate(self.features):
            values = np.asarray(columns[spec.name])
            quick = self._quick_column(values, spec)
            matrix[:, i] = quick if quick is not None else self._column(pd.Series(values), spec)
        return matrix

    def _quick_column(self, values: np.ndarray, spec: FeatureSpec) -> np.ndarray | None:
        if spec.dtype == "category":
            if values.dtype == object and len(values) <= SMALL_FRAME:
                return self._codes_of_text(values, spec.name)
            return None
        if values.dtype.kind in "biuf":
            return values.astype(np.float64)
        return None

    def check_columns(self, frame: pd.DataFrame) -> None:
        """A frame missing a feature the model needs is refused by name."""
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise InvalidValue(
                "frame", ", ".join(missing), "the model needs these features; the frame lacks them"
            )

    def _column(self, values: pd.Series, spec: FeatureSpec) -> np.ndarray:
        if spec.dtype == "category":
            return self._category(values, spec.name)
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
            # Plain numpy numbers and booleans: the conversions below would give these same
            # float64 values, at several times the cost on the few rows of one order.
            return values.to_numpy(dtype=np.float64)
        if spec.dtype == "bool":
            return values.astype("float64").to_numpy()
        return pd.to_numeric(values, errors="raise").astype("float64").to_numpy()

    def _category(self, values: pd.Series, name: str) -> np.ndarray:
        if len(values) <= SMALL_FRAME and (
            values.dtype == object or isinstance(values.dtype, pd.StringDtype)
        ):
            codes = self._codes_of_text(values.to_numpy(dtype=object, na_value=None), name)
            if codes is not None:
                return codes
        return self._codes(values, pd.Index(self.levels_[name]))

    def _codes_of_text(self, values: np.ndarray, name: str) -> np.ndarray | None:
        """Codes of a few values that are text or missing, by a dict of the levels; None when
        some value is neither (then the general path decides how it reads as text)."""
        lookup = self._lookups().get(name)
        if lookup is None:
            return None
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if isinstance(value, str):
                out[i] = lookup.get(value, np.nan)
            elif value is None or value is pd.NA or (isinstance(value, float) and value != value):
                out[i] = np.nan
            else:
                return None
        return out

    def _lookups(self) -> dict[str, dict[str, float]]:
        """Level -> code per categorical feature, built on first use (also in an encoder
        unpickled from the registry, which predates the cache)."""
        found = self.__dict__.get("_lookup_cache")
        if found is None:
            found = {
                name: {level: float(code) for code, level in enumerate(levels)}
                for name, levels in self.levels_.items()
            }
            self.__dict__["_lookup_cache"] = found
        return found

    @staticmethod
    def _codes(values: pd.Series, levels: pd.Index) -> np.ndarray:
        """Training's code of each value; a categorical column is mapped through its own
        categories (a handful) rather than value by value."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            own = values.cat.categories.astype(str)
            mapped = levels.get_indexer(own).astype(np.float64)
            mapped[mapped < 0] = np.nan
            codes = values.cat.codes.to_numpy()
            return np.where(codes >= 0, mapped[codes], np.nan)
        text = values.astype("string").to_numpy(dtype=object, na_value=None)
        found = levels.get_indexer(text)
        return np.where(found >= 0, found, np.nan)
