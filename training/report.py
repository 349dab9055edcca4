"""``erpx report replenishment``: the report a planner reads, as sortable HTML or CSV.

The champion ``demand_forecast`` scores the demand frame of the last ``HISTORY_DAYS`` days and
of "now" (the midnight after the last day with an entered order line, so the forecast uses every
complete day). The forecast's daily error spread of a pair is measured over its last
``ERROR_DAYS`` days (mostly the champion's own test weeks, so not in-sample); the policy
(``training/replenishment.py``) turns rate, spread, supplier lead times and the ledger's
inventory position into reorder points, order-up-to levels, order quantities and transfers.

Days of cover = (on hand - reserved - backordered) / forecast rate; the expected stock-out date
is now + the whole days of cover (receipts on order not counted: it is the date the planner has
to beat). The HTML is plain server-side markup with inline SVG sparklines for the top items and a
few lines of inline script to sort by a column: no CDN, no build.
"""

from __future__ import annotations

import html
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from erp_core.db.engine import make_engine
from erp_core.db.models import Location
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from erp_core.settings import Settings
from features.build import build_feature_set
from training import demand_forecast as df
from training import replenishment as rp
from training import tracking
from training.frames import entry_span, midnight

HISTORY_DAYS = 56
ERROR_DAYS = 28
TOP_CHARTS = 12
FORMATS = (".html", ".csv")


@dataclass(frozen=True)
class ReplenishmentReport:
    as_of: datetime
    model_version: str
    recommendations: pd.DataFrame
    transfers: pd.DataFrame
    history: pd.DataFrame
    """sku, location_id, day, actual, forecast over the last HISTORY_DAYS days."""


def forecast_now(
    url: str, calendar: BusinessCalendar, model: object, work_dir: Path
) -> tuple[datetime, pd.DataFrame, pd.DataFrame]:
    """The moment "now", the forecast per pair for it (rate, sigma_daily) and the scored
    history."""
    span = entry_span(url)
    if span is None:
        raise InvalidValue("database_url", url, "holds no order lines to forecast from")
    now = midnight(span[1].date()) + timedelta(days=1)
    start = now - timedelta(days=HISTORY_DAYS)
    built = build_feature_set(
        df.FEATURE_SET, url, start, now + timedelta(days=1), work_dir, calendar
    )
    frame = df.sort_series(pd.read_parquet(built.frame_path))
    frame["forecast"] = model.predict(frame)  # type: ignore[attr-defined]
    history = frame.loc[frame["day"] < now]
    history = pd.DataFrame(
        {
            "sku": history["sku"].astype(str),
            "location_id": history["location_id"].astype(str),
            "day": history["day"],
            "actual": history[df.LABEL].astype(float),
            "forecast": history["forecast"],
        }
    )
    recent = history.loc[history["day"] >= now - timedelta(days=ERROR_DAYS)].dropna()
    errors = (recent["actual"] - recent["forecast"]).groupby([recent["sku"], recent["location_id"]])
    spread = pd.DataFrame({"sigma": errors.std(ddof=1), "days": errors.size()})
    today = frame.loc[frame["day"] == now]
    forecast = pd.DataFrame(
        {
            "sku": today["sku"].astype(str).to_numpy(),
            "location_id": today["location_id"].astype(str).to_numpy(),
            "rate": today["forecast"].to_numpy(dtype=np.float64),
        }
    )
    joined = forecast.join(spread, on=["sku", "location_id"])
    poisson = np.sqrt(joined["rate"].clip(lower=0.0))
    own = (joined["days"].fillna(0) >= rp.MIN_ERROR_DAYS) & joined["sigma"].notna()
    forecast["sigma_daily"] = np.where(own, joined["sigma"], poisson)
    return now, forecast, history


