"""Free loopback ports for the tests, safe when pytest-xdist runs several workers at once.

A port from the kernel (bind to port 0, then close) is drawn at random from the ephemeral range,
and a test hands it to a server that binds it later, often a process that takes a second to
start: meanwhile another worker may be handed the same port. So each worker takes ports from its
own block of PORTS, below the ephemeral range (Linux: 32768-60999), in order from a random start,
skipping any port that cannot be bound right now. No two workers ever hand out the same port,
and no outgoing connection (its local port comes from the ephemeral range) can take one.
A Redis < 7 cluster node also needs its bus port, port + 10000: 30000-39999, outside every block.
Several checkouts testing at once on one machine each set OPCTL_TEST_PORTS=FROM-TO (a sub-range of
20000-29999) so that their blocks never meet either.
"""

from __future__ import annotations

import itertools
import os
import random
import socket



def _ports(spec: str | None) -> range:
    if not spec:
        return range(20000, 30000)
    first, last = (int(part) for part in spec.split("-", 1))
    return range(first, last + 1)


PORTS = _ports(os.environ.get("OPCTL_TEST_PORTS"))


def worker_block(worker: str | None, count: str | None) -> range:
    """The ports of one xdist worker ("gw3" of 8) or of a run without workers (all of PORTS)."""
    if not worker or not worker.startswith("gw"):
        return PORTS
    index, workers = int(worker[2:]), max(1, int(count or 1))
    size = len(PORTS) // workers
    return range(PORTS.start + index * size, PORTS.start + (index + 1) * size)


_BLOCK = worker_block(os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT"))
_START = random.randrange(len(_BLOCK))  # two runs on one machine rarely walk the same ports at once
_STEPS = itertools.count()  # next() on it is atomic: threads never get the same step


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never handed out by another worker."""
    for _ in range(len(_BLOCK)):
        port = _BLOCK[(_START + next(_STEPS)) % len(_BLOCK)]
        if bindable(port):
            return port
    raise RuntimeError(f"no free port in {_BLOCK}")
