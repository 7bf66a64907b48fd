"""What ships stays true: configs valid, schema and reference fresh, editors pointed at the schema."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.config.docs import render_config_reference
from engine.config.schema import config_schema_text
from engine.documents import validate_paths

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_shipped_configs_are_valid_without_warnings() -> None:
    assert CONFIGS, "no shipped configs"
    assert validate_paths(CONFIGS, env={}) == []


def test_opctl_validate_configs_exits_zero() -> None:
    result = CliRunner().invoke(main, ["validate", str(ROOT / "configs")])
    assert result.exit_code == 0, result.output


def test_shipped_configs_point_editors_at_the_schema() -> None:
    for config in CONFIGS:
        first = config.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/opctl.schema.json", config


def test_committed_schema_is_fresh() -> None:
    committed = (ROOT / "schemas" / "opctl.schema.json").read_text()
    assert committed == config_schema_text(), "schemas/opctl.schema.json is stale: run `opctl schema > schemas/opctl.schema.json`"


def test_opctl_schema_prints_it() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.output == config_schema_text()


def test_config_reference_is_fresh() -> None:
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == render_config_reference(CONFIGS), "docs/config.md is stale: run `python -m engine.config.docs`"
