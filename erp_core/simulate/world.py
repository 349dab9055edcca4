"""The hidden world behind the simulated ERP: products with demand patterns and life cycles,
customers with cadences, suppliers with lead-time distributions, carriers with drifting
reliability, regional weather and promotions. Generated once from a seed; pure numpy, no I/O.

Everything here is *truth*: the ERP only ever sees what the services record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal

import numpy as np

from erp_core.services.master_data import (
    CarrierSpec,
    CustomerSpec,
    LaneSpec,
    LocationSpec,
    MasterData,
    PriceSpec,
    ProductSpec,
    SupplierSpec,
)
from erp_core.simulate.profiles import Profile

CATEGORIES = ("fasteners", "electrical", "plumbing", "tools", "safety", "packaging")
DEMAND_CLASSES = ("fast", "slow", "intermittent", "lumpy")
DEMAND_CLASS_SHARES = (0.25, 0.35, 0.28, 0.12)
TIERS = ("platinum", "gold", "silver", "bronze")
TIER_SHARES = (0.05, 0.15, 0.30, 0.50)
TIER_DISCOUNT = {"platinum": 0.08, "gold": 0.05, "silver": 0.02, "bronze": 0.0}
CHANNELS = ("edi", "e_commerce", "field_sales", "key_account")
CHANNEL_SHARES = (0.30, 0.35, 0.25, 0.10)
CHANNEL_QTY_FACTOR = {"edi": 1.6, "e_commerce": 0.5, "field_sales": 1.0, "key_account": 2.2}
CADENCES = (1, 5, 10, 21, 63)  # business days between orders: daily ... quarterly
CADENCE_SHARES = (0.08, 0.32, 0.25, 0.20, 0.15)
QUANTITY_BREAKS = ((50, 0.03), (200, 0.06))
PRICE_RISE_DAY = 182
PRICE_RISE = 0.04
REGION_NAMES = ("north", "south", "east", "west", "central", "mountain")
EXTRA_REGIONS = ("islands",)


@dataclass(frozen=True)
class Supplier:
    id: str
    nominal_lead_days: int
    delay_pmf: np.ndarray
    """P(delay = d) for d in DELAY_SUPPORT: receipt day minus expected day, normal times."""
    disrupted_pmf: np.ndarray
    disruptions: tuple[tuple[int, int], ...]
    """(first day, last day) windows in which POs placed are disrupted."""

    def pmf_on(self, day: int) -> np.ndarray:
        for first, last in self.disruptions:
            if first <= day <= last:
                return self.disrupted_pmf
        return self.delay_pmf


DELAY_SUPPORT = np.arange(-3, 41)


@dataclass
class World:
    profile: Profile
    seed: int
    start: date
    # products (index = sku number)
    skus: list[str]
    category: np.ndarray
    demand_class: np.ndarray
    unit_cost: np.ndarray
    list_price: np.ndarray
    weight_kg: np.ndarray
    pack_size: np.ndarray
    supplier_of: np.ndarray
    base_rate: np.ndarray
    """Mean order lines per business day per location at maturity, before seasonality."""
    trend: np.ndarray
    season_phase: np.ndarray
    season_amplitude: np.ndarray
    intro_day: np.ndarray
    eol_day: np.ndarray
    qty_mean: np.ndarray
    qty_sigma: np.ndarray
    location_share: np.ndarray
    """(sku, location) share of the SKU's demand."""
    promotions: list[tuple[int, int, int, float]]
    """(sku, first day, last day, discount)."""
    # locations
    locations: list[str]
    location_region: list[str]
    pick_capacity: np.ndarray
    location_quality: np.ndarray
    """(day, location) hidden operational quality: added to the handling-late logit."""
    # customers
    customers: list[str]
    customer_tier: list[str]
    customer_channel: list[str]
    customer_region: list[str]
    customer_home: np.ndarray
    customer_weight: np.ndarray
    customer_cadence: np.ndarray
    customer_phase: np.ndarray
    credit_limit: np.ndarray
    # supply and transport
    suppliers: list[Supplier]
    carriers: list[str]
    carrier_late_logit: np.ndarray
    """(day, carrier) hidden reliability: logit of a transit running late."""
    lane_offset: np.ndarray
    """(carrier, location, region) the lane's own lasting deviation from its carrier."""
    regions: list[str]
    weather: np.ndarray
    """(day, region) extra transit-late logit from weather (0 on calm days)."""
    transit_days: np.ndarray
    """(location, region) standard business days in transit."""
    holidays: frozenset[date] = field(default_factory=frozenset)

    def day_date(self, day: int) -> date:
        return self.start + timedelta(days=day)

    @property
    def n_skus(self) -> int:
        return len(self.skus)


