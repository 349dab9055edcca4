"""The SCMS protocol: the split is by scheduled date, the static baseline learns from the
training years only, and on the real file the scorers rank far better than chance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from erp_core.importers.scms import read_scms
from tests.erp_core.importers.test_scms import scms_path  # noqa: F401  (the real file's fixture)
from tests.features.test_scms import _lines
from training.scms import TEST_FROM, evaluate_scms, vendor_mode_rate


def test_the_vendor_mode_baseline_never_reads_a_test_line_s_outcome() -> None:
    lines = _lines(600)
    train = (lines["scheduled_delivery_date"] < pd.Timestamp("2011-06-01")).to_numpy()
    before = vendor_mode_rate(lines, train, ~train)
    flipped = lines.copy()
    flipped.loc[~train, "late"] = ~flipped.loc[~train, "late"]
    np.testing.assert_array_equal(before, vendor_mode_rate(flipped, train, ~train))
    flipped.loc[train, "late"] = ~flipped.loc[train, "late"]
    assert not np.array_equal(before, vendor_mode_rate(flipped, train, ~train))


def test_on_the_real_file_the_split_is_by_scheduled_date_and_every_scorer_ranks(
    scms_path,  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    lines = read_scms(scms_path).lines
    evaluation = evaluate_scms(lines)
    assert evaluation.train_lines == int((lines["scheduled_delivery_date"] < TEST_FROM).sum())
    assert evaluation.train_lines + evaluation.test_lines == len(lines) == 10_324
    assert evaluation.model.positives == int(
        lines.loc[lines["scheduled_delivery_date"] >= TEST_FROM, "late"].sum()
    )
    for scores in (evaluation.model, evaluation.vendor_mode_rate, evaluation.logistic):
        assert 0.70 < scores.roc_auc < 0.95
    assert len(evaluation.test_probabilities) == evaluation.test_lines
