"""The unit of work: one database transaction per business act.

Services open it with ``with uow:``, do their work, and call ``uow.commit()``; leaving the block
without a commit rolls everything back, so an error never leaves half an order behind.

Three things make many small acts in one transaction (a simulated day, a batch import) cheap:

- ``append`` queues rows of the append-only tables (audit trail, line state changes, the stock
  ledger, price decisions, promises, what a shipment holds) and ``commit`` writes them with one
  multi-row INSERT per table, instead of one ORM object and flush each; ``write_appended``
  writes them earlier for a reader that needs them within the act.
- ``get`` (and ``preload``, for many keys at once) keeps the master data a transaction reads
  over and over (products, suppliers, lanes) in memory until the session closes.
- ``held``/``hold`` remember which rows the transaction holds locks on, so a service that locks a
  row the transaction already holds needs no second ``SELECT ... FOR UPDATE``.

A nested unit of work runs in a SAVEPOINT. Leaving it without ``commit`` undoes only its own work:
its savepoint is rolled back, its queued rows are dropped and its locks are forgotten (PostgreSQL
gives them up on ``ROLLBACK TO SAVEPOINT``). Queued rows of the enclosing level are written before
a savepoint starts, so they never depend on it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Engine, Table, bindparam, func, inspect, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.orm.attributes import instance_state

from erp_core.db.engine import READ_ONLY_OPTION, make_engine, make_session_factory
from erp_core.db.models import (
    AuditEntry,
    Base,
    InventoryMovement,
    LinePromise,
    LineStateChange,
    PriceDecision,
    ShipmentLine,
)
from erp_core.db.types import UtcDateTime
from erp_core.policy import Policy, load_policy

RowT = TypeVar("RowT")

APPEND_ONLY: tuple[type[Base], ...] = (
    AuditEntry,
    LineStateChange,
    InventoryMovement,
    PriceDecision,
    ShipmentLine,
    LinePromise,
)
"""The tables ``append`` writes: rows that are inserted once and never updated. A function that
reads one of them while an act may still be running calls ``write_appended`` first (the promise
readers of ``erp_core.services.stock`` do); the others are read only after the act."""


def primary_key_of(model: type[Base]) -> Any:
    (column,) = _table(model).primary_key.columns
    return column


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_APPEND_COLUMNS: dict[Table, frozenset[str]] = {
    _table(model): frozenset(c.name for c in _table(model).columns if not c.primary_key)
    for model in APPEND_ONLY
}


@dataclass(frozen=True)
class _FastInsert:
    """A table's INSERT compiled once for a positional-parameter dialect (SQLite's ``?``), with
    each parameter's bind processor (the column type's conversion: UTC datetimes, dates, JSON,
    decimals), so queued rows go to the driver's ``executemany`` as tuples without SQLAlchemy
    building a parameter dictionary per row."""

    sql: str
    columns: tuple[tuple[str, Any, bool], ...]
    """(column name, bind processor or None, whether equal values convert alike) in the order
    of the statement's parameters."""

    @classmethod
    def compile(cls, table: Table, dialect: Any) -> _FastInsert | None:
        names = sorted(_APPEND_COLUMNS[table])
        compiled = table.insert().compile(dialect=dialect, column_keys=names)
        order = compiled.positiontup
        if not order or sorted(order) != names:
            return None  # named parameters (PostgreSQL's drivers): the ordinary path
        processors = compiled._bind_processors
        return cls(
            str(compiled),
            tuple(
                (name, processors.get(name), _converts_alike(table.c[name].type)) for name in order
            ),
        )

    def params(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows' parameters, converted column by column; the rows of one act share their
        moments, so a moment is converted once per write."""
        columns: list[list[Any]] = []
        for name, process, alike in self.columns:
            values = [row[name] for row in rows]
            if process is not None:
                if alike:
                    done: dict[Any, Any] = {}
                    for value in values:
                        if value not in done:
                            done[value] = process(value)
                    values = [done[value] for value in values]
                else:
                    values = [process(value) for value in values]
            columns.append(values)
        return list(zip(*columns, strict=True))


def _converts_alike(column_type: Any) -> bool:
    """Equal values of the type always convert to the same parameter: dates, and the UTC
    datetimes (equal moments are one UTC moment). Not decimals (``Decimal("1.0")`` equals
    ``Decimal("1.00")``) nor JSON."""
    if isinstance(column_type, UtcDateTime):
        return True
    try:
        return column_type.python_type in (datetime, date)
    except NotImplementedError:
        return False


_FAST_INSERTS: dict[tuple[Table, str], _FastInsert | None] = {}


def _insert_rows(connection: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """One INSERT of many rows of an append-only table: the driver's ``executemany`` straight
    from compiled SQL where the dialect takes positional parameters, else through Core."""
    dialect = connection.dialect
    key = (table, dialect.name)
    if key not in _FAST_INSERTS:
        _FAST_INSERTS[key] = (
            _FastInsert.compile(table, dialect) if dialect.paramstyle == "qmark" else None
        )
    fast = _FAST_INSERTS[key]
    if fast is None:
        connection.execute(table.insert(), rows)
    else:
        connection.exec_driver_sql(fast.sql, fast.params(rows))


@dataclass(frozen=True)
class _FastUpdate:
    """``UPDATE table SET <columns> WHERE <primary key>`` compiled once, with the bind processors
    of its parameters (see ``_FastInsert``); None stands for a dialect with named parameters."""

    sql: str
    processors: tuple[Any, ...]
    """One per parameter: the columns' in order, then the primary key's."""

    @classmethod
    def compile(cls, table: Table, columns: tuple[str, ...], dialect: Any) -> _FastUpdate | None:
        key = primary_key_of_table(table)
        statement = (
            table.update()
            .where(key == bindparam("erpx_key"))
            .values({name: bindparam(f"erpx_{name}") for name in columns})
        )
        compiled = statement.compile(dialect=dialect)
        order = compiled.positiontup
        expected = [f"erpx_{name}" for name in columns] + ["erpx_key"]
        if dialect.paramstyle != "qmark" or list(order or ()) != expected:
            return None
        processors = compiled._bind_processors
        return cls(str(compiled), tuple(processors.get(name) for name in expected))

    def params(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        processors = self.processors
        return [
            tuple(
                value if process is None else process(value)
                for value, process in zip(row, processors, strict=True)
            )
            for row in rows
        ]


_FAST_UPDATES: dict[tuple[Table, tuple[str, ...], str], _FastUpdate | None] = {}


def primary_key_of_table(table: Table) -> Any:
    (column,) = table.primary_key.columns
    return column


@dataclass
class _Level:
    """One level of nesting: the savepoint it runs in (None for the transaction itself), whether
    ``commit`` or ``rollback`` has closed it (work after that belongs to the enclosing level),
    the row locks taken while it was the innermost level, and the loaded rows whose changes
    ``write_changes`` wrote past the session (expired should the level be undone)."""

    savepoint: SessionTransaction | None
    closed: bool = False
    locks: dict[Hashable, Any] = field(default_factory=dict)
    written: list[Any] = field(default_factory=list)


class UnitOfWork:
    """Holds the session of one transaction and the governance policy it is judged by."""

    session: Session

    def __init__(
        self, session_factory: sessionmaker[Session], policy: Policy, *, read_only: bool = False
    ) -> None:
        self.session_factory = session_factory
        self.policy = policy
        self.read_only = read_only
        """Only reads: on SQLite the transaction begins DEFERRED (a reader beside the writer,
        in WAL mode) instead of taking the write lock at BEGIN."""
        self._levels: list[_Level] = []
        self._appended: list[tuple[Table, dict[str, Any]]] = []
        self._kept: dict[tuple[type[Any], Any], Any] = {}
        self._next_ids: dict[type[Base], int] = {}

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
            if self.read_only:
                self.session.connection(execution_options={READ_ONLY_OPTION: True})
            self._levels.append(_Level(savepoint=None))
        else:
            self.write_appended()
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
            self._appended.clear()
            self._kept.clear()
            self._next_ids.clear()
            return
        if not level.closed:
            if level.savepoint.is_active:
                level.savepoint.rollback()
            self._forget(level)
        # Locks this level took and kept now belong to the enclosing level, and so do the rows
        # it wrote past the session (undone with it, should the enclosing level be undone).
        self._levels[-1].locks.update(level.locks)
        self._levels[-1].written.extend(level.written)

    @property
    def is_outermost(self) -> bool:
        return len(self._levels) == 1

    def commit(self) -> None:
        """Commit; inside an outer unit of work, release the savepoint (the outer one commits)."""
        self.write_appended()
        level = self._levels[-1]
        if level.savepoint is None:
            self.session.commit()
            level.locks.clear()  # the transaction's locks end with it
            level.written.clear()
            self._next_ids.clear()
        else:
            level.savepoint.commit()
            level.closed = True

    def rollback(self) -> None:
        """Undo this level's work: the whole transaction, or only the innermost savepoint."""
        level = self._levels[-1]
        if level.savepoint is None:
            self.session.rollback()
            self._next_ids.clear()
        else:
            if level.savepoint.is_active:
                level.savepoint.rollback()
            level.closed = True
        self._forget(level)

    def _forget(self, level: _Level) -> None:
        """Drop what the level's undone work left behind: its queued rows (all queued rows are
        the innermost level's, as entering a level writes the queue) and its locks."""
        self._appended.clear()
        level.locks.clear()
        # Rows whose changes were written past the session hold the undone values: the session
        # reloads them when next read (it expires on its own only the rows it flushed itself).
        for row in level.written:
            if row in self.session:
                self.session.expire(row)
        level.written.clear()
        # Ids handed out to undone rows are free again (the enclosing level's rows were flushed
        # when the savepoint began): read the next free ones afresh.
        self._next_ids.clear()

    # --- append-only history -------------------------------------------------------------------

    def append(self, model: type[Base], **values: Any) -> None:
        """Queue one row of an append-only table (``APPEND_ONLY``) for the next ``commit``.

        Every column but the id must be given, so the rows of a table share one INSERT.
        """
        table = _table(model)
        columns = _APPEND_COLUMNS.get(table)
        if columns is None:
            raise ValueError(f"{model.__name__} is not an append-only table")
        if values.keys() != columns:
            raise ValueError(
                f"{model.__name__} rows need exactly the columns {sorted(columns)}, "
                f"got {sorted(values)}"
            )
        self._appended.append((table, values))

    def write_appended(self) -> None:
        """Write the queued append-only rows now: the session is flushed first (the rows refer to
        order lines and shipments), then one multi-row INSERT per table, in the queued order."""
        if not self._appended:
            return
        self.session.flush()
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for table, values in self._appended:
            by_table.setdefault(table, []).append(values)
        connection = self.session.connection()
        for table, rows in by_table.items():
            _insert_rows(connection, table, rows)
        self._appended.clear()

    # --- changed columns of loaded rows ----------------------------------------------------------

    def write_changes(self, rows: Iterable[Base], columns: Sequence[str]) -> None:
        """Write the changed ``columns`` of loaded rows now, one ``executemany`` UPDATE per model
        and set of changed columns, instead of leaving them to the next flush.

        For a batch act that changes many loaded rows (lines picked, shipped, delivered) the
        unit of work's bookkeeping of each dirty row costs several times the UPDATE itself. The
        rows are left as a flush leaves them: their values current, nothing pending on them
        (when ``columns`` were their only changes). New rows not flushed yet, and columns not
        changed, are left to the flush. Call it only where nothing is flushed between the
        changes and the call, and name only columns whose attributes are named alike.
        """
        groups: dict[tuple[Table, tuple[str, ...]], list[tuple[Any, Any]]] = {}
        ordered: dict[type[Any], tuple[Table, tuple[str, ...]]] = {}
        for row in rows:
            state = instance_state(row)
            if state.key is None or not state.modified:
                continue  # new (the flush inserts it) or unchanged
            model = type(row)
            if model not in ordered:
                table = _table(model)
                # In the table's order, as the compiled SET clause has them.
                ordered[model] = (table, tuple(c.key for c in table.columns if c.key in columns))
            table, names = ordered[model]
            committed = state.committed_state
            changed = tuple(name for name in names if name in committed)
            if changed:
                groups.setdefault((table, changed), []).append((state, row))
        if not groups:
            return
        connection = self.session.connection()
        dialect = connection.dialect
        level = self._levels[-1]
        for (table, changed), states in groups.items():
            key = primary_key_of_table(table).key
            values = [
                (*(state.dict[name] for name in changed), state.identity[0])
                for state, _row in states
            ]
            cache_key = (table, changed, dialect.name)
            if cache_key not in _FAST_UPDATES:
                _FAST_UPDATES[cache_key] = _FastUpdate.compile(table, changed, dialect)
            fast = _FAST_UPDATES[cache_key]
            if fast is None:
                statement = (
                    table.update()
                    .where(table.c[key] == bindparam("erpx_key"))
                    .values({name: bindparam(f"erpx_{name}") for name in changed})
                )
                params = [f"erpx_{name}" for name in changed] + ["erpx_key"]
                connection.execute(statement, [dict(zip(params, v, strict=True)) for v in values])
            else:
                connection.exec_driver_sql(fast.sql, fast.params(values))
            identity_map = self.session.identity_map
            for state, row in states:
                committed = state.committed_state
                for name in changed:
                    del committed[name]
                if not committed:
                    # What the flush does to a row it has written: clean, no longer dirty.
                    state._commit_all(state.dict, identity_map)
                level.written.append(row)

    # --- ids of new rows ------------------------------------------------------------------------

    def assign_ids(self, rows: Sequence[Base]) -> None:
        """Give new rows of one model their primary keys before they are flushed (SQLite only).

        SQLAlchemy cannot insert many ORM rows with one statement on SQLite and still tell
        which generated id belongs to which row, so it inserts them one statement each; rows
        that carry their ids share one ``executemany``. SQLite serialises writers (every unit
        of work begins ``IMMEDIATE``), so the next free id read once per transaction stays free
        for it; every place that creates rows of the model must assign their ids this way
        (a row left to the database could take an id handed out here but not yet flushed).
        After an undone savepoint the next free id is read again, so ids are handed out as
        the database would have. PostgreSQL returns the ids of a
        multi-row insert in order already: nothing to do there.
        """
        if not rows or self.dialect != "sqlite":
            return
        model = type(rows[0])
        next_id = self._next_ids.get(model)
        if next_id is None:
            column = primary_key_of(model)
            next_id = int(self.session.execute(select(func.max(column))).scalar() or 0) + 1
        attribute = inspect(model).get_property_by_column(primary_key_of(model)).key
        for row in rows:
            setattr(row, attribute, next_id)
            next_id += 1
        self._next_ids[model] = next_id

    # --- master data and locks -----------------------------------------------------------------

    def get(self, model: type[RowT], key: Any) -> RowT | None:
        """``session.get`` for rows a transaction reads again and again (products, suppliers,
        lanes, locations).

        The session's identity map holds its objects only weakly, so a row no variable refers to
        any more is read from the database again by the next ``session.get``. The row is kept
        here until the session closes, so later gets are answered from memory while the kept row
        is still current in this session (not expired, not expunged, not deleted); otherwise the
        get goes through the session, which reloads it.
        """
        kept = self._kept.get((model, key))
        if kept is not None:
            state = instance_state(kept)
            if state.persistent and not state.expired and state.session_id == self.session.hash_key:
                # What ``session.get`` would answer from its identity map, without its overhead.
                return kept
        row = self.session.get(model, key)
        if row is not None:
            self._kept[(model, key)] = row
        return row

    def preload(self, model: type[Base], keys: Iterable[Any]) -> None:
        """Read the rows of ``keys`` not kept yet with one query and keep them, so the ``get``
        calls that follow (one per order line, say) are answered from memory."""
        missing = {key for key in keys if (model, key) not in self._kept}
        if not missing:
            return
        mapper = inspect(model)
        (primary_key,) = mapper.primary_key
        attribute = mapper.get_property_by_column(primary_key).key
        rows = self.session.execute(select(model).where(primary_key.in_(missing))).scalars()
        for row in rows:
            self._kept[(model, getattr(row, attribute))] = row

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