def own_load(base_rate: np.ndarray, location_share: np.ndarray) -> np.ndarray:
    """Lines per business day each location's permanent crew is sized for (its mature load)."""
    return (base_rate[:, None] * location_share * location_share.shape[1]).sum(axis=0)


def build_world(profile: Profile, seed: int, days: int) -> World:
    rng = np.random.default_rng(seed)
    n_sku, n_loc, n_cust = profile.skus, profile.locations, profile.customers
    horizon = days + 60

    demand_class = rng.choice(len(DEMAND_CLASSES), size=n_sku, p=DEMAND_CLASS_SHARES)
    class_rate = np.array([2.0, 0.35, 0.12, 0.08])[demand_class]
    base_rate = class_rate * rng.lognormal(0.0, 0.5, n_sku)
    base_rate *= profile.lines_per_day / n_loc / base_rate.sum()
    unit_cost = np.round(rng.lognormal(2.3, 0.9, n_sku), 2) + 0.5
    list_price = np.round(unit_cost * rng.uniform(1.35, 1.9, n_sku), 2)
    qty_mean = np.where(demand_class == 3, 40.0, np.where(demand_class == 0, 8.0, 4.0))
    qty_mean = qty_mean * rng.lognormal(0.0, 0.4, n_sku)
    qty_sigma = np.where(demand_class == 3, 1.1, 0.6)
    # Life cycles: most items live through the horizon; some launch late or are phased out.
    intro_day = np.where(rng.random(n_sku) < 0.12, rng.integers(20, max(21, days), n_sku), -400)
    eol_day = np.where(rng.random(n_sku) < 0.08, rng.integers(30, max(31, days), n_sku), 10**6)
    location_share = rng.dirichlet(np.full(n_loc, 3.0), n_sku)

    promotions = []
    for sku in np.flatnonzero(rng.random(n_sku) < 0.3):
        for _ in range(int(rng.integers(1, 3))):
            first = int(rng.integers(7, max(8, days - 14)))
            promotions.append(
                (
                    int(sku),
                    first,
                    first + int(rng.integers(5, 15)),
                    float(rng.choice([0.1, 0.15, 0.2])),
                )
            )

    regions = list(REGION_NAMES[:n_loc]) + list(EXTRA_REGIONS)
    location_region = list(REGION_NAMES[:n_loc])
    transit = rng.integers(2, 5, size=(n_loc, len(regions)))
    for loc in range(n_loc):
        transit[loc, loc] = 1
    customer_region_ix = rng.integers(0, len(regions), n_cust)
    home = np.where(customer_region_ix < n_loc, customer_region_ix, rng.integers(0, n_loc, n_cust))
    tiers = rng.choice(len(TIERS), size=n_cust, p=TIER_SHARES)
    channels = rng.choice(len(CHANNELS), size=n_cust, p=CHANNEL_SHARES)
    cadence = rng.choice(CADENCES, size=n_cust, p=CADENCE_SHARES)
    weight = rng.pareto(1.5, n_cust) + 0.2
    weight *= np.array([3.0, 2.0, 1.3, 1.0])[tiers]
    credit = np.round(rng.lognormal(10.5, 0.8, n_cust), -2)
    credit[rng.random(n_cust) < 0.05] = 800.0  # a few customers live close to their limit

    suppliers = [_supplier(rng, i, horizon) for i in range(profile.suppliers)]
    supplier_of = rng.integers(0, profile.suppliers, n_sku)

    # A standard carrier missing one promised day in seven would lose the contract: the
    # reliabilities drawn stay between ~1% and ~4% late on a calm day (drift, lanes and storms
    # come on top). A wider range let one seed's main carrier run 14% late for a whole year.
    carrier_base = rng.uniform(-4.4, -3.1, profile.carriers)
    drift = mean_reverting_drift(rng, horizon, profile.carriers, spread=0.35)
    lane_offset = rng.normal(
        0.0, 0.6, (profile.carriers, n_loc, len(REGION_NAMES[:n_loc]) + len(EXTRA_REGIONS))
    )
    carrier_late_logit = carrier_base + drift
    weather = _weather(rng, horizon, regions)
    quality = mean_reverting_drift(rng, horizon, n_loc, spread=0.3)
    quality += rng.normal(0, 0.4, n_loc)
    # Each warehouse's permanent crew is sized for its own load (a busy Monday plus headroom): a
    # location whose daily lines outgrow its pick capacity has a queue that never drains. This is
    # the ERP's nominal capacity; the staffing plan and the flex on top of it are in staffing.py.
    capacity = np.maximum(
        5, np.ceil(own_load(base_rate, location_share) * 1.12 * rng.uniform(1.3, 1.6, n_loc))
    ).astype(int)

    return World(
        profile=profile,
        seed=seed,
        start=profile.start,
        skus=[f"SKU-{i:05d}" for i in range(n_sku)],
        category=rng.integers(0, len(CATEGORIES), n_sku),
        demand_class=demand_class,
        unit_cost=unit_cost,
        list_price=list_price,
        weight_kg=np.round(rng.lognormal(0.0, 0.8, n_sku), 3),
        pack_size=rng.choice([1, 1, 1, 6, 12, 24], n_sku),
        supplier_of=supplier_of,
        base_rate=base_rate,
        trend=rng.normal(0.0, 0.25, n_sku) / 365,
        season_phase=rng.uniform(0, 2 * np.pi, n_sku),
        season_amplitude=rng.uniform(0.0, 0.45, n_sku),
        intro_day=intro_day,
        eol_day=eol_day,
        qty_mean=qty_mean,
        qty_sigma=qty_sigma,
        location_share=location_share,
        promotions=promotions,
        locations=[f"DC-{r.upper()}" for r in location_region],
        location_region=location_region,
        pick_capacity=capacity,
        location_quality=quality,
        customers=[f"C-{i:05d}" for i in range(n_cust)],
        customer_tier=[TIERS[t] for t in tiers],
        customer_channel=[CHANNELS[c] for c in channels],
        customer_region=[regions[r] for r in customer_region_ix],
        customer_home=home,
        customer_weight=weight,
        customer_cadence=cadence,
        customer_phase=rng.integers(0, 63, n_cust),
        credit_limit=credit,
        suppliers=suppliers,
        carriers=[f"CAR-{i}" for i in range(profile.carriers)],
        carrier_late_logit=carrier_late_logit,
        lane_offset=lane_offset,
        regions=regions,
        weather=weather,
        transit_days=transit,
        holidays=holidays_between(profile.start, horizon),
    )


