"""Observation fixtures over virtual time, and the observer that serves them to the engine.

Forms of one fixture (one per observation):

    qps: "1000x20 _x2 1000x20"             # series notation, one value per tick ('_' = error)
    qps: {values: "1+1x10"}                # the same, spelled out
    registry: {value: [...]}               # one value for the whole test
    registry: {json_file: fixtures/ok.json}
    redis_ping: {error: "connection refused"}
    registry:                              # steps: each holds from its time until the next
      - {from: 0s, json_file: fixtures/all_up.json}
      - {from: 6s, value: [...]}
      - {from: 20s, error: "timeout after 2s"}
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from engine.config.problems import DocPath
from engine.durations import format_duration, parse_duration
from engine.errors import ConfigError
from engine.observe import ObservationResult
from engine.testing.series import MISSING, SeriesValue, expand_series

ReportProblem = Callable[[DocPath, str], None]
_FORMS = ("values", "value", "json_file", "error")


@dataclass(frozen=True)
class Reading:
    """What one observation gives at one tick: a value, or an error reason."""

    ok: bool
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class SeriesTimeline:
    values: tuple[SeriesValue, ...]

    def reading(self, index: int, offset: float) -> Reading:
        if index >= len(self.values):
            # The loader checks the horizon; reaching here means a case ran past it.
            raise ConfigError(f"the series has {len(self.values)} values; there is none for tick {index}")
        value = self.values[index]
        if value is MISSING:
            return Reading(False, error="no data ('_' in the fixture series)")
        return Reading(True, value)

    def horizon_problem(self, last_index: int, last_offset: float) -> str | None:
        if last_index >= len(self.values):
            return (
                f"the series has {len(self.values)} values (ticks 0..{len(self.values) - 1}) but the cases run "
                f"to tick {last_index} ({format_duration(last_offset) if last_offset else '0s'}); add values"
            )
        return None


@dataclass(frozen=True)
class StepTimeline:
    steps: tuple[tuple[float, Reading], ...]  # (from offset, reading), increasing, first at 0

    def reading(self, index: int, offset: float) -> Reading:
        current = self.steps[0][1]
        for start, reading in self.steps:
            if start <= offset + 1e-9:
                current = reading
            else:
                break
        return current

    def horizon_problem(self, last_index: int, last_offset: float) -> str | None:
        late = [start for start, _ in self.steps if start > last_offset + 1e-9]
        if late:
            return (
                f"the step from {format_duration(late[0])} is never used: the last case is at "
                f"{format_duration(last_offset) if last_offset else '0s'}"
            )
        return None


Timeline = SeriesTimeline | StepTimeline


def parse_fixture(
    raw: Any, path: DocPath, base_dir: Path, shape: Mapping[str, Any] | None, report: ReportProblem
) -> Timeline | None:
    """One fixture as a timeline; every problem goes to `report` (then None is returned)."""
    if isinstance(raw, bool) or raw is None:
        report(path, "a fixture is series notation ('1 2 3'), a mapping with one of values/value/json_file/error, or a list of steps")
        return None
    if isinstance(raw, (str, int, float)):
        return _series(str(raw), path, report)
    if isinstance(raw, dict):
        return _constant(raw, path, base_dir, shape, report)
    if isinstance(raw, list):
        return _steps(raw, path, base_dir, shape, report)
    report(path, f"a fixture cannot be a {type(raw).__name__}")
    return None


def _series(text: str, path: DocPath, report: ReportProblem) -> SeriesTimeline | None:
    try:
        return SeriesTimeline(tuple(expand_series(text)))
    except ValueError as exc:
        report(path, str(exc))
        return None


def _constant(
    raw: dict[str, Any], path: DocPath, base_dir: Path, shape: Mapping[str, Any] | None, report: ReportProblem
) -> Timeline | None:
    forms = [k for k in _FORMS if k in raw]
    unknown = [k for k in raw if k not in _FORMS]
    if unknown:
        report(path + (unknown[0],), f"unknown key '{unknown[0]}' in a fixture; allowed: {', '.join(_FORMS)}")
        return None
    if len(forms) != 1:
        report(path, f"a fixture needs exactly one of {', '.join(_FORMS)}" + (f" (got {', '.join(forms)})" if forms else ""))
        return None
    if forms[0] == "values":
        values = raw["values"]
        if not isinstance(values, (str, int, float)) or isinstance(values, bool):
            report(path + ("values",), "`values` is series notation, e.g. '1 2 3' or '1+1x10'")
            return None
        return _series(str(values), path + ("values",), report)
    reading = _reading(raw, forms[0], path, base_dir, shape, report)
    return None if reading is None else StepTimeline(((0.0, reading),))


def _steps(
    raw: list[Any], path: DocPath, base_dir: Path, shape: Mapping[str, Any] | None, report: ReportProblem
) -> StepTimeline | None:
    if not raw:
        report(path, "the list of steps is empty; give at least {from: 0s, value: ...}")
        return None
    steps: list[tuple[float, Reading]] = []
    ok = True
    for index, step in enumerate(raw):
        where = path + (index,)
        if not isinstance(step, dict):
            report(where, "a step is a mapping such as {from: 0s, value: ...}")
            ok = False
            continue
        unknown = [k for k in step if k not in ("from", "value", "json_file", "error")]
        forms = [k for k in ("value", "json_file", "error") if k in step]
        if unknown:
            report(where + (unknown[0],), f"unknown key '{unknown[0]}' in a step; allowed: from, value, json_file, error")
            ok = False
            continue
        if "from" not in step:
            report(where, "a step needs `from`, e.g. from: 30s")
            ok = False
            continue
        if len(forms) != 1:
            report(where, "a step needs exactly one of value, json_file, error" + (f" (got {', '.join(forms)})" if forms else ""))
            ok = False
            continue
        try:
            start = parse_duration(step["from"]) if step["from"] != 0 else 0.0
        except ValueError as exc:
            report(where + ("from",), str(exc))
            ok = False
            continue
        if not steps and start != 0:
            report(where + ("from",), "the first step must start at 0s (what would the observation give before it?)")
            ok = False
        if steps and start <= steps[-1][0]:
            report(where + ("from",), f"steps must be in increasing time; this one starts at {format_duration(start)}, not after the previous one")
            ok = False
        reading = _reading(step, forms[0], where, base_dir, shape, report)
        if reading is None:
            ok = False
            continue
        steps.append((start, reading))
    return StepTimeline(tuple(steps)) if ok and steps else None


def _reading(
    raw: Mapping[str, Any], form: str, path: DocPath, base_dir: Path, shape: Mapping[str, Any] | None, report: ReportProblem
) -> Reading | None:
    if form == "error":
        reason = raw["error"]
        if not isinstance(reason, str) or not reason.strip():
            report(path + ("error",), "`error` is the failure reason, a non-empty text such as 'connection refused'")
            return None
        return Reading(False, error=reason.strip())
    if form == "json_file":
        value = _json_file(raw["json_file"], path + ("json_file",), base_dir, report)
        if value is _UNREADABLE:
            return None
        where = path + ("json_file",)
    else:
        value = raw["value"]
        where = path + ("value",)
    if shape is not None:
        problem = shape_problem(value, shape)
        if problem is not None:
            report(where, f"the value does not match the observation's shape: {problem}")
            return None
    return Reading(True, value)


_UNREADABLE = object()


def _json_file(rel: Any, path: DocPath, base_dir: Path, report: ReportProblem) -> Any:
    if not isinstance(rel, str) or not rel:
        report(path, "`json_file` is a path relative to the test file")
        return _UNREADABLE
    file = base_dir / rel
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        report(path, f"{rel}: file not found (looked in {base_dir})")
        return _UNREADABLE
    except (OSError, UnicodeDecodeError) as exc:
        report(path, f"{rel}: cannot read the file: {exc}")
        return _UNREADABLE
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        report(path, f"{rel}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return _UNREADABLE


def shape_problem(value: Any, shape: Mapping[str, Any]) -> str | None:
    """The first way `value` breaks the JSON Schema `shape`, as one line; None when it fits."""
    try:
        validator = jsonschema.Draft202012Validator(shape)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except jsonschema.exceptions.SchemaError as exc:
        return f"the shape is not a valid JSON Schema: {exc.message}"
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "the value"
    return f"{where.lstrip('.')}: {error.message}"


def parse_start(start: str | float) -> float | str:
    """The start of virtual time in unix seconds, or the problem with an RFC 3339 text (a str)."""
    if isinstance(start, (int, float)):
        return float(start)
    try:
        moment = dt.datetime.fromisoformat(start)
    except ValueError:
        return f"'{start}' is not unix seconds or an RFC 3339 time such as 2026-01-01T00:00:00Z"
    if moment.tzinfo is None:
        return f"'{start}' has no time zone; add Z or an offset such as +02:00"
    return moment.timestamp()


class VirtualClock:
    """The test's time: unix seconds, moved only by the runner."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.now = start

    def __call__(self) -> float:
        return self.now


class FixtureObserver:
    """Serves fixtures in place of the real Observer (same methods); no I/O."""

    def __init__(self, timelines: Mapping[str, Timeline], clock: VirtualClock, tick: float) -> None:
        self._timelines = dict(timelines)
        self._clock = clock
        self._tick = tick
        self.last: dict[str, ObservationResult] = {}

    async def observe_all(self, names: Iterable[str] | None = None) -> dict[str, ObservationResult]:
        chosen = list(self._timelines) if names is None else list(dict.fromkeys(names))
        results = {name: await self.observe(name) for name in chosen}
        self.last = results
        return results

    async def observe(self, name: str) -> ObservationResult:
        timeline = self._timelines.get(name)
        if timeline is None:
            raise ConfigError(f"there is no fixture for observation '{name}'")
        offset = self._clock.now - self._clock.start
        reading = timeline.reading(round(offset / self._tick), offset)
        return ObservationResult(
            name=name,
            ok=reading.ok,
            value=copy.deepcopy(reading.value) if reading.ok else None,
            error=reading.error,
            duration_s=0.0,
            endpoint="fixture",
        )

    async def aclose(self) -> None:
        return None
