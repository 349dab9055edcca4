"""The unit of work: one database transaction per business act.

Services open it with ``with uow:``, do their work, and call ``uow.commit()``; leaving the block
without a commit rolls everything back, so an error never leaves half an order behind.

``get`` keeps the master data a transaction reads over and over (products, suppliers, lanes) in
memory until the session closes. The unit of work also remembers which rows its transaction holds
locks on (``held``/``hold``): a service that locks a row the transaction already holds needs no
second ``SELECT ... FOR UPDATE``. A lock taken inside a savepoint that is not released is
forgotten with the savepoint (PostgreSQL gives it up on ``ROLLBACK TO SAVEPOINT``), and every lock
is forgotten when the transaction ends.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.policy import Policy, load_policy

RowT = TypeVar("RowT")


@dataclass
class _Level:
    """One level of nesting: the savepoint it runs in (None for the transaction itself), whether
    its work was committed, and the row locks taken while it was the innermost level."""

    savepoint: SessionTransaction | None
    committed: bool = False
    locks: dict[Hashable, Any] = field(default_factory=dict)


class UnitOfWork:
    """Holds the session of one transaction and the governance policy it is judged by."""

    session: Session

    def __init__(self, session_factory: sessionmaker[Session], policy: Policy) -> None:
        self.session_factory = session_factory
        self.policy = policy
        self._levels: list[_Level] = []

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
        if not self._levels:
            self.session = self.session_factory()
            self._kept: dict[tuple[type[Any], Any], Any] = {}
            self._levels.append(_Level(savepoint=None))
        else:
            self._levels.append(_Level(savepoint=self.session.begin_nested()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        level = self._levels.pop()
        if level.savepoint is None:
            # close() rolls back whatever was not committed and detaches the loaded objects
            # without expiring them, so results stay readable after the block.
            self.session.close()
            self._kept.clear()
            return
        if not level.committed:
            if level.savepoint.is_active:
                level.savepoint.rollback()
            level.locks.clear()
        # Locks this level took and kept now belong to the enclosing level.
        self._levels[-1].locks.update(level.locks)

    @property
    def is_outermost(self) -> bool:
        return len(self._levels) == 1

    def commit(self) -> None:
        """Commit; inside an outer unit of work, release the savepoint (the outer one commits)."""
        level = self._levels[-1]
        if level.savepoint is None:
            self.session.commit()
            level.locks.clear()  # the transaction's locks end with it
        else:
            level.savepoint.commit()
            level.committed = True

    def rollback(self) -> None:
        """Undo this level's work: the whole transaction, or only the innermost savepoint."""
        level = self._levels[-1]
        if level.savepoint is None:
            self.session.rollback()
        elif level.savepoint.is_active:
            level.savepoint.rollback()
        level.committed = False
        level.locks.clear()

    def get(self, model: type[RowT], key: Any) -> RowT | None:
        """``session.get`` for rows a transaction reads again and again (products, suppliers,
        lanes, locations).

        The session's identity map holds its objects only weakly, so a row no variable refers to
        any more is read from the database again by the next ``session.get``. The row is kept
        here until the session closes, so later gets are answered from the identity map; each
        get still goes through the session, which reloads the row if it was expired or expunged.
        """
        row = self.session.get(model, key)
        if row is not None:
            self._kept[(model, key)] = row
        return row

    def held(self, key: Hashable) -> Any | None:
        """The row this transaction already holds a lock on under ``key``, or None.

        While the lock is held nobody else can change the row, so the object loaded when it was
        locked is current (changes made in a rolled-back savepoint are expired by the session).
        """
        for level in reversed(self._levels):
            if key in level.locks:
                return level.locks[key]
        return None

    def hold(self, key: Hashable, row: Any) -> None:
        """Remember that this transaction now holds the lock on ``row`` (see ``held``)."""
        self._levels[-1].locks[key] = row
