"""The config language as pydantic models: the single source of truth for the JSON Schema.

Every model forbids unknown keys. Durations are written as strings ("5s", "2m") and held as
float seconds. CEL expressions and jinja2 templates are held as source strings here; they are
compiled and checked by `engine.config.checks`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from engine.durations import DURATION_PATTERN, parse_duration

NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
# Names the engine binds itself inside expressions; observations may not shadow them.
RESERVED_NAMES = frozenset({"item", "params", "now", "prev", "vars", "key", "ticket", "entity", "env", "true", "false",
                            "null"})


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"durations are strings with a unit such as 5s, 2m or 1h30m, not {value!r}")
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number with a unit (ms, s, m, h, d), e.g. 250ms, 5s, 2m, 1h30m.",
            "examples": ["5s", "2m", "1h30m"],
        }
    ),
]
Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        max_length=64,
        description="A lower-case identifier: letters, digits and underscores.",
    ),
]
Cel = Annotated[
    str,
    Field(min_length=1, description="A CEL expression (https://github.com/google/cel-spec)."),
]
Template = Annotated[str, Field(description="A jinja2 template.")]
RelPath = Annotated[
    str, Field(min_length=1, description="A file path, relative to the config file.")
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- subject & targets


class RunbookEntry(Strict):
    """An action the offline runbook provider proposes; params are CEL over the entity."""

    action: Name
    params: dict[str, Cel] = Field(default_factory=dict)
    reason: str = ""


class Subject(Strict):
    """The system under watch."""

    name: Name
    description: str = ""
    context: str | None = Field(
        None,
        description="What the operator should know about the system (inline markdown).",
        examples=["Three stateless nodes share limits through one Redis; a node that stops heartbeating is dead."],
    )
    context_file: RelPath | None = Field(None, description="Same as `context`, from a file.")

    @model_validator(mode="after")
    def _one_context(self) -> Subject:
        if self.context is not None and self.context_file is not None:
            raise ValueError("give either `context` or `context_file`, not both")
        return self


class Target(Strict):
    """Where observations and actions go: one endpoint, or several with a mode."""

    url: str | None = Field(
        None, description="One endpoint: http(s)://host:port[/base] or redis(s)://host:port/db."
    )
    urls: list[str] | None = Field(
        None, min_length=1, description="Several endpoints of the same kind (see `mode`)."
    )
    mode: Literal["single", "fanout", "failover"] | None = Field(
        None,
        description=(
            "single: one URL. fanout: query every endpoint, results tagged by endpoint. "
            "failover: the first endpoint that answers (for clusters whose every member serves the API)."
        ),
    )
    token: str | None = Field(
        None,
        description="Bearer token for HTTP, password for Redis. Write ${ENV_VAR}; it is redacted.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Sent with every request.", examples=[{"X-Tenant": "ops"}]
    )
    timeout: Duration = Field(2.0, description="Per-request timeout.")
    secret_url: bool = Field(
        False,
        description="The URLs' path and query are secrets (a signed URL, a webhook with its key in the path): redacted everywhere.",
        examples=[True],
    )
    follow_redirects: bool = Field(
        False,
        description=(
            "Observations follow a redirect only when this is on, and then only to the same origin "
            "(scheme, host and port); a redirect elsewhere is an error. Actions never follow redirects."
        ),
        examples=[True],
    )
    max_body: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest response body read from this target, in bytes; a longer one is an error, found while reading.",
        examples=[16777216],
    )
    down_after: Duration | None = Field(
        None,
        description=(
            "The built-in invariant `target_up` fires for this target once every observation of it has "
            "failed for this long (default: 3 x `interval`)."
        ),
        examples=["30s"],
    )
    severity: Literal["critical", "warning", "info"] = Field(
        "critical", description="Severity of this target's `target_up` tickets.", examples=["warning"]
    )
    runbook: list[RunbookEntry] = Field(
        default_factory=list,
        description=(
            "What the runbook provider proposes when this target's `target_up` fires. Params are CEL over "
            "the observations and the target's entity: `item.target`, `item.error` (the last error), "
            "`item.observations` (the failing ones), `key` (the target's name)."
        ),
        examples=[[{"action": "restart_redis", "reason": "Redis stopped answering; start it again."}]],
    )
    inhibited_by: list[Name] = Field(
        default_factory=list,
        description=(
            "Invariants that, while one of them fires, mute this target's `target_up` tickets: a target "
            "that fails because of a cause another invariant already reports (an API answering 503 "
            "because its database is unreachable)."
        ),
        examples=[["node_redis_reachable"]],
    )

    @model_validator(mode="after")
    def _endpoints(self) -> Target:
        if (self.url is None) == (self.urls is None):
            raise ValueError("give exactly one of `url` or `urls`")
        if self.urls is not None and self.mode in (None, "single"):
            raise ValueError("with several `urls`, set `mode: fanout` or `mode: failover`")
        if self.url is not None and self.mode not in (None, "single"):
            raise ValueError(f"`mode: {self.mode}` needs several endpoints in `urls`")
        return self

    @property
    def endpoints(self) -> list[str]:
        return list(self.urls) if self.urls is not None else [str(self.url)]

    @property
    def effective_mode(self) -> str:
        return self.mode or "single"

    @property
    def scheme(self) -> str:
        """`http` or `redis` (TLS variants fold into their plain kind)."""
        first = self.endpoints[0].split("://", 1)[0].lower()
        return {"https": "http", "rediss": "redis"}.get(first, first)


# --------------------------------------------------------------------------- observations


class HttpQuery(Strict):
    """GET a JSON document. The value is the parsed body (or what `select` makes of it)."""

    target: Name
    path: str = Field("/", description="Path under the target URL; may carry a query string.")
    query: dict[str, str] = Field(default_factory=dict, description="Query parameters.")
    headers: dict[str, str] = Field(default_factory=dict, examples=[{"Accept": "application/json"}])


class PrometheusQuery(Strict):
    """An instant query (`/api/v1/query`). The value is a list of {labels, value}; NaN is null."""

    target: Name
    query: str = Field(min_length=1, description="PromQL.")


class MetricsScrape(Strict):
    """Scrape a Prometheus text exposition. The value maps sample names to lists of {labels, value}."""

    target: Name
    path: str = Field("/metrics", examples=["/metrics"])
    families: list[str] | None = Field(
        None, description="Keep only these metric families (default: all)."
    )


class RedisQuery(Strict):
    """A read-only Redis command (allowlisted). INFO is parsed into a mapping."""

    target: Name
    command: list[str | int] = Field(min_length=1, examples=[["INFO", "memory"], ["DBSIZE"]])


class Observation(Strict):
    """One query per tick; its value is bound to the observation's name in expressions."""

    description: str = ""
    http: HttpQuery | None = None
    prometheus: PrometheusQuery | None = None
    metrics: MetricsScrape | None = None
    redis: RedisQuery | None = None
    select: Cel | None = Field(
        None,
        description=(
            "CEL projection of the raw result. For http: variables `body`, `status`, `headers`; "
            "for the other kinds: `value`."
        ),
    )
    timeout: Duration | None = Field(None, description="Default: the target's timeout.", examples=["1s"])
    shape: dict[str, Any] | None = Field(
        None,
        description="JSON Schema of the observation's value; `opctl test --property` generates data from it.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Observation:
        kinds = [k for k in ("http", "prometheus", "metrics", "redis") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "an observation needs exactly one of `http`, `prometheus`, `metrics`, `redis`"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        return self

    @property
    def kind(self) -> str:
        for k in ("http", "prometheus", "metrics", "redis"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated observation without a kind")

    @property
    def query(self) -> HttpQuery | PrometheusQuery | MetricsScrape | RedisQuery:
        return getattr(self, self.kind)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- invariants


class Invariant(Strict):
    """A CEL expression that must hold (true = healthy), per entity or cluster-wide."""

    name: Name
    description: str = ""
    severity: Literal["critical", "warning", "info"] = "warning"
    for_each: Cel | None = Field(
        None, description="CEL giving a list; `expr` is evaluated once per element, bound to `item`."
    )
    key: Cel | None = Field(
        None, description="CEL giving the entity's identity (a string or number); needed with `for_each`."
    )
    expr: Cel = Field(description="CEL that is true when healthy.")
    hold: Duration = Field(
        0.0, alias="for", description="How long a violation must last before it fires (hysteresis)."
    )
    keep_firing_for: Duration = Field(
        0.0, description="How long a firing violation must stay healthy before it resolves."
    )
    resolve_when: Cel | None = Field(
        None, description="While firing, resolve only when this CEL is true (a recovery threshold)."
    )
    on_error: Literal["keep", "firing", "ok"] = Field(
        "keep",
        description=(
            "When an observation it reads fails (the entity is `unknown`) or its evaluation fails "
            "(`error`: a missing field, a bad type, division by zero): keep the current state "
            "(default: no timer moves, no ticket resolves), treat it as violated, or treat it as healthy."
        ),
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Copied onto tickets.", examples=[{"team": "storage"}]
    )
    message: Template | None = Field(
        None, description="jinja2 template for the ticket message; sees `item`, `key` and observations."
    )
    runbook: list[RunbookEntry] = Field(default_factory=list)
    inhibited_by: list[Name] = Field(
        default_factory=list,
        description=(
            "Invariants (or `target_up`) that, while one of them fires, mute this one: its tickets are "
            "recorded but not diagnosed, notified or acted on."
        ),
        examples=[["node_redis_reachable", "target_up"]],
    )

    @model_validator(mode="after")
    def _key_with_for_each(self) -> Invariant:
        if self.for_each is not None and self.key is None:
            raise ValueError("`for_each` needs `key`: a CEL expression naming each entity, e.g. item.id")
        if self.for_each is None and self.key is not None:
            raise ValueError("`key` only makes sense with `for_each`")
        return self


# --------------------------------------------------------------------------- actions


class HttpRequest(Strict):
    """An HTTP request to the declared target. `{param}` in path, query, body and headers is replaced."""

    target: Name
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(description="Path with `{param}` placeholders (URL-encoded on use).")
    query: dict[str, str] = Field(default_factory=dict, examples=[{"state": "Offline"}])
    headers: dict[str, str] = Field(default_factory=dict, examples=[{"X-Reason": "opctl {action}"}])
    body: Any = Field(
        None,
        description='JSON body; a string that is exactly "{param}" becomes the typed param value.',
    )


class RedisRequest(Strict):
    """A Redis write command; `{param}` in arguments is replaced."""

    target: Name
    command: list[str | int] = Field(min_length=1, examples=[["CONFIG", "SET", "maxmemory", "{bytes}"]])
    key_prefix: str | None = Field(
        None,
        min_length=1,
        description="The only keys a key-writing command (SET, DEL, HSET...) may write start with this; written out in the command.",
        examples=["opctl:flags:"],
    )


class Verify(Strict):
    within: Duration = Field(60.0, description="The invariant must hold again within this time, or escalate.")
    expr: Cel | None = Field(
        None,
        description=(
            "The action's own effect: CEL over fresh observations, `params` and `now` that holds once the "
            "action did what it is for. Checked after it runs and while its ticket verifies; only a "
            "confirmed effect credits the action with the recovery, else the ticket says the invariant "
            "holds again and the action's effect was not confirmed."
        ),
        examples=["!registry.exists(n, n.id == params.node_id)"],
    )


class Revert(Strict):
    """What undoes an action, run after its ticket resolves so the system ends as it was before
    the operator touched it: another declared action, once, through every gate, in the current
    mode, recorded on the same ticket."""

    action: Name = Field(description="The declared action that undoes this one.")
    params: dict[str, Cel] = Field(
        default_factory=dict,
        description="Its params: CEL over `params` (this action's), observations and `now`.",
        examples=[{"node_id": "params.node_id"}],
    )
    when: Cel | None = Field(
        None,
        description=(
            "Run it once this holds: CEL over the tick's observations, `params` (this action's) and `now`. "
            "Default: as soon as the ticket resolves."
        ),
    )


class Action(Strict):
    """The only remediations allowed; everything a model or runbook proposes passes the gate."""

    name: Name
    description: str = Field(min_length=1)
    params: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}, "additionalProperties": False},
        description="JSON Schema of the params object.",
    )
    when: Cel | None = Field(
        None, description="Guard over fresh observations and `params`; the action runs only when true."
    )
    http: HttpRequest | None = None
    redis: RedisRequest | None = None
    risk: Literal["low", "medium", "high"] = "medium"
    approval: Literal["required", "mode"] = Field(
        "mode", description="required: always wait for a human. mode: follow the global `mode`."
    )
    cooldown: Duration = Field(60.0, description="Minimum time between runs per (action, entity).")
    budget_per_hour: int | None = Field(None, ge=1, description="At most this many runs per hour.")
    verify: Verify = Field(default_factory=Verify)
    max_attempts: int = Field(1, ge=1, le=10, description="Runs per ticket at most.", examples=[2])
    revert: Revert | None = Field(None, description="What undoes this action once its ticket has resolved.")

    @model_validator(mode="after")
    def _one_request(self) -> Action:
        if (self.http is None) == (self.redis is None):
            raise ValueError("an action needs exactly one of `http` or `redis`")
        return self

    @property
    def target(self) -> str:
        request = self.http or self.redis
        assert request is not None
        return request.target


