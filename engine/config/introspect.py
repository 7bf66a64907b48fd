"""Walking the config models by document path (for error hints and generated docs)."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def field_key(name: str, info: Any) -> str:
    """The key a field has in YAML (its alias when it has one, e.g. `for`)."""
    return str(info.alias or name)


def descend(annotation: Any, part: str | int) -> Any:
    """The annotation one step down: a model's field, a dict's values, a list's items."""
    annotation = unwrap(annotation)
    if is_model(annotation):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return unwrap(info.annotation)
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return unwrap(args[1])
    if origin is list and args:
        return unwrap(args[0])
    return None


def keys_of(annotation: Any) -> list[str]:
    annotation = unwrap(annotation)
    if is_model(annotation):
        return [field_key(n, i) for n, i in annotation.model_fields.items()]
    return []
