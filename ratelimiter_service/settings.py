"""Settings of one rate limiter node, read from `RATELIMITER_*` environment variables.

Redis URL forms (`RATELIMITER_REDIS_URL`):

- `redis://host:port/db`, `rediss://…`, `unix://…`: one Redis server.
- `redis+cluster://[user:password@]host1:port1,host2:port2,…`: a Redis Cluster; the listed
  nodes are seeds, the client discovers the rest. `rediss+cluster://` does the same over TLS.

Test-mode settings (`RATELIMITER_TEST_MODE=true`) exist so tests and chaos scenarios can
produce real conditions: injected time in `/v1/check` (`now_ms`), and
`RATELIMITER_POLICY_REFRESH=false`, which freezes the policy refresher so the node keeps
enforcing the policies it loaded at start ("policy drift"); `POST /v1/policies/reload` still
refreshes on demand. Outside test mode freezing is refused.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ratelimiter_service.policies import DEFAULT_POLICY_NAME, Policy

NODE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
SINGLE_SCHEMES = ("redis", "rediss", "unix")


class SettingsError(Exception):
    """The environment does not describe a usable node; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RATELIMITER_", extra="ignore", frozen=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://host:port/db, rediss://, unix://, or redis+cluster://h1:p1,h2:p2 (a Redis Cluster).",
    )
    node_id: str | None = Field(
        default=None, pattern=NODE_ID_PATTERN, description="This node's id in /v1/nodes (default node-<host>-<port>)."
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port.")
    grpc_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of the Envoy rate limit service (gRPC, RLS v3); none when unset.",
    )
    rls_config: str | None = Field(
        default=None,
        description="Envoy ratelimit descriptor configuration for the gRPC service: a YAML file, or a directory "
        "of them (see docs/ratelimiter.md).",
    )
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes behind the port: one node.")
    advertise_address: str | None = Field(
        default=None, description="The address /v1/nodes shows (default http://host:port)."
    )
    # One id per start of `python -m ratelimiter_service`, shared by its worker processes so the
    # registry sums them into one node; set by __main__, generated per app when absent.
    instance_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Set by the entry point for its workers; leave unset.",
    )

    token: SecretStr | None = Field(default=None, description="Bearer token of the management API.")
    insecure_dev: bool = Field(
        default=False, description="Management API without a token: local development only."
    )

    default_limit: int = Field(default=100, ge=1, description="Limit of the built-in `default` policy.")
    default_window_ms: int = Field(default=60_000, ge=1, description="Window of the built-in `default` policy (ms).")
    default_algorithm: Literal["sliding_window", "sliding_log", "gcra"] = Field(
        default="sliding_window", description="Algorithm of the built-in `default` policy."
    )
    default_failure_mode: Literal["open", "closed"] = Field(
        default="open", description="Failure mode of the built-in `default` policy."
    )

    heartbeat_interval_ms: int = Field(default=1_000, ge=10, description="How often the node heartbeats into Redis.")
    stale_after_ms: int = Field(default=5_000, ge=1, description="A node without a heartbeat this long is `stale`.")
    down_after_ms: int = Field(default=30_000, ge=1, description="A node without a heartbeat this long is `down`.")
    registry_ttl_s: int = Field(
        default=86_400, ge=60, description="A dead node stays listed (as `down`) this long after the last heartbeat."
    )

    redis_deadline_ms: int = Field(
        default=50, ge=1, le=10_000, description="Longest wait for Redis before the failure mode decides."
    )
    redis_retries: int = Field(
        default=1, ge=0, le=1, description="Retries of a call that certainly never reached Redis (0 or 1)."
    )
    redis_max_connections: int = Field(default=64, ge=1, le=10_000, description="Pooled Redis connections per worker.")
    # A burst must not turn into failure-mode admissions.
    redis_busy_patience_ms: int = Field(
        default=1_000, ge=0, le=60_000,
        description="How long a decision may wait past the deadline while Redis keeps answering other calls "
        "(a busy node, not a stalled Redis); 0 fails every call at the deadline.",
    )
    # On by default (issue 16): about 4x the single checks per second of one worker.
    coalesce_checks: bool = Field(default=True, description="Concurrent single checks share Redis pipelines.")
    policy_refresh_interval_ms: int = Field(default=500, ge=10, description="How often policies are refreshed.")
    policy_refresh: bool = Field(default=True, description="false freezes the refresher (test mode only).")

    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, le=1024**3, description="Largest request body (413 above)."
    )
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, le=1024**2, description="Largest request line and headers (431 above)."
    )
    header_timeout_ms: int = Field(
        default=5_000, ge=10, le=600_000, description="Time to send the request line and headers (408 past it)."
    )
    keep_alive_timeout_ms: int = Field(
        default=5_000, ge=10, le=600_000, description="An idle kept-alive connection is closed after this."
    )
    max_connections_per_worker: int = Field(
        default=1_000, ge=1, le=100_000, description="Connections one worker serves at once (503 past it)."
    )
    over_limit_index_max: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Keys the over-limit index holds at most."
    )

    max_key_bytes: int = Field(default=512, ge=1, le=65_536, description="Longest key, in UTF-8 bytes (422 above).")
    max_batch: int = Field(default=1_000, ge=1, le=10_000, description="Most checks in one batch.")
    max_log_limit: int = Field(default=1_000, ge=1, description="Highest limit a sliding_log policy may have.")
    prefix: str = Field(
        default="rl", pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="Prefix of every Redis key the service writes."
    )
    test_mode: bool = Field(default=False, description="Injected time (now_ms) and policy freezing, for tests.")

    @field_validator("redis_url")
    @classmethod
    def _known_url(cls, url: str) -> str:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme in CLUSTER_SCHEMES:
            parse_cluster_url(url)
        elif scheme not in SINGLE_SCHEMES:
            raise ValueError(
                f"{url!r} is not a Redis URL: use redis://host:port/db, rediss://, unix://, "
                "or redis+cluster://host1:port1,host2:port2"
            )
        return url

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.stale_after_ms >= self.down_after_ms:
            raise ValueError(
                f"RATELIMITER_STALE_AFTER_MS ({self.stale_after_ms}) must be below "
                f"RATELIMITER_DOWN_AFTER_MS ({self.down_after_ms})"
            )
        if self.heartbeat_interval_ms >= self.stale_after_ms:
            raise ValueError(
                f"RATELIMITER_HEARTBEAT_INTERVAL_MS ({self.heartbeat_interval_ms}) must be below "
                f"RATELIMITER_STALE_AFTER_MS ({self.stale_after_ms}), or live nodes look stale"
            )
        if self.default_algorithm == "sliding_log" and self.default_limit > self.max_log_limit:
            raise ValueError(
                f"RATELIMITER_DEFAULT_LIMIT ({self.default_limit}) is above RATELIMITER_MAX_LOG_LIMIT "
                f"({self.max_log_limit}), the most an exact sliding_log may count; use sliding_window or gcra"
            )
        try:
            self.default_policy  # noqa: B018  (built to be checked)
        except ValidationError as exc:
            problems = "; ".join(_named_problems(exc, "RATELIMITER_DEFAULT_"))
            raise ValueError(f"the default policy is not valid: {problems}") from None
        if not self.policy_refresh and not self.test_mode:
            raise ValueError(
                "RATELIMITER_POLICY_REFRESH=false is a test-mode tool; set RATELIMITER_TEST_MODE=true"
            )
        return self

    @property
    def default_policy(self) -> Policy:
        """The built-in `default` policy, from RATELIMITER_DEFAULT_*."""
        return Policy(
            name=DEFAULT_POLICY_NAME,
            limit=self.default_limit,
            window_ms=self.default_window_ms,
            algorithm=self.default_algorithm,
            failure_mode=self.default_failure_mode,
        )

    @property
    def deadline_s(self) -> float:
        return self.redis_deadline_ms / 1000.0

    @property
    def busy_patience_s(self) -> float:
        return self.redis_busy_patience_ms / 1000.0

    @property
    def resolved_node_id(self) -> str:
        return self.node_id or f"node-{self.host.replace('/', '_')}-{self.port}"

    @property
    def address(self) -> str:
        return self.advertise_address or f"http://{self.host}:{self.port}"

    @property
    def management_token(self) -> str | None:
        return self.token.get_secret_value() if self.token else None


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """`redis+cluster://[user:pw@]h1:p1,h2:p2[/…]` → seed nodes, username, password."""
    rest = url.split("://", 1)[1]
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    username = password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, _, pw = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(pw) or None
    nodes: list[tuple[str, int]] = []
    for part in rest.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(
                f"cluster node {part!r} is not host:port "
                "(expected redis+cluster://host1:port1,host2:port2)"
            )
        nodes.append((host.strip("[]"), int(port)))
    return nodes, username, password


def load_settings() -> Settings:
    """Settings from the environment, or a `SettingsError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = _named_problems(exc, "RATELIMITER_", unnamed="settings")
    return "invalid rate limiter settings:\n  " + "\n  ".join(lines)


def _named_problems(exc: ValidationError, prefix: str, *, unnamed: str | None = None) -> list[str]:
    """`PREFIX_FIELD: message` per error, naming the environment variable of its field; an error
    of no field is `unnamed: message`, or the bare message."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        variable = f"{prefix}{field}" if field else unnamed
        lines.append(f"{variable}: {message}" if variable else message)
    return lines


def settings_table() -> str:
    """The Markdown table of every `RATELIMITER_*` setting (docs/ratelimiter.md holds a copy,
    written by `python -m ratelimiter_service.settings_doc`; a test fails when it is stale)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        rows.append(f"| `RATELIMITER_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows) + "\n"
