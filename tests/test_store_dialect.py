"""The seam between the store's SQL and PostgreSQL's (engine.store.dialect), and the store's
location as messages show it (engine.store.location)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import StoreError
from engine.redact import MASK
from engine.store import MIGRATIONS, Store, _statements
from engine.store.dialect import POSTGRESQL_DIALECT, SQLITE_DIALECT
from engine.store.location import redacted_url, store_location
from tests.store_support import RawDatabase


def test_every_migration_translates_for_postgresql() -> None:
    for number, script in enumerate(MIGRATIONS, start=1):
        for statement in _statements(script):
            translated = POSTGRESQL_DIALECT.migration(statement)
            # only SQLite's REPLACE guards translate to nothing: PostgreSQL has no REPLACE
            assert translated or "_no_replace BEFORE INSERT" in statement, f"v{number}: {statement}"
            text = " ".join(translated)
            assert "AUTOINCREMENT" not in text and "WITHOUT ROWID" not in text and "RAISE(ABORT" not in text, text
            assert " REAL" not in text, f"v{number}: PostgreSQL's REAL is 4 bytes; times need DOUBLE PRECISION: {text}"
    assert SQLITE_DIALECT.migration("CREATE TABLE t (x REAL)") == ["CREATE TABLE t (x REAL)"]


def test_a_trigger_it_cannot_translate_is_refused_not_passed_on() -> None:
    odd = "CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.id); END;"
    with pytest.raises(ValueError, match="no PostgreSQL translation for this trigger"):
        POSTGRESQL_DIALECT.migration(odd)


def test_placeholders_and_literal_percent_signs() -> None:
    assert POSTGRESQL_DIALECT.sql("SELECT ? WHERE x LIKE '10%' AND y = ?") == "SELECT %s WHERE x LIKE '10%%' AND y = %s"
    assert SQLITE_DIALECT.sql("SELECT ?") == "SELECT ?"


def test_upsert_is_one_statement_for_both() -> None:
    assert SQLITE_DIALECT.upsert("switches", ("name", "value"), ("name",)) == (
        "INSERT INTO switches (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
    )


def test_times_round_trip_exactly_and_the_database_clock_is_in_seconds(store_at: Path | str) -> None:
    at = 1_767_225_600.123456  # microseconds: a 4-byte REAL would keep about 10 minutes' precision
    with Store(store_at) as store:
        store.add_event("note", ticket_id=None, actor="a", data={}, at=at)
        assert [e.at for e in store.events()] == [at]
    raw = RawDatabase(store_at)
    [(first,)] = raw.sql(f"SELECT {raw.dialect.now}")
    [(second,)] = raw.sql(f"SELECT {raw.dialect.now}")
    raw.close()
    assert isinstance(first, float) and 1.7e9 < first <= second < 1e10  # Unix seconds, not ms or days


PASSWORD_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


@given(user=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=12),
       password=st.text(PASSWORD_CHARS, min_size=4, max_size=30))  # fmt: skip
def test_the_password_never_shows_in_a_store_location(user: str, password: str) -> None:
    url = f"postgresql://{user}:{quote(password, safe='')}@db.internal:5432/opctl"
    assert store_location(url) == url
    shown = redacted_url(url)
    assert shown == f"postgresql://{user}:{MASK}@db.internal:5432/opctl"
    unknown = url.replace("postgresql", "mysql", 1)
    with pytest.raises(StoreError) as refused:
        store_location(unknown)
    assert str(refused.value).startswith(f"store mysql://{user}:{MASK}@db.internal:5432/opctl: unknown scheme 'mysql'")


def test_locations() -> None:
    assert store_location("state/opctl.db") == Path("state/opctl.db")
    assert store_location("sqlite:///var/lib/opctl/x.db") == Path("/var/lib/opctl/x.db")
    for bad, problem in (("postgresql://u:p@/opctl", "name the host"), ("postgresql://u:p@db/", "name the host"),
                         ("postgresql://u:p@db:port/x", "not a number")):  # fmt: skip
        with pytest.raises(StoreError, match=problem):
            store_location(bad)
