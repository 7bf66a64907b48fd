"""The directory in which the worker processes of one node share their Prometheus metrics.

prometheus_client's multiprocess mode: every process writes its samples to memory-mapped files
in `PROMETHEUS_MULTIPROC_DIR`, and a scrape merges the files of all of them. The library picks
that mode from the variable when it is first imported, so the variable must be in place before
any worker process starts, and this module (imported by `__main__` before the server) must not
import prometheus_client.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger("ratelimiter_service")


def shared_metrics_dir() -> str | None:
    """The directory this process shares its metrics in, or None when it keeps them in memory."""
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


@contextmanager
def metrics_dir_for(workers: int) -> Iterator[str | None]:
    """While serving with `workers` processes: a fresh private directory for their metric files
    (mode 0700, removed on exit) in `PROMETHEUS_MULTIPROC_DIR`, or none at all for one process.

    Ours wins over a `PROMETHEUS_MULTIPROC_DIR` already in the environment. prometheus_client
    documents that variable together with a duty: whoever sets it wipes the directory before
    every start. Here that is us, since we spawn the workers; but wiping a directory somebody
    else named could delete their files, and not wiping it would add a previous run's (or
    another program's) counts to ours. `TMPDIR` still chooses where our directory goes.
    """
    inherited = os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
    if inherited:
        logger.warning(
            "ignoring %s=%s: a node uses a fresh directory of its own (under TMPDIR) with "
            "RATELIMITER_WORKERS > 1, and none with one process",
            MULTIPROC_DIR_VARIABLE,
            inherited,
        )
    if workers == 1:
        yield None
        return
    path = tempfile.mkdtemp(prefix="ratelimiter-metrics-")  # mode 0700
    os.environ[MULTIPROC_DIR_VARIABLE] = path  # inherited by the workers uvicorn spawns
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)
