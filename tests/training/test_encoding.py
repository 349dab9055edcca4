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


def _mixed(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tiers = np.array(["gold", "bronze", "silver", "platinum", None, np.nan], dtype=object)
    return pd.DataFrame(
        {
            "tier": tiers[rng.integers(0, len(tiers), n)],
            "expedite": rng.random(n) < 0.3,
            "units": rng.integers(1, 50, n),
        }
    )


@pytest.mark.parametrize(
    "rows",
    [
        _mixed(10, 1),
        _mixed(3, 2),
        _mixed(10, 3).astype({"units": "float64"}),
        _mixed(10, 4).astype({"units": "Int64", "expedite": "boolean"}),
        pd.DataFrame(
            {"tier": [1, "gold", None], "expedite": [True, False, True], "units": [1, 2, 3]}
        ),
    ],
)
def test_a_few_rows_are_coded_as_a_training_frame_would_code_them(
    rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = FrameEncoder(SPECS).fit(_mixed(200, 0))
    quick = encoder.transform(rows)
    monkeypatch.setattr("training.encoding.SMALL_FRAME", 0)  # the vectorised pandas path
    general = FrameEncoder(SPECS).fit(_mixed(200, 0)).transform(rows.astype(object))
    np.testing.assert_array_equal(quick, general)


def test_refitting_forgets_the_levels_looked_up_before() -> None:
    encoder = FrameEncoder(SPECS).fit(frame(["gold"], [True], [1]))
    encoder.transform(pd.DataFrame({"tier": ["gold"], "expedite": [True], "units": [1]}))
    encoder.fit(frame(["bronze", "gold"], [True, False], [1, 2]))
    matrix = encoder.transform(pd.DataFrame({"tier": ["gold"], "expedite": [True], "units": [1]}))
    assert matrix[0, 0] == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_handed_over_as_arrays_are_coded_as_their_frame(seed: int) -> None:
    encoder = FrameEncoder(SPECS).fit(_mixed(200, 0))
    rows = _mixed(10, seed)
    columns = {name: rows[name].to_numpy() for name in rows.columns}
    np.testing.assert_array_equal(encoder.transform_columns(columns), encoder.transform(rows))
    as_objects = {name: values.astype(object) for name, values in columns.items()}
    np.testing.assert_array_equal(encoder.transform_columns(as_objects), encoder.transform(rows))


def test_arrays_missing_a_feature_are_refused_by_name() -> None:
    encoder = FrameEncoder(SPECS).fit(_mixed(20, 0))
    with pytest.raises(InvalidValue, match="units"):
        encoder.transform_columns({"tier": np.array(["gold"]), "expedite": np.array([True])})


def test_text_in_pandas_string_columns_is_coded_as_in_object_columns() -> None:
    encoder = FrameEncoder(SPECS).fit(_mixed(200, 0))
    rows = _mixed(10, 7)
    as_text = rows.astype({"tier": "string"})
    np.testing.assert_array_equal(encoder.transform(as_text), encoder.transform(rows))
