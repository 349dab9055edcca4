"""A feature frame as the numeric matrix a model reads, the same way at training and at serving.

Categories are coded by the levels seen in training (a level never seen becomes missing, which
LightGBM sends down the learned default branch); booleans become 0/1; everything is float64 with
NaN for missing. Building the numpy matrix once, in a fixed column order, keeps the scoring path
off pandas (a DataFrame input costs LightGBM several times a numpy one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from erp_core.domain.errors import InvalidValue
from features.registry import FeatureSpec


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

    def check_columns(self, frame: pd.DataFrame) -> None:
        """A frame missing a feature the model needs is refused by name."""
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise InvalidValue(
                "frame", ", ".join(missing), "the model needs these features; the frame lacks them"
            )

    def _column(self, values: pd.Series, spec: FeatureSpec) -> np.ndarray:
        if spec.dtype == "category":
            return self._codes(values, pd.Index(self.levels_[spec.name]))
        if spec.dtype == "bool":
            return values.astype("float64").to_numpy()
        return pd.to_numeric(values, errors="raise").astype("float64").to_numpy()

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