def mean_reverting_drift(
    rng: np.random.Generator, horizon: int, series: int, spread: float, persistence: float = 0.98
) -> np.ndarray:
    """Day-to-day drift that wanders for weeks but comes back (AR(1) with stationary standard
    deviation ``spread``): a random walk would carry a carrier anywhere over two years."""
    shocks = rng.normal(0.0, spread * np.sqrt(1 - persistence**2), (horizon, series))
    drift = np.empty((horizon, series))
    drift[0] = rng.normal(0.0, spread, series)
    for day in range(1, horizon):
        drift[day] = persistence * drift[day - 1] + shocks[day]
    return drift


def _supplier(rng: np.random.Generator, index: int, horizon: int) -> Supplier:
    mean = rng.uniform(-0.5, 2.5)
    spread = rng.uniform(0.8, 3.0)
    normal = np.exp(-0.5 * ((DELAY_SUPPORT - mean) / spread) ** 2)
    normal /= normal.sum()
    disrupted = np.where((DELAY_SUPPORT >= 5) & (DELAY_SUPPORT <= 25), 1.0, 0.0)
    disrupted = 0.4 * normal + 0.6 * disrupted / disrupted.sum()
    windows = []
    for _ in range(int(rng.poisson(horizon / 240))):
        first = int(rng.integers(0, horizon))
        windows.append((first, first + int(rng.integers(7, 30))))
    return Supplier(
        id=f"SUP-{index:03d}",
        nominal_lead_days=int(rng.integers(7, 29)),
        delay_pmf=normal,
        disrupted_pmf=disrupted,
        disruptions=tuple(windows),
    )


