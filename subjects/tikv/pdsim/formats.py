"""Go wire formats PD uses: go-units byte sizes, Go durations, RFC3339Nano times, Go JSON."""

from __future__ import annotations

import math
import re
import time
from decimal import Decimal
from typing import Any

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _go_g4(value: float) -> str:
    # Go's %.4g and C's agree for finite values: both strip trailing zeros, exponent "e+04".
    return "%.4g" % value


def bytes_size(size: float) -> str:
    """docker/go-units BytesSize: `%.4g` + binary unit, dividing by 1024 ("311.7GiB", "0B")."""
    value = float(size)
    i = 0
    while value >= 1024 and i < len(_BINARY_UNITS) - 1:
        value /= 1024
        i += 1
    return f"{_go_g4(value)}{_BINARY_UNITS[i]}"


_NS_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration_ns(text: str) -> int:
    """Go `time.ParseDuration` ("30m", "1h30m", "1.5s", "300ms") -> nanoseconds."""
    if not isinstance(text, str):
        raise ValueError(f"time: invalid duration {text!r}")
    raw = text
    sign = 1
    if text[:1] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f'time: invalid duration "{raw}"')
    total = Decimal(0)
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match or match.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{raw}"')
        total += Decimal(match.group(1)) * _NS_UNITS[match.group(2)]
        pos = match.end()
    return sign * int(total)


def parse_go_duration(text: str) -> float:
    """Go duration text -> seconds."""
    return parse_go_duration_ns(text) / 1e9


def _trim_fraction(whole: int, frac: int, digits: int) -> str:
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def go_duration_ns(ns: int) -> str:
    """Go `Duration.String()`: "30m0s", "1h0m0s", "36m20.480549971s", "1.5ms", "0s"."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim_fraction(ns // 1_000, ns % 1_000, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim_fraction(ns // 1_000_000, ns % 1_000_000, 6)}ms"
    secs, frac = divmod(ns, 1_000_000_000)
    hours, secs = divmod(secs, 3600)
    minutes, secs = divmod(secs, 60)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _trim_fraction(secs, frac, 9) + "s"


def go_duration(seconds: float) -> str:
    return go_duration_ns(round(seconds * 1e9))


def rfc3339_nano(ns: int) -> str:
    """Go's time.Time JSON form in UTC: "2024-12-25T03:41:23.480549971Z" (trailing zeros trimmed)."""
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        base += ("." + f"{frac:09d}").rstrip("0")
    return base + "Z"


def go_time_string(ns: int, monotonic_s: float) -> str:
    """Go `time.Time.String()` with a monotonic reading, as embedded in operator strings."""
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    if frac:
        base += ("." + f"{frac:09d}").rstrip("0")
    return f"{base} +0000 UTC m=+{monotonic_s:.9f}"


# --- JSON as Go's encoding/json writes it -------------------------------------------------


def go_float(value: float) -> str:
    """encoding/json float64: shortest repr, 'f' form between 1e-6 and 1e21, no trailing ".0"."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if 1e-6 <= abs(value) < 1e21:
        return format(Decimal(repr(value)), "f")
    # Go keeps Python's exponent form except it trims "e-07" to "e-7".
    return repr(value).replace("e-0", "e-")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in "<>&" or ch in "\u2028\u2029" or ord(ch) < 0x20:
            # Go escapes HTML-sensitive characters and line separators by default.
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: Any, indent: str | None, level: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [(_go_string(str(k)), _encode(v, indent, level + 1)) for k, v in value.items()]
        if indent is None:
            return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
        inner = indent * (level + 1)
        body = ",\n".join(f"{inner}{k}: {v}" for k, v in items)
        return "{\n" + body + "\n" + indent * level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        parts = [_encode(v, indent, level + 1) for v in value]
        if indent is None:
            return "[" + ",".join(parts) + "]"
        inner = indent * (level + 1)
        return "[\n" + ",\n".join(inner + p for p in parts) + "\n" + indent * level + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def indent_json(value: Any) -> bytes:
    """unrolled/render with IndentJSON: json.MarshalIndent(v, "", "  ") plus a newline."""
    return (_encode(value, "  ", 0) + "\n").encode()


def compact_json(value: Any) -> bytes:
    """easyjson/json.Marshal output: no spaces, no trailing newline."""
    return _encode(value, None, 0).encode()
