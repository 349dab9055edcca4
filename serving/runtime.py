"""What one API process holds for its lifetime: the settings, the policy, the database engine,
the in-memory feature index, the served models and the key cache.

Built once at start (``build_runtime``) and kept on ``app.state``. The feature index and the
models are touched only from the event loop's thread (the scoring routes are ``async`` and do
their short CPU work inline), so they need no lock; the index takes in newly written history at
most every ``feature_refresh_seconds``, on the request that finds it due.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.db.uow import UnitOfWork
from erp_core.policy import Policy, load_policy
from erp_core.settings import Settings
from features.online import OnlineFeatures
from features.online_pricing import OnlinePricing, last_line_id
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

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self.policy)

    def reader(self) -> UnitOfWork:
        """A unit of work that only reads (on SQLite it does not wait for the write lock)."""
        return UnitOfWork(self.session_factory, self.policy, read_only=True)

    def now(self) -> datetime:
        """The API's clock: the real time, or ``ERPX_FROZEN_NOW`` over a simulated world."""
        return self.settings.frozen_now or datetime.now(UTC)

    def features(self) -> OnlineFeatures | None:
        """The feature index, first taking in what was written since its last refresh when
        that is due (a refresh that fails leaves the index as it was, and is retried)."""
        if self.online is None:
            return None
        due = time.monotonic() - self.refreshed_at >= self.settings.feature_refresh_seconds
        if due:
            self.refresh_features()
        return self.online

    def refresh_features(self) -> None:
        """Both indexes take in the rows written since their last read; the pricing index only
        when lines were added (its refresh re-sorts what it holds)."""
        try:
            if self.online is not None:
                self.online.refresh()
            if self.pricing is not None and last_line_id(self.engine) > self.pricing.last_line_id:
                self.pricing.refresh()
        except Exception as error:  # a database blip must not stop scoring from the index
            log.warning("feature index refresh failed: %s", error)
        self.refreshed_at = time.monotonic()


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
