"""promtool's expanding series notation, one value per tick.

    "1 2 3"      three values
    "5x3"        5 repeated: four values (the first one and three more), as in promtool
    "1+1x3"      1 2 3 4      "10-2x2"  10 8 6
    "_"          an observation error at that tick;  "_x3"  three of them (promtool: three blanks)

Numbers written without a fraction or exponent stay integers, so `x == 3` holds in CEL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN = re.compile(rf"^(?P<a>{_NUMBER})(?:(?P<op>[+-])(?P<b>{_NUMBER.removeprefix('[+-]?')}))?(?:x(?P<n>\d+))?$")
_BLANKS = re.compile(r"^_(?:x(?P<n>\d+))?$")
MAX_VALUES = 100_000  # one series longer than this is a mistake, not a test


@dataclass(frozen=True)
class Missing:
    """An observation error at one tick (`_` in the notation)."""

    def __repr__(self) -> str:
        return "_"


MISSING = Missing()
SeriesValue = int | float | Missing


def expand_series(text: str) -> list[SeriesValue]:
    """The values of a series; raises ValueError naming the token that is wrong."""
    out: list[SeriesValue] = []
    tokens = text.split()
    if not tokens:
        raise ValueError("the series is empty; write values such as '1 2 3', '5x10' or '1+1x10'")
    for token in tokens:
        out.extend(_expand_token(token))
        if len(out) > MAX_VALUES:
            raise ValueError(f"the series has more than {MAX_VALUES} values")
    return out


def _expand_token(token: str) -> list[SeriesValue]:
    blanks = _BLANKS.match(token)
    if blanks:
        return [MISSING] * (int(blanks.group("n")) if blanks.group("n") else 1)
    match = _TOKEN.match(token)
    if match is None:
        raise ValueError(
            f"'{token}' is not series notation; write a number (3, 0.5), 'AxN' (A repeated N more times), "
            "'A+BxN' / 'A-BxN' (A, then N more values stepping by B) or '_' for an observation error"
        )
    a_text, op, b_text, n_text = match.group("a", "op", "b", "n")
    if op is not None and n_text is None:
        raise ValueError(f"'{token}' has a step but no count; write e.g. '{a_text}{op}{b_text}x10'")
    count = int(n_text) if n_text is not None else 0
    if count > MAX_VALUES:
        raise ValueError(f"'{token}' repeats more than {MAX_VALUES} times")
    a = _number(a_text)
    step = _number(b_text) if b_text is not None else 0
    if op == "-":
        step = -step
    return [_tidy(a + step * i) for i in range(count + 1)]


def _number(text: str) -> int | float:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return float(text)


def _tidy(value: int | float) -> int | float:
    # 0.1+0.1x2 should read 0.3, not 0.30000000000000004
    return round(value, 12) if isinstance(value, float) else value
