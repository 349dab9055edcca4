"""The unit of work: one database transaction per business act.

Services open it with ``with uow:``, do their work, and call ``uow.commit()``; leaving the block
without a commit rolls everything back, so an error never leaves half an order behind.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

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
        # Re-entrant: a service called by another service joins the outer transaction.
        if self._depth == 0:
            self.session = self.session_factory()
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

    @property
    def is_outermost(self) -> bool:
        return self._depth == 1

    def commit(self) -> None:
        """Commit, unless this is a nested service call: then the outer one commits."""
        if self.is_outermost:
            self.session.commit()
        else:
            self.session.flush()

    def rollback(self) -> None:
        self.session.rollback()