# --------------------------------------------------------------------------- diagnosis & gate


class Prompts(Strict):
    """jinja2 templates for diagnosis (inline or from files); built-in defaults otherwise."""

    system: Template | None = Field(None, examples=["You are the on-call SRE for {{ subject.name }}."])
    system_file: RelPath | None = None
    ticket: Template | None = Field(
        None, examples=["Ticket #{{ ticket.id }}: {{ ticket.message }}\n{{ entity | tojson(2) }}"]
    )
    ticket_file: RelPath | None = None

    @model_validator(mode="after")
    def _inline_or_file(self) -> Prompts:
        for name in ("system", "ticket"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(f"give either `{name}` or `{name}_file`, not both")
        return self


class Price(Strict):
    """What a model's tokens cost, in US dollars per million tokens."""

    input_usd_per_mtok: float = Field(ge=0, examples=[3.0])
    output_usd_per_mtok: float = Field(ge=0, examples=[15.0])


# List prices per million tokens (input, output) when this was written; `diagnosis.prices` overrides.
BUILTIN_PRICES = {
    "claude-sonnet-4-6": Price(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0),
    "claude-sonnet-4-5": Price(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0),
    "claude-opus-4-5": Price(input_usd_per_mtok=5.0, output_usd_per_mtok=25.0),
    "claude-haiku-4-5": Price(input_usd_per_mtok=1.0, output_usd_per_mtok=5.0),
}


class Diagnosis(Strict):
    provider: Literal["auto", "claude", "runbook", "replay"] = Field(
        "auto", description="auto = claude when ANTHROPIC_API_KEY is set, else runbook."
    )
    model: str = "claude-sonnet-4-6"
    max_tokens: int = Field(2048, ge=256, le=64000, description="Per model call.")
    token_budget_per_hour: int = Field(
        200_000, ge=1000, description="All model calls together.", examples=[100_000]
    )
    max_tool_turns: int = Field(6, ge=1, le=30)
    timeout: Duration = Field(60.0, description="Per model call.", examples=["30s"])
    replay_file: RelPath | None = Field(
        None, description="Recorded responses for provider `replay`.", examples=["../subjects/ratelimiter/tests/diagnoses.json"]
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="Token prices per model, merged over the built-in list prices ("
        + ", ".join(f"{m}: ${p.input_usd_per_mtok:g}/${p.output_usd_per_mtok:g}" for m, p in BUILTIN_PRICES.items())
        + " per million input/output tokens); `opctl eval` reports cost with them.",
        examples=[{"claude-sonnet-4-6": {"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0}}],
    )

    @property
    def price_table(self) -> dict[str, Price]:
        return {**BUILTIN_PRICES, **self.prices}

    @model_validator(mode="after")
    def _replay_needs_file(self) -> Diagnosis:
        if self.provider == "replay" and self.replay_file is None:
            raise ValueError("`provider: replay` needs `replay_file`")
        return self


class Gate(Strict):
    budget_per_hour: int = Field(20, ge=1, description="Actions per hour across all actions.")
    approval_ttl: Duration = Field(900.0, description="A proposal waiting for approval expires after this.")
    guard_timeout: Duration = Field(
        5.0, description="How long the observations an action's guard (`when`) re-runs may take; slower is a refusal.",
        examples=["5s"],
    )


class Lease(Strict):
    """The leader lease of replicas sharing a store: only its holder acts."""

    ttl: Duration | None = Field(
        None,
        description="How long the lease lasts unless renewed (every tick), by the store's clock; default 3 × interval. "
        "A follower takes over at most ttl + one interval after the leader stopped. Must be longer than interval.",
        examples=["30s"],
    )


# --------------------------------------------------------------------------- variables


VarType = Literal["int", "double", "string", "bool", "duration"]


class Var(Strict):
    """A typed value expressions read as `vars.<name>`; never pasted into expression text."""

    type: VarType = Field(
        description="int, double, string, bool, or duration (a string such as 90s, seen in CEL as seconds, a double).",
        examples=["int", "duration"],
    )
    value: str | int | float | bool = Field(
        description="The value; `${ENV_VAR:-default}` takes it from the environment. Parsed once, at load, to `type`.",
        examples=["${QUEUE_MAX_AGE:-60}"],
    )
    description: str = Field("", examples=["Oldest message age allowed, in seconds."])

    def parsed(self) -> Any:
        """The value as its type; ValueError("is not an int") when it does not parse."""
        return parse_var(self.type, self.value)


_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})


def parse_var(kind: str, value: Any) -> Any:
    text = str(value).strip() if not isinstance(value, bool) else ""
    if kind == "string":
        return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError("is not a bool (true or false)")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if re.fullmatch(r"[+-]?\d+", text) and -(2**63) <= int(text) < 2**63:
            return int(text)
        raise ValueError("is not an int")
    if kind == "double":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            number = float(text)
        except ValueError:
            raise ValueError("is not a double (a number such as 0.5)") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("is not a finite double")
        return number
    if isinstance(value, bool) or not isinstance(value, str):  # duration
        raise ValueError("is not a duration (a string with a unit, such as 90s or 5m)")
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("is not a duration (a string with a unit, such as 90s or 5m)") from None


# --------------------------------------------------------------------------- incidents


class Incidents(Strict):
    """How tickets are grouped into incidents (one diagnosis per incident)."""

    group_by: list[str] = Field(
        default_factory=lambda: ["subject"],
        description=(
            "What tickets of one incident share: `subject` (every ticket of the subject), `invariant`, "
            "`key`, `severity` or `labels.<name>`."
        ),
        examples=[["labels.team"], ["invariant", "key"]],
    )
    group_wait: Duration | None = Field(
        None,
        description="How long a new incident collects tickets before its first diagnosis (default: one `interval`).",
        examples=["10s"],
    )


GROUP_BY_FIELDS = ("subject", "invariant", "key", "severity")


# --------------------------------------------------------------------------- notifications

NOTIFY_EVENTS = ("opened", "resolved", "approval_needed", "executed", "escalated", "kill_switch")
NotifyEvent = Literal["opened", "resolved", "approval_needed", "executed", "escalated", "kill_switch"]


class AlertmanagerReceiver(Strict):
    """Incidents as alerts through Alertmanager's API v2 (`POST /api/v2/alerts`)."""

    url: str = Field(description="Alertmanager's base URL.", examples=["${ALERTMANAGER_URL:-http://127.0.0.1:9093}"])
    timeout: Duration = Field(5.0, description="Per request.", examples=["2s"])
    resend: Duration = Field(
        60.0, description="Firing alerts are sent again this often (Alertmanager resolves what it stops hearing about).",
        examples=["30s"],
    )
    watchdog: bool = Field(
        True, description="Also send `Watchdog`, an alert that always fires (a dead man's switch).", examples=[False]
    )


class WebhookReceiver(Strict):
    """One POST per event: JSON (`format: json`) or a Slack incoming-webhook payload (`slack`)."""

    url: str = Field(description="Where events are POSTed.", examples=["${HOOK_URL:-http://127.0.0.1:9000/hook}"])
    secret: str | None = Field(
        None, description="HMAC-SHA256 key: the body's signature goes in `X-Opctl-Signature: sha256=<hex>`.",
        examples=["${HOOK_SECRET:-change-me}"],
    )
    format: Literal["json", "slack"] = Field("json", examples=["slack"])
    timeout: Duration = Field(5.0, description="Per request.", examples=["2s"])


class Notify(Strict):
    """A receiver of notifications: exactly one of `alertmanager` or `webhook`."""

    name: Name = Field(examples=["oncall"])
    alertmanager: AlertmanagerReceiver | None = Field(None, examples=[{"url": "${ALERTMANAGER_URL:-http://127.0.0.1:9093}"}])
    webhook: WebhookReceiver | None = Field(
        None, examples=[{"url": "${HOOK_URL:-http://127.0.0.1:9000/hook}", "secret": "${HOOK_SECRET:-change-me}", "format": "json"}]
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS), description="The events sent (webhooks; default: all).",
        examples=[["opened", "resolved", "approval_needed", "executed", "escalated", "kill_switch"]],
    )
    max_age: Duration = Field(
        3600.0, description="A notification not delivered within this time is given up (and recorded).", examples=["30m"]
    )

    @model_validator(mode="after")
    def _one_receiver(self) -> Notify:
        if (self.alertmanager is None) == (self.webhook is None):
            raise ValueError("a notify entry needs exactly one of `alertmanager` or `webhook`")
        return self

    @property
    def url(self) -> str:
        receiver = self.alertmanager or self.webhook
        assert receiver is not None
        return receiver.url

# The built-in invariant every config has: one entity per target, firing when the target is down.
TARGET_UP = "target_up"
TARGET_UP_MESSAGE = (
    "target {{ item.target }} is down: every observation of it ({{ item.observations | join(', ') }}) "
    "has failed for {{ item.down_after }}; last error: {{ item.error }}"
)


def target_up_invariant(
    *, severity: str = "critical", hold: float = 0.0, runbook: list[RunbookEntry] | None = None
) -> Invariant:
    """`target_up` as an invariant: its entities and samples come from engine.target_health."""
    return Invariant.model_validate({
        "name": TARGET_UP,
        "description": "Built in: a target answers at least one of its observations.",
        "severity": severity,
        "for_each": "targets",
        "key": "item.target",
        "expr": "item.up",
        "message": TARGET_UP_MESSAGE,
    }).model_copy(update={"hold": hold, "runbook": list(runbook or ())})


# --------------------------------------------------------------------------- the config


class Config(Strict):
    """A whole subject: what to watch, what must hold, how to explain it, what may be done."""

    version: Literal[1] = Field(description="Version of the config language; 1.")
    subject: Subject = Field(description="The system under watch.")
    targets: dict[Name, Target] = Field(min_length=1, description="Named endpoints.")
    interval: Duration = Field(10.0, description="Time between ticks.")
    vars: dict[Name, Var] = Field(
        default_factory=dict,
        description="Typed values expressions read as `vars.<name>` (environment values reach expressions only through these).",
        examples=[{"max_age_s": {"type": "int", "value": "${QUEUE_MAX_AGE:-60}", "description": "Oldest message age allowed."}}],
    )
    observations: dict[Name, Observation] = Field(
        min_length=1, description="Named queries; each value is bound to its name in expressions."
    )
    invariants: list[Invariant] = Field(min_length=1, description="What must hold.")
    actions: list[Action] = Field(default_factory=list, description="The only remediations allowed.")
    prompts: Prompts = Field(default_factory=Prompts, description="Diagnosis prompt templates.")
    diagnosis: Diagnosis = Field(default_factory=Diagnosis, description="Who diagnoses tickets.")
    gate: Gate = Field(default_factory=Gate, description="Global limits of the action gate.")
    lease: Lease = Field(
        default_factory=Lease, description="The leader lease of replicas sharing the store.", examples=[{"ttl": "30s"}]
    )
    notify: list[Notify] = Field(
        default_factory=list, description="Who is told about incidents, approvals and actions.",
        examples=[[{"name": "oncall", "alertmanager": {"url": "${ALERTMANAGER_URL:-http://127.0.0.1:9093}"}}]],
    )
    incidents: Incidents = Field(
        default_factory=Incidents, description="Grouping of tickets into incidents.",
        examples=[{"group_by": ["subject"], "group_wait": "10s"}],
    )
    mode: Literal["observe", "approve", "execute"] = Field(
        "observe",
        description="observe: record proposals only. approve: wait for a human. execute: act within the gates.",
    )
    store: RelPath | None = Field(
        None,
        description="Where tickets and the audit log are kept: a SQLite file (default .opctl/<subject>.db), "
        "or a PostgreSQL database, postgresql://user:pass@host:port/db.",
    )
    lab: RelPath | None = Field(
        None,
        description="The subject's local lab: processes and chaos scenarios for `opctl lab` and `opctl demo`.",
        examples=["../subjects/ratelimiter/lab.yaml"],
    )

    def variable_values(self) -> dict[str, Any]:
        """`vars` as expressions see them (valid configs only: validation parsed every value)."""
        return {name: var.parsed() for name, var in self.vars.items()}

    @property
    def lease_ttl(self) -> float:
        return self.lease.ttl if self.lease.ttl is not None else 3 * self.interval

    def action(self, name: str) -> Action | None:
        return next((a for a in self.actions if a.name == name), None)

    def invariant(self, name: str, key: str | None = None) -> Invariant | None:
        """A declared invariant, or the built-in `target_up`: of the target `key` names (its
        severity, `down_after` and runbook) when it names one."""
        found = next((i for i in self.invariants if i.name == name), None)
        if found is None and name == TARGET_UP:
            return self.target_up(key) if key in self.targets else target_up_invariant()
        return found

    def target_up(self, target: str) -> Invariant:
        """`target_up` for one declared target."""
        declared = self.targets[target]
        return target_up_invariant(severity=declared.severity, hold=self.down_after(target), runbook=declared.runbook)

    def invariants_by_name(self) -> dict[str, Invariant]:
        """Every invariant by name: the declared ones and the built-in `target_up`."""
        return {TARGET_UP: target_up_invariant(), **{inv.name: inv for inv in self.invariants}}

    def down_after(self, target: str) -> float:
        """How long every observation of `target` must fail before `target_up` fires."""
        declared = self.targets[target].down_after
        return declared if declared is not None else 3 * self.interval


def is_identifier(name: str) -> bool:
    return re.match(NAME_PATTERN, name) is not None
