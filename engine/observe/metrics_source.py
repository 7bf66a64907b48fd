"""`metrics` observations: scrape a Prometheus text exposition.

The value maps each sample name of counters, gauges and other flat families to a list of
`{labels, value}` (counters keep their `_total` name). A histogram family appears under its
family name as one element per series: `{labels (without le), count, sum, buckets, p50, p90,
p99}`. The quantiles describe the observations made *since the previous scrape* of the same
endpoint by the same observation (the first scrape, or one after a counter reset, uses the
cumulative buckets); a window without new observations gives null quantiles.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from engine.config.models import MetricsScrape, Target
from engine.errors import ObservationError
from engine.observe.http_source import get, join_url
from engine.observe.values import finite_or_none, one_line, sample_value

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
HISTOGRAM_TYPES = frozenset({"histogram", "gaugehistogram"})

# (upper bound, cumulative count) pairs sorted by bound; the last bound is +Inf.
Buckets = tuple[tuple[float, float], ...]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (family, sorted labels without le)


@dataclass
class MetricsSession:
    """What a scrape needs besides the request: the HTTP client and, per endpoint, the
    buckets of every histogram series at the previous successful scrape of this observation."""

    client: httpx.AsyncClient
    previous: dict[str, dict[SeriesKey, Buckets]] = field(default_factory=dict)


async def fetch(query: MetricsScrape, endpoint: str, target: Target, timeout: float, session: MetricsSession) -> dict[str, Any]:
    url = join_url(endpoint, query.path)
    headers = {"Accept": "text/plain;version=0.0.4;q=0.9,*/*;q=0.1", **target.headers}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    response = await get(session.client, url, params={}, headers=headers, timeout=timeout, target=target)
    if not response.is_success:
        detail = one_line(response.text, 120)
        raise ObservationError(f"HTTP {response.status_code} from {url}" + (f": {detail}" if detail else ""))
    openmetrics = "openmetrics" in response.headers.get("content-type", "")
    try:
        families = list((parse_openmetrics if openmetrics else parse_text)(response.text))
    except Exception as exc:  # the parsers raise ValueError, IndexError, KeyError... on bad input
        raise ObservationError(f"invalid metrics exposition from {url}: {one_line(str(exc)) or type(exc).__name__}") from None
    wanted = frozenset(query.families) if query.families is not None else None
    value, current = exposition_value(families, wanted, session.previous.get(endpoint, {}))
    session.previous[endpoint] = current
    return value


def exposition_value(
    families: Iterable[Any], wanted: frozenset[str] | None, previous: dict[SeriesKey, Buckets]
) -> tuple[dict[str, Any], dict[SeriesKey, Buckets]]:
    """The observation value of parsed families, and the histogram buckets to remember."""
    value: dict[str, Any] = {}
    current: dict[SeriesKey, Buckets] = {}
    for family in families:
        if wanted is not None and family.name not in wanted and not any(s.name in wanted for s in family.samples):
            continue
        if family.type in HISTOGRAM_TYPES:
            series = histogram_series(family.name, family.samples)
            value[family.name] = [
                _histogram_element(key, parts, previous.get(key)) for key, parts in series.items()
            ]
            current.update({key: parts.buckets for key, parts in series.items()})
            continue
        for sample in family.samples:
            value.setdefault(sample.name, []).append({"labels": dict(sample.labels), "value": sample_value(sample.value)})
    return value, current


@dataclass
class _Series:
    labels: dict[str, str]
    raw_buckets: list[tuple[float, float]] = field(default_factory=list)
    count: float | None = None
    total: float | None = None

    @property
    def buckets(self) -> Buckets:
        return normalize_buckets(self.raw_buckets)


def histogram_series(name: str, samples: Sequence[Any]) -> dict[SeriesKey, _Series]:
    series: dict[SeriesKey, _Series] = {}
    for sample in samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        key: SeriesKey = (name, tuple(sorted(labels.items())))
        entry = series.setdefault(key, _Series(labels))
        suffix = sample.name[len(name):]
        if suffix == "_bucket" and "le" in sample.labels:
            try:
                bound = float(sample.labels["le"])
            except ValueError:
                raise ObservationError(f"histogram {name} has a bucket le={sample.labels['le']!r}, which is not a number") from None
            entry.raw_buckets.append((bound, float(sample.value)))
        elif suffix in ("_count", "_gcount"):
            entry.count = float(sample.value)
        elif suffix in ("_sum", "_gsum"):
            entry.total = float(sample.value)
    return series


def _histogram_element(key: SeriesKey, series: _Series, before: Buckets | None) -> dict[str, Any]:
    buckets = series.buckets
    window = bucket_increase(buckets, before)
    count = series.count if series.count is not None else (buckets[-1][1] if buckets else 0.0)
    element: dict[str, Any] = {
        "labels": series.labels,
        "count": finite_or_none(count),
        "sum": finite_or_none(series.total) if series.total is not None else None,
        "buckets": [{"le": finite_or_none(le), "count": finite_or_none(c)} for le, c in buckets],
    }
    for label, q in QUANTILES:
        element[label] = histogram_quantile(q, window)
    return element


def normalize_buckets(raw: Iterable[tuple[float, float]]) -> Buckets:
    """Sorted by bound, duplicate bounds merged, counts made monotonic (as Prometheus does)."""
    merged: dict[float, float] = {}
    for le, count in raw:
        merged[le] = merged.get(le, 0.0) + count
    out: list[tuple[float, float]] = []
    running = 0.0
    for le in sorted(merged):
        running = max(running, merged[le])
        out.append((le, running))
    return tuple(out)


def bucket_increase(now: Buckets, before: Buckets | None) -> Buckets:
    """Per-bucket increase since `before`; the cumulative buckets when there is no usable
    previous scrape (first scrape, different bucket layout, or a counter reset)."""
    if before is None or [le for le, _ in now] != [le for le, _ in before]:
        return now
    if any(c < b for (_, c), (_, b) in zip(now, before)):
        return now
    return tuple((le, c - b) for (le, c), (_, b) in zip(now, before))


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' `histogram_quantile` (linear interpolation inside the bucket holding the
    rank); None where Prometheus gives NaN or an infinity (q outside [0, 1], no +Inf bucket,
    fewer than two buckets, no observations, q = 0 with an empty first bucket)."""
    if math.isnan(q) or q < 0 or q > 1:  # Prometheus: NaN, -Inf, +Inf; none of them a value
        return None
    if not buckets or not math.isinf(buckets[-1][0]) or len(buckets) < 2:
        return None
    observations = buckets[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    counts = [c for _, c in buckets[:-1]]
    b = bisect_left(counts, rank)  # first bucket whose cumulative count >= rank
    if b == len(buckets) - 1:
        return finite_or_none(buckets[-2][0])
    if b == 0 and buckets[0][0] <= 0:
        return finite_or_none(buckets[0][0])
    start, end, count = 0.0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    if count == 0:  # only for rank 0 (q = 0) in an empty first bucket: Prometheus' 0/0 is NaN
        return None
    return finite_or_none(start + (end - start) * (rank / count))
