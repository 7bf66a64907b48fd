"""Real `opctl run` replicas on one store, for the HA and race tests: each has its own config file
(the same subject and store; its target sends `X-Replica: <id>` so the target's log says who sent
what), writes its JSON tick lines to a file, and can be killed, paused and resumed by signal.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.store import SCHEMA_VERSION, Lease, Store
from tests.act.act_support import action, config_data
from tests.node_registry import NodeRegistry
from tests.store_support import RawDatabase
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


def registry_config(url: str, **overrides: Any) -> dict[str, Any]:
    """The acting tests' node registry config (tests/act/act_support.py) for replicas: a node that
    is down is deregistered (guarded, verified), by the runbook; no token; short ticks and lease."""
    data = config_data(
        url, interval="200ms", lease={"ttl": "2s"}, gate={"budget_per_hour": 1000, "guard_timeout": "30s"},
        diagnosis={"provider": "runbook"}, mode="execute", store="state.db",
    )  # fmt: skip
    data["targets"] = {"api": {"url": url, "timeout": "20s"}}
    data["actions"] = [action(data, "deregister_node")]
    data.update(copy.deepcopy(overrides))
    return data


class Replica:
    def __init__(self, directory: Path, name: str, data: dict[str, Any], command: list[str]) -> None:
        self.name = name
        self.config = directory / f"{name}.yaml"
        mine = copy.deepcopy(data)
        mine["targets"]["api"]["headers"] = {"X-Replica": name}
        self.config.write_text(yaml.safe_dump(mine, sort_keys=False))
        self.out = directory / f"{name}.{len(list(directory.glob(f'{name}.*.jsonl')))}.jsonl"
        self.err = self.out.with_suffix(".err")
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([*self.command, str(self.config)], stdout=out, stderr=err, cwd=ROOT, env=dict(os.environ))
        return self

    def lines(self) -> list[dict[str, Any]]:
        text = self.out.read_text() if self.out.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def leading(self) -> bool:
        lines = self.lines()
        return bool(lines) and bool(lines[-1].get("leader", {}).get("leading"))

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


class Replicas:
    """Starts replicas of one config in one folder, on one store (a SQLite file in the folder, or
    a PostgreSQL database: `store_at`); stops every one at the end."""

    def __init__(self, directory: Path, store_at: Path | str) -> None:
        self.directory = directory
        self.store: Path | str = directory / "state.db" if isinstance(store_at, Path) else store_at
        self.started: list[Replica] = []

    def _with_store(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "store": "state.db" if isinstance(self.store, Path) else self.store}

    def exists(self) -> bool:
        """The store is there and the first replica has created its tables."""
        if isinstance(self.store, Path):
            return self.store.exists()
        raw = RawDatabase(self.store)
        try:
            if not raw.sql(raw.dialect.table_exists(), ("schema_version",)):
                return False
            return raw.sql("SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
        finally:
            raw.close()

    def opctl_run(self, name: str, data: dict[str, Any]) -> Replica:
        """`opctl run CONFIG --json --replica-id NAME`."""
        command = [sys.executable, "-m", "engine", "run", "--json", "--replica-id", name]
        replica = Replica(self.directory, name, self._with_store(data), command).start()
        self.started.append(replica)
        return replica

    def unleased(self, name: str, data: dict[str, Any]) -> Replica:
        """An engine loop WITHOUT the lease (tests/unleased_loop.py): what the store's own
        compare-and-sets must make safe when two loops act at once."""
        command = [sys.executable, "-m", "tests.unleased_loop"]
        replica = Replica(self.directory, name, self._with_store(data), command).start()
        self.started.append(replica)
        return replica

    def lease(self) -> Lease:
        with Store(self.store) as store:
            return store.lease()

    def wait_leader(self, name: str, *, after_token: int = 0) -> Lease:
        def led() -> Lease | None:
            if isinstance(self.store, Path) and not self.store.exists():
                return None
            lease = self.lease()
            return lease if lease.holder == name and lease.valid and lease.token > after_token else None

        return wait_for(led, timeout=60)

    def stop(self) -> None:
        for replica in self.started:
            replica.stop()


@pytest.fixture
def replicas(tmp_path: Path, store_at: Path | str) -> Iterator[Replicas]:
    """Replicas on each backend (tests/conftest.py `store_at`: SQLite, PostgreSQL)."""
    started = Replicas(tmp_path, store_at)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def registry() -> Iterator[NodeRegistry]:
    started = NodeRegistry().start()
    try:
        yield started
    finally:
        started.stop()


def opctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
