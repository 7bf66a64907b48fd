"""Turn a declared action and its (validated) params into the exact request it may send.

Params fill `{name}` placeholders by plain substitution (never `str.format`, which would allow
attribute access). Where a param lands decides how it is encoded, so a param can never change
the request's shape:

- path: `urllib.parse.quote(str(v), safe="")`, so `../x` or `a/b` stay inside one segment; a
  segment that is `.` or `..` once decoded (also `%2e`, `%252E%2e`...) is refused, since HTTP
  clients and servers remove dot segments and the request would go to another path;
- query values and headers: the text itself (httpx encodes query values); a header value with a
  CR or LF is refused;
- body: a string that is exactly `"{param}"` becomes the typed value, other strings are
  formatted; an entry (body key, query key, header) whose template uses an absent optional param
  is dropped. A path needs all its params.
- redis: every argument formatted; the command must still be an allowed write afterwards.

`render_request` is pure; it raises ActionRefused (gate `params`) when the params cannot fill
the declared request. `ActionRequest.request_target` (path and encoded query) is built once:
the audit line shows it and the executor sends exactly it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from engine.config.models import Action
from engine.errors import ActionRefused
from engine.redis_commands import write_refusal

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class _Absent(Exception):
    """A template used a param that was not given."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class ActionRequest:
    """The request one execution sends: HTTP (method, path, query, headers, body) or Redis."""

    action: str
    kind: str  # "http" | "redis"
    target: str
    method: str | None = None
    path: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    command: tuple[str, ...] = ()
    key_prefix: str | None = None  # redis: the only keys the command may write

    @property
    def request_target(self) -> str:
        """Path and encoded query, as sent (under the endpoint's base path): `/v1/x?a=b%20c`."""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.query.items())
        return f"{self.path}{'?' + query if query else ''}"

    @property
    def line(self) -> str:
        """One line for the audit log: `DELETE /v1/nodes/n2` or `redis CONFIG SET maxmemory 1mb`."""
        if self.kind == "http":
            return f"{self.method} {self.request_target}"
        return "redis " + " ".join(self.command)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "kind": self.kind, "target": self.target, "line": self.line}
        if self.kind == "http":
            out.update(method=self.method, path=self.path, query=self.query, headers=self.headers, body=self.body)
        else:
            out["command"] = list(self.command)
        return out


def render_request(action: Action, params: Mapping[str, Any]) -> ActionRequest:
    """The request `action` sends with `params`; ActionRefused("params", ...) when impossible."""
    if action.http is not None:
        http = action.http
        try:
            path = _fill(http.path, params, lambda v: quote(_text(v), safe=""))
        except _Absent as missing:
            raise ActionRefused("params", f"the path {http.path!r} needs param '{missing.name}', which was not given") from None
        dotted = dot_segment(path)
        if dotted is not None:
            raise ActionRefused("params", f"the path would be {path!r}, whose segment {dotted!r} is a dot segment (it would leave its place in the path)")
        query = _entries(http.query, params)
        headers = _entries(http.headers, params)
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ActionRefused("params", f"header {name!r} would contain a line break")
        body = _body(http.body, params) if http.body is not None else None
        return ActionRequest(action.name, "http", http.target, method=http.method, path=path, query=query, headers=headers, body=body)
    assert action.redis is not None
    try:
        command = tuple(_fill(str(arg), params, _text) for arg in action.redis.command)
    except _Absent as missing:
        raise ActionRefused("params", f"the redis command needs param '{missing.name}', which was not given") from None
    refusal = write_refusal(command, action.redis.key_prefix)
    if refusal is not None:
        raise ActionRefused("params", f"the redis command would be {' '.join(command)!r}: {refusal}")
    return ActionRequest(action.name, "redis", action.redis.target, command=command, key_prefix=action.redis.key_prefix)


def dot_segment(path: str) -> str | None:
    """The first segment of `path` that is `.` or `..` once percent-decoded (at any depth)."""
    for segment in path.split("?", 1)[0].split("/"):
        seen = segment
        for _ in range(8):  # %25 nests; eight levels is more than any client decodes
            if seen in (".", ".."):
                return segment
            decoded = unquote(seen)
            if decoded == seen:
                break
            seen = decoded
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _fill(template: str, params: Mapping[str, Any], encode: Any) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise _Absent(name)
        return str(encode(params[name]))

    return PLACEHOLDER.sub(one, template)


def _entries(templates: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, template in templates.items():
        try:
            out[name] = _fill(template, params, _text)
        except _Absent:
            continue  # an absent optional param drops the entry
    return out


def _body(template: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole is not None:
            if whole.group(1) not in params:
                raise _Absent(whole.group(1))
            return params[whole.group(1)]
        return _fill(template, params, _text)
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            try:
                out[key] = _body(value, params)
            except _Absent:
                continue
        return out
    if isinstance(template, list):
        items = []
        for value in template:
            try:
                items.append(_body(value, params))
            except _Absent:
                continue
        return items
    return template
