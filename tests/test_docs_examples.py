"""Every YAML example in the README and docs/ is valid. Each ```yaml block follows a marker that
says what it is: `<!-- example: Model -->` (an entry of that model), `<!-- example: Model.key -->`
(one field's value), `<!-- file: PATH -->` (a whole file at PATH in the repository: written
into a copy of it and validated like `opctl validate` does), `<!-- broken: NAME -->` (a config
that shows mistakes: it must have problems) or `<!-- rls-config: NAME -->` (the limiter's Envoy
descriptor configuration: loaded by the limiter). A block without a marker fails."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from engine.config.docs import models_of
from engine.config.introspect import field_key
from engine.config.loader import load_document_text
from engine.config.models import Config
from engine.docs import references
from engine.documents import validate_paths
from engine.lab.models import Lab
from engine.testing.model import TestFile
from ratelimiter_service.rls.config import load_rls_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (?P<marker>example|file|broken|rls-config): (?P<what>\S+) -->\n)?```yaml\n(?P<body>.*?)```", re.DOTALL)
# a generated reference names the models of its own language (lab files and test files both have an `Expect`)
ROOTS = {path: ref.root for path, ref in references().values()}


def models_for(doc: Path) -> dict[str, type[BaseModel]]:
    roots = [ROOTS[doc]] if doc in ROOTS else [Config, Lab, TestFile]
    return {m.__name__: m for root in reversed(roots) for m in models_of(root)}


def blocks(doc: Path) -> list[tuple[str | None, str, str]]:
    return [(m["marker"], m["what"], m["body"]) for m in BLOCK.finditer(doc.read_text())]


def loaded(body: str, where: str) -> Any:
    doc, problems = load_document_text(body, where, ROOT, env={})
    assert doc is not None and not problems, (where, problems)
    return doc.data


def check_example(models: dict[str, type[BaseModel]], what: str, body: str, where: str) -> None:
    model_name, _, key = what.partition(".")
    model = models[model_name]
    data = loaded(body, where)
    try:
        if not key:
            model.model_validate(data)
            return
        assert set(data) == {key}, f"{where}: a `{what}` example holds only `{key}`"
        name = next(n for n, info in model.model_fields.items() if field_key(n, info) == key)
        info = model.model_fields[name]
        TypeAdapter(Annotated[info.annotation, info]).validate_python(data[key])
    except ValidationError as exc:
        pytest.fail(f"{where}: the `{what}` example does not validate:\n{exc}")


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_yaml_example_is_valid(doc: Path, tmp_path: Path) -> None:
    files: dict[str, str] = {}
    for index, (marker, what, body) in enumerate(blocks(doc)):
        where = f"{doc.relative_to(ROOT)} (yaml block {index + 1})"
        assert marker is not None, f"{where} has no `<!-- example: ... -->` or `<!-- file: ... -->` marker"
        if marker == "example":
            check_example(models_for(doc), what, body, where)
        elif marker == "rls-config":
            rls = tmp_path / "rls" / what
            rls.parent.mkdir(parents=True, exist_ok=True)
            rls.write_text(body)
            assert load_rls_config(str(rls), algorithm="sliding_window", failure_mode="open").domains, where
        elif marker == "broken":
            shown = tmp_path / "broken" / what
            shown.parent.mkdir(parents=True, exist_ok=True)
            shown.write_text(body)
            assert [p for p in validate_paths([shown], env={}) if p.severity == "error"], f"{where}: a broken example validates"
        else:
            files[what] = body
    if not files:
        return
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / ".opctl-root", copy)  # configs/ names ../subjects/: one project root
    for part in ("configs", "subjects", "examples", "schemas"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    for relative, body in files.items():
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        (copy / relative).write_text(body)
    problems = validate_paths([copy / relative for relative in files], env={})
    assert problems == [], "\n".join(p.as_text() for p in problems)


def test_markers_are_found() -> None:
    found = [marker for doc in DOCS for marker, _, _ in blocks(doc)]
    assert found.count("example") > 50 and found.count("file") >= 4
