"""Pydantic validation errors as located problems, for every kind of YAML file opctl reads
(configs, lab files, test files): the document path, the position, and a message that says
what is wrong and what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.config.introspect import descend, keys_of
from engine.config.loader import LoadedDocument
from engine.config.problems import DocPath, Problem, shorten


def schema_problems(doc: LoadedDocument, exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """Each error of a model validation as a located Problem with a readable message."""
    out = []
    for error in exc.errors(include_url=False):
        path, rest = _doc_path(doc.data, error["loc"])
        message, key_position = _message(error, path, rest, root)
        mark = doc.key_mark_for(path) if key_position else doc.mark_for(path)
        out.append(Problem(doc.file, mark.line, mark.column, path, message))
    return out


def _doc_path(data: Any, loc: tuple[Any, ...]) -> tuple[DocPath, list[Any]]:
    """Follow pydantic's loc through the document, dropping union tags such as 'str'.

    Returns the deepest path that exists in the document, and the loc parts past it.
    """
    path: list[str | int] = []
    current = data
    rest = list(loc)
    while rest:
        part = rest[0]
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(part, str) and (part.startswith(_TAG_PREFIXES) or part in _TYPE_TAGS or rest[1:]):
            # a union or validator tag such as 'str', 'literal[...]', 'function-after[...]'
            rest.pop(0)
            continue
        else:
            break
        path.append(part)
        rest.pop(0)
    return tuple(path), rest


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal", "is-instance"}
_TAG_PREFIXES = ("function-", "tagged-union", "literal[", "dict[", "list[")


def _message(error: Mapping[str, Any], path: DocPath, rest: list[Any], root: type[BaseModel]) -> tuple[str, bool]:
    kind = error["type"]
    where = f"'{path[-1]}'" if path else "the document"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, path[:-1])
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{path[-1]}'{hint}", True
    if kind == "missing":
        missing = rest[0] if rest else path[-1] if path else "?"
        return f"missing required key '{missing}'", True
    text = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if kind in ("value_error", "assertion_error"):
        return text, False
    if kind == "literal_error":
        return f"{where} must be one of {error['ctx']['expected']} (got {error['input']!r})", False
    return f"{where}: {text[0].lower()}{text[1:]} (got {shorten(repr(error.get('input')), 60)})", False




def _allowed_keys(root: type[BaseModel], path: DocPath) -> list[str]:
    """Keys the model at `path` accepts, for 'unknown key' messages."""
    annotation: Any = root
    for part in path:
        annotation = descend(annotation, part)
        if annotation is None:
            return []
    return keys_of(annotation)
