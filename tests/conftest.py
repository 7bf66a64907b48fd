"""Shared fixtures: a real redis-server on a free loopback port, a real Prometheus, a clean
environment; and the turns that let a test marked `alone` run while the other xdist workers wait."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from engine.errors import LabError
from engine.lab.postgres_server import PostgresServer, find_postgres_bin
from engine.lab.prometheus_server import command as prometheus_command
from engine.lab.prometheus_server import find_prometheus, write_config
from engine.lab.redis_server import RedisServer
from tests.ports import free_port
from tests.waiting import wait_for


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests that need isolation use `redis_url`."""
    server = RedisServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session server, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A dedicated redis-server a test may kill, pause or restart."""
    server = RedisServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the real Claude API: an ambient key must not switch providers."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("OPCTL_TESTING", "1")


class _Turns:
    """A test marked `alone` runs while no test runs on another xdist worker of this run.

    Some tests measure a node under load it makes itself (a burst at the 50 ms Redis deadline);
    a second worker's processes competing for the same cores change what they measure. Every
    test holds the room shared; an `alone` test holds it exclusively, and first takes the door,
    so a worker that finishes its current test waits at the door instead of starting the next.
    Locks are flock(2) on two files in the run's temporary directory: a worker that dies
    releases them."""

    def __init__(self, directory: Path) -> None:
        self.door = directory / "turns.door"
        self.room = directory / "turns.room"

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            with self._hold(self.door, fcntl.LOCK_EX):
                held.enter_context(self._hold(self.room, fcntl.LOCK_SH))
            yield

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self._hold(self.door, fcntl.LOCK_EX), self._hold(self.room, fcntl.LOCK_EX):
            yield

    @staticmethod
    @contextlib.contextmanager
    def _hold(path: Path, operation: int) -> Iterator[None]:
        with path.open("a") as handle:  # closing the file releases the lock
            fcntl.flock(handle, operation)
            yield


_TURNS = pytest.StashKey[_Turns]()


def _turns(config: pytest.Config) -> _Turns | None:
    """The run's turns on an xdist worker (whose basetemp is <the run's basetemp>/popen-gwN)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    if _TURNS not in config.stash:
        basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # the tmp_path_factory fixture's
        config.stash[_TURNS] = _Turns(basetemp.parent)
    return config.stash[_TURNS]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, `alone` tests come first: the other worker is then in its first, short
    test, not in the middle of a long one (a lab or a demo) that the `alone` test would wait for."""
    if _turns(config) is not None:
        items.sort(key=lambda item: item.get_closest_marker("alone") is None)  # stable: the rest keep their order


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Setup, call and teardown of every test (with the fixtures it starts) inside its turn."""
    turns = _turns(item.config)
    if turns is None:
        return (yield)
    with turns.alone() if item.get_closest_marker("alone") else turns.shared():
        return (yield)


@pytest.fixture(scope="session")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with nothing to scrape, for what only needs its query engine; skipped
    (with the reason) where Debian's `prometheus` package is not installed."""
    try:
        binary = find_prometheus()
    except LabError as exc:
        pytest.skip(str(exc))
    home = tmp_path_factory.mktemp("prometheus")
    config = write_config({"global": {"scrape_interval": "1m"}, "scrape_configs": []}, home / "prometheus.yml")
    port = free_port()
    with (home / "log").open("wb") as log:
        process = subprocess.Popen(prometheus_command(binary, config, home / "data", port), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url, process), timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "prometheus exited while starting"
    try:
        return httpx.get(f"{url}/-/ready", timeout=0.5).is_success
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- PostgreSQL


def _postgres(durable: bool = False) -> PostgresServer:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb/postgres in /usr/lib/postgresql/*/bin or on PATH): apt-get install postgresql")
    return PostgresServer(free_port(), durable=durable).start()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster per session (per xdist worker), initdb'd in a temp dir."""
    server = _postgres()
    yield server
    server.remove()


_DATABASES = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL (with its password) of a fresh, empty database on the session's cluster."""
    return postgres_server.create_database(f"t{os.getpid()}_{next(_DATABASES)}")


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own, which it may stop and restart."""
    server = _postgres()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a fresh store is, on each backend: a file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state" / "opctl.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def allow_outside() -> Iterator[None]:
    """What `opctl --allow-outside` sets: configs written to tmp_path may name the repository's
    files by absolute path (engine/config/reach.py)."""
    from engine.config.reach import allow_outside as outside

    token = outside.set(True)
    yield
    outside.reset(token)
