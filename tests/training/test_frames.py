from datetime import UTC, datetime, timedelta

import pytest

from erp_core.domain.errors import InvalidValue
from training import late_shipment as ls
from training.frames import (
    SplitPlan,
    TimeWindow,
    choose_window,
    entry_span,
    load_training_frame,
    split_window,
)

from .conftest import PLAN

SLICES = ("train", "validation", "calibration", "test")


def test_slices_follow_each_other_in_time_with_the_newest_days_for_test():
    window = TimeWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    slices = split_window(window, SplitPlan(validation_days=28, calibration_days=21, test_days=28))
    assert slices.train.start == window.start
    assert slices.test.end == window.end
    assert slices.train.end == slices.validation.start
    assert slices.validation.end == slices.calibration.start
    assert slices.calibration.end == slices.test.start
    assert slices.test.days == 28 and slices.calibration.days == 21


def test_the_default_window_leaves_every_line_the_label_horizon_to_reach_its_outcome(
    training_world,
):
    window = choose_window(training_world.url, PLAN)
    first, last = entry_span(training_world.url)
    assert window.start.date() == first.date()
    assert (last.date() - (window.end.date() - timedelta(days=1))).days == PLAN.label_horizon_days


def test_an_end_too_recent_for_outcomes_is_refused(training_world):
    _, last = entry_span(training_world.url)
    with pytest.raises(InvalidValue, match="have not had 21 days") as error:
        choose_window(training_world.url, PLAN, end=last.date())
    assert error.value.field == "end"


def test_a_window_too_short_for_the_split_says_the_minimum(training_world):
    first, _ = entry_span(training_world.url)
    with pytest.raises(InvalidValue, match="needs at least 77") as error:
        choose_window(
            training_world.url, PLAN, start=first.date(), end=first.date() + timedelta(40)
        )
    assert error.value.field == "window"


def test_an_empty_database_has_nothing_to_learn_from(tmp_path):
    from erp_core.db.migrate import upgrade_to_head

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade_to_head(url)
    with pytest.raises(InvalidValue, match="no order lines"):
        choose_window(url, PLAN)


def test_a_split_plan_with_an_empty_slice_is_refused():
    with pytest.raises(InvalidValue, match="test_days"):
        SplitPlan(test_days=0).check()


def test_the_training_frame_keeps_labelled_rows_of_the_window_in_time_order(
    training_world, calendar, tmp_path
):
    window = choose_window(training_world.url, PLAN)
    data = load_training_frame(
        ls.FEATURE_SET, ls.LABEL, training_world.url, window, PLAN, calendar, tmp_path
    )
    frame = data.frame
    assert frame[ls.LABEL].notna().all()
    assert frame["entered_at"].is_monotonic_increasing
    assert frame["entered_at"].min() >= window.start
    assert frame["entered_at"].max() < window.end
    assert sum(len(data.part(name)) for name in SLICES) == len(frame)
    assert data.manifest_path is not None and data.manifest_path.is_file()
    # erpx's own history computes every feature: nothing for the job to leave out.
    assert data.unavailable == {}
