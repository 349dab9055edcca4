"""The control tower in a real browser: Debian's headless Chromium driven by Playwright against the
real uvicorn process of ``live_server``.

The in-process tests (tests/serving/test_page.py) prove the page's logic; only a browser proves
that what a person clicks works end to end: the login form sets a cookie the browser sends back,
the tiles a person reads carry the numbers of ``/v1/kpis``, and the Acknowledge button posts a
form the server accepts and the case leaves the open queue. Never a browser download: Playwright
drives ``/usr/bin/chromium`` (``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PERIOD = {"from": "2026-02-04", "to": "2026-03-04"}
"""The page's default period at the server's frozen clock (2026-03-03 10:00 UTC): the four weeks
ending the midnight after it."""

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


def _order_with_a_shortage(server: LiveServer) -> int:
    """25 GADGET for C-GOLD with 10 in stock and no split: a backorder, a shortage case for the
    planner. Returns the case's id."""
    response = server.client.post(
        "/v1/orders",
        json={
            "customer_id": "C-GOLD",
            "lines": [{"sku": "GADGET", "quantity": 25}],
            "allow_split": False,
        },
        headers=server.as_role("sales_rep"),
    )
    assert response.status_code == 201, response.text
    order_id = response.json()["order_id"]
    cases = server.client.get("/v1/exceptions", headers=server.as_role("planner")).json()["data"]
    (case,) = [c for c in cases if c["type"] == "shortage" and c["order_id"] == order_id]
    return int(case["id"])


def test_a_planner_logs_in_reads_the_kpis_and_acknowledges_a_case_in_the_browser(
    server: LiveServer, browser
) -> None:  # type: ignore[no-untyped-def]
    case_id = _order_with_a_shortage(server)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(server.base_url + "/")
        page.fill("#api_key", server.keys["planner"])
        page.press("#api_key", "Enter")
        page.wait_for_selector("article.tile")

        shown = {
            tile.get_attribute("data-kpi"): tile.locator(".value").get_attribute("data-value")
            for tile in page.locator("article.tile").all()
        }
        served = server.client.get(
            "/v1/kpis", params=PERIOD, headers=server.as_role("planner")
        ).json()
        values = {kpi["name"]: kpi["value"] for kpi in served["kpis"]}
        assert len(shown) == 8
        for name, value in shown.items():
            assert (None if value == "" else float(value)) == values[name], name

        button = page.locator(f'#open-queue [data-acknowledge="{case_id}"]')
        assert button.count() == 1, "the planner's open queue shows the shortage with a button"
        button.click()
        page.wait_for_load_state("load")
        assert page.locator(f'#open-queue [data-acknowledge="{case_id}"]').count() == 0
        assert page.locator(f'#in-hand-queue [data-resolve="{case_id}"]').count() == 1

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "control-tower.png"), full_page=True)
    finally:
        page.close()
    cases = server.client.get(
        "/v1/exceptions", params={"status": "acknowledged"}, headers=server.as_role("planner")
    ).json()["data"]
    assert [c["id"] for c in cases if c["id"] == case_id] == [case_id]
