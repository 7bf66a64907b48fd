"""Generated references of opctl's file languages: every section and field, each with an example.

    render_reference(Reference(Config, ...))   # the text of docs/config.md (see engine.docs)

One section per model reachable from the document's model, in document order: a table of its
fields (key, type, default, description) and examples that are real: whole entries found in
the shipped files (the first one, then more only for fields the first leaves out, so no example
mixes keys that exclude each other), or a field's declared `examples=[...]` when no shipped file
uses it. A field with neither is an error, so a reference cannot silently lose its examples.
The document's own example is a whole shipped file.

Every example is preceded by a marker that tells tests/test_docs_examples.py how to check it:
`<!-- example: Model -->` (an entry of that model), `<!-- example: Model.key -->` (one field's
value) or `<!-- file: PATH -->` (a whole file at PATH, from the repository root).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from engine.config.introspect import descend, field_key, is_model, unwrap
from engine.config.loader import load_document
from engine.config.problems import shorten


@dataclass(frozen=True)
class Reference:
    """What one generated reference is made of.

    Attributes:
        root: the document's model.
        schema: its JSON Schema (with `$defs` for the nested models).
        sources: shipped files of this language, in the order examples are looked for.
        document_example: a whole shipped file shown as the document's example.
        repo: the repository root (`<!-- file: PATH -->` markers are relative to it).
        appendix: hand-written sections after the generated ones.
    """

    root: type[BaseModel]
    title: str
    intro: str
    document_title: str
    schema: dict[str, Any]
    sources: Sequence[Path]
    document_example: Path
    repo: Path
    appendix: str = ""


def models_of(root: type[BaseModel]) -> list[type[BaseModel]]:
    """`root` and every model reachable from it, in document order."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for child in _nested_models(info.annotation):
                visit(child)

    visit(root)
    return seen


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    annotation = unwrap(annotation)
    if is_model(annotation):
        return [annotation]
    out = []
    for part in ("x", 0):
        child = descend(annotation, part)
        if child is not None and child is not annotation:
            out.extend(_nested_models(child))
    return out


def collect_instances(root: type[BaseModel], files: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """model name -> every entry of that model in `files`, in order (as written, trimmed)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in files:
        doc, _ = load_document(path, env={})
        if doc is not None:
            for model, entry in _entries(root, doc.data):
                found.setdefault(model.__name__, []).append(_trim(model, entry))
    return found


def _entries(annotation: Any, data: Any) -> Iterator[tuple[type[BaseModel], dict[str, Any]]]:
    annotation = unwrap(annotation)
    if is_model(annotation) and isinstance(data, dict):
        yield annotation, data
        for key, value in data.items():
            child = descend(annotation, key)
            if child is not None:
                yield from _entries(child, value)
    elif isinstance(data, dict):
        child = descend(annotation, "x")
        if child is not None:
            for value in data.values():
                yield from _entries(child, value)
    elif isinstance(data, list):
        child = descend(annotation, 0)
        if child is not None:
            for value in data:
                yield from _entries(child, value)


def _trim(annotation: Any, value: Any) -> Any:
    """Keep examples short without breaking them: at most two items of a list or entries of a
    map, every key of a model's entry."""
    annotation = unwrap(annotation)
    if is_model(annotation) and isinstance(value, dict):
        return {k: _trim(descend(annotation, k), v) for k, v in value.items()}
    if isinstance(value, list):
        child = descend(annotation, 0) if annotation is not None else None
        return [_trim(child, v) for v in value[:2]]
    if isinstance(value, dict) and annotation is not None and descend(annotation, "x") is not None:
        child = descend(annotation, "x")
        return {k: _trim(child, v) for k, v in list(value.items())[:2]}
    return value


def render_reference(ref: Reference) -> str:
    instances = collect_instances(ref.root, ref.sources)
    defs = ref.schema.get("$defs", {})
    missing: list[str] = []
    lines = [f"# {ref.title}", "", ref.intro.strip(), ""]
    for model in models_of(ref.root):
        is_root = model is ref.root
        schema = ref.schema if is_root else defs.get(model.__name__, {})
        doc = (model.__doc__ or "").strip()
        lines += [f"## {ref.document_title if is_root else model.__name__}", "", doc.splitlines()[0] if doc else "", ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            key = field_key(name, info)
            prop = schema.get("properties", {}).get(key, {})
            required = key in schema.get("required", [])
            default = "required" if required else f"`{shorten(str(prop.get('default')))}`"
            description = (prop.get("description") or info.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{key}` | {_type(prop)} | {default} | {description} |")
        lines.append("")
        shown = set(yaml.safe_load(ref.document_example.read_text()) or {}) if is_root else set()
        examples, lacking = _examples(model, instances.get(model.__name__, []), whole=not is_root, covered=shown)
        missing += [f"{model.__name__}.{key}" for key in lacking]
        if is_root:
            relative = ref.document_example.relative_to(ref.repo).as_posix()
            lines += [f"Example: `{relative}`", "", f"<!-- file: {relative} -->", "```yaml", ref.document_example.read_text().rstrip(), "```", ""]
        for marker, value in examples:
            lines += ["Example:" if not is_root else f"Also `{marker.rpartition('.')[2]}`:", "", f"<!-- example: {marker} -->",
                      "```yaml", _dump(value), "```", ""]  # fmt: skip
    if missing:
        raise ValueError(f"no example for: {', '.join(missing)}; add `examples=[...]` to the field or use it in a shipped file")
    if ref.appendix:
        lines += [ref.appendix.strip(), ""]
    return "\n".join(lines)


def _examples(
    model: type[BaseModel], entries: list[dict[str, Any]], *, whole: bool, covered: set[str]
) -> tuple[list[tuple[str, Any]], list[str]]:
    """(marker, value) examples covering every field of `model` not yet `covered`, and the keys
    none covers. `whole`: whole entries, as few as cover the keys (each time the one that shows
    the most keys not yet shown; the first such); otherwise one example per field (for the
    document, whose example is a whole file)."""
    keys = [field_key(name, info) for name, info in model.model_fields.items()]
    wanted = [k for k in keys if k not in covered]
    out: list[tuple[str, Any]] = []
    if whole:
        while entries:
            best = max(entries, key=lambda e: sum(k in e for k in wanted))
            if not any(k in best for k in wanted):
                break
            out.append((model.__name__, best))
            wanted = [k for k in wanted if k not in best]
    lacking: list[str] = []
    for key in wanted:
        entry = next((e for e in entries if key in e), None)
        declared = model.model_fields[_field_name(model, key)].examples
        if entry is not None:
            out.append((f"{model.__name__}.{key}", {key: entry[key]}))
        elif declared:
            out.append((f"{model.__name__}.{key}", {key: declared[0]}))
        else:
            lacking.append(key)
    return out, lacking


def _field_name(model: type[BaseModel], key: str) -> str:
    return next(name for name, info in model.model_fields.items() if field_key(name, info) == key)


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    text = value.rstrip()
    if "\n" in text:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


_Dumper.add_representer(str, _text)


def _dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True).rstrip()


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"] if p.get("type") != "null")
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type(prop['additionalProperties'])}"
    if kind == "object" and prop.get("patternProperties"):
        return f"map of {_type(next(iter(prop['patternProperties'].values())))}"
    if prop.get("pattern", "").startswith("^(\\d+"):
        return "duration"
    return str(kind)
