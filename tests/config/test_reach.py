"""A config names files only inside its root (engine/config/reach.py): `../` out of it and
absolute paths are refused at validate, and `opctl run` does not start; `opctl --allow-outside`
lets an absolute path through, never a relative escape."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
BEEHIVE = (ROOT / "examples" / "beehive" / "beehive.yaml").read_text()
CONTEXT = """  context: >
    Each bee heartbeats while it works. A bee whose last heartbeat is 2 s old or more is
    stuck: it takes no jobs, and the queue grows. Restarting a stuck bee is safe.
"""


def config_naming(folder: Path, reference: str) -> Path:
    assert CONTEXT in BEEHIVE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "beehive.yaml"
    path.write_text(BEEHIVE.replace(CONTEXT, f"  context_file: {reference}\n").replace("lab: lab.yaml\n", ""))
    return path


def opctl(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_relative_escape_is_refused_at_its_place_even_with_allow_outside(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("root:x:0:0\n")
    config = config_naming(tmp_path / "cfg", "../secret.txt")
    line = config.read_text().splitlines().index("  context_file: ../secret.txt") + 1
    for command in (["validate", str(config)], ["--allow-outside", "validate", str(config)], ["run", str(config), "--once"]):
        code, output = opctl(*command)
        assert code == 1, output
        assert f"{config}:{line}:" in output and "outside the config's root" in output and "root:x" not in output


def test_an_absolute_path_outside_needs_allow_outside(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "context.md"
    outside.parent.mkdir()
    outside.write_text("Bees are stuck when their heartbeat is old.\n")
    config = config_naming(tmp_path / "cfg", str(outside))
    code, output = opctl("validate", str(config))
    assert code == 1 and "opctl --allow-outside" in output, output
    code, output = opctl("--allow-outside", "validate", str(config))
    assert code == 0, output


def test_a_marked_project_root_lets_configs_name_its_other_folders(tmp_path: Path) -> None:
    (tmp_path / "subjects").mkdir()
    (tmp_path / "subjects" / "context.md").write_text("Bees heartbeat.\n")
    config = config_naming(tmp_path / "configs", "../subjects/context.md")
    assert opctl("validate", str(config))[0] == 1  # no marker: the config's own folder is its root
    (tmp_path / ".opctl-root").write_text("")
    code, output = opctl("validate", str(config))
    assert code == 0, output


def test_this_repository_is_marked_so_the_shipped_configs_reach_subjects() -> None:
    assert (ROOT / ".opctl-root").is_file()
    assert "../subjects/ratelimiter/context.md" in (ROOT / "configs" / "ratelimiter.yaml").read_text()
