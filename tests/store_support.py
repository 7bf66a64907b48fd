"""Reaching under the Store in tests: statements run on its database directly (the SQLite file,
or the PostgreSQL database), to set up old or foreign states and to try what the Store refuses."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from engine.store.dialect import POSTGRESQL_DIALECT, SQLITE_DIALECT, Dialect


class RawDatabase:
    """An autocommit connection to a store's database; `sql` takes `?` placeholders on both."""

    def __init__(self, at: Path | str) -> None:
        self.is_postgres = isinstance(at, str) and at.startswith("postgresql://")
        self.dialect: Dialect = POSTGRESQL_DIALECT if self.is_postgres else SQLITE_DIALECT
        self.conn: Any = psycopg.connect(str(at), autocommit=True) if self.is_postgres else sqlite3.connect(at, isolation_level=None)

    @property
    def error(self) -> type[Exception]:
        """What the driver raises when the database refuses a statement."""
        return psycopg.Error if self.is_postgres else sqlite3.DatabaseError

    def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.conn.execute(self.dialect.sql(statement), args) if args else self.conn.execute(statement)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def migration(self, script: str) -> None:
        """A migration of engine.store.migrations, translated as the Store translates it."""
        from engine.store.migrations import _statements

        for statement in _statements(script):
            for translated in self.dialect.migration(statement):
                self.conn.execute(translated)

    def close(self) -> None:
        self.conn.close()
