"""Durations as config authors write them: "250ms", "5s", "2m", "1h30m", "1d"; and moments as
opctl prints them (always UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_WHOLE = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError with a readable message."""
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise ValueError(
            f"{text!r} is not a duration; write a number with a unit, e.g. 250ms, 5s, 2m, 1h30m"
        )
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text.strip()))


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for display: 90 -> "1m30s", 0.25 -> "250ms"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out = []
    rest = round(seconds, 3)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            n = int(rest // size)
            out.append(f"{n}{unit}")
            rest -= n * size
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)


def utc_text(ts: float) -> str:
    """`2026-11-27 04:00:00` for a Unix time: how every moment opctl shows is written (UTC)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
