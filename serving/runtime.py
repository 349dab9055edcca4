"""What one API process holds for its lifetime: the settings, the policy, the database engine,
the in-memory feature index, the served models and the key cache.

Built once at start (``build_runtime``) and kept on ``app.state``. The feature index and the
models are touched only from the event loop's thread (the scoring routes are ``async`` and do
their short CPU work inline), so they need no lock. The index takes in newly written history at
most every ``feature_refresh_seconds``: the request that finds it due starts the read (the
database tails, the event streams, the re-sorted pricing keys: 0.1-0.5 s of CPU on the medium
world) on a thread of its own, and the first request after the read is done merges it in, in
well under a millisecond. Read inline, as before, the whole read stalled every request queued
behind it, every few seconds: the p99 of the serving benchmark.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.db.uow import UnitOfWork
from erp_core.policy import Policy, load_policy
from erp_core.settings import Settings
from features.online import IndexUpdate, OnlineFeatures
from features.online_pricing import OnlinePricing, PricingUpdate, last_line_id
from serving.models import ModelSet, load_models

if TYPE_CHECKING:
    from serving.security import KeyCache

log = logging.getLogger("erpx.serving")


@dataclass
class Runtime:
    settings: Settings
    policy: Policy
    engine: Engine
    session_factory: sessionmaker[Session]
    models: ModelSet
    keys: KeyCache
    online: OnlineFeatures | None = None
    pricing: OnlinePricing | None = None
    online_problem: str | None = None
    refreshed_at: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _reading: Future[_Update] | None = field(default=None, repr=False)
    _reader: ThreadPoolExecutor | None = field(default=None, repr=False)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self.policy)

    def reader(self) -> UnitOfWork:
        """A unit of work that only reads (on SQLite it does not wait for the write lock)."""
        return UnitOfWork(self.session_factory, self.policy, read_only=True)

    def now(self) -> datetime:
        """The API's clock: the real time, or ``ERPX_FROZEN_NOW`` over a simulated world."""
        return self.settings.frozen_now or datetime.now(UTC)

    def features(self) -> OnlineFeatures | None:
        """The feature index, having merged in a background read that has finished, and
        started the next one when a refresh is due (a read that fails leaves the index as it
        was, and is retried when due again)."""
        if self.online is None:
            return None
        if self._reading is not None and self._reading.done():
            self._take_update()
        due = time.monotonic() - self.refreshed_at >= self.settings.feature_refresh_seconds
        if due and self._reading is None:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix="erpx-feature-refresh")
            self._reading = self._reader.submit(self._read_update)
        return self.online

    def refresh_features(self) -> None:
        """Both indexes take in the rows written since their last read, now, on this thread."""
        self._merge(self._read_update())

    def close(self) -> None:
        """Wait for a read in flight and stop its thread (before the engine is disposed)."""
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        self._reading = None

    def _read_update(self) -> _Update:
        """Both indexes' reads (no index changes): the pricing index's only when lines were
        added (it re-sorts what it holds). Runs on the refresh thread."""
        try:
            online = self.online.read_update() if self.online is not None else None
            pricing = None
            if self.pricing is not None and last_line_id(self.engine) > self.pricing.last_line_id:
                pricing = self.pricing.read_update()
            return _Update(online, pricing)
        except Exception as error:  # a database blip must not stop scoring from the index
            log.warning("feature index refresh failed: %s", error)
            return _Update(None, None)

    def _take_update(self) -> None:
        assert self._reading is not None
        update, self._reading = self._reading.result(), None
        self._merge(update)

    def _merge(self, update: _Update) -> None:
        # An update read from older watermarks than the index's (a synchronous refresh came in
        # between) is refused by the index, so nothing is counted twice.
        if update.online is not None and self.online is not None:
            self.online.apply(update.online)
        if update.pricing is not None and self.pricing is not None:
            self.pricing.apply(update.pricing)
        self.refreshed_at = time.monotonic()


@dataclass(frozen=True)
class _Update:
    online: IndexUpdate | None
    pricing: PricingUpdate | None


def build_runtime(
    settings: Settings, *, models: ModelSet | None = None, index: bool = True
) -> Runtime:
    """Connect, index the history and load the champions from the registry. A test hands in
    ``models`` (an empty set: every score from the fallback) or leaves the index out."""
    from serving.security import KeyCache

    # One OpenMP thread per process, set before the models first predict: a request scores a
    # handful of rows, and threads spinning up per call cost more than the trees (about 6 ms of
    # a 10-line margin score with two threads on two busy cores); batch jobs keep their own.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    policy = load_policy(settings.policy_path)
    engine = make_engine(settings.database_url)
    runtime = Runtime(
        settings=settings,
        policy=policy,
        engine=engine,
        session_factory=make_session_factory(engine),
        models=load_models(settings) if models is None else models,
        keys=KeyCache(settings.api_key_cache_seconds),
    )
    if index:
        started = time.perf_counter()
        try:
            runtime.online = OnlineFeatures.from_database(engine, policy.calendar)
            runtime.pricing = OnlinePricing.from_database(
                engine, policy.calendar, float(policy.discount_approval_pct)
            )
        except Exception as error:
            log.warning("feature index not built: %s", error)
            runtime.online_problem = str(error).strip().splitlines()[0][:200]
        else:
            log.info("feature index built in %.1f s", time.perf_counter() - started)
    return runtime
