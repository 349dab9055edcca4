"""A simulated small world looks like a real distributor, its truth lines up with the ERP, and the
same seed gives the same database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, func, inspect, select

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.db.migrate import upgrade_to_head
from erp_core.db.models import OrderLine, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.policy import load_policy
from erp_core.services.integrity import all_violations
from erp_core.services.master_data import load_master_data
from erp_core.simulate import truth
from erp_core.simulate.run import SETTLING_DAYS, rank_auc, simulate
from tests.conftest import ADMIN, T0
from tests.conftest import small_world as hand_made_world
from tests.erp_core.simulate.conftest import SEED, settings_for


def order_lines(settings) -> pd.DataFrame:
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        frame = pd.read_sql(
            select(
                OrderLine.id,
                OrderLine.order_id,
                OrderLine.sku,
                OrderLine.quantity,
                OrderLine.state,
                OrderLine.location_id,
                OrderLine.unit_price,
                OrderLine.entered_at,
            ).order_by(OrderLine.id),
            conn,
        )
    engine.dispose()
    return frame


def test_late_delivery_and_fill_rate_look_like_a_real_distributor(simulated_world):
    _, summary = simulated_world
    assert 0.05 <= summary.late_delivery_rate <= 0.20
    assert 0.88 <= summary.line_fill_rate <= 0.98
    assert summary.lines > 1000


def test_world_predictable_but_not_trivially_so(simulated_world):
    _, summary = simulated_world
    assert 0.6 < summary.oracle_auc_delivery < 0.95


def test_items_and_customers_have_a_realistic_mix(simulated_world):
    _, summary = simulated_world
    assert all(summary.item_mix[kind] > 0.05 for kind in ("fast", "slow", "intermittent"))
    assert summary.customer_cadence_mix["weekly"] > 0.2
    assert summary.customer_cadence_mix["quarterly"] > 0.0


def test_line_and_pricing_truth_line_up_with_the_erp_one_to_one(simulated_world):
    settings, summary = simulated_world
    lines = order_lines(settings)
    folder = Path(summary.truth_dir)
    line_truth = pd.read_parquet(folder / truth.LINES)
    pricing_truth = pd.read_parquet(folder / truth.PRICING)
    assert sorted(line_truth.line_id) == sorted(lines.id)
    assert sorted(pricing_truth.line_id) == sorted(lines.id)
    by_line = line_truth.set_index("line_id").join(lines.set_index("id"), suffixes=("", "_erp"))
    assert (by_line.order_id == by_line.order_id_erp).all()
    promised = by_line[by_line.cause != "never_promised"]
    assert promised.p_late_delivery.between(0, 1).all()
    assert (promised.p_late_delivery >= promised.p_late_ship - 1e-12).all()


def test_realised_outcomes_follow_the_drawn_fates(simulated_world):
    _, summary = simulated_world
    frame = pd.read_parquet(Path(summary.truth_dir) / truth.LINES)
    settled = frame.entered_on <= frame.entered_on.max() - pd.Timedelta(days=SETTLING_DAYS)
    delivered = frame[settled & frame.late_delivery.notna() & (frame.cause != "never_promised")]
    from_stock = delivered[~delivered.cause.str.contains("stock")]
    drawn = from_stock.drawn_handling_late | from_stock.drawn_transit_late
    # A line from stock is late exactly when its handling or transit was drawn late...
    assert (from_stock.late_delivery == drawn).all()
    # ...and those draws follow the recorded probabilities: the mean gap between outcome and
    # probability is within four standard errors (lines of one order share a truck, so the
    # error is computed over orders).
    gap = from_stock.late_delivery.astype(float) - from_stock.p_late_delivery
    per_order = gap.groupby(from_stock.order_id).sum()
    standard_error = np.sqrt((per_order**2).sum()) / len(from_stock)
    assert abs(gap.mean()) < 4 * standard_error


def test_demand_truth_covers_every_sku_location_day_and_matches_what_was_ordered(simulated_world):
    settings, summary = simulated_world
    demand = pd.read_parquet(Path(summary.truth_dir) / truth.DEMAND)
    assert len(demand) == summary.days * 30 * 2
    assert (demand.expected_units >= 0).all()
    ordered = order_lines(settings)
    realised = ordered.quantity.sum()
    expected = demand.expected_units.sum()
    # Every line of the run comes from these rates (split lines only divide quantities).
    assert abs(realised - expected) / expected < 0.1


def test_simulated_books_balance(simulated_world):
    settings, _ = simulated_world
    engine = make_engine(settings.database_url)
    uow = UnitOfWork(make_session_factory(engine), load_policy())
    with uow:
        assert all_violations(uow.session) == []
    engine.dispose()


def test_same_seed_gives_the_same_order_table(tmp_path):
    first = settings_for(tmp_path, "first")
    second = settings_for(tmp_path, "second")
    simulate(first, "small", days=12, seed=SEED)
    simulate(second, "small", days=12, seed=SEED)
    a, b = order_lines(first), order_lines(second)
    assert len(a) > 50
    pd.testing.assert_frame_equal(a, b)


def test_another_seed_gives_another_world(tmp_path):
    first = settings_for(tmp_path, "first")
    other = settings_for(tmp_path, "other")
    simulate(first, "small", days=8, seed=1)
    simulate(other, "small", days=8, seed=2)
    assert not order_lines(first).equals(order_lines(other))


@pytest.mark.parametrize(
    ("profile", "days", "field", "error"),
    [
        ("huge", 5, "profile", InvalidValue),
        ("small", 0, "days", InvalidValue),
        ("small", -3, "days", InvalidValue),
    ],
)
def test_bad_request_is_refused_before_anything_is_written(tmp_path, profile, days, field, error):
    settings = settings_for(tmp_path)
    with pytest.raises(error) as refused:
        simulate(settings, profile, days=days)
    assert refused.value.field == field
    assert not (tmp_path / "world.db").exists()


def test_database_with_data_is_refused_and_left_alone(simulated_world):
    settings, _ = simulated_world
    before = order_lines(settings)
    with pytest.raises(InvalidValue) as refused:
        simulate(settings, "small", days=3)
    assert refused.value.field == "database_url"
    pd.testing.assert_frame_equal(order_lines(settings), before)


def test_unreachable_database_is_refused(tmp_path):
    settings = settings_for(tmp_path).model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:1/nothing"}
    )
    with pytest.raises(InvalidValue) as refused:
        simulate(settings, "small", days=3)
    assert refused.value.field == "database_url"
    assert "cannot connect" in refused.value.message


def test_rank_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    scores = rng.random(200).round(2)  # with ties
    outcomes = rng.random(200) < scores
    pairs = [
        (s_pos > s_neg) + 0.5 * (s_pos == s_neg)
        for s_pos in scores[outcomes]
        for s_neg in scores[~outcomes]
    ]
    assert rank_auc(scores, outcomes) == pytest.approx(np.mean(pairs))


def test_simulated_database_is_marked_as_simulated(simulated_world):
    settings, _ = simulated_world
    engine = make_engine(settings.database_url)
    assert "sim_runs" in inspect(engine).get_table_names()
    runs = truth.simulated_runs(engine)
    with engine.connect() as conn:
        orders = conn.execute(select(func.count(SalesOrder.id))).scalar_one()
    engine.dispose()
    assert [(r["profile"], r["seed"]) for r in runs] == [("small", SEED)]
    assert runs[0]["summary"]["orders"] == orders
    assert NotFound  # (imported for the refusal tests' error table)


def test_append_adds_the_world_beside_foreign_data_and_leaves_it_alone(tmp_path):
    settings = settings_for(tmp_path)
    upgrade_to_head(settings.database_url)  # as `erpx init` leaves it
    foreign = UnitOfWork.from_url(settings.database_url)
    load_master_data(foreign, ADMIN, hand_made_world(), T0)
    foreign.engine.dispose()
    with pytest.raises(InvalidValue) as refused:
        simulate(settings, "small", days=3)
    assert "--append" in refused.value.message
    summary = simulate(settings, "small", days=6, append=True)
    assert summary.lines > 0
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        widget = conn.execute(
            select(func.count()).select_from(OrderLine).where(OrderLine.sku == "WIDGET")
        ).scalar_one()
    engine.dispose()
    assert widget == 0
    # The same world twice would reuse its ids: refused, naming the one taken.
    with pytest.raises(InvalidValue) as again:
        simulate(settings, "small", days=3, append=True)
    assert again.value.field == "products"
