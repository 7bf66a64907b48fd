"""The lab file's language: processes to run on loopback and chaos scenarios to play on them.

Every model forbids unknown keys. Durations are written as strings ("5s") and held as float
seconds (`engine.config.models.Duration`). A step is a mapping with exactly one key naming its
kind (`signal`, `restart`, `redis`, `http`, `wait`, `wait_until`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.config.models import Duration, Name
from engine.errors import LabError  # noqa: F401  (the lab's modules import it from here)

def _text(value: Any) -> Any:
    """YAML scalars written without quotes (`200`, `true`) become the text a process sees."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]
EnvMap = dict[str, Text]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------- readiness

_HTTP_URL = re.compile(r"^(https?://[^/\s:]+:(\d+))(/\S*)?$")


class Ready(Strict):
    """When a process counts as started: exactly one of `http`, `tcp` or `log`."""

    http: str | None = Field(None, description="URL answering 2xx when ready, e.g. http://127.0.0.1:18081/health.")
    tcp: str | None = Field(None, description="host:port accepting connections, e.g. 127.0.0.1:16379.", examples=["127.0.0.1:16379"])
    log: str | None = Field(None, description="A Python regular expression matching a line of the process's log.")
    timeout: Duration = Field(30.0, description="How long to wait for readiness.")

    @field_validator("http")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _HTTP_URL.match(value):
            raise ValueError(f"`http` must be a URL with an explicit port like http://127.0.0.1:8080/health, got {value!r}")
        return value

    @field_validator("tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"`tcp` must be host:port, e.g. 127.0.0.1:16379, got {value!r}")
        return value

    @field_validator("log")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"`log` is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_probe(self) -> Ready:
        if sum(v is not None for v in (self.http, self.tcp, self.log)) != 1:
            raise ValueError("`ready` needs exactly one of `http: URL`, `tcp: host:port` or `log: regex`")
        return self


# ----------------------------------------------------------------------------------- processes


class RedisProcess(Strict):
    """A built-in redis-server on 127.0.0.1 with persistence off, its data dir in the state dir."""

    port: Port
    args: list[Text] = Field(default_factory=list, description="Extra arguments, e.g. [--maxmemory, 64mb].")


class LabTarget(Strict):
    """A scrape target with labels of its own, e.g. the deployment's `instance` name."""

    target: Text = Field(description="host:port, e.g. 127.0.0.1:12180.")
    labels: EnvMap = Field(default_factory=dict, examples=[{"instance": "app1:8080"}])


class PrometheusProcess(Strict):
    """A real Prometheus on 127.0.0.1 (Debian's `prometheus` package), configured from a deployment's
    own config: its jobs, relabelling and rules; only the targets and the scrape interval differ.
    The generated config and the data live in the state dir (data starts empty on `lab up`)."""

    port: Port
    config: str = Field(description="The deployment's prometheus.yml, relative to the lab file.")
    targets: dict[str, list[Text | LabTarget]] = Field(
        description=(
            "host:port targets for every job of `config` ([] scrapes nothing), e.g. {app: ['127.0.0.1:18080']}; "
            "a `{target, labels}` entry gets labels of its own."
        )
    )
    scrape_interval: Duration = Field(1.0, description="How often every job scrapes in the lab, e.g. 1s.")


class Process(Strict):
    """One process of the lab: a built-in `redis` or `prometheus`, or a `command`.
    A `prometheus` process is ready once it has scraped every target (unless `ready` says otherwise)."""

    name: Name
    redis: RedisProcess | None = None
    prometheus: PrometheusProcess | None = None
    command: list[Text] | None = Field(
        None, min_length=1, description="argv; `{python}` is replaced by the running Python interpreter."
    )
    cwd: str | None = Field(
        None, description="Working directory, relative to the lab file (default: the lab's `cwd`).", examples=["../.."]
    )
    env: EnvMap = Field(default_factory=dict, description="Extra environment of this process.")
    ready: Ready | None = Field(None, description="When the process counts as started (redis: PING answers).")
    after: list[Name] = Field(default_factory=list, description="Processes that must be ready before this one starts.")
    endpoint: str | None = Field(None, description="What `opctl lab status` shows (default: from `redis` or `ready`).")
    ports: list[Port] = Field(default_factory=list, description="Ports it listens on besides those in `redis`/`ready`.")
    stop_timeout: Duration = Field(5.0, description="Grace between SIGTERM and SIGKILL on `down`.", examples=["10s"])

    @model_validator(mode="after")
    def _one_kind(self) -> Process:
        if sum(kind is not None for kind in (self.redis, self.prometheus, self.command)) != 1:
            raise ValueError(f"process '{self.name}' needs exactly one of `redis`, `prometheus` or `command`")
        return self

    def listen_ports(self) -> list[int]:
        """Every port this process is declared to listen on (checked free before it starts)."""
        found: list[int] = []
        if self.redis is not None:
            found.append(self.redis.port)
        if self.prometheus is not None:
            found.append(self.prometheus.port)
        if self.ready is not None and self.ready.tcp is not None:
            found.append(int(self.ready.tcp.rpartition(":")[2]))
        if self.ready is not None and self.ready.http is not None:
            match = _HTTP_URL.match(self.ready.http)
            if match:
                found.append(int(match.group(2)))
        found.extend(self.ports)
        return list(dict.fromkeys(found))

    def default_endpoint(self) -> str | None:
        if self.endpoint is not None:
            return self.endpoint
        if self.redis is not None:
            return f"redis://127.0.0.1:{self.redis.port}/0"
        if self.prometheus is not None:
            return f"http://127.0.0.1:{self.prometheus.port}"
        if self.ready is not None and self.ready.http is not None:
            match = _HTTP_URL.match(self.ready.http)
            return match.group(1) if match else None
        if self.ready is not None and self.ready.tcp is not None:
            return f"tcp://{self.ready.tcp}"
        return None


# ----------------------------------------------------------------------------------- chaos steps

SignalName = Literal["KILL", "TERM", "STOP", "CONT", "INT", "HUP"]


class SignalArgs(Strict):
    process: Name
    signal: SignalName


class RestartArgs(Strict):
    process: Name
    env: EnvMap = Field(default_factory=dict, description="Extra environment for the new incarnation.")


class RedisArgs(Strict):
    process: Name = Field(description="A `redis` process of the lab.")
    command: list[Text] = Field(
        min_length=1,
        description=(
            "e.g. [CLIENT, PAUSE, '5000', ALL]. `{info:FIELD}` or `{info:FIELD*FACTOR}` is replaced by "
            "that INFO field of the same server, e.g. [CONFIG, SET, maxmemory, '{info:used_memory*0.95}']."
        ),
    )


class HttpArgs(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    headers: EnvMap = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json", description="JSON request body.")
    expect_status: list[int] = Field(
        default_factory=list, description="Statuses that count as success (default: 2xx).", examples=[[200, 409]]
    )
    timeout: Duration = Field(5.0, description="How long the request may take.", examples=["2s"])

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://\S+$", value):
            raise ValueError(f"`url` must be an http(s) URL, got {value!r}")
        return value


class WaitUntilArgs(Strict):
    """Poll until a condition holds: exactly one of `http`, `redis` or `expr`."""

    http: str | None = Field(None, description="URL to GET until it answers `status`.", examples=["http://127.0.0.1:18082/ready"])
    status: int = Field(200, description="The HTTP status `http` waits for.", examples=[503])
    redis: RedisArgs | None = Field(None, description="Redis command to run until its reply equals `equals`.")
    equals: Text | None = None
    expr: str | None = Field(
        None,
        description="A CEL condition over the operator config's own observations, observed afresh each try, "
        "e.g. `hive.bees.size() == 3` (in `opctl demo`, which runs the config's observations).",
    )
    timeout: Duration = Field(30.0, description="The step fails when the condition does not hold by then.")
    interval: Duration = Field(0.2, description="Time between tries.", examples=["1s"])

    @field_validator("expr")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            from engine.errors import ExpressionCompileError
            from engine.expr import compile_expr  # the CEL library loads on first use

            try:
                compile_expr(value)
            except ExpressionCompileError as exc:
                raise ValueError(f"`expr` is not valid CEL: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_probe(self) -> WaitUntilArgs:
        if sum(probe is not None for probe in (self.http, self.redis, self.expr)) != 1:
            raise ValueError("`wait_until` needs exactly one of `http`, `redis` or `expr`")
        if self.redis is not None and self.equals is None:
            raise ValueError("`wait_until` with `redis` needs `equals` (the reply to wait for)")
        return self


StepKind = Literal["signal", "restart", "redis", "http", "wait", "wait_until"]
STEP_KINDS: tuple[StepKind, ...] = ("signal", "restart", "redis", "http", "wait", "wait_until")


class Step(Strict):
    """One chaos step: a mapping with exactly one key naming its kind.

    signal: send a signal to a running process (KILL is a crash, STOP a freeze, CONT a thaw).
    restart: stop a process (if running) and start it again with extra env, waiting until ready.
    redis: run one command on a lab redis-server.
    http: one HTTP request (a management API, a simulator's control API).
    wait: let time pass.  wait_until: poll until a condition holds; fails after its timeout.
    """

    signal: SignalArgs | None = None
    restart: RestartArgs | None = None
    redis: RedisArgs | None = None
    http: HttpArgs | None = None
    wait: Duration | None = None
    wait_until: WaitUntilArgs | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kinds = [k for k in STEP_KINDS if k in value]
            if len(kinds) != 1:
                found = f" (found {', '.join(kinds)})" if kinds else ""
                raise ValueError(f"a step is a mapping with exactly one of: {', '.join(STEP_KINDS)}{found}")
        return value

    @property
    def kind(self) -> StepKind:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def process(self) -> str | None:
        """The lab process this step acts on, if any."""
        for args in (self.signal, self.restart, self.redis):
            if args is not None:
                return args.process
        if self.wait_until is not None and self.wait_until.redis is not None:
            return self.wait_until.redis.process
        return None


# ----------------------------------------------------------------------------------- scenarios


class Recovered(Strict):
    """What counts as recovered after the fault."""

    invariant_ok: Name | None = Field(
        None, description="No entity of this invariant pending or firing (default: the one in `fires`)."
    )
    check: list[Step] = Field(
        default_factory=list, description="Steps that must all succeed, e.g. wait_until.",
        examples=[[{"wait_until": {"http": "http://127.0.0.1:18082/ready", "timeout": "20s"}}]],
    )


class Expect(Strict):
    fires: Name = Field(description="The invariant of the operator config that must fire.")
    key: str | None = Field(None, description="The entity key that must fire (e.g. node2); any when absent.")
    action: Name | None = Field(None, description="The action expected to remediate; none when the fault heals itself.")
    recovered: Recovered = Field(default_factory=Recovered)
    reverts_done: bool = Field(
        False,
        description="Recovered also means every revert the operator armed has run: the system ends as it was before it acted.",
    )

    @property
    def recovered_invariant(self) -> str:
        return self.recovered.invariant_ok or self.fires


class Scenario(Strict):
    name: Name
    description: str = ""
    setup: list[Step] = Field(default_factory=list, description="Run before the operator starts.")
    inject: list[Step] = Field(min_length=1, description="The fault.")
    expect: Expect
    cleanup: list[Step] = Field(default_factory=list, description="Run after the scenario, pass or fail.")
    timeout: Duration = Field(60.0, description="Detection and recovery must happen within this.", examples=["90s"])


class Lab(Strict):
    """A lab file."""

    version: Literal[1]
    name: Name
    description: str = ""
    state_dir: str | None = Field(
        None, description="Logs and lab.json, relative to the lab file (default ../../.opctl/lab/<name>)."
    )
    cwd: str = Field(".", description="Default working directory of processes, relative to the lab file.")
    env: EnvMap = Field(default_factory=dict, description="Environment exported to every process.")
    exports: EnvMap = Field(
        default_factory=dict, description="Environment the operator config needs to reach this lab (e.g. REDIS_URL)."
    )
    processes: list[Process] = Field(
        default_factory=list,
        description="What `opctl lab up` starts, in order. None: the lab runs against a service already running "
        "(its `exports` point at it; `lab up` and `lab down` start and stop nothing).",
    )
    scenarios: list[Scenario] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_do(self) -> Lab:
        if not self.processes and not self.scenarios:
            raise ValueError("a lab needs `processes` to run, or `scenarios` to play against a service already running")
        return self
