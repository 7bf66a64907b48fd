"""A real 3-master Redis Cluster from redis-server binaries, for the limiter's cluster tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine.lab.redis_server import RedisServer, find_redis_server
from tests.ports import bindable, free_port


def _major_version(binary: str) -> int:
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return int(text.split("v=")[1].split(".")[0])


def _port_with_free_bus() -> int:
    """A free port P (tests.ports) whose bus port P + 10000 is free too (Redis < 7)."""
    for _ in range(1000):
        candidate = free_port()
        if bindable(candidate + 10000):
            return candidate
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalCluster:
    """Three cluster-enabled redis-servers on loopback, slots split by `redis-cli --cluster create`."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.servers = []
        explicit_bus_port = _major_version(find_redis_server()) >= 7
        for index in range(masters):
            node_dir = workdir / f"node{index}"
            node_dir.mkdir(parents=True)
            args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
            ]
            if explicit_bus_port:
                # The default bus port (port + 10000) may be out of range for an ephemeral port.
                port = free_port()
                args += ["--cluster-port", str(free_port())]
            else:
                port = _port_with_free_bus()
            self.servers.append(RedisServer(port, workdir=node_dir, extra_args=args))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0"

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        self._wait_ok(timeout)
        return self

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for server in self.servers:
            client = redis.Redis(port=server.port, socket_timeout=1)
            try:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster not ok after {timeout}s (node {server.port})")
                    time.sleep(0.05)
            finally:
                client.close()

    def flush(self) -> None:
        for server in self.servers:
            client = redis.Redis(port=server.port)
            try:
                client.flushall()
                client.script_flush()
            finally:
                client.close()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not on PATH, so a Redis Cluster cannot be created (apt-get install redis-tools)")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
