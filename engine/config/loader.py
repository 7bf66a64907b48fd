"""YAML text -> plain data + the position of every value, with `${VAR}` interpolation.

The loader never raises for a user's file: every defect becomes a `Problem` naming the file,
line and column. It composes its own node tree from parser events (iteratively, so deep
nesting cannot exhaust the Python stack), keeps each node's position, refuses duplicate keys,
and bounds alias expansion ("billion laughs") before any data is built.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from engine.config.problems import DocPath, Problem, shorten

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 1_000_000
KEY_SUFFIX = "__key__"

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE, _TIMESTAMP = (_TAG + t for t in ("seq", "map", "merge", "timestamp"))

# Same character class PyYAML's reader refuses; checked up front to report a clear position.
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", re.IGNORECASE)
_EMPTY_MESSAGE = (
    "the file is empty; expected a mapping with `version`, `subject`, `observations`, "
    "`invariants`, ..."
)


class _ConfigResolver(Resolver):
    """SafeLoader's YAML 1.1 scalar resolution, minus timestamps: data stays plain str."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class LoadedDocument:
    file: str
    base_dir: Path
    data: Any
    marks: dict[DocPath, Mark]
    secrets: frozenset[str]
    text: str = ""  # the YAML source, for positions inside string values
    styles: dict[DocPath, str | None] = field(default_factory=dict)  # YAML style of each string value
    # the text as written of every string value that had `${...}` expanded
    interpolated: dict[DocPath, str] = field(default_factory=dict)
    env_values: dict[DocPath, tuple[str, ...]] = field(default_factory=dict)  # values taken from the environment, by place

    def position_in(self, path: DocPath, offset: int, value: str | None = None) -> Mark:
        """Where character `offset` (0-based) of the string value at `path` is written (of its
        text as written before `${...}` expansion when `value` is that text).

        Walks the value and its source text together, non-blank character by non-blank
        character: YAML folds line breaks and indentation of plain and block scalars into
        spaces, and quoted styles write `''` or backslash escapes for one character. Falls back
        to the value's start when the source cannot be followed (an alias, interpolation)."""
        start = self.marks.get(tuple(path))
        if value is None:
            value = _get(self.data, path)
            if tuple(path) in self.interpolated:
                return self.mark_for(path)
        if start is None or not isinstance(value, str) or not self.text:
            return self.mark_for(path)
        lines = self.text.split("\n")
        if start.line > len(lines):
            return start
        i = sum(len(line) + 1 for line in lines[: start.line - 1]) + start.column - 1
        style = self.styles.get(tuple(path))
        text = self.text
        if style in ("'", '"'):
            i += 1
        elif style in ("|", ">"):
            newline = text.find("\n", i)
            i = newline + 1 if newline >= 0 else i
        for k, ch in enumerate(value):
            if ch.isspace():
                if k >= offset:
                    offset = k + 1  # a blank: point at the next written character
                continue
            while i < len(text) and text[i].isspace():
                i += 1
            if i >= len(text):
                return start
            if k >= offset:
                return _mark_at(text, i)
            if style == "'" and text.startswith("''", i):
                i += 2
            elif style == '"' and text[i] == "\\":
                i += {"x": 4, "u": 6, "U": 10}.get(text[i + 1: i + 2], 2)
            else:
                i += 1
        return _mark_at(text, i) if i < len(text) else start

    def mark_for(self, path: DocPath) -> Mark:
        """The exact mark, else the nearest recorded ancestor's, else the document start."""
        path = tuple(path)
        while True:
            mark = self.marks.get(path)
            if mark is not None:
                return mark
            if not path:
                return Mark(1, 1)
            path = path[:-1]

    def key_mark_for(self, path: DocPath) -> Mark:
        """Where the key of `path` is written (for "unknown key" errors), else `mark_for`."""
        path = tuple(path)
        return self.marks.get(path + (KEY_SUFFIX,)) or self.mark_for(path)


