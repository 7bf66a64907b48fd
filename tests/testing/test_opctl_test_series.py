"""promtool's expanding notation: examples from its docs, and the rules for every input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.testing.series import MISSING, expand_series


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1 2 3", [1, 2, 3]),
        ("5x3", [5, 5, 5, 5]),
        ("1+1x3", [1, 2, 3, 4]),
        ("10-2x2", [10, 8, 6]),
        ("-1+1x2", [-1, 0, 1]),
        ("0.1+0.1x2", [0.1, 0.2, 0.3]),
        ("_", [MISSING]),
        ("1 _x3 2", [1, MISSING, MISSING, MISSING, 2]),
        ("1000x1 _ 1000", [1000, 1000, MISSING, 1000]),
    ],
)
def test_examples(text: str, values: list[object]) -> None:
    assert expand_series(text) == values


def test_integers_stay_integers() -> None:
    assert all(type(v) is int for v in expand_series("1+1x5 7"))
    assert type(expand_series("1.5")[0]) is float


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "empty"), ("abc", "'abc' is not series notation"), ("1+1", "no count"), ("1 x3", "'x3'"), ("5x999999", "more than")],
)
def test_mistakes_name_the_token(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        expand_series(text)


@given(st.integers(-1000, 1000), st.integers(-50, 50), st.integers(0, 200))
def test_step_notation_is_arithmetic(a: int, b: int, n: int) -> None:
    op = "+" if b >= 0 else "-"
    values = expand_series(f"{a}{op}{abs(b)}x{n}")
    assert values == [a + b * i for i in range(n + 1)]


@given(st.lists(st.one_of(st.integers(-99, 99), st.just("_")), min_size=1, max_size=30))
def test_plain_values_round_trip(tokens: list[object]) -> None:
    values = expand_series(" ".join(map(str, tokens)))
    assert values == [MISSING if t == "_" else t for t in tokens]
