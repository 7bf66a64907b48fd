"""Conversions of raw source replies into the JSON-like values expressions see.

Every source module turns what it received into plain `dict` / `list` / `str` / `int` /
`float` / `bool` / `None` through the helpers here, so the rules (NaN and infinities are no
data, bytes are text, Redis INFO-style text is a flat mapping of typed fields) live in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_INT = re.compile(r"^-?\d+$", re.ASCII)
_FLOAT = re.compile(r"^-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$", re.ASCII)


def finite_or_none(number: float) -> float | None:
    """A float expressions can compare, or None: NaN means no data and ±Inf is not JSON-safe."""
    return number if math.isfinite(number) else None


def sample_value(text: str | float | int) -> float | None:
    """A Prometheus sample value ("1.5", "NaN", "+Inf", or a number) as a finite float or None."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return finite_or_none(number)


def text_of(raw: bytes | str) -> str:
    """Bytes from the wire as text; undecodable bytes stay visible as \\x escapes."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="backslashreplace")
    return raw


def plain(raw: Any) -> Any:
    """A Redis reply with bytes turned into text, recursively (lists and mappings kept)."""
    if isinstance(raw, (bytes, str)):
        return text_of(raw)
    if isinstance(raw, Mapping):
        return {str(plain(k)): plain(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple, set)):
        return [plain(item) for item in raw]
    if isinstance(raw, float):
        return finite_or_none(raw)
    return raw


def typed_scalar(text: str) -> int | float | str:
    """"42" -> 42, "1.5" -> 1.5, anything else (including "nan", "1.2M") stays text."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    return text


_KV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _field_value(text: str) -> Any:
    # INFO keyspace and stats lines ("keys=3,expires=0,avg_ttl=0") are lists of name=value.
    if "=" in text:
        parts = [p.split("=", 1) for p in text.split(",")]
        if all(len(p) == 2 and _KV_KEY.match(p[0]) for p in parts):
            return {k: typed_scalar(v) for k, v in parts}
    return typed_scalar(text)


def parse_colon_fields(text: str) -> dict[str, Any]:
    """Redis INFO / CLUSTER INFO text as one flat mapping; `# Section` headers are dropped."""
    fields: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, raw = line.partition(":")
        fields[name] = _field_value(raw)
    return fields


def pairs_to_mapping(flat: Sequence[Any]) -> dict[str, Any]:
    """[k1, v1, k2, v2] (HGETALL, CONFIG GET) as {k1: v1, k2: v2}."""
    items = [plain(x) for x in flat]
    return {str(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace so a reason fits on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
