"""Run a lab's processes on loopback: `up`, `status`, `down`, and the per-process moves chaos needs.

Processes are started detached (own session, so they outlive `opctl lab up`) with logs in
`<state_dir>/logs/<name>.log`. `<state_dir>/lab.json` records each one's pid, start time and exact
command; every later move (status, signal, down) first checks that the pid still belongs to that
process (same kernel start time, same command line) so a reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from engine.lab import prometheus_server
from engine.lab.models import LabError, Process
from engine.lab.redis_server import RedisServer
from engine.lab.spec import LabSpec
from engine.redact import Redactor
from engine.tls import tls_context

POLL_S = 0.05
LOG_TAIL_LINES = 20
Clock = Callable[[], float]


@dataclass(frozen=True)
class ProcessRecord:
    """What `up` wrote down about one started process."""

    name: str
    pid: int
    command: list[str]
    started_at: float  # unix seconds
    proc_start: int  # kernel start time (clock ticks since boot): tells a reused pid apart
    log: str
    endpoint: str | None
    env: dict[str, str] = field(default_factory=dict)  # extra env of this incarnation (restart step)


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    running: bool
    ready: bool
    pid: int | None
    endpoint: str | None
    started_at: float | None
    log: str


@dataclass(frozen=True)
class LabStatus:
    lab: str
    state_dir: str
    processes: tuple[ProcessStatus, ...]
    exports: dict[str, str]

    @property
    def running(self) -> bool:
        return any(p.running for p in self.processes)

    @property
    def healthy(self) -> bool:
        return all(p.running and p.ready for p in self.processes)

    def process(self, name: str) -> ProcessStatus:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def as_json(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "state_dir": self.state_dir,
            "running": self.running,
            "healthy": self.healthy,
            "processes": [asdict(p) for p in self.processes],
            "endpoints": {p.name: p.endpoint for p in self.processes if p.endpoint},
            "exports": Redactor().value(dict(self.exports)),  # RATELIMITER_TOKEN and the like stay out of output
        }


# ------------------------------------------------------------------------------------ public API


def up(spec: LabSpec, *, env: Mapping[str, str] | None = None, clock: Clock = time.time) -> LabStatus:
    """Start every process in order, each ready before the next; on any failure stop them all."""
    live = [r for r in read_records(spec) if owns(r)]
    if live:
        listing = ", ".join(f"{r.name} (pid {r.pid})" for r in live)
        raise LabError(
            f"lab '{spec.name}' is already running ({listing}; state in {spec.state_dir}); "
            "stop it first with `opctl lab down`"
        )
    for process in spec.lab.processes:
        _check_ports_free(process)
        if process.prometheus is not None:
            prometheus_server.find_prometheus()  # refuse before anything starts
            shutil.rmtree(_prometheus_dir(spec, process) / "data", ignore_errors=True)  # no series of a previous run
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    records: list[ProcessRecord] = []
    try:
        for wave in start_waves(spec):
            started = [_launch(spec, process, {}, env, clock) for process in wave]
            records.extend(record for record, _, _ in started)
            _write_records(spec, records)
            for (_, popen, offset), process in zip(started, wave):
                _wait_ready(spec, process, popen, offset)
    except BaseException:
        _stop_records(spec, records)
        spec.lab_json.unlink(missing_ok=True)
        raise
    return status(spec)


def down(spec: LabSpec) -> list[str]:
    """Stop the recorded processes that are still theirs (TERM, then KILL after the grace).

    Returns the names of the processes it stopped; harmless when nothing is recorded."""
    records = read_records(spec)
    stopped = _stop_records(spec, records)
    spec.lab_json.unlink(missing_ok=True)
    return stopped


def status(spec: LabSpec) -> LabStatus:
    """Each declared process: running (the recorded pid is still it), ready (its probe answers)."""
    records = {r.name: r for r in read_records(spec)}
    out = []
    for process in spec.lab.processes:
        record = records.get(process.name)
        running = record is not None and owns(record)
        out.append(
            ProcessStatus(
                name=process.name,
                running=running,
                ready=running and _probe(spec, process, 0),
                pid=record.pid if record is not None and running else None,
                endpoint=process.default_endpoint(),
                started_at=record.started_at if record is not None else None,
                log=str(spec.log_path(process.name)),
            )
        )
    return LabStatus(spec.name, str(spec.state_dir), tuple(out), dict(spec.lab.exports))


def restart_process(
    spec: LabSpec,
    name: str,
    extra_env: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock = time.time,
) -> ProcessRecord:
    """Stop one process if it runs, start it again with `extra_env`, wait until it is ready."""
    process = spec.process(name)
    records = read_records(spec)
    if not records:
        raise LabError(f"lab '{spec.name}' is not up (no {spec.lab_json}); start it with `opctl lab up`")
    old = next((r for r in records if r.name == name), None)
    if old is not None:
        _stop_records(spec, [old])
    _check_ports_free(process)
    new = _start(spec, process, dict(extra_env or {}), env, clock)
    records = [new if r.name == name else r for r in records] if old is not None else [*records, new]
    _write_records(spec, records)
    return new


def signal_process(spec: LabSpec, name: str, signame: str) -> int:
    """Send SIG<signame> to a running lab process (its whole process group). Returns the pid.

    Signals land asynchronously; for KILL it returns once the process is gone and for STOP once
    it is stopped (at most 5 s), so what follows sees the fault in place."""
    spec.process(name)
    record = running_record(spec, name)
    if record is None:
        raise LabError(f"process '{name}' of lab '{spec.name}' is not running; nothing to signal")
    _signal(record.pid, getattr(signal, f"SIG{signame}"))
    landed: Callable[[], bool] | None = {
        "KILL": lambda: _gone(record),
        "STOP": lambda: (_proc_stat(record.pid) or ("?", 0))[0] in ("T", "t"),
    }.get(signame)
    deadline = time.monotonic() + 5.0
    while landed is not None and not landed() and time.monotonic() < deadline:
        time.sleep(0.01)
    return record.pid


def running_record(spec: LabSpec, name: str) -> ProcessRecord | None:
    """The record of `name` if that process is still running as recorded."""
    for record in read_records(spec):
        if record.name == name and owns(record):
            return record
    return None


def read_records(spec: LabSpec) -> list[ProcessRecord]:
    """The processes lab.json records; [] when there is none. A damaged file is a clear error."""
    try:
        raw = json.loads(spec.lab_json.read_text())
        return [ProcessRecord(**{**entry, "command": list(entry["command"])}) for entry in raw["processes"]]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"{spec.lab_json} is damaged ({exc}); stop the lab's processes by hand and delete the file"
        ) from None


def owns(record: ProcessRecord) -> bool:
    """True when `record.pid` is alive and is still the process that was started."""
    stat = _proc_stat(record.pid)
    if stat is None or stat[0] == "Z" or stat[1] != record.proc_start:
        if stat is not None and stat[0] == "Z":
            _reap(record.pid)
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return False
    return [part.decode(errors="replace") for part in cmdline] == record.command


def command_of(spec: LabSpec, process: Process) -> list[str]:
    """The exact argv of a process: the built-in redis-server line, or `command` with {python}."""
    if process.redis is not None:
        workdir = spec.state_dir / f"{process.name}-data"
        workdir.mkdir(parents=True, exist_ok=True)
        # `--set-proc-title no` keeps /proc/<pid>/cmdline equal to this argv (ownership check).
        extra = ["--set-proc-title", "no", *process.redis.args]
        return RedisServer(process.redis.port, workdir=workdir, extra_args=extra).command()
    if process.prometheus is not None:
        settings = process.prometheus
        try:
            config = prometheus_server.lab_config(spec.base_dir / settings.config, settings.targets, settings.scrape_interval)
        except ValueError as exc:
            raise LabError(f"process '{process.name}': {exc}") from None
        home = _prometheus_dir(spec, process)
        config_file = prometheus_server.write_config(config, home / "prometheus.yml")
        return prometheus_server.command(prometheus_server.find_prometheus(), config_file, home / "data", settings.port)
    assert process.command is not None
    return [part.replace("{python}", sys.executable) for part in process.command]


def _prometheus_dir(spec: LabSpec, process: Process) -> Path:
    """Where a `prometheus` process keeps its generated config and its data."""
    return spec.state_dir / process.name


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"


# ------------------------------------------------------------------------------------ starting


def start_waves(spec: LabSpec) -> list[list[Process]]:
    """Processes grouped into waves started together: a process joins the current wave when
    everything it waits for (its `after`, or by default every process listed before it) is in
    an earlier wave, so nodes that only need Redis start side by side."""
    waves: list[list[Process]] = []
    done: set[str] = set()
    listed: list[str] = []
    for process in spec.lab.processes:
        needs = set(process.after) if process.after else set(listed)
        if not waves or not needs <= done:
            done.update(p.name for p in (waves[-1] if waves else []))
            waves.append([])
        waves[-1].append(process)
        listed.append(process.name)
    return waves


def _start(
    spec: LabSpec, process: Process, extra_env: dict[str, str], base_env: Mapping[str, str] | None, clock: Clock
) -> ProcessRecord:
    record, popen, log_offset = _launch(spec, process, extra_env, base_env, clock)
    try:
        _wait_ready(spec, process, popen, log_offset)
    except BaseException:
        _stop_records(spec, [record])
        raise
    return record


def _launch(
    spec: LabSpec, process: Process, extra_env: dict[str, str], base_env: Mapping[str, str] | None, clock: Clock
) -> tuple[ProcessRecord, subprocess.Popen[bytes], int]:
    argv = command_of(spec, process)
    env = {**(os.environ if base_env is None else base_env), **spec.lab.env, **process.env, **extra_env}
    log_path = spec.log_path(process.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    cwd = spec.cwd_of(process)
    with log_path.open("ab") as log:
        try:
            popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"process '{process.name}' could not start: {argv[0]}: {exc.strerror or exc}") from None
    stat = _proc_stat(popen.pid)
    record = ProcessRecord(
        name=process.name,
        pid=popen.pid,
        command=argv,
        started_at=clock(),
        proc_start=stat[1] if stat else 0,
        log=str(log_path),
        endpoint=process.default_endpoint(),
        env=extra_env,
    )
    return record, popen, log_offset


def _wait_ready(spec: LabSpec, process: Process, popen: subprocess.Popen[bytes], log_offset: int) -> None:
    timeout = process.ready.timeout if process.ready is not None else 30.0
    deadline = time.monotonic() + timeout
    log_path = spec.log_path(process.name)
    while True:
        code = popen.poll()  # also collects the exit status: no zombie is left behind
        if code is not None:
            raise LabError(
                f"process '{process.name}' exited with code {code} while starting; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if _probe(spec, process, log_offset):
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"process '{process.name}' not ready after {timeout:g}s ({_describe_probe(process)}); "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(POLL_S)


def _probe(spec: LabSpec, process: Process, log_offset: int) -> bool:
    """One readiness probe, short timeouts; a process without a probe is ready when alive."""
    ready = process.ready
    if process.redis is not None and ready is None:
        client = redis.Redis(port=process.redis.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
    if process.prometheus is not None and ready is None:
        expected = sum(len(targets) for targets in process.prometheus.targets.values())
        return prometheus_server.scraped_every_target(f"http://127.0.0.1:{process.prometheus.port}", expected)
    if ready is None:
        return True
    if ready.http is not None:
        try:
            return httpx.get(ready.http, timeout=0.5, verify=tls_context()).is_success
        except httpx.HTTPError:
            return False
    if ready.tcp is not None:
        host, _, port = ready.tcp.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return True
        except OSError:
            return False
    assert ready.log is not None
    try:
        with spec.log_path(process.name).open("rb") as log:
            log.seek(log_offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return False
    return re.search(ready.log, text, re.MULTILINE) is not None


def _describe_probe(process: Process) -> str:
    ready = process.ready
    if ready is None:
        if process.prometheus is not None:
            return "Prometheus was not ready, or had not scraped every target once"
        return "redis PING" if process.redis is not None else "no probe"
    if ready.http is not None:
        return f"GET {ready.http} never answered 2xx"
    if ready.tcp is not None:
        return f"nothing accepted connections on {ready.tcp}"
    return f"no log line matched {ready.log!r}"


def _check_ports_free(process: Process) -> None:
    for port in process.listen_ports():
        listeners = _listening_inodes(port)
        if listeners is None:  # no /proc/net: ask the port itself
            listeners = {"?"} if _accepts(port) else set()
        if listeners:
            holder = _holder_of(listeners)
            raise LabError(
                f"port {port} of process '{process.name}' is already in use"
                f"{f' by {holder}' if holder else ' by another program'}; stop that program "
                "or give the lab other ports (its ports come from environment variables in the lab file)"
            )


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on `port` (any address), or None when /proc/net is unreadable.

    Only a listener counts: sockets left in TIME_WAIT by a stopped process do not keep the
    next one (which binds with SO_REUSEADDR) from listening."""
    inodes: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    return inodes if readable else None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _holder_of(inodes: set[str]) -> str | None:
    """'pid N (command)' of the process owning one of the socket `inodes`, if /proc shows it."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    command = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {pid_dir.name} ({command[:80]})"
        except OSError:
            continue
    return None


# ------------------------------------------------------------------------------------ stopping


def _stop_records(spec: LabSpec, records: list[ProcessRecord]) -> list[str]:
    """TERM every owned process (in reverse start order), wait its grace, KILL what is left."""
    grace = {p.name: p.stop_timeout for p in spec.lab.processes}
    owned = [r for r in reversed(records) if owns(r)]
    for record in owned:
        _signal(record.pid, signal.SIGTERM)
        _signal(record.pid, signal.SIGCONT)  # a STOPped process must run to handle TERM
    for record in owned:
        deadline = time.monotonic() + grace.get(record.name, 5.0)
        while not _gone(record) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if not _gone(record):
            _signal(record.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while not _gone(record) and time.monotonic() < deadline:
                time.sleep(POLL_S)
    return [r.name for r in owned]


def _gone(record: ProcessRecord) -> bool:
    """The recorded process has fully exited (its sockets closed), not merely begun to.

    Checked by pid and start time only: an exiting process loses its command line before it
    closes its files, so `owns` would turn false too early."""
    stat = _proc_stat(record.pid)
    if stat is not None and stat[0] == "Z":
        _reap(record.pid)
        return True
    return stat is None or stat[1] != record.proc_start


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the process group the lab created for `pid` (workers included), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collect a dead child of this process so it stops showing as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _write_records(spec: LabSpec, records: list[ProcessRecord]) -> None:
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "lab": spec.name,
        "file": str(spec.file),
        "processes": [asdict(record) for record in records],
    }
    tmp = spec.lab_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(spec.lab_json)


__all__ = [
    "LabStatus",
    "ProcessRecord",
    "ProcessStatus",
    "command_of",
    "down",
    "log_tail",
    "owns",
    "read_records",
    "restart_process",
    "running_record",
    "signal_process",
    "status",
    "up",
]
