"""The runtime's feature refresh: read on a thread of its own, merged in by a later request.

A refresh reads the database tails and builds the event streams and pricing keys (0.1-0.5 s of
CPU on the medium world); read inline it stalled every request behind it. These tests hold the
two halves apart: the request that finds a refresh due only starts the read (the index answers
as before), a later one merges it, and an update read from watermarks the index has moved past
is refused rather than counted twice.
"""

from __future__ import annotations

import time

from features.history import watermarks
from features.online_pricing import last_line_id
from tests.serving.conftest import Api

ORDER = {"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": 5}]}


def _capture(api: Api) -> None:
    answer = api.client.post("/v1/orders", json=ORDER, headers=api.as_role("sales_rep"))
    assert answer.status_code == 201, answer.text


def _due(api: Api) -> None:
    api.runtime.refreshed_at = time.monotonic() - api.runtime.settings.feature_refresh_seconds


def test_a_due_refresh_is_read_on_a_thread_and_merged_by_a_later_request(api: Api) -> None:
    runtime = api.runtime
    assert runtime.online is not None and runtime.pricing is not None
    _capture(api)  # new lines, state changes, promises: both indexes are behind
    before, lines_before = dict(runtime.online.marks), runtime.pricing.last_line_id
    now = watermarks(runtime.engine)
    assert now != before and last_line_id(runtime.engine) > lines_before
    _due(api)
    assert runtime.features() is runtime.online
    reading = runtime._reading
    assert reading is not None  # started, not merged: the index answers as it stood
    assert runtime.online.marks == before and runtime.pricing.last_line_id == lines_before
    reading.result(timeout=60)
    runtime.features()  # the next request merges the finished read
    assert runtime._reading is None
    assert runtime.online.marks == now
    assert runtime.pricing.last_line_id == last_line_id(runtime.engine)
    runtime.features()  # not due again yet: no read started
    assert runtime._reading is None


def test_the_score_route_serves_while_a_read_is_in_flight_and_takes_it_in_after(api: Api) -> None:
    runtime = api.runtime
    _capture(api)
    _due(api)
    headers = api.as_role("sales_rep")
    first = api.client.post("/v1/orders/score", json=ORDER, headers=headers)
    assert first.status_code == 200, first.text
    assert runtime._reading is not None
    runtime._reading.result(timeout=60)
    second = api.client.post("/v1/orders/score", json=ORDER, headers=headers)
    assert second.status_code == 200, second.text
    assert runtime._reading is None and runtime.online is not None
    assert runtime.online.marks == watermarks(runtime.engine)


def test_an_update_read_before_the_index_moved_on_is_refused(api: Api) -> None:
    online, pricing = api.runtime.online, api.runtime.pricing
    assert online is not None and pricing is not None
    _capture(api)
    first, stale = online.read_update(), online.read_update()
    priced, stale_priced = pricing.read_update(), pricing.read_update()
    assert online.apply(first) and pricing.apply(priced)
    totals = {name: index.everywhere.times.copy() for name, index in online.indexes.items()}
    assert not online.apply(stale) and not pricing.apply(stale_priced)
    for name, index in online.indexes.items():
        assert (index.everywhere.times == totals[name]).all(), name
    assert online.marks == watermarks(api.runtime.engine)


def test_a_synchronous_refresh_meanwhile_makes_the_background_read_a_no_op(api: Api) -> None:
    runtime = api.runtime
    assert runtime.online is not None
    _capture(api)
    _due(api)
    runtime.features()
    assert runtime._reading is not None
    runtime._reading.result(timeout=60)
    runtime.online.refresh()  # e.g. a draft naming a customer created since the last read
    events = {name: len(index.everywhere.times) for name, index in runtime.online.indexes.items()}
    runtime.features()  # the finished read started from the old watermarks: refused
    assert {name: len(i.everywhere.times) for name, i in runtime.online.indexes.items()} == events
    runtime.close()
    assert runtime._reader is None
