"""What ships stays true: configs valid, schemas and references fresh, editors pointed at the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.docs import references
from engine.config.docs import render_reference
from engine.documents import kind_of, validate_paths
from engine.schemas import SCHEMA_FILES, schema_text

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SHIPPED = [ROOT / "configs", ROOT / "subjects", ROOT / "examples"]


def test_shipped_configs_are_valid_without_warnings() -> None:
    assert CONFIGS, "no shipped configs"
    assert validate_paths(CONFIGS, env={}) == []


def test_every_shipped_document_is_valid() -> None:
    assert validate_paths(SHIPPED, env={}) == []


def test_opctl_validate_configs_exits_zero() -> None:
    result = CliRunner().invoke(main, ["validate", str(ROOT / "configs")])
    assert result.exit_code == 0, result.output


def test_every_shipped_document_points_editors_at_its_schema() -> None:
    files = [p for d in SHIPPED for p in sorted(d.rglob("*.yaml"))]
    assert len(files) > 20
    for path in files:
        kind = kind_of(path, env={})
        assert kind is not None, path
        schema = (ROOT / "schemas" / SCHEMA_FILES[kind.name]).relative_to(ROOT)
        relative = Path(*[".."] * (len(path.relative_to(ROOT).parts) - 1), schema)
        first = path.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema={relative.as_posix()}", path


@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_committed_schemas_are_fresh(kind: str) -> None:
    committed = (ROOT / "schemas" / SCHEMA_FILES[kind]).read_text()
    assert committed == schema_text(kind), f"schemas/{SCHEMA_FILES[kind]} is stale: run `opctl schema {kind} > schemas/{SCHEMA_FILES[kind]}`"


def test_opctl_schema_prints_them() -> None:
    for kind in SCHEMA_FILES:
        result = CliRunner().invoke(main, ["schema", kind])
        assert result.exit_code == 0
        assert result.output == schema_text(kind)
    assert CliRunner().invoke(main, ["schema"]).output == schema_text("config")


@pytest.mark.parametrize("kind", ["config", "lab", "test"])
def test_references_are_fresh(kind: str) -> None:
    path, reference = references()[kind]
    assert path.read_text() == render_reference(reference), f"{path.relative_to(ROOT)} is stale: run `python -m engine.docs`"
