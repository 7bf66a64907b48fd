"""metrics observations: a real text exposition made by prometheus_client, scraped over HTTP."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from observe_support import LoopbackServer, Reply, http_server, make_config  # noqa: F401 - fixtures
from engine.config.validate import LoadedConfig
from engine.observe import ObservationResult, Observer
from engine.observe.metrics_source import Buckets, bucket_increase, histogram_quantile

BOUNDS = (0.1, 0.5, 1.0, 2.5, 5.0)


class Exposition:
    """A registry served at /metrics; tests change it between scrapes."""

    def __init__(self, server: LoopbackServer) -> None:
        self.reset()
        server.routes["/metrics"] = lambda _: Reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def reset(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("requests", "Requests served.", ["code"], registry=self.registry)
        self.temperature = Gauge("temperature_celsius", "Temperature.", registry=self.registry)
        self.latency = Histogram("latency_seconds", "Latency.", ["route"], buckets=BOUNDS, registry=self.registry)


def scrape_ticks(loaded: LoadedConfig, name: str, between: list) -> list[ObservationResult]:
    """Observe once, then once more after each callable in `between` changed the exposition."""

    async def main() -> list[ObservationResult]:
        observer = Observer(loaded)
        try:
            results = [await observer.observe(name)]
            for change in between:
                change()
                results.append(await observer.observe(name))
            return results
        finally:
            await observer.aclose()

    return asyncio.run(main())


def scrape_config(server: LoopbackServer, **extra: object) -> LoadedConfig:
    return make_config({"app": {"url": server.url}}, {"m": {"metrics": {"target": "app", **extra}}})


def test_counters_gauges_and_nan(http_server: LoopbackServer) -> None:
    exp = Exposition(http_server)
    exp.requests.labels("200").inc(7)
    exp.requests.labels("500").inc(2)
    exp.temperature.set(math.nan)
    (result,) = scrape_ticks(scrape_config(http_server), "m", [])
    assert result.ok
    assert result.value["requests_total"] == [
        {"labels": {"code": "200"}, "value": 7.0},
        {"labels": {"code": "500"}, "value": 2.0},
    ]
    assert result.value["temperature_celsius"] == [{"labels": {}, "value": None}]


def test_histogram_quantiles_cover_the_window_since_the_previous_scrape(http_server: LoopbackServer) -> None:
    exp = Exposition(http_server)
    fast = exp.latency.labels("/api")
    for _ in range(1000):
        fast.observe(0.05)

    def slow_burst() -> None:
        for _ in range(10):
            fast.observe(3.0)

    first, second, third = scrape_ticks(scrape_config(http_server), "m", [slow_burst, lambda: None])
    (h1,) = first.value["latency_seconds"]
    assert h1["labels"] == {"route": "/api"} and h1["count"] == 1000 and h1["sum"] == pytest.approx(50.0)
    assert h1["buckets"][0] == {"le": 0.1, "count": 1000.0}
    assert h1["buckets"][-1] == {"le": None, "count": 1000.0}  # +Inf is not JSON-safe
    # first scrape: cumulative, every observation in (0, 0.1]
    assert h1["p50"] == pytest.approx(0.05) and h1["p99"] == pytest.approx(0.099)
    (h2,) = second.value["latency_seconds"]
    # the window holds only the 10 slow observations, all in (2.5, 5]; the cumulative p99 would be ~0.1
    assert h2["count"] == 1010
    assert h2["p50"] == pytest.approx(3.75) and h2["p99"] == pytest.approx(2.5 + 2.5 * 0.99)
    (h3,) = third.value["latency_seconds"]
    assert h3["p50"] is None and h3["p90"] is None and h3["p99"] is None


def test_counter_reset_falls_back_to_cumulative(http_server: LoopbackServer) -> None:
    exp = Exposition(http_server)
    for _ in range(100):
        exp.latency.labels("/a").observe(0.05)

    def restart_with_slow_requests() -> None:
        exp.reset()
        for _ in range(4):
            exp.latency.labels("/a").observe(0.3)

    _, after = scrape_ticks(scrape_config(http_server), "m", [restart_with_slow_requests])
    (h,) = after.value["latency_seconds"]
    assert h["count"] == 4 and h["p50"] == pytest.approx(0.1 + 0.4 * 0.5)


def test_histogram_windows_are_per_series(http_server: LoopbackServer) -> None:
    exp = Exposition(http_server)
    exp.latency.labels("/a").observe(0.05)
    exp.latency.labels("/b").observe(0.05)

    def only_b() -> None:
        exp.latency.labels("/b").observe(0.7)

    _, after = scrape_ticks(scrape_config(http_server), "m", [only_b])
    by_route = {h["labels"]["route"]: h for h in after.value["latency_seconds"]}
    assert by_route["/a"]["p50"] is None
    assert by_route["/b"]["p50"] == pytest.approx(0.5 + 0.5 * 0.5)


def test_families_filter_and_select(http_server: LoopbackServer) -> None:
    exp = Exposition(http_server)
    exp.requests.labels("200").inc(5)
    exp.requests.labels("500").inc(1)
    exp.latency.labels("/a").observe(0.2)
    loaded = make_config(
        {"app": {"url": http_server.url}},
        {
            "only": {"metrics": {"target": "app", "families": ["requests_total", "latency_seconds"]}},
            "errors": {
                "metrics": {"target": "app"},
                "select": "value.requests_total.filter(s, s.labels.code == '500')[0].value",
            },
        },
    )

    async def main() -> dict[str, ObservationResult]:
        observer = Observer(loaded)
        try:
            return await observer.observe_all()
        finally:
            await observer.aclose()

    results = asyncio.run(main())
    assert sorted(results["only"].value) == ["latency_seconds", "requests_total"]
    assert results["errors"].value == 1.0


def test_bad_exposition_and_http_error(http_server: LoopbackServer) -> None:
    http_server.routes["/metrics"] = lambda _: Reply(200, b"this is { not an exposition\n", "text/plain")
    http_server.routes["/gone"] = lambda _: Reply(404, b"no metrics here", "text/plain")
    loaded = make_config(
        {"app": {"url": http_server.url}},
        {"bad": {"metrics": {"target": "app"}}, "gone": {"metrics": {"target": "app", "path": "/gone"}}},
    )

    async def main() -> dict[str, ObservationResult]:
        observer = Observer(loaded)
        try:
            return await observer.observe_all()
        finally:
            await observer.aclose()

    results = asyncio.run(main())
    assert (results["bad"].error or "").startswith(f"invalid metrics exposition from {http_server.url}/metrics")
    assert results["gone"].error == f"HTTP 404 from {http_server.url}/gone: no metrics here"


# ---------------------------------------------------------------------------- histogram_quantile


def test_quantile_matches_prometheus_on_known_buckets() -> None:
    buckets: Buckets = ((0.1, 0.0), (0.5, 1.0), (1.0, 1.0), (math.inf, 1.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)
    # rank in the +Inf bucket: the largest finite bound
    assert histogram_quantile(0.99, ((1.0, 1.0), (math.inf, 2.0))) == 1.0
    # no observations, no +Inf bucket, a single bucket: no data
    assert histogram_quantile(0.5, ((1.0, 0.0), (math.inf, 0.0))) is None
    assert histogram_quantile(0.5, ((1.0, 3.0), (2.0, 3.0))) is None
    assert histogram_quantile(0.5, ((math.inf, 3.0),)) is None
    # a first bucket with a non-positive bound is returned as is
    assert histogram_quantile(0.1, ((-1.0, 5.0), (0.0, 6.0), (math.inf, 6.0))) == -1.0


def test_quantile_edges_are_no_data_as_in_prometheus() -> None:
    empty_first: Buckets = ((0.1, 0.0), (0.5, 2.0), (math.inf, 2.0))
    assert histogram_quantile(0.0, empty_first) is None  # Prometheus: 0/0, NaN (no ZeroDivisionError)
    assert histogram_quantile(0.0, ((0.1, 1.0), (math.inf, 2.0))) == 0.0
    for q in (-0.5, 1.5, math.nan):  # Prometheus: -Inf, +Inf, NaN
        assert histogram_quantile(q, empty_first) is None


@st.composite
def histograms(draw: st.DrawFn) -> Buckets:
    bounds = sorted(set(draw(st.lists(st.floats(0.001, 1000, allow_nan=False), min_size=1, max_size=8))))
    increments = draw(st.lists(st.integers(0, 50), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    running, out = 0.0, []
    for bound, inc in zip([*bounds, math.inf], increments):
        running += inc
        out.append((bound, running))
    return tuple(out)


@given(histograms(), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_quantiles_are_monotonic_and_within_the_bounds(buckets: Buckets, q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    a, b = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    if buckets[-1][1] == 0:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    assert 0.0 <= a <= b + 1e-9
    assert b <= buckets[-2][0] + 1e-9  # never beyond the largest finite bound


@given(histograms(), st.lists(st.integers(0, 20), min_size=9, max_size=9))
def test_increase_recovers_what_was_added(before: Buckets, added: list[int]) -> None:
    running, after = 0.0, []
    for (bound, count), inc in zip(before, added):
        running += inc
        after.append((bound, count + running))
    window = bucket_increase(tuple(after), before)
    assert [c for _, c in window] == [sum(added[: i + 1]) for i in range(len(before))]
    # a decrease anywhere (a restart) gives the cumulative buckets back
    if before[-1][1] > 0:
        shrunk = tuple((bound, 0.0) for bound, _ in before)
        assert bucket_increase(shrunk, before) == shrunk


def promql_histogram(buckets: Buckets) -> str:
    """The buckets as an instant vector literal of `le`-labelled samples."""
    return " or ".join(
        f'label_replace(vector({count!r}), "le", "{"+Inf" if math.isinf(le) else repr(le)}", "", "")' for le, count in buckets
    )


def prometheus_value(url: str, expr: str) -> float | None:
    reply = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", reply
    [sample] = reply["data"]["result"]
    value = float(sample["value"][1])
    return value if math.isfinite(value) else None


QUANTILES = st.sampled_from([0.0, 1.0, -0.5, 1.5]) | st.floats(0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(buckets=histograms(), q=QUANTILES)
def test_quantile_agrees_with_a_real_prometheus(prometheus_url: str, buckets: Buckets, q: float) -> None:
    expected = prometheus_value(prometheus_url, f"histogram_quantile({q!r}, {promql_histogram(buckets)})")
    ours = histogram_quantile(q, buckets)
    if expected is None:
        assert ours is None
    else:
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)
