import lightgbm as lgb
import numpy as np

from training.path_attribution import PathAttribution


def _booster(
    num_leaves: int, rounds: int = 40, seed: int = 3, constant_column: int | None = None
) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, 6))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take LightGBM's default branch
    if constant_column is not None:
        X[:, constant_column] = 1.0  # LightGBM never splits on a constant
    logit = 1.5 * np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    y = (rng.random(2000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "min_data_in_leaf": 20,
        "learning_rate": 0.1,
        "verbose": -1,
        "seed": seed,
    }
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=rounds), X


def test_contributions_add_up_to_the_raw_score_row_by_row():
    booster, X = _booster(num_leaves=31)
    attribution = PathAttribution(booster.num_trees()).fit(booster)
    contributions = attribution.contributions(booster, X[:300])
    assert contributions.shape == (300, X.shape[1] + 1)
    np.testing.assert_allclose(
        contributions.sum(axis=1), booster.predict(X[:300], raw_score=True), atol=1e-9
    )


def test_on_trees_of_one_split_they_are_treeshap_values():
    booster, X = _booster(num_leaves=2)
    attribution = PathAttribution(booster.num_trees()).fit(booster)
    np.testing.assert_allclose(
        attribution.contributions(booster, X[:300]),
        booster.predict(X[:300], pred_contrib=True),
        atol=1e-9,
    )


def test_only_the_first_trees_count_when_fewer_are_kept():
    booster, X = _booster(num_leaves=15)
    attribution = PathAttribution(10).fit(booster)
    np.testing.assert_allclose(
        attribution.contributions(booster, X[:50]).sum(axis=1),
        booster.predict(X[:50], raw_score=True, num_iteration=10),
        atol=1e-9,
    )


def test_a_feature_no_tree_splits_on_gets_nothing():
    booster, X = _booster(num_leaves=7, constant_column=5)
    assert booster.feature_importance()[5] == 0
    contributions = PathAttribution(booster.num_trees()).fit(booster).contributions(booster, X)
    assert np.all(contributions[:, 5] == 0.0)
    assert np.any(contributions[:, 0] != 0.0)


def test_the_raw_score_from_the_leaves_is_lightgbms_to_the_bit():
    booster, X = _booster(num_leaves=31, rounds=60)
    attribution = PathAttribution(booster.num_trees()).fit(booster)
    leaves = attribution.leaves(booster, X)
    np.testing.assert_array_equal(attribution.raw_score(leaves), booster.predict(X, raw_score=True))