def build_report(
    settings: Settings,
    calendar: BusinessCalendar,
    *,
    database_url: str | None = None,
    location: str | None = None,
    review_days: int = rp.REVIEW_DAYS,
) -> ReplenishmentReport:
    url = database_url or settings.database_url
    if location is not None:
        check_location(url, location)
    tracking.configure(settings)
    champion = tracking.version_by_alias(df.REGISTERED_NAME, tracking.CHAMPION)
    if champion is None:
        raise InvalidValue(
            "model",
            f"{df.REGISTERED_NAME}@{tracking.CHAMPION}",
            "no champion demand forecast yet: run `erpx train demand-forecast --promote` first",
        )
    model = tracking.load_model(df.REGISTERED_NAME, tracking.CHAMPION)
    with tempfile.TemporaryDirectory(prefix="erpx-report-") as work:
        now, forecast, history = forecast_now(url, calendar, model, Path(work))
    if location is not None:
        forecast = forecast.loc[forecast["location_id"] == location]
        history = history.loc[history["location_id"] == location]
    if forecast.empty:
        raise InvalidValue("location", location or "(all)", "no SKU has a forecast there now")
    recommendations, transfers = rp.recommend(
        forecast,
        rp.inventory_positions(url),
        rp.supplier_lead_times(url),
        rp.products(url),
        review_days,
    )
    recommendations = recommendations.sort_values(
        ["order_qty", "value", "days_of_cover"], ascending=[False, False, True], kind="mergesort"
    ).reset_index(drop=True)
    recommendations["stockout_date"] = [
        (now + timedelta(days=float(d))).date().isoformat() if np.isfinite(d) else ""
        for d in recommendations["stockout_in_days"].fillna(np.inf)
    ]
    return ReplenishmentReport(now, champion.version, recommendations, transfers, history)


