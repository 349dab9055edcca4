"""Features an imported history cannot compute are unavailable: null in the frame (never 0 or
false), named with their reason in the manifest and by ``erpx features build``, and left out of
the model, which trains on the rest and scores online.

The world is test_erp_export's small simulated one (20 days), exported in the ERP export format
and imported into empty SQLite databases: once whole, once without its purchase orders, receipts
and inventory snapshots. erpx's own database of the same world reports nothing unavailable. The
real SCMS file, imported whole, is the slow case.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine
from typer.testing import CliRunner

from erp_core.db.migrate import upgrade_to_head
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.importers.scms_export import import_scms
from erp_core.policy import load_policy
from erp_core.settings import Settings, get_settings
from features import availability as av
from features.availability import LATE_SHIPMENT_GAPS, Sources, late_shipment_unavailable
from features.build import BuildResult, build_feature_set
from features.history import History, load_history
from features.late_shipment import entry_rows, late_shipment_frame, to_micros
from features.online import OnlineFeatures, drafts_from_entry_rows
from features.registry import LATE_SHIPMENT
from features.store import read_manifest
from serving.cli import app
from serving.late_risk import score_late_risk
from serving.models import ServedModel
from tests.erp_core.importers.test_erp_export import (
    Exported,
    copy_export,
    exported,  # noqa: F401  (the module-scoped fixture: the small world and its export)
    fresh_database,
    id_maps,
    load,
)
from training import tracking
from training.frames import SplitPlan
from training.jobs import train_late_shipment

CALENDAR = load_policy().calendar
WINDOW = (date(2025, 1, 1), date(2026, 1, 1))
PROCUREMENT = ("purchase_orders", "purchase_order_lines", "receipts", "inventory_snapshots")
WITHOUT_PROCUREMENT = {
    "stock_cover": "no inventory snapshots were imported",
    "backorder_receipt_covered": "no purchase orders were imported",
    "covering_receipt_overdue_bdays": "no purchase orders were imported",
    "supplier_days_late_56d": "no goods receipts were imported",
    "supplier_late_share_56d": "no goods receipts were imported",
}
"""What the import without procurement lacks, and the reason each names."""
FORMAT_GAPS = {av.NO_PRICE_APPROVALS, av.NO_SERVICE_ALERTS, av.NO_ENTRY_STATES}
"""What every import of this world lacks: price approvals and service alerts (the format does
not carry them; erpx's own database of the world holds one approval and an alert), and any line
that entered backordered or on credit hold (none did in its 20 days; an import cannot tell that
from a source that does not record the state at capture)."""
TIGHT_PLAN = SplitPlan(
    validation_days=3, calibration_days=3, test_days=4, min_train_days=5, label_horizon_days=3
)
"""The 20-day world split to train on (the model's quality is not the point here)."""
QUICK_MODEL = {"min_child_samples": 5, "n_estimators": 50, "early_stopping_rounds": 10}


def without(world: Exported, folder: Path, entities: tuple[str, ...]) -> Path:
    """A copy of the export without these (optional) entities' files, manifest to match."""
    directory = copy_export(world, folder)
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entity in entities:
        (directory / f"{entity}.csv").unlink()
        manifest["row_counts"].pop(entity, None)
    manifest_path.write_text(json.dumps(manifest))
    return directory


@dataclass(frozen=True)
class Imports:
    own_url: str
    full_url: str
    """The whole export imported."""
    cut_url: str
    """The export without purchase orders, their lines, receipts and inventory snapshots."""


@pytest.fixture(scope="module")
def imports(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Imports:  # noqa: F811
    folder = tmp_path_factory.mktemp("availability")
    full_url = fresh_database(folder, "full.db")
    assert load(full_url, exported.directory).rows_rejected == 0
    cut_url = fresh_database(folder, "cut.db")
    report = load(cut_url, without(exported, folder / "cut", PROCUREMENT))
    assert report.rows_rejected == 0
    assert all(report.entities[entity].absent for entity in PROCUREMENT)
    return Imports(exported.source_url, full_url, cut_url)


@pytest.fixture(scope="module")
def full_history(imports: Imports) -> History:
    return load_history(imports.full_url)


def build(url: str, out: Path) -> BuildResult:
    return build_feature_set("late_shipment", url, *WINDOW, out, CALENDAR)


@pytest.fixture(scope="module")
def builds(imports: Imports, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    folder = tmp_path_factory.mktemp("availability-frames")
    return {
        name: build(url, folder / name)
        for name, url in (
            ("own", imports.own_url),
            ("full", imports.full_url),
            ("cut", imports.cut_url),
        )
    }


# --- the rules -----------------------------------------------------------------------------------


def imported_with(history: History, *gaps: str, years: tuple[int, ...] = (2025,)) -> History:
    return replace(
        history,
        sources=Sources(frozenset({"order_lines"}), frozenset(gaps), frozenset(years)),
    )


def test_every_rule_names_declared_features() -> None:
    declared = set(LATE_SHIPMENT.feature_names)
    for gap in LATE_SHIPMENT_GAPS.values():
        assert set(gap.features) <= declared, gap.features
        assert gap.reason
    assert set(av.HOLIDAY_FEATURES) <= declared


@pytest.mark.parametrize("gap", sorted(LATE_SHIPMENT_GAPS))
def test_each_gap_makes_its_features_unavailable_with_its_reason(
    full_history: History, gap: str
) -> None:
    found = late_shipment_unavailable(imported_with(full_history, gap), CALENDAR)
    rule = LATE_SHIPMENT_GAPS[gap]
    assert found == dict.fromkeys(rule.features, rule.reason)


def test_a_feature_two_gaps_hit_gives_both_reasons(full_history: History) -> None:
    found = late_shipment_unavailable(
        imported_with(full_history, av.NO_LINE_LANES, av.NO_LANE_TRANSIT_DAYS), CALENDAR
    )
    reasons = found["lane_transit_days"].split("; ")
    assert sorted(reasons) == sorted(
        [
            LATE_SHIPMENT_GAPS[av.NO_LINE_LANES].reason,
            LATE_SHIPMENT_GAPS[av.NO_LANE_TRANSIT_DAYS].reason,
        ]
    )


def test_the_rules_apply_to_imported_history_only(full_history: History) -> None:
    every_gap = frozenset(LATE_SHIPMENT_GAPS)
    not_lines = Sources(frozenset({"lanes"}), every_gap, frozenset({1990}))
    assert late_shipment_unavailable(replace(full_history, sources=not_lines), CALENDAR) == {}
    assert late_shipment_unavailable(replace(full_history, sources=None), CALENDAR) == {}


def test_the_holiday_features_are_unavailable_in_years_the_calendar_lists_none(
    full_history: History,
) -> None:
    uncovered = imported_with(full_history, years=(2006, 2007, 2009, 2025))
    found = late_shipment_unavailable(uncovered, CALENDAR)
    assert set(found) == set(av.HOLIDAY_FEATURES)
    assert "lists no holiday in 2006-2007, 2009," in found["holiday_within_2bd"]
    assert (
        late_shipment_unavailable(imported_with(full_history, years=(2025, 2026)), CALENDAR) == {}
    )
    assert late_shipment_unavailable(uncovered, None) == {}


def test_only_features_may_be_unavailable() -> None:
    from features.schema import typed_frame

    with pytest.raises(InvalidValue, match="label_late_delivery"):
        typed_frame({}, LATE_SHIPMENT, {"label_late_delivery": "a label is never unavailable"})


# --- the gaps read from real databases ----------------------------------------------------------


def test_erpx_own_database_reports_none_unavailable(
    imports: Imports, builds: dict[str, BuildResult]
) -> None:
    assert load_history(imports.own_url).sources == Sources()
    own = builds["own"]
    assert own.unavailable == {}
    assert read_manifest(own.manifest_path)["unavailable_features"] == []
    frame = pd.read_parquet(own.frame_path)
    # What a whole import loses, erpx's own database has: a price approval and an alert.
    assert frame["price_approval_pending"].any()
    assert (frame["region_alert_severity"] > 0).any()


def test_the_whole_import_lacks_only_what_the_format_cannot_carry(full_history: History) -> None:
    sources = full_history.sources
    assert sources is not None and sources.is_imported
    assert set(PROCUREMENT) <= sources.imported
    assert sources.gaps == FORMAT_GAPS
    assert sources.entry_years == frozenset({2025})


def test_the_import_without_procurement_lacks_it(imports: Imports) -> None:
    sources = load_history(imports.cut_url).sources
    assert sources is not None
    assert not set(PROCUREMENT) & sources.imported
    assert sources.gaps == FORMAT_GAPS | {
        av.DERIVED_OPENING_STOCK,
        av.NO_PURCHASE_ORDERS,
        av.NO_RECEIPTS,
    }


def no_home_locations(history: History) -> History:
    return history.with_tables(customers=history.customers.assign(home_location_id=None))


def no_lane_transit_days(history: History) -> History:
    return history.with_tables(lanes=history.lanes.assign(transit_days=0))


def no_line_lanes(history: History) -> History:
    return history.with_tables(
        lines=history.lines.assign(lane_id=pd.NA).astype({"lane_id": "Int64"})
    )


def no_shipments(history: History) -> History:
    return history.with_tables(milestones=history.milestones.iloc[0:0])


def delivered_on_ship_day(history: History) -> History:
    events = history.milestones
    shipped = events.loc[events["event_type"] == "shipped"].set_index("line_id")["occurred_at"]
    delivered = events["event_type"] == "delivered"
    moments = events["occurred_at"].where(~delivered, events["line_id"].map(shipped))
    return history.with_tables(milestones=events.assign(occurred_at=moments.astype(np.int64)))


def one_line_entered_backordered(history: History) -> History:
    changes = history.state_changes
    entered = changes["line_id"].map(history.lines.set_index("line_id")["entered_at"])
    at_entry = np.flatnonzero(
        (changes["occurred_at"] <= entered).to_numpy()
        & (changes["to_state"] == "allocated").to_numpy()
    )
    states = changes["to_state"].astype(object).to_numpy().copy()
    states[at_entry[0]] = "backordered"
    return history.with_tables(state_changes=changes.assign(to_state=states))


@pytest.mark.parametrize(
    ("change", "appears", "goes"),
    [
        (no_home_locations, {av.NO_HOME_LOCATIONS}, set()),
        (no_lane_transit_days, {av.NO_LANE_TRANSIT_DAYS}, set()),
        (no_line_lanes, {av.NO_LINE_LANES}, set()),
        (no_shipments, {av.NO_SHIPMENTS}, set()),
        (delivered_on_ship_day, {av.NO_TRANSIT}, set()),
        (one_line_entered_backordered, set(), {av.NO_ENTRY_STATES}),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_each_gap_is_found_in_the_history(
    imports: Imports,
    full_history: History,
    change: Callable[[History], History],
    appears: set[str],
    goes: set[str],
) -> None:
    engine = create_engine(imports.full_url)
    try:
        with engine.connect() as connection:
            found = av.read_sources(connection, change(full_history))
    finally:
        engine.dispose()
    assert found.gaps == (FORMAT_GAPS | appears) - goes


# --- the frame and its manifest -----------------------------------------------------------------


def test_an_import_without_procurement_gives_null_columns_and_a_manifest_naming_them(
    builds: dict[str, BuildResult],
) -> None:
    cut = builds["cut"]
    for name, reason in WITHOUT_PROCUREMENT.items():
        assert reason in cut.unavailable[name], name
    assert set(cut.unavailable) == set(builds["full"].unavailable) | set(WITHOUT_PROCUREMENT)
    frame = pd.read_parquet(cut.frame_path)
    for name in cut.unavailable:
        assert frame[name].isna().all(), name
        assert str(frame[name].dtype) == "float64", name
    manifest = read_manifest(cut.manifest_path)
    assert manifest["unavailable_features"] == [
        {"name": name, "reason": reason} for name, reason in cut.unavailable.items()
    ]
    marked = {
        entry["name"]: entry["unavailable"]
        for entry in manifest["features"]
        if "unavailable" in entry
    }
    assert marked == cut.unavailable
    # The whole import computes the stock cover the cut one cannot.
    assert pd.read_parquet(builds["full"].frame_path)["stock_cover"].notna().mean() > 0.5


def test_the_features_still_available_are_those_of_the_whole_import(
    imports: Imports, builds: dict[str, BuildResult]
) -> None:
    def by_source_key(url: str, result: BuildResult) -> pd.DataFrame:
        frame = pd.read_parquet(result.frame_path)
        frame["line_id"] = frame["line_id"].map(id_maps(url)["order_lines"])
        return frame.sort_values("line_id").reset_index(drop=True)

    full = by_source_key(imports.full_url, builds["full"])
    cut = by_source_key(imports.cut_url, builds["cut"])
    kept = [name for name in LATE_SHIPMENT.feature_names if name not in builds["cut"].unavailable]
    assert len(cut) == len(full) > 300
    pd.testing.assert_frame_equal(
        cut[["line_id", *kept, *LATE_SHIPMENT.label_names]],
        full[["line_id", *kept, *LATE_SHIPMENT.label_names]],
        check_categorical=False,
    )


def test_the_frame_in_memory_nulls_them_too(imports: Imports) -> None:
    history = load_history(imports.cut_url)
    frame = late_shipment_frame(history, *WINDOW, CALENDAR)
    assert frame[list(WITHOUT_PROCUREMENT)].isna().all().all()


def test_the_cli_prints_the_unavailable_features(
    imports: Imports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPX_DATABASE_URL", imports.cut_url)
    get_settings.cache_clear()
    arguments = ["features", "build", "--set", "late_shipment", "--start", "2025-01-01"]
    arguments += ["--end", "2026-01-01", "--out", str(tmp_path)]
    try:
        result = CliRunner().invoke(app, arguments, env={"COLUMNS": "250"})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    unavailable = late_shipment_unavailable(load_history(imports.cut_url), CALENDAR)
    assert "features unavailable (null in the frame" in result.output
    assert f"{len(LATE_SHIPMENT.features)} ({len(unavailable)} unavailable)" in result.output
    for name in unavailable:
        assert name in result.output
    assert "no inventory snapshots were imported" in result.output


# --- training and serving -----------------------------------------------------------------------


def test_a_model_trained_on_the_import_leaves_them_out_and_scores_online(
    imports: Imports, builds: dict[str, BuildResult], tmp_path: Path
) -> None:
    settings = Settings(
        database_url=imports.cut_url,
        var_dir=tmp_path,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "mlartifacts"),
    )
    result = train_late_shipment(
        settings, CALENDAR, plan=TIGHT_PLAN, seed=7, model_params=QUICK_MODEL
    )
    unavailable = builds["cut"].unavailable
    assert result.left_out == unavailable
    assert "lane_rate" in result.scores and "logistic" in result.scores

    tracking.configure(settings)
    model = tracking.load_model(result.registered_name, tracking.CHALLENGER)
    read = [name for name in LATE_SHIPMENT.feature_names if name not in unavailable]
    assert model.encoder_.names == read
    assert all(booster.feature_name() == read for booster in model.boosters_)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["features.left_out"] == ",".join(unavailable)
    assert run.data.params["features.used"] == str(len(read))
    assert {
        name.removeprefix("feature_unavailable."): reason
        for name, reason in run.data.tags.items()
        if name.startswith("feature_unavailable.")
    } == unavailable
    logged = {item.path for item in MlflowClient().list_artifacts(result.run_id)}
    assert "left_out.json" in logged

    # Serving's path: the online index computes every declared feature, the model reads its own.
    online = OnlineFeatures.from_database(imports.cut_url, CALENDAR)
    served = ServedModel(
        name=result.registered_name,
        alias=tracking.CHALLENGER,
        version=result.version,
        run_id=result.run_id,
        estimator=model,
        registered_at=datetime.now(UTC),
        loaded_at=datetime.now(UTC),
        window=result.window,
        test_metrics={},
    )
    rows = entry_rows(
        load_history(imports.cut_url), to_micros(date(2025, 1, 20)), to_micros(WINDOW[1])
    )
    drafts = list(drafts_from_entry_rows(rows))[:5]
    assert drafts
    for draft in drafts:
        risks = score_late_risk(online, served, draft, [{} for _ in draft.lines])
        assert len(risks) == len(draft.lines)
        for risk in risks:
            assert 0.0 <= risk.probability <= 1.0
            assert risk.version == result.version
            assert {reason.feature for reason in risk.reasons} <= set(read)


# --- the real SCMS file -------------------------------------------------------------------------

SCMS_UNAVAILABLE = [
    "holiday_near_promised_ship",
    "price_approval_pending",
    "approval_blocks_promise",
    "needs_backorder",
    "credit_hold",
    "transfer",
    "stock_cover",
    "backorder_slack_bdays",
    "backorder_receipt_covered",
    "covering_receipt_overdue_bdays",
    "lane_transit_days",
    "lane_transit_spread_28d",
    "lane_transit_spread_90d",
    "region_alert_severity",
    "supplier_days_late_56d",
    "supplier_late_share_56d",
    "holiday_within_2bd",
]
"""Declared order. SCMS records no ship date, no goods receipt and no state at capture; its
customers (countries) have no home location, its lanes no transit days; its years (2006-2015)
are not in the policy calendar; RDC stock is the import's derived opening."""


@pytest.mark.slow
def test_the_scms_import_reports_what_it_cannot_compute(
    scms_path: Path,  # tests/conftest.py's: the real file, or the test is skipped
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'scms.db'}"
    upgrade_to_head(url)
    uow = UnitOfWork.from_url(url)
    try:
        import_scms(uow, scms_path, tmp_path / "export")
    finally:
        uow.engine.dispose()
    result = build_feature_set(
        "late_shipment", url, date(2006, 1, 1), date(2016, 1, 1), tmp_path / "frames", CALENDAR
    )
    assert list(result.unavailable) == SCMS_UNAVAILABLE
    assert "2006-2015" in result.unavailable["holiday_within_2bd"]
    frame = pd.read_parquet(result.frame_path)
    assert frame[SCMS_UNAVAILABLE].isna().all().all()
    assert frame["label_late_delivery"].notna().all()
    manifest = read_manifest(result.manifest_path)
    assert [entry["name"] for entry in manifest["unavailable_features"]] == SCMS_UNAVAILABLE