@dataclass(slots=True)
class _Node:
    """A composed YAML node; collections share `value` lists when reached through aliases."""

    kind: Literal["scalar", "seq", "map"]
    tag: str
    start: Mark
    value: Any  # str | list[_Node] | list[tuple[_Node, _Node]]
    style: str | None = None
    single_line: bool = True
    size: int = 1  # values after alias expansion
    height: int = 1  # nesting levels after alias expansion


class _Refused(Exception):
    """Internal: the stream cannot be used at all; carries the problem's position and text."""

    def __init__(self, mark: Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def load_document(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[LoadedDocument | None, list[Problem]]:
    """Read and load one YAML config file; see `load_document_text`."""
    file = str(path)
    file_path = Path(path)

    def refuse(message: str, line: int = 0) -> tuple[None, list[Problem]]:
        return None, [Problem(file, line, 0 if line == 0 else 1, (), message)]

    try:
        mode = file_path.stat().st_mode
        if stat.S_ISDIR(mode):
            return refuse("is a directory; expected a YAML file")
        if not stat.S_ISREG(mode):
            return refuse("is not a regular file; expected a YAML file")
        with file_path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return refuse("file not found")
    except PermissionError:
        return refuse("cannot read the file: permission denied")
    except OSError as exc:
        return refuse(f"cannot read the file: {exc.strerror or exc}")
    if len(raw) > MAX_BYTES:
        return refuse(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB; a config this big is refused")
    if b"\x00" in raw:
        return refuse("not a text file (it contains NUL bytes); expected UTF-8 YAML", _line_of(raw, raw.index(b"\x00")))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return refuse(f"not a text file (invalid UTF-8 at byte {exc.start}); expected UTF-8 YAML", _line_of(raw, exc.start))
    return load_document_text(text, file, file_path.absolute().parent, env)


def load_document_text(
    text: str, file: str, base_dir: Path, env: Mapping[str, str] | None = None
) -> tuple[LoadedDocument | None, list[Problem]]:
    """Load YAML text. `None` plus problems when the text cannot be used at all; otherwise
    the document plus any problems found while building it (duplicate keys, unset variables...)."""
    if env is None:
        env = os.environ
    try:
        root = _compose(text)
    except _Refused as refused:
        line, column = (refused.mark.line, refused.mark.column) if refused.mark else (0, 0)
        return None, [Problem(file, line, column, (), refused.message)]
    if root is None or (root.kind == "scalar" and root.tag == _NULL and root.value == ""):
        return None, [Problem(file, 1, 1, (), _EMPTY_MESSAGE)]
    if root.kind != "map":
        return None, [
            Problem(file, root.start.line, root.start.column, (), f"the document must be a mapping, got {_describe(root)}")
        ]
    builder = _Builder(file, env)
    try:
        data = builder.build(root, ())
    except RecursionError:  # depth is bounded by MAX_DEPTH; only a caller already deep in its stack gets here
        return None, [Problem(file, 0, 0, (), f"nesting too deep; at most {MAX_DEPTH} levels are allowed")]
    document = LoadedDocument(
        file=file, base_dir=base_dir, data=data, marks=builder.marks, secrets=frozenset(builder.secrets),
        text=text.removeprefix("\ufeff"), styles=builder.styles, interpolated=builder.interpolated,
        env_values={path: tuple(values) for path, values in builder.env_values.items()},
    )
    return document, builder.problems()


# --- composing: parser events -> _Node tree --------------------------------------------------


def _compose(text: str) -> _Node | None:
    """The single document's root node, or None for a stream without documents."""
    if len(text) > MAX_BYTES:
        raise _Refused(None, f"the text is larger than {MAX_BYTES // (1024 * 1024)} MB; a config this big is refused")
    if "\x00" in text:
        raise _Refused(None, "not a text file (it contains NUL characters); expected UTF-8 YAML")
    text = text.removeprefix("\ufeff")
    bad = _NON_PRINTABLE.search(text)
    if bad:
        raise _Refused(
            _mark_at(text, bad.start()),
            f"the file contains the control character U+{ord(bad.group()):04X}, which YAML does not allow",
        )
    try:
        return _compose_events(yaml.parse(text, Loader=_event_loader()))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _mark(mark) if mark is not None else None
        detail = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in detail:  # libyaml's own limit, met while scanning ahead
            raise _Refused(where, f"nesting too deep; at most {MAX_DEPTH} levels are allowed") from None
        if exc.context and exc.problem and exc.context_mark is not None:
            detail += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise _Refused(where, f"YAML syntax error: {detail}") from None
    except yaml.YAMLError as exc:
        raise _Refused(None, f"YAML syntax error: {exc}") from None
    except RecursionError:
        raise _Refused(None, f"nesting too deep; at most {MAX_DEPTH} levels are allowed") from None


def _event_loader() -> type:
    # libyaml parses ~20x faster than the pure-Python parser; positions are the same.
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_events(events: Any) -> _Node | None:
    resolver = _ConfigResolver()
    anchors: dict[str, _Node] = {}
    # Each frame: [collection node, pending mapping key, anchor to register when it closes].
    stack: list[list[Any]] = []
    root: _Node | None = None
    documents = 0

    def attach(node: _Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        frame = stack[-1]
        parent: _Node = frame[0]
        parent.size += node.size
        if parent.size > MAX_VALUES:
            raise _Refused(
                node.start,
                f"the document expands to more than {MAX_VALUES:,} values (counting every use of "
                "an alias); a config this big is refused",
            )
        if len(stack) + node.height > MAX_DEPTH:
            raise _Refused(node.start, f"nesting too deep; at most {MAX_DEPTH} levels are allowed")
        if parent.kind == "seq":
            parent.value.append(node)
        elif frame[1] is None:
            frame[1] = node
        else:
            parent.value.append((frame[1], node))
            frame[1] = None

    for event in events:
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Refused(
                    _mark(event.start_mark),
                    "expected one YAML document, found several; remove the `---` separator or split the file",
                )
        elif isinstance(event, ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(ScalarNode, event.value, event.implicit)
            node = _Node(
                "scalar",
                tag,
                _mark(event.start_mark),
                event.value,
                style=event.style,
                single_line=event.start_mark.line == event.end_mark.line,
            )
            attach(node)
            if event.anchor is not None:
                anchors[event.anchor] = node
        elif isinstance(event, CollectionStartEvent):
            kind: Literal["seq", "map"] = "seq" if isinstance(event, SequenceStartEvent) else "map"
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(SequenceNode if kind == "seq" else MappingNode, None, event.implicit)
            if len(stack) >= MAX_DEPTH:
                raise _Refused(_mark(event.start_mark), f"nesting too deep; at most {MAX_DEPTH} levels are allowed")
            # Attached when it closes, once its size and height are known.
            stack.append([_Node(kind, tag, _mark(event.start_mark), [], size=1, height=1), None, event.anchor])
        elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
            node, _, anchor = stack.pop()
            children = node.value if node.kind == "seq" else [v for pair in node.value for v in pair]
            node.height = 1 + max((child.height for child in children), default=0)
            attach(node)
            # Registered only once closed, so an alias can never refer to its own ancestor.
            if anchor is not None:
                anchors[anchor] = node
        elif isinstance(event, AliasEvent):
            target = anchors.get(event.anchor)
            if target is None:
                raise _Refused(
                    _mark(event.start_mark),
                    f"alias *{event.anchor} refers to no anchor &{event.anchor} defined before it",
                )
            attach(replace(target, start=_mark(event.start_mark)))
    return root


# --- building: _Node tree -> plain data, marks, problems -------------------------------------


@dataclass
class _Builder:
    file: str
    env: Mapping[str, str]
    marks: dict[DocPath, Mark] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    styles: dict[DocPath, str | None] = field(default_factory=dict)
    interpolated: dict[DocPath, str] = field(default_factory=dict)
    env_values: dict[DocPath, list[str]] = field(default_factory=dict)
    _problems: list[Problem] = field(default_factory=list)
    _constructor: SafeConstructor = field(default_factory=SafeConstructor)

    def problems(self) -> list[Problem]:
        # Values reached through aliases are built once per use; report each place once.
        seen: set[tuple[int, int, str]] = set()
        unique = []
        for problem in self._problems:
            key = (problem.line, problem.column, problem.message)
            if key not in seen:
                seen.add(key)
                unique.append(problem)
        return sorted(unique, key=lambda problem: (problem.line, problem.column))

    def report(self, mark: Mark, path: DocPath, message: str) -> None:
        self._problems.append(Problem(self.file, mark.line, mark.column, path, message))

    def build(self, node: _Node, path: DocPath) -> Any:
        self.marks[path] = node.start
        if node.kind == "map":
            if node.tag != _MAP:
                self.report(node.start, path, _unsupported_tag(node.tag))
            data = {}
            for key, (key_node, value_node) in self._entries(node, path, set()).items():
                self.marks[path + (key, KEY_SUFFIX)] = key_node.start
                data[key] = self.build(value_node, path + (key,))
            return data
        if node.kind == "seq":
            if node.tag != _SEQ:
                self.report(node.start, path, _unsupported_tag(node.tag))
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _entries(self, node: _Node, path: DocPath, merging: set[int]) -> dict[str, tuple[_Node, _Node]]:
        """Key -> (key node, value node) of a mapping, with `<<` merge keys applied: the
        mapping's own keys win over merged ones, earlier merged mappings over later ones."""
        own: dict[str, tuple[_Node, _Node]] = {}
        merged: dict[str, tuple[_Node, _Node]] = {}
        merging = merging | {id(node.value)}
        for key_node, value_node in node.value:
            if key_node.kind == "scalar" and key_node.tag == _MERGE:
                for source in self._merge_sources(value_node, path):
                    if id(source.value) in merging:
                        continue
                    for key, entry in self._entries(source, path, merging).items():
                        merged.setdefault(key, entry)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in own:
                first = own[key][0].start
                self.report(
                    key_node.start, path + (key,), f"duplicate key {key!r} (first defined at line {first.line})"
                )
                continue
            own[key] = (key_node, value_node)
        return {**merged, **own}

    def _merge_sources(self, value_node: _Node, path: DocPath) -> list[_Node]:
        if value_node.kind == "map":
            return [value_node]
        if value_node.kind == "seq" and all(item.kind == "map" for item in value_node.value):
            return list(value_node.value)
        self.report(value_node.start, path, "a merge key `<<` needs a mapping or a list of mappings (e.g. `<<: *defaults`)")
        return []

    def _key(self, key_node: _Node, path: DocPath) -> str | None:
        if key_node.kind == "scalar" and key_node.tag == _STR:
            return str(key_node.value)
        if key_node.kind == "scalar" and key_node.tag in (_INT, _FLOAT, _BOOL, _NULL):
            hint = f"; write '{key_node.value}' in quotes if you meant the word" if key_node.value else ""
            self.report(key_node.start, path, f"mapping keys must be strings, got {_describe(key_node)}{hint}")
        elif key_node.kind == "scalar":
            self.report(key_node.start, path, f"mapping keys must be strings; {_unsupported_tag(key_node.tag)}")
        else:
            self.report(key_node.start, path, f"mapping keys must be strings, got {_describe(key_node)}")
        return None

    def _scalar(self, node: _Node, path: DocPath) -> Any:
        text: str = node.value
        if node.tag == _STR:
            self.styles[path] = node.style or None
            if "${" in text:
                self.interpolated[path] = text
            return self._interpolate(node, path)
        if node.tag in (_INT, _FLOAT, _BOOL, _NULL):
            construct = {
                _INT: self._constructor.construct_yaml_int,
                _FLOAT: self._constructor.construct_yaml_float,
                _BOOL: self._constructor.construct_yaml_bool,
                _NULL: self._constructor.construct_yaml_null,
            }[node.tag]
            try:
                return construct(ScalarNode(node.tag, text))
            except (ValueError, LookupError, ArithmeticError):  # e.g. `!!int abc`, `!!bool maybe`, `!!int ""`
                kind = node.tag.removeprefix(_TAG)
                self.report(node.start, path, f"{shorten(text)!r} is not a valid {kind}; kept as a string")
                return text
        if node.tag in (_TIMESTAMP, _MERGE):
            return text
        self.report(node.start, path, _unsupported_tag(node.tag))
        return text

    def _interpolate(self, node: _Node, path: DocPath) -> str:
        """Expand `${VAR}` / `${VAR:-default}`; `$${` is a literal `${`. Unset -> empty + problem."""
        text: str = node.value
        if "$" not in text:
            return text
        out: list[str] = []
        index = 0
        while True:
            dollar = text.find("$", index)
            if dollar < 0:
                out.append(text[index:])
                break
            out.append(text[index:dollar])
            if text.startswith("$${", dollar):
                out.append("${")
                index = dollar + 3
                continue
            if not text.startswith("${", dollar):
                out.append("$")
                index = dollar + 1
                continue
            where = self._offset_mark(node, dollar)
            close = text.find("}", dollar + 2)
            if close < 0:
                self.report(where, path, f"unclosed `${{` in {shorten(text)!r}; write ${{NAME}}, or $${{ for a literal ${{")
                out.append(text[dollar:])
                break
            reference = text[dollar : close + 1]
            name, has_default, default = text[dollar + 2 : close].partition(":-")
            index = close + 1
            if not _VAR_NAME.fullmatch(name) or "${" in default:
                self.report(
                    where,
                    path,
                    f"invalid variable reference {reference}; write ${{NAME}} or ${{NAME:-default}} "
                    "(NAME: letters, digits, underscores; no nesting), or $${ for a literal ${",
                )
                out.append(reference)
                continue
            value = self.env.get(name)
            if value:
                self.env_values.setdefault(path, []).append(value)
            if has_default and not value:
                value = default
            if value and _SECRET_NAME.search(name):  # a default of a secret-named variable is one too
                self.secrets.add(value)
            elif value is None:
                self.report(
                    where,
                    path,
                    f"environment variable {name} is not set and has no default; "
                    f"set it or write ${{{name}:-default}}",
                )
                value = ""
            out.append(value)
        return "".join(out)

    @staticmethod
    def _offset_mark(node: _Node, offset: int) -> Mark:
        # In a one-line plain scalar the value is exactly the source text, so the column is exact.
        if not node.style and node.single_line:  # plain style: None (PyYAML) or "" (libyaml)
            return Mark(node.start.line, node.start.column + offset)
        return node.start


# --- small helpers ---------------------------------------------------------------------------


def _mark(mark: Any) -> Mark:
    return Mark(mark.line + 1, mark.column + 1)


def _get(data: Any, path: DocPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _mark_at(text: str, index: int) -> Mark:
    line_start = text.rfind("\n", 0, index) + 1
    return Mark(text.count("\n", 0, index) + 1, index - line_start + 1)


def _line_of(raw: bytes, index: int) -> int:
    return raw.count(b"\n", 0, index) + 1


def _describe(node: _Node) -> str:
    if node.kind == "seq":
        return "a list"
    if node.kind == "map":
        return "a mapping"
    return {
        _STR: "a string",
        _INT: f"the number {shorten(node.value)}",
        _FLOAT: f"the number {shorten(node.value)}",
        _BOOL: f"the boolean {shorten(node.value)}",
        _NULL: "null",
    }.get(node.tag, f"a value tagged {node.tag}")


def _unsupported_tag(tag: str) -> str:
    shown = "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
    return (
        f"unsupported YAML tag {shown}; only plain mappings, lists, strings, numbers, "
        "booleans and null are allowed"
    )


