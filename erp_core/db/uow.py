"""The unit of work: one database transaction per business act.

Services open it with ``with uow:``, do their work, and call ``uow.commit()``; leaving the block
without a commit rolls everything back, so an error never leaves half an order behind.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.policy import Policy, load_policy


class UnitOfWork:
    """Holds the session of one transaction and the governance policy it is judged by."""

    session: Session

    def __init__(self, session_factory: sessionmaker[Session], policy: Policy) -> None:
        self.session_factory = session_factory
        self.policy = policy
        self._depth = 0

    @classmethod
    def from_url(cls, url: str, policy: Policy | None = None) -> UnitOfWork:
        return cls(make_session_factory(make_engine(url)), policy or load_policy())

    @property
    def engine(self) -> Engine:
        bind = self.session_factory.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __enter__(self) -> Self:
        # Re-entrant: a service called inside another unit of work (a simulated day, a batch
        # import) joins the outer transaction in a SAVEPOINT, so a refused act undoes only itself.
        if self._depth == 0:
            self.session = self.session_factory()
            self._savepoints: list[SessionTransaction] = []
        else:
            self._savepoints.append(self.session.begin_nested())
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            # close() rolls back whatever was not committed and detaches the loaded objects
            # without expiring them, so results stay readable after the block.
            self.session.close()
            return
        savepoint = self._savepoints.pop()
        if savepoint.is_active:
            savepoint.rollback()

    @property
    def is_outermost(self) -> bool:
        return self._depth == 1

    def commit(self) -> None:
        """Commit; inside an outer unit of work, release the savepoint (the outer one commits)."""
        if self.is_outermost:
            self.session.commit()
        else:
            self._savepoints[-1].commit()

    def rollback(self) -> None:
        """Undo this level's work: the whole transaction, or only the innermost savepoint."""
        if self.is_outermost:
            self.session.rollback()
        elif self._savepoints[-1].is_active:
            self._savepoints[-1].rollback()
