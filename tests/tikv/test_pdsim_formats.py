from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from subjects.tikv.pdsim.formats import (
    bytes_size,
    compact_json,
    go_duration_ns,
    go_float,
    indent_json,
    parse_go_duration_ns,
    rfc3339_nano,
)


def test_bytes_size_matches_go_units_samples() -> None:
    assert bytes_size(0) == "0B"
    assert bytes_size(1) == "1B"
    assert bytes_size(1023) == "1023B"
    assert bytes_size(1024) == "1KiB"
    assert bytes_size(int(311.7 * 1024**3)) == "311.7GiB"
    assert bytes_size(int(290.7 * 1024**2)) == "290.7MiB"
    assert bytes_size(1536) == "1.5KiB"


def test_go_durations_render_like_duration_string() -> None:
    assert go_duration_ns(30 * 60 * 10**9) == "30m0s"
    assert go_duration_ns(3600 * 10**9) == "1h0m0s"
    assert go_duration_ns(36 * 60 * 10**9 + 20_480_549_971) == "36m20.480549971s"
    assert go_duration_ns(10 * 10**6) == "10ms"
    assert go_duration_ns(0) == "0s"
    assert parse_go_duration_ns("1h30m") == 5400 * 10**9
    assert parse_go_duration_ns("1.5s") == 1_500_000_000


@given(st.integers(min_value=0, max_value=10**15))
def test_duration_round_trips(ns: int) -> None:
    assert parse_go_duration_ns(go_duration_ns(ns)) == ns


def test_rfc3339_nano_trims_zeros() -> None:
    assert rfc3339_nano(1735098083480549971) == "2024-12-25T03:41:23.480549971Z"
    assert rfc3339_nano(1735095903 * 10**9) == "2024-12-25T03:05:03Z"


def test_go_json_floats_and_layout() -> None:
    assert go_float(1.0) == "1"
    assert go_float(127.38727094442186) == "127.38727094442186"
    assert go_float(1e-7) == "1e-7"
    assert indent_json({"a": [1.0], "b": []}) == b'{\n  "a": [\n    1\n  ],\n  "b": []\n}\n'
    assert compact_json({"a": "<"}) == b'{"a":"\\u003c"}'


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_is_valid_json_for_the_same_number(value: float) -> None:
    assert json.loads(go_float(value)) == value
