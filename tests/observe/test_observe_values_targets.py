"""Rules that must hold for all inputs: value conversions and the endpoint modes."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given
from hypothesis import strategies as st

from observe_support import LoopbackServer, Reply, http_server, make_config  # noqa: F401 - fixtures
from engine.errors import ObservationError
from engine.observe import Observer
from engine.observe.targets import observe_target
from engine.observe.values import finite_or_none, one_line, parse_colon_fields, plain, sample_value, typed_scalar


@given(st.integers(-(2**70), 2**70))
def test_integers_come_back_as_ints(n: int) -> None:
    assert typed_scalar(str(n)) == n and isinstance(typed_scalar(str(n)), int)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_come_back_equal(x: float) -> None:
    text = repr(x)
    converted = typed_scalar(text)
    assert converted == x if "e" in text or "." in text else converted == int(x)


@given(st.text().filter(lambda t: not t.strip().lstrip("-").replace(".", "", 1).replace("e", "", 1).replace("E", "", 1).replace("+", "", 1).isdigit()))
def test_non_numeric_text_stays_text(text: str) -> None:
    assert typed_scalar(text) == text


@given(st.floats())
def test_sample_values_are_finite_or_none(x: float) -> None:
    value = sample_value(repr(x) if not math.isnan(x) else "NaN")
    assert value is None if not math.isfinite(x) else value == x
    assert finite_or_none(x) == (x if math.isfinite(x) else None)


@given(st.recursive(st.none() | st.integers() | st.binary() | st.text(), lambda inner: st.lists(inner, max_size=4), max_leaves=20))
def test_plain_leaves_no_bytes(reply: object) -> None:
    def has_bytes(v: object) -> bool:
        return isinstance(v, bytes) or (isinstance(v, list) and any(has_bytes(i) for i in v))

    assert not has_bytes(plain(reply))


def test_info_text_is_flattened_and_typed() -> None:
    text = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=99\r\nratio:1.25\r\nerrorstat_ERR:count=2\r\n"
    assert parse_colon_fields(text) == {
        "redis_version": "7.0.15",
        "uptime_in_seconds": 12,
        "db0": {"keys": 3, "expires": 1, "avg_ttl": 99},
        "ratio": 1.25,
        "errorstat_ERR": {"count": 2},
    }


@given(st.text())
def test_one_line_has_no_line_breaks(text: str) -> None:
    out = one_line(text)
    assert "\n" not in out and "\r" not in out and len(out) <= 200


# ---------------------------------------------------------------------------- endpoint modes


def run_modes(mode: str, answers: list[bool]) -> tuple[object, list[str]]:
    endpoints = [f"e{i}" for i in range(len(answers))]
    asked: list[str] = []

    async def attempt(endpoint: str) -> str:
        asked.append(endpoint)
        if answers[int(endpoint[1:])]:
            return f"value of {endpoint}"
        raise ObservationError(f"{endpoint} is down")

    return asyncio.run(observe_target(mode, endpoints, attempt)), asked


@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_fanout_fails_only_when_every_endpoint_fails(answers: list[bool]) -> None:
    outcome, asked = run_modes("fanout", answers)
    assert sorted(asked) == sorted(f"e{i}" for i in range(len(answers)))
    assert outcome.ok == any(answers)
    assert [e for e, _ in outcome.endpoint_errors] == [f"e{i}" for i, ok in enumerate(answers) if not ok]
    if outcome.ok:
        assert [item["ok"] for item in outcome.value] == answers
        assert [item["endpoint"] for item in outcome.value] == [f"e{i}" for i in range(len(answers))]


@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_failover_takes_the_first_success_in_order(answers: list[bool]) -> None:
    outcome, asked = run_modes("failover", answers)
    first = answers.index(True) if any(answers) else None
    assert asked == [f"e{i}" for i in range(len(answers) if first is None else first + 1)]
    assert outcome.ok == (first is not None)
    if first is not None:
        assert outcome.value == f"value of e{first}" and outcome.endpoint == f"e{first}"
    assert len(outcome.endpoint_errors) == (len(answers) if first is None else first)


def test_a_malformed_histogram_is_an_error_and_the_others_still_answer(http_server: LoopbackServer) -> None:
    http_server.routes["/metrics"] = lambda _: Reply(
        200, b'# TYPE h histogram\nh_bucket{le="abc"} 1\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n', "text/plain"
    )
    http_server.routes["/ok"] = lambda _: Reply(200, b"up 1\n", "text/plain")
    loaded = make_config(
        {"app": {"url": http_server.url}},
        {"bad": {"metrics": {"target": "app"}}, "good": {"metrics": {"target": "app", "path": "/ok"}}},
    )

    async def main() -> dict:
        observer = Observer(loaded)
        try:
            return await observer.observe_all()
        finally:
            await observer.aclose()

    results = asyncio.run(main())
    assert results["bad"].error == "histogram h has a bucket le='abc', which is not a number"
    assert results["good"].value == {"up": [{"labels": {}, "value": 1.0}]}
