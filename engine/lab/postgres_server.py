"""Start and stop a real PostgreSQL server on loopback, in a directory of its own.

`initdb` makes a fresh cluster in a temporary directory and `postgres` serves it on 127.0.0.1
only (no Unix socket), with password (SCRAM) authentication for one user. PostgreSQL refuses to
run as root: as root, the cluster belongs to `nobody`, and initdb and postgres run as that user.
The binaries: $OPCTL_POSTGRES_BIN, else Debian's /usr/lib/postgresql/<newest>/bin, else PATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
UNPRIVILEGED = "nobody"


def find_postgres_bin() -> Path | None:
    """The directory holding `initdb` and `postgres`, or None when PostgreSQL is not installed."""
    explicit = os.environ.get("OPCTL_POSTGRES_BIN")
    candidates = [Path(explicit)] if explicit else []
    if DEBIAN_BINARIES.is_dir():
        versions = sorted((p for p in DEBIAN_BINARIES.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [v / "bin" for v in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    return None


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1:`port`; `url(db)` names a database with the password.

    `durable=False` (tests) turns fsync off: a test never survives an OS crash anyway, and each
    commit costs a disk flush otherwise; benchmarks keep the defaults.
    """

    def __init__(self, port: int, *, bindir: Path | None = None, durable: bool = False, user: str = "opctl") -> None:
        found = bindir or find_postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql); no initdb and postgres found")
        self.bindir = found
        self.port = port
        self.durable = durable
        self.user = user
        self.password = "opctl-test-" + os.urandom(6).hex()
        # not under pytest's tmp dirs: those are 0700 root's, and the server may run as `nobody`
        self.workdir = Path(tempfile.mkdtemp(prefix="opctl-pg-"))
        self.datadir = self.workdir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._owner = pwd.getpwnam(UNPRIVILEGED) if os.geteuid() == 0 else None
        self._initdb()

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        return f"postgresql://{self.user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, object]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._owner is not None:
            os.chown(self.workdir, self._owner.pw_uid, self._owner.pw_gid)
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        done = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user, "--pwfile", str(pwfile),
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, cwd=self.workdir, **self._as_owner(),  # type: ignore[call-overload]
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "50",
            "shared_buffers": "32MB",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        return [str(self.bindir / "postgres"), "-D", str(self.datadir), *(f"-c{k}={v}" for k, v in settings.items())]

    def start(self, timeout: float = 30.0) -> "PostgresServer":
        log = open(self.workdir / "postgres.log", "ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, **self._as_owner()  # type: ignore[call-overload]
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.workdir / 'postgres.log'}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres on port {self.port} not ready after {timeout}s") from None
                time.sleep(0.05)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, *, fast: bool = True) -> None:
        """SIGINT: the fast shutdown (clients are disconnected, nothing committed is lost)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT if fast else signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
