"""The control tower page over the hand-made world, served in-process: the login and its cookie,
tiles that carry /v1/kpis' own numbers, the queue's buttons and the acts behind them as the
API's permissions allow, the prediction views over recorded scores, and the SVG charts."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape

import pytest

from erp_core.db.models import RiskScore
from erp_core.domain.allocation import BackorderClaim
from erp_core.services.fulfilment import pick
from erp_core.services.purchasing import PurchaseLineRequest, place_purchase_order
from serving.page import outlook, svg
from serving.page.session import COOKIE
from serving.page.views import TILES
from tests.conftest import LOGISTICS, PLANNER, T0
from tests.serving.conftest import NOW, Api

PERIOD = {"from": "2026-02-04", "to": "2026-03-04"}
"""The page's default period at the frozen clock: the four weeks ending the midnight after it."""


def _login(api: Api, role: str) -> None:
    response = api.client.post("/login", data={"api_key": api.keys[role]}, follow_redirects=False)
    assert response.status_code == 303, response.text


def _page(api: Api, query: str = "") -> str:
    response = api.client.get(f"/{query}")
    assert response.status_code == 200, response.text
    return response.text


def _token(html: str) -> str:
    found = re.search(r'name="token" value="([0-9a-f]+)"', html)
    assert found is not None, "the page has a form token"
    return found.group(1)


