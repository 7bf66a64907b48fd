"""docs/tutorial.md followed from scratch in a fresh copy of the repository: its files written
and its shell commands run in order (blocks marked `<!-- tutorial-test: skip ... -->` are
interactive or set-up the test does itself), ending in a passing demo. The files it writes
are exactly the ones that ship in examples/beehive/, so the page and the example cannot drift."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"(?:<!-- (?P<marker>file: \S+|tutorial-test: skip[^>]*) -->\n)?```(?P<lang>sh|yaml)\n(?P<body>.*?)```", re.DOTALL)


def steps() -> list[tuple[str, str | None, str]]:
    """("file", path, text) and ("sh", None, script) in the page's order; skipped blocks left out."""
    out: list[tuple[str, str | None, str]] = []
    for match in BLOCK.finditer(TUTORIAL.read_text()):
        marker = match["marker"] or ""
        if marker.startswith("tutorial-test: skip"):
            continue
        if match["lang"] == "yaml":
            assert marker.startswith("file: "), f"a yaml block of the tutorial has no file marker: {match['body'][:60]!r}"
            out.append(("file", marker.removeprefix("file: "), match["body"]))
        else:
            out.append(("sh", None, match["body"]))
    return out


def fresh_copy(into: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, not ignored), and its .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (into / ".venv").symlink_to(ROOT / ".venv")
    return into


@pytest.mark.slow
def test_the_tutorial_from_scratch_ends_in_a_passing_demo(tmp_path: Path) -> None:
    copy = fresh_copy(tmp_path / "opctl")
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "OPCTL_CONFIG")}
    env["BEEHIVE_PORT"] = str(free_port())
    written: list[str] = []
    last = ""
    for kind, path, body in steps():
        if kind == "file":
            assert path is not None
            (copy / path).parent.mkdir(parents=True, exist_ok=True)
            (copy / path).write_text(body)
            written.append(path)
            continue
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=copy, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"$ {body}\n{done.stdout}\n{done.stderr}"
        if "opctl demo" in body:
            last = done.stdout
        if body.startswith("rm "):
            assert not (copy / "examples" / "beehive" / "beehive.yaml").exists()
    assert written == ["examples/beehive/beehive.yaml", "examples/beehive/lab.yaml", "examples/beehive/tests/bees.yaml"]
    for path in written:
        assert (copy / path).read_text() == (ROOT / path).read_text(), f"{path} in the tutorial differs from the shipped one"
    result = json.loads(last.strip().splitlines()[-1])
    assert result == {**result, "scenario": "stuck_bee", "ok": True, "actions": ["restart_bee"], "mode": "execute"}
    assert "inspect this run: opctl tickets list --store .opctl/lab/beehive/demos/stuck_bee-" in last
