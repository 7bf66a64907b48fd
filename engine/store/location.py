"""Where a store is: a SQLite file (a path, or `sqlite:///PATH`) or a PostgreSQL database
(`postgresql://user:pass@host:port/db`), and that location as every message shows it (the
password redacted)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from engine.errors import StoreError
from engine.redact import MASK

POSTGRESQL_SCHEME = "postgresql"
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(@)")
_FORMS = "a file path, sqlite:///PATH or postgresql://user:pass@host:port/db"


def store_location(text: str | Path) -> Path | str:
    """The SQLite file (a Path) or the PostgreSQL URL (a str) that `text` names."""
    if isinstance(text, Path) or "://" not in text:
        return Path(text)
    scheme, _, rest = text.partition("://")
    if scheme == "sqlite":
        return Path(rest)
    if scheme != POSTGRESQL_SCHEME:
        raise StoreError(f"store {redacted_url(text)}: unknown scheme {scheme!r}; give {_FORMS}")
    parts = urlsplit(text)
    if not parts.hostname or not parts.path.strip("/"):
        raise StoreError(f"store {redacted_url(text)}: name the host and the database, as in postgresql://user:pass@host:port/db")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise StoreError(f"store {redacted_url(text)}: the port is not a number") from None
    return text


def redacted_url(url: str) -> str:
    """The URL with its password (if any) masked."""
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(2), url)


def url_password(url: str) -> str | None:
    """The URL's password as the server sees it (percent-decoded), to mask it in driver messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None
