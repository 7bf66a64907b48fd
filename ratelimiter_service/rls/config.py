"""Envoy ratelimit's descriptor configuration (`RATELIMITER_RLS_CONFIG`), mapped onto policies.

The format is envoyproxy/ratelimit's (one YAML document per domain, in a file or in the
`*.yaml`/`*.yml` files of a directory):

    domain: messaging
    descriptors:
      - key: message_type
        value: marketing
        descriptors:
          - key: to_number
            rate_limit: {unit: day, requests_per_unit: 5}
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 100}
        shadow_mode: true

Matching follows envoyproxy/ratelimit: a request descriptor of N entries matches a rule at
depth N, entry by entry, preferring at each level an exact `key`+`value`, then a `value`
ending in `*` (prefix), then `key` alone (any value). A matched rule with a `rate_limit` is a
policy (`requests_per_unit` per `unit`, the node's default algorithm and failure mode,
`shadow_mode` → shadow) and the request's entries are its key, so each value of a key-only
rule is counted apart (`share_threshold: true` on a wildcard counts all its values together).
`unlimited: true` and `requests_per_unit: 0` are decided without Redis (OK, and always over
limit). No match, or a match without `rate_limit`: OK, unlimited. `replaces` is not supported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ratelimiter_service.policies import Algorithm, FailureMode, Policy

UNIT_MS = {
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
    "month": 30 * 86_400_000,
    "year": 365 * 86_400_000,
}
Unit = Literal["second", "minute", "hour", "day", "week", "month", "year"]


class RlsConfigError(Exception):
    """The configuration cannot be used; the message names the file and the place."""


class RateLimitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: Unit | None = None
    requests_per_unit: int | None = Field(default=None, ge=0)
    unlimited: bool = False
    name: str | None = None
    replaces: list[dict[str, Any]] | None = None


class DescriptorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    value: str | None = None
    rate_limit: RateLimitSpec | None = None
    shadow_mode: bool = False
    share_threshold: bool = False
    detailed_metric: bool = False
    value_to_metric: bool = False
    descriptors: list[DescriptorSpec] = Field(default_factory=list)


class DomainSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1)
    descriptors: list[DescriptorSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    """One configured descriptor: how it matches, and what it limits (None: nothing)."""

    key: str
    value: str | None
    policy: Policy | None
    unlimited: bool
    deny_all: bool
    share_threshold: bool
    unit: str | None
    name: str
    children: tuple[Rule, ...]

    def matches_exactly(self, key: str, value: str) -> bool:
        return self.key == key and self.value == value

    def matches_prefix(self, key: str, value: str) -> bool:
        return (
            self.key == key and self.value is not None and self.value.endswith("*")
            and value.startswith(self.value[:-1])
        )

    def matches_any_value(self, key: str) -> bool:
        return self.key == key and not self.value


@dataclass(frozen=True)
class Match:
    """What one request descriptor resolved to."""

    rule: Rule
    limiter_key: str  # the key counted under rule.policy


@dataclass(frozen=True)
class RlsConfig:
    domains: dict[str, tuple[Rule, ...]]

    @property
    def policies(self) -> dict[str, Policy]:
        """Every policy the configuration defines, by name (for listings and metrics)."""
        found: dict[str, Policy] = {}

        def walk(rules: tuple[Rule, ...]) -> None:
            for rule in rules:
                if rule.policy is not None:
                    found[rule.policy.name] = rule.policy
                walk(rule.children)

        for rules in self.domains.values():
            walk(rules)
        return found

    def match(self, domain: str, entries: list[tuple[str, str]]) -> Match | None:
        """The rule a descriptor's entries select in `domain`, or None (unlimited)."""
        rules = self.domains.get(domain, ())
        matched: Rule | None = None
        counted: list[tuple[str, str]] = []
        for key, value in entries:
            matched = (
                next((r for r in rules if r.matches_exactly(key, value)), None)
                or next((r for r in rules if r.matches_prefix(key, value)), None)
                or next((r for r in rules if r.matches_any_value(key)), None)
            )
            if matched is None:
                return None
            shared = matched.share_threshold and matched.value is not None and matched.value.endswith("*")
            counted.append((key, matched.value if shared else value))  # type: ignore[arg-type]
            rules = matched.children
        if matched is None:
            return None
        key = "|".join([quote(domain, safe=""), *(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in counted)])
        return Match(matched, key)


def load_rls_config(path: str, *, algorithm: Algorithm, failure_mode: FailureMode) -> RlsConfig:
    """Read a file, or every `*.yaml`/`*.yml` of a directory, into one configuration."""
    source = Path(path)
    if source.is_dir():
        files = sorted([*source.glob("*.yaml"), *source.glob("*.yml")])
    elif source.is_file():
        files = [source]
    else:
        raise RlsConfigError(f"RATELIMITER_RLS_CONFIG: {path}: no such file or directory")
    domains: dict[str, tuple[Rule, ...]] = {}
    for file in files:
        try:
            documents = [d for d in yaml.safe_load_all(file.read_text("utf-8")) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            raise RlsConfigError(f"{file}: {exc}") from None
        for document in documents:
            try:
                spec = DomainSpec.model_validate(document)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in exc.errors()
                )
                raise RlsConfigError(f"{file}: {problems}") from None
            if spec.domain in domains:
                raise RlsConfigError(f"{file}: domain {spec.domain!r} is defined twice")
            domains[spec.domain] = _rules(file, spec.domain, spec.descriptors, (), algorithm, failure_mode)
    return RlsConfig(domains)


def _rules(
    file: Path,
    domain: str,
    specs: list[DescriptorSpec],
    path: tuple[str, ...],
    algorithm: Algorithm,
    failure_mode: FailureMode,
) -> tuple[Rule, ...]:
    rules = []
    for spec in specs:
        here = (*path, f"{spec.key}={spec.value or ''}")
        where = f"{file}: domain {domain!r}, descriptor {'.'.join(here)}"
        limit = spec.rate_limit
        policy = None
        deny_all = unlimited = False
        if limit is not None:
            if limit.replaces:
                raise RlsConfigError(f"{where}: `replaces` is not supported")
            if limit.unlimited:
                unlimited = True
            elif limit.unit is None or limit.requests_per_unit is None:
                raise RlsConfigError(f"{where}: rate_limit needs unit and requests_per_unit (or unlimited: true)")
            elif limit.requests_per_unit == 0:
                deny_all = True
            else:
                digest = hashlib.sha1("\x00".join((domain, *here)).encode()).hexdigest()[:16]
                try:
                    policy = Policy(
                        name=f"rls.{digest}",
                        limit=limit.requests_per_unit,
                        window_ms=UNIT_MS[limit.unit],
                        algorithm=algorithm if algorithm != "sliding_log" else "sliding_window",
                        failure_mode=failure_mode,
                        shadow=spec.shadow_mode,
                    )
                except ValidationError as exc:
                    raise RlsConfigError(f"{where}: {exc.errors()[0]['msg']}") from None
        rules.append(
            Rule(
                key=spec.key,
                value=spec.value,
                policy=policy,
                unlimited=unlimited,
                deny_all=deny_all,
                share_threshold=spec.share_threshold,
                unit=limit.unit if limit is not None else None,
                name=(limit.name if limit is not None and limit.name else ""),
                children=_rules(file, domain, spec.descriptors, here, algorithm, failure_mode),
            )
        )
    return tuple(rules)