def _weather(rng: np.random.Generator, horizon: int, regions: list[str]) -> np.ndarray:
    """Storm days by region: more in winter in the north, in late summer in the south."""
    weather = np.zeros((horizon, len(regions)))
    for r, _name in enumerate(regions):
        storms = int(rng.poisson(horizon / 45))
        for _ in range(storms):
            first = int(rng.integers(0, horizon))
            weather[first : first + int(rng.integers(1, 5)), r] += rng.uniform(1.5, 3.0)
    return weather


@dataclass(frozen=True)
class Storm:
    """A run of consecutive days with weather in one region (overlapping storms merge)."""

    region: int
    first_day: int
    last_day: int
    strength: float
    """The run's highest extra transit-late logit."""

    @property
    def severity(self) -> int:
        """The carriers' alert level: 1 below 2.0, 2 below 2.5, 3 from there."""
        return 1 if self.strength < 2.0 else 2 if self.strength < 2.5 else 3


def storms(weather: np.ndarray) -> list[Storm]:
    """Every storm of a (day, region) weather table, by first day then region: what the carriers
    see coming and announce (derived from the weather alone, so it draws no random number)."""
    found = []
    for r in range(weather.shape[1]):
        stormy = np.concatenate(([False], weather[:, r] > 0, [False]))
        edges = np.flatnonzero(stormy[1:] != stormy[:-1])
        for first, end in zip(edges[::2], edges[1::2], strict=True):
            strength = float(weather[first:end, r].max())
            found.append(Storm(r, int(first), int(end) - 1, strength))
    return sorted(found, key=lambda storm: (storm.first_day, storm.region))


def holidays_between(start: date, days: int) -> frozenset[date]:
    """Fixed-date public holidays of the simulated years (New Year, Independence, Christmas)."""
    years = range(start.year, (start + timedelta(days=days)).year + 1)
    return frozenset(date(y, m, d) for y in years for m, d in ((1, 1), (7, 4), (12, 25), (12, 26)))


def peak_season(day: date) -> bool:
    """Mid-November to Christmas: the carriers' and warehouses' busiest weeks."""
    return (day.month == 11 and day.day >= 15) or (day.month == 12 and day.day <= 24)


def tier_price(list_price: float, tier: str) -> Decimal:
    return Decimal(str(round(list_price * (1 - TIER_DISCOUNT[tier]), 2)))


