"""Prometheus metrics: one registry per app in one process; one merged view of all the worker
processes of a node (`RATELIMITER_WORKERS` > 1), whichever worker answers the scrape."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from nodes import AUTH, TOKEN, NodeGroup, raw_request
from ratelimiter_service.metrics import Metrics
from tests.promtool import metrics_lint, requires_promtool
from waiting import wait_for

pytestmark = pytest.mark.redis

CHECKS_PER_ROUND = 20
MAX_ROUNDS = 50  # 1,000 checks: far more than the kernel needs to hand both workers some
SCRAPES = 5


# ----------------------------------------------------------------------------- helpers


def scrape_text(url: str) -> str:
    async def get() -> str:
        async with asyncio.timeout(10):
            response = await raw_request(url, "GET", "/metrics")  # a connection of its own
        assert response.status == 200, response.body
        return response.body.decode()

    return asyncio.run(get())


def scrape(url: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(scrape_text(url)) for sample in family.samples]


def total(samples: list[Sample], name: str) -> float:
    return sum(sample.value for sample in samples if sample.name == name)


def only(samples: list[Sample], name: str) -> Sample:
    [sample] = [sample for sample in samples if sample.name == name]
    return sample


def per_worker(metrics_dir: Path, kind: str, sample_name: str) -> dict[int, float]:
    """Each worker's own value of `sample_name`, read from its file of `kind` (e.g. `counter`)."""
    values: dict[int, float] = {}
    for path in metrics_dir.glob(f"{kind}_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        families = MultiProcessCollector.merge([str(path)])
        values[pid] = sum(s.value for family in families for s in family.samples if s.name == sample_name)
    return values


def decisions_by_worker(metrics_dir: Path) -> dict[int, float]:
    return per_worker(metrics_dir, "counter", "ratelimiter_decisions_total")


def send_checks(url: str, first: int) -> int:
    """One round of checks, each on a fresh connection so that any worker may accept it."""

    async def send() -> None:
        keys = range(first, first + CHECKS_PER_ROUND)
        responses = await asyncio.gather(*(raw_request(url, "POST", "/v1/check", {"key": f"k{i}"}) for i in keys))
        assert [r.status for r in responses] == [200] * CHECKS_PER_ROUND

    asyncio.run(send())
    return CHECKS_PER_ROUND


def checks_until_both_workers_decided(url: str, metrics_dir: Path) -> int:
    """Send rounds of checks until each of the two workers decided some; return how many were sent."""
    sent = 0
    for _ in range(MAX_ROUNDS):
        sent += send_checks(url, sent)
        counts = decisions_by_worker(metrics_dir)
        if len(counts) == 2 and all(counts.values()):
            return sent
    raise AssertionError(f"{sent} checks on fresh connections all went to one worker: {counts}")


def the_metrics_dir(tmpdir: Path) -> Path:
    [metrics_dir] = tmpdir.glob("ratelimiter-metrics-*")
    return metrics_dir


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(TMPDIR for the node, a PROMETHEUS_MULTIPROC_DIR already in its environment)."""
    tmpdir, preset = tmp_path / "tmp", tmp_path / "preset"
    tmpdir.mkdir()
    preset.mkdir()
    return tmpdir, preset


def node_env(dirs: tuple[Path, Path], **settings: str) -> dict[str, str]:
    tmpdir, preset = dirs
    return {
        "RATELIMITER_TOKEN": TOKEN,
        "TMPDIR": str(tmpdir),
        "PROMETHEUS_MULTIPROC_DIR": str(preset),
        **{f"RATELIMITER_{name.upper()}": value for name, value in settings.items()},
    }


# ----------------------------------------------------------------------------- one process


def test_apps_in_one_process_keep_their_own_metrics_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first, second = Metrics("a"), Metrics("b")
    first.decisions.labels("p", "allowed").inc()
    assert b'ratelimiter_decisions_total{policy="p",result="allowed"} 1.0' in first.render()
    assert b"ratelimiter_decisions_total{" not in second.render()
    assert b'ratelimiter_node_info{node="b"} 1.0' in second.render()


def test_heartbeat_age_is_the_time_since_the_last_heartbeat() -> None:
    now = [100.0]
    metrics = Metrics("a", clock=lambda: now[0])
    now[0] = 102.5
    assert b"ratelimiter_heartbeat_age_seconds 2.5" in metrics.render()  # counted from the start
    metrics.heartbeat_written()
    now[0] = 103.0
    assert b"ratelimiter_heartbeat_age_seconds 0.5" in metrics.render()


@pytest.mark.slow
def test_a_single_process_node_writes_no_metric_files(redis_url: str, dirs: tuple[Path, Path]) -> None:
    with NodeGroup(redis_url, count=1, env=node_env(dirs), id_prefix="single") as nodes:
        sent = send_checks(nodes[0].url, 0)
        samples = scrape(nodes[0].url)
        assert total(samples, "ratelimiter_decisions_total") == sent
        assert only(samples, "ratelimiter_node_info").labels == {"node": "single-0"}
    tmpdir, preset = dirs
    assert list(tmpdir.iterdir()) == [] and list(preset.iterdir()) == []


@pytest.mark.slow
@requires_promtool
@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "merged-workers"])
def test_promtool_accepts_a_live_scrape(redis_url: str, dirs: tuple[Path, Path], workers: str) -> None:
    with NodeGroup(redis_url, count=1, env=node_env(dirs, workers=workers), id_prefix="lint") as nodes:
        send_checks(nodes[0].url, 0)  # every family has samples, the histogram included
        assert metrics_lint(scrape_text(nodes[0].url)) == []


# ----------------------------------------------------------------------------- worker processes


@pytest.mark.slow
def test_every_scrape_counts_the_decisions_of_all_workers(redis_url: str, dirs: tuple[Path, Path]) -> None:
    tmpdir, preset = dirs
    with NodeGroup(redis_url, count=1, env=node_env(dirs, workers="2"), id_prefix="multi") as nodes:
        node = nodes[0]
        metrics_dir = the_metrics_dir(tmpdir)
        assert metrics_dir.stat().st_mode & 0o777 == 0o700
        sent = checks_until_both_workers_decided(node.url, metrics_dir)
        assert sum(decisions_by_worker(metrics_dir).values()) == sent  # no worker holds them all
        for _ in range(SCRAPES):  # each on a fresh connection, answered by either worker
            samples = scrape(node.url)
            assert total(samples, "ratelimiter_decisions_total") == sent
            assert total(samples, "ratelimiter_check_latency_seconds_count") == sent
            assert only(samples, "ratelimiter_node_info").labels == {"node": "multi-0"}
            assert not [sample for sample in samples if "pid" in sample.labels]
        node.stop()  # SIGTERM
        assert node.process is not None and node.process.returncode == 0, node.log_text()
    assert not metrics_dir.exists()
    assert list(tmpdir.iterdir()) == [] and list(preset.iterdir()) == []  # ours won over the preset one


@pytest.mark.slow
def test_gauges_show_the_worker_that_lags(redis_url: str, dirs: tuple[Path, Path]) -> None:
    """Policy version: the lowest of the live workers. Heartbeat age: the oldest heartbeat of the
    live workers, so a stuck worker shows; once it is dead and replaced, it is forgotten."""
    tmpdir, _ = dirs
    # Frozen refresh: a worker learns a new policy version only from a request it answers.
    env = node_env(dirs, workers="2", heartbeat_interval_ms="100", test_mode="true", policy_refresh="false")
    with NodeGroup(redis_url, count=1, env=env, id_prefix="multi") as nodes:
        url = nodes[0].url
        metrics_dir = the_metrics_dir(tmpdir)

        def versions() -> dict[int, float]:
            return per_worker(metrics_dir, "gauge_livemin", "ratelimiter_policy_version")

        sent = checks_until_both_workers_decided(url, metrics_dir)  # both serve: policies loaded
        put = asyncio.run(raw_request(url, "PUT", "/v1/policies/p", {"limit": 5, "window_ms": 60_000}, AUTH))
        assert put.status == 200 and put.json()["version"] == 1, put.body
        assert sorted(versions().values()) == [0, 1]
        for _ in range(SCRAPES):
            assert only(scrape(url), "ratelimiter_policy_version").value == 0

        def reload_until_both_have_version_1() -> bool:
            asyncio.run(raw_request(url, "POST", "/v1/policies/reload", headers=AUTH))
            return sorted(versions().values()) == [1, 1]

        wait_for(reload_until_both_have_version_1)
        assert only(scrape(url), "ratelimiter_policy_version").value == 1

        def heartbeat_age() -> float:
            return only(scrape(url), "ratelimiter_heartbeat_age_seconds").value

        stuck, _ = versions()
        os.kill(stuck, signal.SIGSTOP)  # its heartbeats stop; the other worker answers scrapes
        try:
            wait_for(lambda: heartbeat_age() > 1.0, timeout=4)  # uvicorn kills a stuck worker after 5 s
        finally:
            os.kill(stuck, signal.SIGKILL)
        wait_for(lambda: heartbeat_age() < 1.0)  # uvicorn reaped it and started another
        assert stuck not in versions()
        assert decisions_by_worker(metrics_dir)[stuck] > 0
        assert total(scrape(url), "ratelimiter_decisions_total") == sent  # a dead worker's decisions stay


# ----------------------------------------------------------------------------- counters born at 0


def test_every_labelled_counter_is_exported_at_0_before_its_first_event(redis_url: str) -> None:
    """Prometheus' rate() and increase() miss the first event of a series born at 1 (issue 13):
    a node exports each counter at 0 for every label value it knows, before any event; a policy
    written later has its counters at 0 once the node has loaded it."""
    from ratelimiter_service.metrics import CHECK_ENDPOINTS, DECISION_RESULTS, FAILURE_MODES, REDIS_OPERATIONS
    from ratelimiter_service.redis_client import ERROR_KINDS

    def counters(samples: list[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "node"))): s.value
            for s in samples
            if s.name.endswith("_total") or s.name.endswith("_count")
        }

    def expected_for(policies: list[str]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        expected = {("ratelimiter_script_reloads_total", ()), ("ratelimiter_redis_retries_total", ())}
        expected |= {
            ("ratelimiter_redis_errors_total", (("kind", kind), ("operation", op)))
            for op in REDIS_OPERATIONS
            for kind in ERROR_KINDS
        }
        expected |= {("ratelimiter_check_latency_seconds_count", (("endpoint", e),)) for e in CHECK_ENDPOINTS}
        for policy in policies:
            expected |= {("ratelimiter_decisions_total", (("policy", policy), ("result", r))) for r in DECISION_RESULTS}
            expected |= {
                ("ratelimiter_failure_mode_decisions_total", (("mode", m), ("policy", policy))) for m in FAILURE_MODES
            }
        return expected

    env = {"RATELIMITER_TOKEN": TOKEN, "RATELIMITER_POLICY_REFRESH_INTERVAL_MS": "50"}
    with NodeGroup(redis_url, count=1, env=env, id_prefix="zero") as nodes:
        url = nodes[0].url
        first = counters(scrape(url))
        assert expected_for(["default"]) <= set(first)
        assert all(value == 0 for value in first.values()), {k: v for k, v in first.items() if v}

        put = asyncio.run(raw_request(url, "PUT", "/v1/policies/later", {"limit": 5, "window_ms": 1000}, AUTH))
        assert put.status == 200
        wait_for(lambda: expected_for(["default", "later"]) <= set(counters(scrape(url))), 10)
        assert all(value == 0 for value in counters(scrape(url)).values())
