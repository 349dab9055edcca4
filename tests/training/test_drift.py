import numpy as np
import pandas as pd
import pytest

from training.drift import profile_column, psi, verdict


def test_the_same_distribution_is_stable():
    rng = np.random.default_rng(1)
    profile = profile_column("x", rng.normal(size=50_000), categorical=False)
    assert psi(profile, rng.normal(size=50_000)) < 0.01
    assert verdict(psi(profile, rng.normal(size=50_000))) == "stable"


def test_a_shifted_mean_is_a_major_drift():
    rng = np.random.default_rng(2)
    profile = profile_column("x", rng.normal(size=50_000), categorical=False)
    assert verdict(psi(profile, rng.normal(loc=1.0, size=50_000))) == "major"


def test_missing_values_appearing_count_as_drift():
    values = np.arange(1000, dtype=float)
    profile = profile_column("x", values, categorical=False)
    half_missing = values.copy()
    half_missing[::2] = np.nan
    assert psi(profile, half_missing) > 0.25


def test_categories_compare_shares_and_unseen_levels_drift():
    profile = profile_column("tier", pd.Series(["gold"] * 50 + ["bronze"] * 50), categorical=True)
    assert psi(profile, pd.Series(["gold"] * 50 + ["bronze"] * 50)) == pytest.approx(0.0)
    assert psi(profile, pd.Series(["gold"] * 50 + ["platinum"] * 50)) > 0.25
