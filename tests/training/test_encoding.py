import numpy as np
import pandas as pd
import pytest

from erp_core.domain.errors import InvalidValue
from features.registry import FeatureSpec
from training.encoding import FrameEncoder

SPECS = (
    FeatureSpec("tier", "order_line", "category", "tier", "customer"),
    FeatureSpec("expedite", "order_line", "bool", "express", "lane"),
    FeatureSpec("units", "order_line", "int64", "units", "order"),
)


def frame(tiers, expedite, units):
    return pd.DataFrame(
        {"tier": pd.Categorical(tiers), "expedite": expedite, "units": units, "other": 0}
    )


def test_categories_are_coded_by_the_levels_seen_in_training_and_unknown_ones_are_missing():
    encoder = FrameEncoder(SPECS).fit(frame(["gold", "bronze"], [True, False], [1, 2]))
    matrix = encoder.transform(frame(["bronze", "platinum"], [False, True], [5, 7]))
    assert matrix[0].tolist() == [0.0, 0.0, 5.0]
    assert np.isnan(matrix[1, 0])
    assert matrix[1, 1:].tolist() == [1.0, 7.0]
    assert encoder.categorical_indices == [0]


def test_a_frame_missing_a_feature_the_model_needs_is_refused_by_name():
    encoder = FrameEncoder(SPECS).fit(frame(["gold"], [True], [1]))
    with pytest.raises(InvalidValue, match="units"):
        encoder.transform(frame(["gold"], [True], [1]).drop(columns="units"))
