"""Recordings: what one eval run saw and said, so that it replays offline byte for byte.

`opctl eval --record DIR` writes one JSON file per case and repeat, at
`DIR/<subject>/<eval file stem>/<case>/<repeat>.json`; `opctl eval --provider replay --from DIR`
reads them back. A recording holds:

- `origin`: how it was made: `recorded` (a real run of `opctl eval`) or `hand-authored` (answers
  written by a person and passed through the real client; never a measurement of a model);
- `moment`: the diagnosis request as the engine built it at the moment of diagnosis (ticket,
  entity, observations, events, similar tickets), the mode, the time, the gate's `prev` values;
- `observations`: every observation re-run during the diagnosis and the gate (tool calls, guards);
- `exchanges`: every Messages API request body and its response (status, headers, body);
- `latency_s`: how long the diagnosis took when it was recorded (replays report it unchanged).

Values are redacted with the config's secrets before they are written. API keys are never part
of a recording (request headers are not kept).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.config.models import Invariant
from engine.config.problems import DocPath, Problem
from engine.diagnose.types import DiagnosisRequest
from engine.observe import ObservationResult
from engine.redact import Redactor
from engine.store import Event, Ticket

FORMAT = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Strict):
    kind: Literal["recorded", "hand-authored"]
    note: str = ""
    opctl: str = ""


class Response(_Strict):
    status: int = Field(ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None


class Exchange(_Strict):
    """One Messages API call: the request body sent and the response received."""

    request: dict[str, Any]
    response: Response
    latency_s: float = Field(0.0, ge=0)


class RecordedObservation(_Strict):
    name: str
    ok: bool
    value: Any = None
    error: str | None = None

    def result(self) -> ObservationResult:
        return ObservationResult(self.name, self.ok, self.value, self.error, 0.0, "recording")


class Moment(_Strict):
    """The engine's state at the moment of diagnosis, as plain data."""

    now: float
    mode: str
    firing: bool
    prev: dict[str, Any] = Field(default_factory=dict)
    ticket: dict[str, Any]
    invariant: str
    item: Any = None
    key: str = ""
    observations: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    similar_tickets: list[dict[str, Any]] = Field(default_factory=list)

    def request(self, invariant: Invariant) -> DiagnosisRequest:
        return DiagnosisRequest(
            ticket=Ticket(**self.ticket),
            invariant=invariant,
            item=self.item,
            key=self.key,
            observations=dict(self.observations),
            events=tuple(Event(**e) for e in self.events),
            similar_tickets=tuple(Ticket(**t) for t in self.similar_tickets),
        )


class Judged(_Strict):
    model: str
    exchanges: list[Exchange] = Field(default_factory=list)


class Recording(_Strict):
    format: Literal[1]
    origin: Origin
    case: str
    repeat: int = Field(ge=1)
    provider: Literal["claude", "runbook"]
    model: str | None = None
    moment: Moment
    observations: list[RecordedObservation] = Field(default_factory=list)
    exchanges: list[Exchange] = Field(default_factory=list)
    latency_s: float = Field(ge=0)
    judge: Judged | None = None


def moment_of(request: DiagnosisRequest, *, now: float, mode: str, firing: bool, prev: dict[str, Any]) -> Moment:
    return Moment(
        now=now,
        mode=mode,
        firing=firing,
        prev=dict(prev),
        ticket=dataclasses.asdict(request.ticket),
        invariant=request.invariant.name,
        item=request.item,
        key=request.key,
        observations=dict(request.observations),
        events=[dataclasses.asdict(e) for e in request.events],
        similar_tickets=[dataclasses.asdict(t) for t in request.similar_tickets],
    )


def recording_path(root: Path, case_ident: str, repeat: int) -> Path:
    return root.joinpath(*case_ident.split("/")) / f"{repeat}.json"


def write_recording(root: Path, recording: Recording, secrets: frozenset[str]) -> Path:
    """Write one recording (redacted), creating directories; returns its path."""
    path = recording_path(root, recording.case, recording.repeat)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = Redactor(secrets).value(recording.model_dump(mode="json"))
    path.write_text(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_recording(path: Path) -> Recording | Problem:
    """The recording at `path`, or the Problem that makes it unusable (located at file:line:col)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(str(path), 0, 0, (), f"cannot read the recording: {exc}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Problem(str(path), exc.lineno, exc.colno, (), f"the recording is not valid JSON: {exc.msg}")
    try:
        return Recording.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc: DocPath = tuple(first["loc"])
        found, line, column = _position(text, data, loc)
        where = ".".join(str(p) for p in loc) or "the recording"
        message = str(first["msg"])
        if first["type"] == "missing":
            message = f"missing required key '{loc[-1]}'"
        elif first["type"] == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'"
        return Problem(str(path), line, column, found, f"not a recording of opctl eval: {where}: {message}")


def _position(text: str, data: Any, loc: DocPath) -> tuple[DocPath, int, int]:
    """The deepest existing document path along `loc` and where it is written (JSON read as YAML)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            break
        path.append(part)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return tuple(path), 1, 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part]
    return tuple(path), node.start_mark.line + 1, node.start_mark.column + 1
