"""Semantic checks: what a schema cannot see.

CEL syntax and names, jinja2 syntax and names, action param schemas, runbook entries, request
templates, targets and their kinds, duplicate names, referenced files, Redis command allowlists.
Each check reports every problem it finds, located in the document.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jsonschema

from engine import templates
from engine.config import celtypes as ct
from engine.config.loader import LoadedDocument
from engine.config.models import (
    RESERVED_NAMES,
    Action,
    Diagnosis,
    Invariant,
    Incidents,
    Notify,
    Observation,
    Prompts,
    Subject,
    Target,
    Var,
)
from engine.config.reach import outside_reason
from engine.config.typecheck import Scope, check, could_be, kind_of, library_problems
from engine.config.problems import DocPath, Problem, Severity
from engine.errors import ExpressionCompileError, ExpressionEvalError
from engine.expr import CompiledExpr, compile_expr
from engine.redis_commands import READ_ONLY, command_name, write_refusal

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Which target scheme each observation kind needs.
_OBSERVATION_SCHEME = {"http": "http", "prometheus": "http", "metrics": "http", "redis": "redis"}


@dataclass
class PartialConfig:
    """The parts of a config that passed the schema, with their document paths.

    Semantic checks run on these even when other parts are broken, so one run reports all.
    """

    subject: Subject | None = None
    targets: dict[str, Target] = field(default_factory=dict)
    observations: dict[str, Observation] = field(default_factory=dict)
    invariants: list[tuple[int, Invariant]] = field(default_factory=list)
    actions: list[tuple[int, Action]] = field(default_factory=list)
    prompts: Prompts | None = None
    diagnosis: Diagnosis | None = None
    vars: dict[str, Var] = field(default_factory=dict)
    lab: str | None = None
    # Names present in the document even if their entries are invalid: avoids cascades such
    # as "unknown target" for a target whose own definition already has an error.
    target_names: set[str] = field(default_factory=set)
    observation_names: set[str] = field(default_factory=set)
    action_names: set[str] = field(default_factory=set)
    invariant_names: set[str] = field(default_factory=set)
    incidents: Incidents | None = None
    notify: list[tuple[int, Notify]] = field(default_factory=list)
    # False when some invariant or action failed the schema: usage of names is then unknown.
    entries_complete: bool = True


# What a guard sees instead of `item`, said when a guard reads it.
GUARD_ITEM_HINT = ("guards see `params` and the observations (with `now`, `prev`, `vars`), not `item`: "
                   "give the action a param for what the guard needs")
# The CEL type of each `vars` type (a duration is seen as seconds).
VAR_TYPES = {"int": ct.INT, "double": ct.DOUBLE, "string": ct.STRING, "bool": ct.BOOL, "duration": ct.DOUBLE}
_JSON_TYPE = {"int": "integer", "uint": "integer", "double": "number", "string": "string", "bool": "boolean",
              "null": "null", "list": "array", "map": "object"}


class Checker:
    def __init__(self, doc: LoadedDocument, partial: PartialConfig, strict: bool = False) -> None:
        self.doc = doc
        self.cfg = partial
        self.strict = strict
        self.problems: list[Problem] = []
        self.used_observations: set[str] = set()
        # the CEL type of every observation (DYN until its entry is checked), and which have none
        self.types: dict[str, ct.T] = {name: ct.DYN for name in partial.observation_names}
        self.untyped: set[str] = set()
        self.strict_reported: set[str] = set()

    # ------------------------------------------------------------------ reporting

    def report(self, path: DocPath, message: str, severity: Severity = "error", *, key: bool = False) -> None:
        mark = self.doc.key_mark_for(path) if key else self.doc.mark_for(path)
        self.problems.append(Problem(self.doc.file, mark.line, mark.column, path, message, severity))

    def report_in_file(self, file: Path, line: int, path: DocPath, message: str) -> None:
        self.problems.append(Problem(str(file), max(line, 1), 1, path, message))

    def report_at(self, path: DocPath, offset: int, message: str, value: str | None = None) -> None:
        """A problem at character `offset` of the string value at `path` (its file position)."""
        mark = self.doc.position_in(path, offset, value)
        self.problems.append(Problem(self.doc.file, mark.line, mark.column, path, message))

    # ------------------------------------------------------------------ building blocks

    def cel(self, path: DocPath, source: str, scope: Mapping[str, ct.T], what: str,
            hints: Mapping[str, str] | None = None) -> tuple[CompiledExpr | None, ct.T]:
        """Compile and type-check one expression; its problems are reported where they are."""
        raw = self.doc.interpolated.get(tuple(path))
        if raw is not None:
            reference = raw[raw.index("${"): raw.find("}", raw.index("${")) + 1]
            self.report_at(path, raw.index("${"), (
                f"{reference} in {what}: the environment must never rewrite an expression; declare a typed "
                f"variable under `vars:` (e.g. vars: {{limit: {{type: int, value: \"{reference}\"}}}}) and read "
                "vars.limit in the expression"), value=raw)
            return None, ct.DYN
        try:
            compiled = compile_expr(source)
        except ExpressionCompileError as exc:
            where = f" at column {exc.column} of the expression" if exc.column else ""
            self.report(path, f"CEL syntax error in {what}{where}: {exc}")
            return None, ct.DYN
        self.used_observations |= compiled.names & self.cfg.observation_names
        allowed = set(scope)

        def unknown(name: str) -> str:
            # A misspelt observation is still meant: don't also call it unused.
            self.used_observations |= set(difflib.get_close_matches(name, sorted(self.cfg.observation_names), n=1))
            hint = (hints or {}).get(name)
            return f"unknown name '{name}' in {what}; " + (hint or _names_hint(name, allowed))

        checked = check(source, Scope(scope, unknown))
        if checked is None:  # syntax the checker does not read: names only
            for name in sorted(compiled.names - allowed):
                self.report(path, unknown(name))
            return compiled, ct.DYN
        for problem in checked.problems:
            message = problem.message if problem.message.startswith("unknown name") else f"{what}: {problem.message}"
            self.report_at(path, problem.start, message)
        if not checked.problems:
            for problem in library_problems(source, frozenset(scope)):
                self.report_at(path, problem.start, f"{what}: {problem.message}")
        if self.strict:
            for name in sorted(compiled.names & self.untyped - self.strict_reported):
                self.strict_reported.add(name)
                self.report(("observations", name), (
                    f"--strict: observation '{name}' has no `shape` and its source does not type it, so "
                    f"expressions over it (first: {what}) are not type-checked; add a `shape`: the JSON Schema "
                    "of its value"), key=True)
        return compiled, (checked.type if not checked.problems else ct.DYN)

    def expect(self, path: DocPath, t: ct.T, kinds: tuple[str, ...], what: str, needed: str) -> None:
        """Report an expression whose type can never be one of `kinds` (at its start)."""
        if not could_be(t, *kinds):
            self.report_at(path, 0, f"{what} gives {_article(ct.describe(t))}, not {needed}")

    def base_scope(self) -> dict[str, ct.T]:
        """What every invariant, guard and runbook expression sees: the observations, `now`,
        `prev` (the previous tick's values, same types) and `vars`."""
        observations = {name: self.types.get(name, ct.DYN) for name in self.cfg.observation_names}
        return {**observations, "now": ct.DOUBLE, "prev": ct.Obj(tuple(observations.items()), None),
                "vars": ct.Obj(tuple((n, VAR_TYPES[v.type]) for n, v in self.cfg.vars.items()), None)}

    def template(self, path: DocPath, source: str, allowed: set[str], what: str, file: Path | None = None) -> None:
        try:
            names = templates.undeclared_names(source)
        except jinja2.TemplateSyntaxError as exc:
            message = f"jinja2 syntax error in {what}: {exc.message}"
            if file is not None:
                self.report_in_file(file, exc.lineno, path, message)
            else:
                self.report(path, f"{message} (line {exc.lineno} of the template)")
            return
        self.used_observations |= names & self.cfg.observation_names
        for name in sorted(names - allowed):
            message = f"unknown variable '{name}' in {what}; {_names_hint(name, allowed)}"
            if file is not None:
                self.report_in_file(file, _first_line_of(source, name), path, message)
            else:
                self.report(path, message)

    def file_exists(self, path: DocPath, rel: str, what: str) -> Path | None:
        resolved = (self.doc.base_dir / rel).resolve()
        outside = outside_reason(self.doc.base_dir, rel)
        if outside is not None:
            self.report(path, f"{what} {outside}")
            return None
        if not resolved.is_file():
            self.report(path, f"{what} '{rel}' does not exist (looked for {resolved})")
            return None
        return resolved

    def target(self, path: DocPath, name: str, scheme: str, what: str) -> None:
        if name not in self.cfg.target_names:
            self.report(path, f"unknown target '{name}' in {what}; {_names_hint(name, self.cfg.target_names, 'targets')}")
            return
        target = self.cfg.targets.get(name)
        if target is not None and target.scheme in ("http", "redis") and target.scheme != scheme:
            self.report(path, f"{what} needs a {scheme} target, but target '{name}' is {target.scheme} ({target.endpoints[0]})")

    # ------------------------------------------------------------------ the checks

    def run(self) -> list[Problem]:
        self.check_vars()
        self.check_subject()
        self.check_lab()
        self.check_targets()
        self.check_observations()
        self.check_invariants()
        self.check_target_runbooks()
        self.check_actions()
        self.check_prompts()
        self.check_diagnosis()
        self.check_unused_observations()
        return self.problems

    def check_vars(self) -> None:
        for name, var in self.cfg.vars.items():
            try:
                var.parsed()
            except ValueError as reason:
                path: DocPath = ("vars", name, "value")
                raw = self.doc.interpolated.get(path)
                env_name = re.search(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw) if raw is not None else None
                given = f"{env_name.group(1)}={var.value!r}" if env_name else repr(var.value)
                self.report(path, f"vars.{name}: {given} {reason}" + (f" (the value comes from {raw})" if env_name else ""))

    def check_lab(self) -> None:
        if self.cfg.lab is not None:
            self.file_exists(("lab",), self.cfg.lab, "lab file")

    def check_subject(self) -> None:
        subject = self.cfg.subject
        if subject is not None and subject.context_file is not None:
            self.file_exists(("subject", "context_file"), subject.context_file, "context file")

    def check_targets(self) -> None:
        for name, target in self.cfg.targets.items():
            for i, url in enumerate(target.endpoints):
                path: DocPath = ("targets", name, "urls", i) if target.urls is not None else ("targets", name, "url")
                scheme = url.split("://", 1)[0].lower() if "://" in url else ""
                if scheme not in ("http", "https", "redis", "rediss"):
                    self.report(path, f"target '{name}' has URL '{url}'; use http(s)://host:port or redis(s)://host:port/db")
                elif scheme.rstrip("s") != target.scheme.rstrip("s") and i > 0:
                    self.report(path, f"all endpoints of target '{name}' must be of one kind ({target.scheme})")

    def check_observations(self) -> None:
        for name, obs in self.cfg.observations.items():
            base: DocPath = ("observations", name)
            if name in RESERVED_NAMES:
                self.report(base, f"observation name '{name}' is reserved; pick another name", key=True)
            kind = obs.kind
            self.target(base + (kind, "target"), obs.query.target, _OBSERVATION_SCHEME[kind], f"{kind} observation '{name}'")
            if obs.redis is not None:
                command = command_name(obs.redis.command)
                if command not in READ_ONLY:
                    self.report(
                        base + ("redis", "command"),
                        f"redis command '{command}' is not allowed in an observation; observations only read "
                        f"(allowed: {', '.join(sorted(READ_ONLY))})",
                    )
            value = _source_type(obs)
            if obs.select is not None:
                scope = dict(ct.HTTP_SELECT_SCOPE) if kind == "http" else {"value": value}
                _, value = self.cel(base + ("select",), obs.select, scope | {"now": ct.DOUBLE, "vars": self.base_scope()["vars"]},
                                    f"the select of observation '{name}'")
            target = self.cfg.targets.get(obs.query.target)
            if target is not None and target.effective_mode == "fanout":
                value = ct.fanout(value)
            if obs.shape is not None and self.json_schema(base + ("shape",), obs.shape, f"the shape of observation '{name}'"):
                self.types[name] = ct.from_schema(obs.shape)
            else:
                self.types[name] = value
                if ct.contains_dyn(value):
                    self.untyped.add(name)

    def check_invariants(self) -> None:
        seen: dict[str, int] = {}
        for index, inv in self.cfg.invariants:
            base: DocPath = ("invariants", index)
            self.duplicate(seen, inv.name, index, base, "invariant")
            scope = self.base_scope()
            what = f"invariant '{inv.name}'"
            if inv.for_each is not None:
                _, items = self.cel(base + ("for_each",), inv.for_each, scope, f"for_each of {what}")
                self.expect(base + ("for_each",), items, ("list",), f"for_each of {what}", "a list")
                scope["item"] = ct.union(m.elem if isinstance(m, ct.List) else ct.DYN for m in ct.members(items))
            if inv.key is not None:
                _, key = self.cel(base + ("key",), inv.key, scope, f"key of {what}")
                self.expect(base + ("key",), key, ("string", "int", "uint", "double"), f"key of {what}", "a string or number")
            _, value = self.cel(base + ("expr",), inv.expr, scope, f"expr of {what}")
            self.expect(base + ("expr",), value, ("bool",), f"expr of {what}",
                        "a bool: an invariant is an expression that is true when healthy")
            if inv.resolve_when is not None:
                _, value = self.cel(base + ("resolve_when",), inv.resolve_when, scope, f"resolve_when of {what}")
                self.expect(base + ("resolve_when",), value, ("bool",), f"resolve_when of {what}", "a bool")
            if inv.message is not None:
                self.template(base + ("message",), inv.message, set(scope) | set(templates.MESSAGE_VARIABLES), f"the message of {what}")
            for i, entry in enumerate(inv.runbook):
                self.runbook_entry(base + ("runbook", i), entry.action, entry.params, scope | {"key": ct.STRING}, what)

    def check_target_runbooks(self) -> None:
        """A target's runbook is its `target_up`'s: params see the target's entity as `item`."""
        observed = {obs.query.target for obs in self.cfg.observations.values()}
        scope = self.base_scope() | {"item": ct.TARGET_UP_ITEM, "key": ct.STRING}
        for name, target in self.cfg.targets.items():
            if not target.runbook:
                continue
            what = f"target_up of target '{name}'"
            if name not in observed:
                self.report(("targets", name, "runbook"), f"target '{name}' has a runbook, but no observation reads it, "
                            "so its target_up never fires", "warning", key=True)
            for i, entry in enumerate(target.runbook):
                self.runbook_entry(("targets", name, "runbook", i), entry.action, entry.params, scope, what)

    def runbook_entry(
        self, path: DocPath, action_name: str, params: dict[str, str], scope: dict[str, ct.T], what: str,
        entry: str = "runbook entry", owner: str = "runbook",
    ) -> None:  # fmt: skip
        """An action named with CEL params (a runbook entry, a revert): the action exists and the
        params fit its schema as far as can be seen without observations."""
        if action_name not in self.cfg.action_names:
            self.report(path + ("action",), f"{owner} of {what} names unknown action '{action_name}'; {_names_hint(action_name, self.cfg.action_names, 'actions')}")
            return
        action = next((a for _, a in self.cfg.actions if a.name == action_name), None)
        schema_ok = action is not None and _is_valid_schema(action.params)
        properties = action.params.get("properties", {}) if schema_ok and isinstance(action.params.get("properties"), dict) else {}
        constants: dict[str, Any] = {}
        for pname, source in params.items():
            where = path + ("params", pname)
            bare = source.strip()
            hints = {bare: f"to pass the text '{bare}', quote it: \"'{bare}'\" (a param is a CEL expression)"} if bare.isidentifier() else None
            compiled, value = self.cel(where, source, scope, f"param '{pname}' of {'a runbook entry' if entry == 'runbook entry' else 'the ' + entry} of {what}", hints)
            subschema = properties.get(pname)
            wanted = ct.from_schema(subschema) if isinstance(subschema, dict) else ct.DYN
            if wanted is not ct.DYN and not _fits(value, wanted):
                self.report_at(where, 0, f"param '{pname}' gives {_article(ct.describe(value))}, but action "
                               f"'{action_name}' takes {_json_kinds(wanted)} for it (its params schema)")
                continue
            if compiled is not None and not compiled.names:
                try:
                    constants[pname] = compiled.evaluate({})
                except ExpressionEvalError as exc:
                    self.report(where, f"param '{pname}' cannot be evaluated: {exc}")
        if action is None or not schema_ok:
            return
        for missing in sorted(set(action.params.get("required", [])) - set(params)):
            self.report(path + ("params",), f"action '{action_name}' requires param '{missing}', which this {entry} does not give")
        if action.params.get("additionalProperties") is False:
            for extra in sorted(set(params) - set(properties)):
                self.report(path + ("params", extra), f"action '{action_name}' has no param '{extra}' (its params: {', '.join(sorted(properties)) or 'none'})", key=True)
        for pname, value in constants.items():
            subschema = properties.get(pname)
            if isinstance(subschema, dict):
                for error in jsonschema.Draft202012Validator(subschema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).iter_errors(value):
                    self.report(path + ("params", pname), f"param '{pname}' = {value!r} is rejected by action '{action_name}': {error.message}")

    def check_actions(self) -> None:
        seen: dict[str, int] = {}
        for index, action in self.cfg.actions:
            base: DocPath = ("actions", index)
            self.duplicate(seen, action.name, index, base, "action")
            what = f"action '{action.name}'"
            schema_ok = self.json_schema(base + ("params",), action.params, f"the params of {what}")
            if schema_ok and action.params.get("type") != "object":
                self.report(base + ("params",), f"the params schema of {what} must have `type: object`")
            declared = set(action.params.get("properties", {})) if schema_ok and isinstance(action.params.get("properties"), dict) else None
            scope = self.base_scope() | {"params": ct.from_schema(action.params) if schema_ok else ct.DYN}
            if action.when is not None:
                _, value = self.cel(base + ("when",), action.when, scope, f"the guard of {what}", {"item": GUARD_ITEM_HINT})
                self.expect(base + ("when",), value, ("bool",), f"the guard of {what}", "a bool")
            # The effect check and the revert read a tick's observations, without a `prev` of their own.
            after = {name: t for name, t in scope.items() if name != "prev"}
            if action.verify.expr is not None:
                _, value = self.cel(base + ("verify", "expr"), action.verify.expr, after, f"the effect check (verify.expr) of {what}")
                self.expect(base + ("verify", "expr"), value, ("bool",), f"the effect check (verify.expr) of {what}", "a bool")
            if action.revert is not None:
                self.revert(base + ("revert",), action, after, what)
            if action.http is not None:
                self.target(base + ("http", "target"), action.http.target, "http", what)
                for sub, value in _http_template_fields(action):
                    self.placeholders(base + ("http",) + sub, value, declared, what)
            if action.redis is not None:
                self.target(base + ("redis", "target"), action.redis.target, "redis", what)
                refusal = write_refusal(action.redis.command, action.redis.key_prefix)
                if refusal is not None:
                    self.report(base + ("redis", "command", refusal.index), f"redis command of {what}: {refusal.reason}")
                for i, arg in enumerate(action.redis.command):
                    self.placeholders(base + ("redis", "command", i), arg, declared, what)

    def revert(self, path: DocPath, action: Action, scope: dict[str, ct.T], what: str) -> None:
        revert = action.revert
        assert revert is not None
        if revert.action == action.name:
            self.report(path + ("action",), f"{what} cannot revert itself; name the action that undoes it")
            return
        undoing = next((a for _, a in self.cfg.actions if a.name == revert.action), None)
        if undoing is not None and undoing.revert is not None:
            self.report(path + ("action",), f"the revert of {what} is action '{revert.action}', which declares a revert itself; reverts do not chain")
        self.runbook_entry(path, revert.action, revert.params, scope, what, entry="revert", owner="the revert")
        if revert.when is not None:
            _, value = self.cel(path + ("when",), revert.when, scope, f"the `when` of the revert of {what}")
            self.expect(path + ("when",), value, ("bool",), f"the `when` of the revert of {what}", "a bool")

    def placeholders(self, path: DocPath, value: Any, declared: set[str] | None, what: str) -> None:
        if declared is None:
            return
        for text in _strings(value):
            for name in PLACEHOLDER.findall(text):
                if name not in declared:
                    self.report(path, f"'{{{name}}}' in {what} is not a declared param; {_names_hint(name, declared, 'params')}")

    def json_schema(self, path: DocPath, schema: Any, what: str) -> bool:
        error = _schema_error(schema)
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            self.report(path, f"{what} is not a valid JSON Schema: {error.message}" + (f" (at {where})" if where else ""))
            return False
        return True

    def check_prompts(self) -> None:
        prompts = self.cfg.prompts
        if prompts is None:
            return
        allowed = set(templates.PROMPT_VARIABLES)
        for name in ("system", "ticket"):
            inline = getattr(prompts, name)
            if inline is not None:
                self.template(("prompts", name), inline, allowed, f"the {name} prompt")
            rel = getattr(prompts, f"{name}_file")
            if rel is not None:
                file = self.file_exists(("prompts", f"{name}_file"), rel, f"{name} prompt file")
                if file is not None:
                    source = _read_text(file)
                    if source is None:
                        self.report(("prompts", f"{name}_file"), f"{name} prompt file '{rel}' is not UTF-8 text")
                    else:
                        self.template(("prompts", f"{name}_file"), source, allowed, f"the {name} prompt", file=file)

    def check_diagnosis(self) -> None:
        diagnosis = self.cfg.diagnosis
        if diagnosis is not None and diagnosis.replay_file is not None:
            self.file_exists(("diagnosis", "replay_file"), diagnosis.replay_file, "replay file")

    def check_unused_observations(self) -> None:
        if not self.cfg.entries_complete:
            return
        for name in sorted(set(self.cfg.observations) - self.used_observations):
            self.report(("observations", name), f"observation '{name}' is not used by any invariant, guard, template or runbook", "warning", key=True)

    def duplicate(self, seen: dict[str, int], name: str, index: int, base: DocPath, what: str) -> None:
        if name in seen:
            first = self.doc.mark_for((base[0], seen[name], "name"))
            self.report(base + ("name",), f"duplicate {what} name '{name}' (first defined at line {first.line})")
        else:
            seen[name] = index


def run_checks(doc: LoadedDocument, partial: PartialConfig, strict: bool = False) -> list[Problem]:
    return Checker(doc, partial, strict).run()


def _source_type(obs: Observation) -> ct.T:
    """The type of an observation's raw value by its source kind (before `select`)."""
    if obs.prometheus is not None:
        return ct.PROMETHEUS
    if obs.metrics is not None:
        return ct.METRICS
    if obs.redis is not None:
        return ct.redis_reply(command_name(obs.redis.command))
    return ct.DYN


def _fits(value: ct.T, wanted: ct.T) -> bool:
    """Whether a value of type `value` may be valid for a param of type `wanted`."""
    kinds = {kind_of(m) for m in ct.members(wanted)}
    if "dyn" in kinds:
        return True
    if "double" in kinds:
        kinds.add("int")  # JSON Schema's number takes integers
    return could_be(value, *kinds)


def _json_kinds(wanted: ct.T) -> str:
    kinds = sorted({_JSON_TYPE.get(kind_of(m), kind_of(m)) for m in ct.members(wanted)})
    return _article(" or ".join(kinds))


def _article(text: str) -> str:
    return ("an " if text[:1] in "aeio" else "a ") + text


# ---------------------------------------------------------------------------- helpers


def _names_hint(name: str, allowed: Iterable[str], what: str = "names declared here") -> str:
    names = sorted(allowed)
    close = difflib.get_close_matches(name, names, n=1)
    listing = f"{what}: {', '.join(names)}" if names else f"no {what} are declared"
    return (f"did you mean '{close[0]}'? " if close else "") + listing


def _is_valid_schema(schema: Any) -> bool:
    return _schema_error(schema) is None and isinstance(schema, dict)


def _schema_error(schema: Any) -> jsonschema.SchemaError | None:
    """The error `check_schema` raises for `schema` (JSON Schema 2020-12), or None.

    Checking a schema against the metaschema takes milliseconds, and the same schemas come back:
    each runbook entry checks its action's params again, and a process that validates many
    configs (`opctl test`, `opctl validate dir/`) sees the same actions over and over. So plain
    JSON schemas are checked once per distinct text (key order included: it decides which error
    comes first); anything else YAML can hold (dates, non-string keys) is checked every time."""
    if _plain_json(schema):
        return _schema_error_of_text(json.dumps(schema))
    return _check_schema(schema)


def _plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    return value is None or isinstance(value, (str, int, float))  # bool is an int


@functools.lru_cache(maxsize=1024)
def _schema_error_of_text(text: str) -> jsonschema.SchemaError | None:
    return _check_schema(json.loads(text))


def _check_schema(schema: Any) -> jsonschema.SchemaError | None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _http_template_fields(action: Action) -> Iterator[tuple[DocPath, Any]]:
    assert action.http is not None
    yield ("path",), action.http.path
    for k, v in action.http.query.items():
        yield ("query", k), v
    for k, v in action.http.headers.items():
        yield ("headers", k), v
    if action.http.body is not None:
        yield ("body",), action.http.body


def _read_text(file: Path) -> str | None:
    try:
        return file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def _first_line_of(source: str, name: str) -> int:
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for number, line in enumerate(source.splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1
