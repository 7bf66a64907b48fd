"""A real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port, its config
written here, its storage in a temporary directory, gossip off."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port
from tests.waiting import wait_for

BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
requires_alertmanager = pytest.mark.skipif(not Path(BINARY).exists(), reason="prometheus-alertmanager is not installed")

CONFIG = """\
route:
  receiver: nobody
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: nobody
"""


class Alertmanager:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "alertmanager.yml").write_text(CONFIG)
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={self.directory / 'alertmanager.yml'}", f"--storage.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._ready, timeout=30)
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