def master_data(world: World) -> MasterData:
    """The world as the ERP's master data (what a distributor would have keyed in)."""
    w = world
    products = [
        ProductSpec(
            sku=sku,
            name=f"{CATEGORIES[w.category[i]]} item {i}",
            category=CATEGORIES[w.category[i]],
            unit_cost=Decimal(str(w.unit_cost[i])),
            list_price=Decimal(str(w.list_price[i])),
            weight_kg=Decimal(str(w.weight_kg[i])),
            pack_size=int(w.pack_size[i]),
            preferred_supplier_id=w.suppliers[w.supplier_of[i]].id,
            abc_class=_abc(w)[i],
        )
        for i, sku in enumerate(w.skus)
    ]
    lanes = []
    for c, carrier in enumerate(w.carriers):
        for loc, location in enumerate(w.locations):
            for r, region in enumerate(w.regions):
                transit = int(w.transit_days[loc, r]) + (c % 2)
                cost = Decimal(str(40 + 15 * transit + 5 * c))
                lanes.append(
                    LaneSpec(carrier, location, region, transit, cost, cost_per_kg=Decimal("0.35"))
                )
                lanes.append(
                    LaneSpec(
                        carrier,
                        location,
                        region,
                        max(1, transit - 2),
                        cost * 3,
                        service_level="express",
                        cost_per_kg=Decimal("1.10"),
                    )
                )
    return MasterData(
        suppliers=[
            SupplierSpec(s.id, f"Supplier {s.id}", s.nominal_lead_days) for s in w.suppliers
        ],
        locations=[
            LocationSpec(
                loc,
                f"{region.title()} DC",
                region,
                int(w.pick_capacity[i]),
                cutoff_time=time(15, 0),
            )
            for i, (loc, region) in enumerate(zip(w.locations, w.location_region, strict=True))
        ],
        products=products,
        customers=[
            CustomerSpec(
                id=cid,
                name=f"Customer {cid}",
                tier=w.customer_tier[i],
                credit_limit=Decimal(str(w.credit_limit[i])),
                channel=w.customer_channel[i],
                region=w.customer_region[i],
                service_level_target=Decimal("0.98")
                if w.customer_tier[i] in ("platinum", "gold")
                else Decimal("0.95"),
                home_location_id=w.locations[int(w.customer_home[i])],
            )
            for i, cid in enumerate(w.customers)
        ],
        carriers=[CarrierSpec(c, f"Carrier {c}") for c in w.carriers],
        lanes=lanes,
        prices=price_list(w),
    )


def price_list(world: World) -> list[PriceSpec]:
    """Tier prices with quantity breaks, a yearly price rise and promotions (known in advance)."""
    w = world
    specs = []
    rise_on = w.day_date(PRICE_RISE_DAY)
    for i, sku in enumerate(w.skus):
        for tier in TIERS:
            for valid_from, factor in ((date(2000, 1, 1), 1.0), (rise_on, 1 + PRICE_RISE)):
                base = float(w.list_price[i]) * factor
                specs.append(PriceSpec(tier, sku, tier_price(base, tier), 1, valid_from))
                for min_qty, extra in QUANTITY_BREAKS:
                    specs.append(
                        PriceSpec(
                            tier, sku, tier_price(base * (1 - extra), tier), min_qty, valid_from
                        )
                    )
    for sku_ix, first, last, discount in w.promotions:
        for tier in TIERS:
            base = float(w.list_price[sku_ix]) * (1 + PRICE_RISE if first >= PRICE_RISE_DAY else 1)
            after = float(w.list_price[sku_ix]) * (
                1 + PRICE_RISE if last + 1 >= PRICE_RISE_DAY else 1
            )
            specs.append(
                PriceSpec(
                    tier,
                    w.skus[sku_ix],
                    tier_price(base * (1 - discount), tier),
                    1,
                    w.day_date(first),
                )
            )
            specs.append(
                PriceSpec(tier, w.skus[sku_ix], tier_price(after, tier), 1, w.day_date(last + 1))
            )
    return _dedupe_prices(specs)


def _dedupe_prices(specs: list[PriceSpec]) -> list[PriceSpec]:
    latest: dict[tuple[str, str, int, date], PriceSpec] = {}
    for spec in specs:
        latest[(spec.tier, spec.sku, spec.min_quantity, spec.valid_from)] = spec
    return list(latest.values())


def _abc(world: World) -> list[str]:
    volume = world.base_rate * world.qty_mean * world.unit_cost
    order = np.argsort(-volume)
    share = np.cumsum(volume[order]) / volume.sum()
    classes = np.empty(len(volume), dtype="<U1")
    classes[order] = np.where(share <= 0.8, "A", np.where(share <= 0.95, "B", "C"))
    return classes.tolist()