def _capture_with_shortage(api: Api) -> dict:
    """C-GOLD orders 4 WIDGET (allocated at WEST) and 25 GADGET (10 at WEST, no split:
    backordered, a shortage case for the planner); both lines are scored and the scores kept."""
    response = api.client.post(
        "/v1/orders",
        json={
            "customer_id": "C-GOLD",
            "lines": [{"sku": "WIDGET", "quantity": 4}, {"sku": "GADGET", "quantity": 25}],
            "allow_split": False,
        },
        headers=api.as_role("sales_rep"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _deliver_widget(api: Api, order: dict) -> None:
    widget = next(line for line in order["lines"] if line["sku"] == "WIDGET")
    picked = pick(
        api.uow,
        LOGISTICS,
        order_id=order["order_id"],
        picks={widget["line_id"]: widget["quantity"]},
        now=NOW,
    )
    for event in ("packed", "shipped", "delivered"):
        body = {"event_type": event, "occurred_at": NOW.isoformat()}
        if event == "delivered":
            body["details"] = {"freight_cost": "61.00"}
        answer = api.client.post(
            f"/v1/shipments/{picked.shipment_id}/events",
            json=body,
            headers=api.as_role("logistics"),
        )
        assert answer.status_code == 200, answer.text


def _shortage_id(order: dict, api: Api) -> int:
    cases = api.client.get("/v1/exceptions", headers=api.as_role("planner")).json()["data"]
    (case,) = [c for c in cases if c["type"] == "shortage" and c["order_id"] == order["order_id"]]
    return int(case["id"])


# --- login ----------------------------------------------------------------------------------------


def test_without_a_session_the_page_is_the_login_form(api: Api) -> None:
    response = api.client.get("/")
    assert response.status_code == 200
    assert 'action="/login"' in response.text
    assert "data-kpi" not in response.text


def test_a_wrong_key_gets_the_login_form_again_with_a_clear_401(api: Api) -> None:
    for wrong in ("erpx_not-a-key", "", "x" * 200):
        response = api.client.post("/login", data={"api_key": wrong}, follow_redirects=False)
        assert response.status_code == 401, response.text
        assert "That API key is not valid" in response.text
        assert 'action="/login"' in response.text
        assert COOKIE not in response.cookies


def test_login_keeps_the_key_in_an_httponly_strict_cookie_and_logout_forgets_it(api: Api) -> None:
    response = api.client.post(
        "/login", data={"api_key": api.keys["planner"]}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/" in cookie
    page = _page(api)
    assert "plan" in page and "<b>planner</b>" in page
    assert 'data-kpi="otif"' in page

    logout = api.client.post("/logout", follow_redirects=False)
    assert logout.status_code == 303
    assert 'action="/login"' in api.client.get("/").text


def test_a_revoked_key_in_the_cookie_is_logged_out(api: Api) -> None:
    from erp_core.services.api_keys import revoke_api_key
    from tests.conftest import ADMIN

    _login(api, "planner")
    revoke_api_key(api.uow, ADMIN, name="test-planner", now=NOW)
    assert 'action="/login"' in api.client.get("/").text


# --- tiles ----------------------------------------------------------------------------------------


def _tile_values(html: str) -> dict[str, str]:
    found = re.findall(r'data-kpi="(\w+)".*?data-value="([^"]*)"', html, flags=re.S)
    return dict(found)


def test_the_tiles_carry_the_numbers_of_v1_kpis_for_the_same_period(api: Api) -> None:
    order = _capture_with_shortage(api)
    _deliver_widget(api, order)
    _login(api, "planner")
    tiles = _tile_values(_page(api))
    served = api.client.get("/v1/kpis", params=PERIOD, headers=api.as_role("planner")).json()
    by_name = {kpi["name"]: kpi["value"] for kpi in served["kpis"]}
    assert set(tiles) == {name for name, _ in TILES}
    for name, shown in tiles.items():
        expected = by_name[name]
        assert (None if shown == "" else float(shown)) == expected, name
    # the delivered line made these real numbers, not dashes
    assert by_name["otif"] == 1.0 and by_name["on_time_shipment"] == 1.0
    assert by_name["freight_variance"] is not None


def test_the_period_selector_changes_the_period_and_refuses_other_lengths(api: Api) -> None:
    _login(api, "planner")
    page = _page(api, "?weeks=13")
    start = (NOW.date() + timedelta(days=1) - timedelta(weeks=13)).isoformat()
    assert f"from={start}&amp;to=2026-03-04" in page
    assert page.count('class="spark"') == len(TILES)
    refused = api.client.get("/?weeks=5")
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "weeks"


# --- the queue and its permissions ----------------------------------------------------------------


def test_the_owner_role_sees_its_case_with_an_acknowledge_button(api: Api) -> None:
    order = _capture_with_shortage(api)
    case_id = _shortage_id(order, api)
    _login(api, "planner")
    page = _page(api)
    assert f'data-acknowledge="{case_id}"' in page
    assert "no stock at entry" in page  # the reason code, in words
    assert "Expedite the covering receipt" in page  # the recommended action


def test_a_role_that_may_not_work_cases_gets_no_buttons_and_a_403_if_it_posts(api: Api) -> None:
    order = _capture_with_shortage(api)
    case_id = _shortage_id(order, api)
    _login(api, "sales_rep")
    page = _page(api)
    assert f'data-case="{case_id}"' in page  # it may read the queue
    assert "data-acknowledge" not in page and "data-resolve" not in page
    token = _token(page)
    for act in ("acknowledge", "resolve"):
        response = api.client.post(
            f"/page/exceptions/{case_id}/{act}",
            data={"token": token, "resolution": "expedited"},
            follow_redirects=False,
        )
        assert response.status_code == 403, response.text
        assert "may not work exceptions" in response.text
    case = api.client.get("/v1/exceptions", headers=api.as_role("planner")).json()["data"][0]
    assert case["status"] == "open"


def test_another_owners_case_is_refused_by_the_service_with_403(api: Api) -> None:
    order = _capture_with_shortage(api)
    case_id = _shortage_id(order, api)
    _login(api, "logistics")
    page = _page(api)
    assert f'data-case="{case_id}"' not in page  # logistics' queue holds only its own cases
    response = api.client.post(
        f"/page/exceptions/{case_id}/acknowledge", data={"token": _token(page)}
    )
    assert response.status_code == 403, response.text


def test_a_post_without_the_form_token_is_refused(api: Api) -> None:
    order = _capture_with_shortage(api)
    case_id = _shortage_id(order, api)
    _login(api, "planner")
    response = api.client.post(f"/page/exceptions/{case_id}/acknowledge", data={"token": "0" * 32})
    assert response.status_code == 403
    assert "expired" in response.text


def test_acknowledge_moves_the_case_in_hand_and_resolve_closes_it(api: Api) -> None:
    order = _capture_with_shortage(api)
    case_id = _shortage_id(order, api)
    _login(api, "planner")
    token = _token(_page(api))
    acknowledged = api.client.post(
        f"/page/exceptions/{case_id}/acknowledge", data={"token": token, "weeks": "4"}
    )
    assert acknowledged.status_code == 200
    page = acknowledged.text
    assert f"Case {case_id} acknowledged" in unescape(page)
    assert f'data-acknowledge="{case_id}"' not in page
    assert f'data-resolve="{case_id}"' in page
    wrong = api.client.post(
        f"/page/exceptions/{case_id}/resolve", data={"token": token, "resolution": "shrug"}
    )
    assert wrong.status_code == 422 and "shrug" in unescape(wrong.text)
    resolved = api.client.post(
        f"/page/exceptions/{case_id}/resolve",
        data={"token": token, "resolution": "customer_accepted_new_date", "note": "next week"},
    )
    assert resolved.status_code == 200
    assert f'data-case="{case_id}"' not in resolved.text
    case = api.client.get(
        "/v1/exceptions", params={"status": "resolved"}, headers=api.as_role("planner")
    ).json()["data"][0]
    assert (case["id"], case["resolution"]) == (case_id, "customer_accepted_new_date: next week")
    assert case["resolved_by"] == "key:test-planner"


def test_an_unknown_case_is_a_404_page(api: Api) -> None:
    _login(api, "planner")
    token = _token(_page(api))
    response = api.client.post("/page/exceptions/999/acknowledge", data={"token": token})
    assert response.status_code == 404


# --- predictions beside outcomes, replenishment ---------------------------------------------------


def test_the_page_shows_recorded_risk_and_the_backorder_s_predicted_fill_date(api: Api) -> None:
    order = _capture_with_shortage(api)
    gadget = next(line for line in order["lines"] if line["sku"] == "GADGET")
    expected = date(2026, 3, 13)
    po = place_purchase_order(
        api.uow,
        PLANNER,
        supplier_id="SUP1",
        location_id="WEST",
        lines=[PurchaseLineRequest("GADGET", 40, expected_date=expected)],
        now=NOW,
    )
    _login(api, "planner")
    page = _page(api)
    row = re.search(rf"<tr><td>{gadget['line_id']}</td>.*?</tr>", page, flags=re.S)
    assert row is not None
    assert f"PO {po}" in row.group(0) and "2026-03-13" in row.group(0)
    with api.uow as uow:
        recorded = uow.session.query(RiskScore).filter_by(kind="late_shipment").count()
    assert recorded == 2
    assert "2 scored" in page  # both open lines carry their capture score
    assert "No replenishment recommendations" in page  # no demand champion: said, not failed


def test_predicted_otif_of_a_week_is_the_mean_of_one_minus_p_late_of_its_lines() -> None:
    today = date(2026, 3, 2)
    lines = [
        outlook.OpenLine(1, "WEST", "TRUCK", today + timedelta(days=1), 0.1),
        outlook.OpenLine(2, "WEST", "TRUCK", today + timedelta(days=6), 0.5),
        outlook.OpenLine(3, "WEST", "TRUCK", today + timedelta(days=2), None),
        outlook.OpenLine(4, "EAST", "AIR", today + timedelta(days=8), 0.2),
        outlook.OpenLine(5, "EAST", "AIR", today - timedelta(days=1), 0.9),
    ]
    weeks, overdue = outlook.predicted_otif_by_week(lines, today, 2)
    assert overdue == 1
    assert (weeks[0].lines, weeks[0].scored) == (3, 2)
    assert weeks[0].predicted_otif == pytest.approx((0.9 + 0.5) / 2)
    assert weeks[1].predicted_otif == pytest.approx(0.8)
    bands = dict(outlook.lines_by_band(lines, 0.35, "carrier"))
    assert bands["TRUCK"] == {"high": 1, "medium": 0, "low": 1, "unscored": 1}
    assert bands["AIR"] == {"high": 1, "medium": 1, "low": 0, "unscored": 0}


def test_calibration_groups_hold_equal_counts_in_score_order() -> None:
    judged = [(i / 100, i % 4 == 0) for i in range(100)]
    groups = outlook.calibration(judged)
    assert len(groups) == 10
    assert all(g.lines == 10 for g in groups)
    assert groups[0].low == 0.0 and groups[-1].high == 0.99
    assert groups[0].predicted == pytest.approx(0.045)
    assert sum(g.realised * g.lines for g in groups) == 25
    assert len(outlook.calibration(judged[:3])) == 3
    assert outlook.calibration([]) == []


def test_receipts_cover_backorders_in_release_priority() -> None:
    day = date(2026, 3, 10)
    claims = [
        BackorderClaim(1, 5, "bronze", day, T0),
        BackorderClaim(2, 5, "gold", day, T0 + timedelta(hours=1)),
        BackorderClaim(3, 20, "silver", day, T0),
    ]
    supply = [
        outlook._Supply("PO 8", day + timedelta(days=7), 10, "SUP1"),
        outlook._Supply("PO 7", day, 6, "SUP1"),
    ]
    covered = outlook._cover(claims, supply, ["platinum", "gold", "silver", "bronze"])
    # gold first (PO 7's 6 units), then silver needs 25 in all: more than both POs hold
    assert covered[2].name == "PO 7"
    assert 3 not in covered
    assert 1 not in covered  # bronze waits behind silver's claim in this cumulative view


# --- svg ------------------------------------------------------------------------------------------


def test_a_sparkline_breaks_at_missing_weeks_and_marks_the_last_value() -> None:
    drawn = svg.sparkline([0.9, None, 0.8, 0.95], title="OTIF <per week>")
    assert drawn.startswith("<svg") and drawn.endswith("</svg>")
    assert drawn.count("<polyline") == 1  # 0.8 -> 0.95; the lone 0.9 is a dot
    assert drawn.count("<circle") == 2
    assert "OTIF &lt;per week&gt;" in drawn
    assert "stroke-dasharray" in svg.sparkline([None, None])
    flat = svg.sparkline([3, 3, 3])
    assert "nan" not in flat.lower()


def test_bars_share_one_scale_and_line_charts_draw_levels_and_a_diagonal() -> None:
    drawn = svg.bars([("WEST", [2.0, 2.0]), ("EAST <x>", [1.0, 0.0])], ["#f00", "#0f0"])
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', drawn)]
    assert widths[0] == widths[1] == pytest.approx(2 * widths[2])
    assert "EAST &lt;x&gt;" in drawn
    chart = svg.line_chart(
        [svg.Series("a", [0.1, 0.2, None, 0.4], "#00f")],
        levels=[svg.Level("reorder point", 0.3, "#f00")],
        diagonal=True,
        y_min=0,
        y_max=1,
        x_labels=["first", "last"],
    )
    assert chart.count("<polyline") == 1 and chart.count("<circle") == 1
    assert "reorder point: 0.3" in chart and "stroke-dasharray" in chart
    assert ">first<" in chart and ">last<" in chart
    below = svg.gauge(-5, 10, 30)
    assert "#fca5a5" in below  # under the reorder point: drawn red