def check_location(url: str, location: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            known = list(connection.execute(select(Location.id).order_by(Location.id)).scalars())
    finally:
        engine.dispose()
    if location not in known:
        raise InvalidValue("location", location, f"unknown location (known: {', '.join(known)})")


def check_output(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise InvalidValue("out", str(out), f"use a file ending in {' or '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise InvalidValue("out", str(out), f"the folder {out.parent} does not exist")


# --- writing ---------------------------------------------------------------------------------

CSV_COLUMNS = (
    "sku",
    "location_id",
    "abc_class",
    "order_qty",
    "pack_size",
    "value",
    "position",
    "on_hand",
    "on_order",
    "reserved",
    "backordered",
    "transfer_in",
    "reorder_point",
    "order_up_to",
    "rate",
    "sigma_daily",
    "lead_mean",
    "lead_std",
    "days_of_cover",
    "stockout_date",
    "reason",
)


def write_report(report: ReplenishmentReport, out: Path) -> None:
    """Written to a temporary file beside ``out`` and moved in place: never a partial file."""
    text = to_csv(report) if out.suffix.lower() == ".csv" else to_html(report)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)


def to_csv(report: ReplenishmentReport) -> str:
    table = report.recommendations[list(CSV_COLUMNS)].copy()
    for column in ("value", "reorder_point", "order_up_to", "rate", "sigma_daily"):
        table[column] = table[column].round(3)
    table["lead_mean"] = table["lead_mean"].round(2)
    table["lead_std"] = table["lead_std"].round(2)
    table["days_of_cover"] = table["days_of_cover"].round(1)
    return str(table.to_csv(index=False))


HTML_COLUMNS = (
    ("sku", "SKU"),
    ("location_id", "location"),
    ("abc_class", "ABC"),
    ("order_qty", "order qty"),
    ("value", "value"),
    ("position", "position"),
    ("reorder_point", "reorder pt"),
    ("order_up_to", "order-up-to"),
    ("rate", "forecast/day"),
    ("days_of_cover", "days of cover"),
    ("stockout_date", "stock-out"),
    ("reason", "reason"),
)

SORT_SCRIPT = """
document.querySelectorAll('th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = +th.dataset.col;
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }
td.t { text-align: left; } tr.order td { background: #fff6e6; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #ddd; padding: 6px; font-size: 12px; }
"""


def to_html(report: ReplenishmentReport) -> str:
    recs = report.recommendations
    ordering = recs.loc[recs["order_qty"] > 0]
    head = "".join(
        f'<th data-col="{i}">{html.escape(title)}</th>' for i, (_, title) in enumerate(HTML_COLUMNS)
    )
    body = "\n".join(_html_row(row) for row in recs.to_dict("records"))
    charts = "\n".join(_chart(report, row) for row in ordering.head(TOP_CHARTS).to_dict("records"))
    transfers = _transfers_html(report.transfers)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Replenishment {report.as_of.date()}</title><style>{STYLE}</style></head>
<body>
<h1>Replenishment recommendations</h1>
<p>As of {report.as_of:%Y-%m-%d %H:%M} UTC, forecast {df.REGISTERED_NAME}
v{html.escape(report.model_version)}. {len(ordering)} of {len(recs)} SKU x location pairs to
order now, value {ordering["value"].sum():,.2f}. Click a column title to sort.</p>
<h2>Top items</h2>
<p>Grey: daily units ordered; blue: the forecast (flat ahead over lead time + review);
bar: inventory position against the reorder point (red) and order-up-to level (green).</p>
<div class="charts">{charts or "<p>Nothing to order now.</p>"}</div>
<h2>Transfers</h2>
{transfers}
<h2>All items</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<script>{SORT_SCRIPT}</script>
</body></html>
"""


def _cell(key: str, value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return '<td data-v="">-</td>'
        shown = f"{value:,.2f}" if key in ("value", "rate") else f"{value:,.1f}"
        return f'<td data-v="{value:.6g}">{shown}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td data-v="{value}">{value:,}</td>'
    text = html.escape(str(value))
    return f'<td class="t" data-v="{text}">{text}</td>'


def _html_row(row: dict[str, object]) -> str:
    css = ' class="order"' if int(row["order_qty"]) > 0 else ""  # type: ignore[call-overload]
    return f"<tr{css}>" + "".join(_cell(k, row[k]) for k, _ in HTML_COLUMNS) + "</tr>"


def _transfers_html(transfers: pd.DataFrame) -> str:
    if transfers.empty:
        return "<p>No location has stock above its order-up-to level where another is short.</p>"
    rows = "\n".join(
        f'<tr><td class="t">{html.escape(str(t.sku))}</td>'
        f'<td class="t">{html.escape(str(t.from_location_id))}</td>'
        f'<td class="t">{html.escape(str(t.to_location_id))}</td><td>{t.quantity}</td></tr>'
        for t in transfers.itertuples()
    )
    return (
        "<table><thead><tr><th>SKU</th><th>from</th><th>to</th><th>units</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _chart(report: ReplenishmentReport, row: dict[str, object]) -> str:
    sku, location = str(row["sku"]), str(row["location_id"])
    past = report.history.loc[
        (report.history["sku"] == sku) & (report.history["location_id"] == location)
    ].sort_values("day")
    ahead = round(float(row["lead_mean"]) + rp.REVIEW_DAYS)  # type: ignore[arg-type]
    actual = past["actual"].fillna(0.0).tolist()
    fitted = past["forecast"].tolist() + [float(row["rate"])] * ahead  # type: ignore[arg-type]
    levels = (float(row[k]) for k in ("position", "reorder_point", "order_up_to"))  # type: ignore[arg-type]
    bar = position_bar(*levels)
    return (
        f'<div class="chart"><b>{html.escape(sku)} @ {html.escape(location)}</b>: order '
        f"{row['order_qty']}<br>{sparkline(actual, fitted)}<br>{bar}</div>"
    )


def sparkline(
    actual: list[float], forecast: list[float], width: int = 240, height: int = 50
) -> str:
    """Inline SVG: actual daily units (grey) and the forecast running past them (blue)."""
    n = max(len(forecast), len(actual), 2)
    top = max([*actual, *forecast, 1e-9])

    def points(values: list[float]) -> str:
        return " ".join(
            f"{i * (width - 2) / (n - 1) + 1:.1f},{height - 1 - v / top * (height - 2):.1f}"
            for i, v in enumerate(values)
        )

    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<polyline fill="none" stroke="#999" stroke-width="1" points="{points(actual)}"/>'
        f'<polyline fill="none" stroke="#1f6fd1" stroke-width="1.5" points="{points(forecast)}"/>'
        "</svg>"
    )


def position_bar(position: float, reorder_point: float, order_up_to: float) -> str:
    width, height = 240, 14
    top = max(position, order_up_to, 1.0) * 1.1
    low = min(position, 0.0)
    span = top - low

    def x(v: float) -> float:
        return (v - low) / span * width

    return (
        f'<svg width="{width}" height="{height}" role="img">'
        f'<rect x="{x(0):.1f}" y="3" width="{max(0.0, x(position) - x(0)):.1f}" height="8" '
        'fill="#8ab4e8"/>'
        f'<line x1="{x(reorder_point):.1f}" x2="{x(reorder_point):.1f}" y1="0" y2="{height}" '
        'stroke="#d62728" stroke-width="2"/>'
        f'<line x1="{x(order_up_to):.1f}" x2="{x(order_up_to):.1f}" y1="0" y2="{height}" '
        'stroke="#2ca02c" stroke-width="2"/></svg>'
    )
