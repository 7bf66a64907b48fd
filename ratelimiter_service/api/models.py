"""Request and response bodies of the HTTP API (they define the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratelimiter_service.keys import POLICY_NAME_PATTERN
from ratelimiter_service.limiter import MAX_LIMITS
from ratelimiter_service.policies import MAX_LIMIT, MAX_WINDOW_MS, Algorithm, FailureMode, expand_rate_and_duration

POLICY_NAME = f"^{POLICY_NAME_PATTERN}$"
MAX_COST = MAX_LIMIT


class LimitSpec(BaseModel):
    """One limit to check: a key under a policy, at a cost."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field(default="default", pattern=POLICY_NAME, description="Policy name; unknown → 404.")
    key: str = Field(
        min_length=1,
        description="The limited identity (user, IP, API key…); at most RATELIMITER_MAX_KEY_BYTES UTF-8 bytes.",
    )
    cost: int = Field(
        default=1, ge=0, le=MAX_COST,
        description="Units this request consumes; 0 peeks: the state, nothing charged. Above the key's limit → 422.",
    )


class BatchItem(LimitSpec):
    now_ms: int | None = Field(default=None, description="Not accepted in a batch (422).")


class CheckRequest(LimitSpec):
    """One limit (`policy`, `key`, `cost`), or several decided atomically (`limits`)."""

    key: str | None = Field(  # type: ignore[assignment]
        default=None,
        min_length=1,
        description="The limited identity (user, IP, API key…); at most RATELIMITER_MAX_KEY_BYTES UTF-8 bytes. "
        "Required unless `limits` is given.",
    )
    limits: list[LimitSpec] | None = Field(
        default=None, min_length=1, max_length=MAX_LIMITS,
        description=f"Up to {MAX_LIMITS} limits decided in one atomic Redis script: admitted only if every limit "
        "admits, and then all are charged; if one denies, none is. Their keys must share a hash tag (one "
        "key, or keys with one {tag}). Instead of policy/key/cost.",
    )
    now_ms: int | None = Field(
        default=None, ge=0, le=2**50, description="Injected time (unix ms); accepted only in test mode."
    )

    @model_validator(mode="after")
    def _one_form(self) -> CheckRequest:
        if self.limits is None and self.key is None:
            raise ValueError("give key (one limit) or limits (several)")
        if self.limits is not None and self.model_fields_set & {"key", "policy", "cost"}:
            raise ValueError("with limits, give policy, key and cost in each limit, not beside them")
        return self


class CheckResult(BaseModel):
    allowed: bool
    limit: int
    remaining: int | None = Field(description="Units left; null when Redis did not take part (failure mode).")
    reset_after_ms: int | None = Field(
        description="Milliseconds until the key's quota is fully restored (see docs/ratelimiter.md for each "
        "algorithm); null when Redis did not take part (failure mode)."
    )
    retry_after_ms: int = Field(description="Milliseconds until this request could be admitted (0 if allowed).")
    policy: str
    policy_version: int
    failure_mode: Literal["open", "closed"] | None = Field(
        default=None, description="Set when Redis did not answer in time and the policy's failure mode decided."
    )
    shadow_denied: bool = Field(
        default=False, description="Shadow policy: the request was admitted but the limit would have denied it."
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[BatchItem] = Field(min_length=1, max_length=10_000, description="At most RATELIMITER_MAX_BATCH.")


class LimitResult(BaseModel):
    policy: str
    key: str
    allowed: bool = Field(description="This limit admits (charged only when the whole check is allowed).")
    limit: int
    remaining: int | None
    reset_after_ms: int | None
    retry_after_ms: int
    shadow_denied: bool = False


class MultiCheckResult(BaseModel):
    allowed: bool = Field(description="Every limit admitted, and all were charged.")
    limits: list[LimitResult]
    binding: int = Field(
        description="Index of the limit that decided: the denying one with the longest retry, or, when allowed, "
        "the one with the least remaining. The headers describe it."
    )
    retry_after_ms: int
    policy_version: int
    failure_mode: Literal["open", "closed"] | None = None


class BatchResponse(BaseModel):
    results: list[CheckResult | BatchItemProblem] = Field(
        description="In order; an item naming an unknown policy holds its error (status 207)."
    )


class PolicySpec(BaseModel):
    """A policy as written by PUT /v1/policies/{name} (the name comes from the path).

    Also accepted: `{"rate": "100/minute", ...}` (or the bare string `"100/minute"`) for
    `limit` and `window_ms`, and `window_ms` as a duration such as `"1m"` or `"1h30m"`.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _rates_and_durations(cls, data: Any) -> Any:
        return expand_rate_and_duration(data)

    limit: int = Field(ge=1, le=MAX_LIMIT)
    window_ms: int = Field(ge=1, le=MAX_WINDOW_MS)
    algorithm: Algorithm = "sliding_window"
    failure_mode: FailureMode = "open"
    shadow: bool = False
    overrides: dict[str, int] = Field(default_factory=dict)


class PolicyOut(PolicySpec):
    name: str


class PoliciesResponse(BaseModel):
    version: int
    policies: dict[str, PolicyOut]


class PolicyWritten(BaseModel):
    version: int
    policy: PolicyOut | None = None


class KeyUsageOut(BaseModel):
    policy: str
    key: str
    used: int
    limit: int
    remaining: int
    reset_after_ms: int


class KeysResponse(BaseModel):
    keys: list[KeyUsageOut]


class KeyReset(BaseModel):
    policy: str
    key: str
    reset: bool = Field(description="True when the key had state that was removed.")


class NodeOut(BaseModel):
    id: str
    address: str
    state: Literal["up", "stale", "down"]
    policy_version: int
    started_at: int = Field(description="Unix ms (Redis clock) when this node instance first registered.")
    last_heartbeat: int = Field(description="Unix ms (Redis clock) of the last heartbeat.")
    heartbeat_age_ms: int
    decisions: int
    failure_mode_decisions: int


class NodesResponse(BaseModel):
    nodes: list[NodeOut]


class NodeRemoved(BaseModel):
    id: str
    removed: bool


class Health(BaseModel):
    status: Literal["ok"]
    node_id: str


class Readiness(BaseModel):
    ready: bool
    node_id: str
    policy_version: int
    reason: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, object]] | None = Field(
        default=None, description="422: each problem's place (`loc`), message (`msg`) and `type`."
    )


class BatchItemProblem(BaseModel):
    """A check of a batch that could not be decided (the others were)."""

    policy: str
    error: Problem
