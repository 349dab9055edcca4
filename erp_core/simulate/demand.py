"""True demand: the rate each SKU x location x day draws its order lines from, and the expected
units behind it (the ground truth the demand forecast is judged against)."""

from __future__ import annotations

from datetime import date

import numpy as np

from erp_core.simulate.world import CHANNEL_QTY_FACTOR, CHANNELS, World, peak_season

WEEKDAY_FACTOR = np.array([1.12, 1.0, 1.0, 0.98, 0.9, 0.06, 0.02])
HOLIDAY_FACTOR = 0.08
_QUANTILES = (np.arange(2000) + 0.5) / 2000


def line_rate(world: World, day: int) -> np.ndarray:
    """Expected order lines on ``day`` per (sku, location)."""
    w = world
    when = w.day_date(day)
    calendar = calendar_factor(w, when)
    yearly = 1 + w.season_amplitude * np.sin(
        2 * np.pi * when.timetuple().tm_yday / 365.25 + w.season_phase
    )
    trend = np.exp(w.trend * day)
    ramp_up = np.clip((day - w.intro_day) / 30.0, 0.0, 1.0)
    ramp_down = np.clip(1 - (day - w.eol_day) / 20.0, 0.0, 1.0)
    promo = np.ones(w.n_skus)
    for sku, first, last, discount in w.promotions:
        if first <= day <= last:
            promo[sku] = 1 + 4 * discount
    peak = np.where(np.isin(w.category, (0, 5)) & peak_season(when), 1.25, 1.0)
    per_sku = w.base_rate * calendar * yearly * trend * ramp_up * ramp_down * promo * peak
    return per_sku[:, None] * w.location_share * w.location_share.shape[1]


def calendar_factor(world: World, when: date) -> float:
    """The day's share of a plain weekday's lines: weekends and holidays are quiet."""
    holiday = HOLIDAY_FACTOR if when in world.holidays else 1.0
    return float(WEEKDAY_FACTOR[when.weekday()] * holiday)


def draw_quantities(
    world: World, rng: np.random.Generator, skus: np.ndarray, factors: np.ndarray
) -> np.ndarray:
    """Units per line: lognormal around the SKU's typical size, scaled by the channel."""
    sigma = world.qty_sigma[skus]
    raw = rng.lognormal(np.log(world.qty_mean[skus]) - sigma**2 / 2, sigma) * factors
    return np.maximum(1, np.rint(raw)).astype(int)


def expected_quantity_by_channel(world: World) -> np.ndarray:
    """E[units per line] per (sku, channel), integrating the same rounding the draw applies."""
    from scipy.stats import norm

    z = norm.ppf(_QUANTILES)
    sigma = world.qty_sigma[:, None]
    base = np.exp(np.log(world.qty_mean)[:, None] - sigma**2 / 2 + sigma * z[None, :])
    table = np.empty((world.n_skus, len(CHANNELS)))
    for c, channel in enumerate(CHANNELS):
        table[:, c] = np.maximum(1, np.rint(base * CHANNEL_QTY_FACTOR[channel])).mean(axis=1)
    return table


def active_customers(world: World, business_day_index: int) -> np.ndarray:
    """Customers whose ordering cadence falls on this business day."""
    return (business_day_index + world.customer_phase) % world.customer_cadence == 0


def customer_odds(world: World, active: np.ndarray, location: int) -> np.ndarray:
    """P(a line at ``location`` belongs to each customer) given who orders today."""
    at_location = world.customer_home == location
    weights = world.customer_weight * at_location * np.where(active, 1.0, 0.0)
    if weights.sum() == 0:
        weights = world.customer_weight * at_location
    return weights / weights.sum()


def expected_units(
    world: World, day: int, business_day_index: int, qty_table: np.ndarray
) -> np.ndarray:
    """True expected units ordered per (sku, location) on ``day``."""
    rate = line_rate(world, day)
    active = active_customers(world, business_day_index)
    channel_ix = np.array([CHANNELS.index(c) for c in world.customer_channel])
    units = np.empty_like(rate)
    for loc in range(rate.shape[1]):
        odds = customer_odds(world, active, loc)
        channel_mix = np.bincount(channel_ix, weights=odds, minlength=len(CHANNELS))
        units[:, loc] = rate[:, loc] * (qty_table @ channel_mix)
    return units


def is_business_day(world: World, when: date) -> bool:
    return when.weekday() < 5 and when not in world.holidays
