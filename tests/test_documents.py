"""`opctl validate` over directories: opctl documents are told apart (config, lab, test) and
checked; other tools' YAML, hidden directories, virtual environments and node_modules are
skipped and reported with -v; results on stdout, diagnostics on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.documents import check_paths, kind_of

MINI = """\
version: 1
subject: {name: mini}
targets:
  api: {url: "http://127.0.0.1:9"}
observations:
  health: {http: {target: api, path: /health}, select: status}
invariants:
  - name: up
    expr: health == 200
"""
LAB = """\
version: 1
name: mini
processes:
  - name: web
    command: ["{python}", "-m", "http.server", "18999"]
    ready: {tcp: "127.0.0.1:18999"}
"""
TEST = """\
config: ../mini.yaml
fixtures:
  health: [{from: 0s, value: 200}]
cases:
  - name: fine
    at: 0s
    expect: {invariants: {up: ok}}
"""
COMPOSE = "services:\n  web: {image: nginx, ports: ['80:80']}\n"
BROKEN = "key: [unclosed\n"


def tree(root: Path) -> Path:
    files = {
        "mini.yaml": MINI,
        "lab/lab.yaml": LAB,
        "tests/fine.yaml": TEST,
        "compose.yaml": COMPOSE,
        "ci/workflow.yml": "on: push\njobs: {build: {runs-on: ubuntu-latest}}\n",
        ".venv/lib/site-packages/pkg/data.yaml": BROKEN,
        "venv/pyvenv.cfg": "home = /usr/bin\n",
        "venv/lib/x.yaml": BROKEN,
        "node_modules/pkg/.travis.yml": BROKEN,
        ".git/hooks/x.yaml": BROKEN,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_directory_walk_checks_opctl_documents_and_skips_the_rest(tmp_path: Path) -> None:
    root = tree(tmp_path)
    checked = check_paths([root], env={})
    assert checked.problems == []
    assert sorted((f.relative_to(root).as_posix(), kind) for f, kind in checked.files) == [
        ("lab/lab.yaml", "lab"), ("mini.yaml", "config"), ("tests/fine.yaml", "test"),
    ]  # fmt: skip
    skipped = {s.path.relative_to(root).as_posix(): s.reason for s in checked.skipped}
    assert set(skipped) == {".venv", ".git", "venv", "node_modules", "compose.yaml", "ci/workflow.yml"}
    assert skipped["venv"] == "a Python virtual environment" and skipped[".git"] == "hidden directory"
    assert skipped["compose.yaml"].startswith("not an opctl document")


def test_cli_results_on_stdout_and_what_was_skipped_on_stderr_with_v(tmp_path: Path) -> None:
    root = tree(tmp_path)
    quiet = CliRunner().invoke(main, ["validate", str(root)])
    assert quiet.exit_code == 0
    assert quiet.stdout == "valid\n" and quiet.stderr == ""
    verbose = CliRunner().invoke(main, ["validate", "-v", str(root)])
    assert verbose.exit_code == 0 and verbose.stdout == "valid\n"
    assert f"checked {root / 'mini.yaml'} (config)" in verbose.stderr
    assert f"skipped {root / '.venv'}: hidden directory" in verbose.stderr
    assert f"skipped {root / 'compose.yaml'}: not an opctl document" in verbose.stderr
    as_json = CliRunner().invoke(main, ["validate", "--json", str(root)])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []


def test_a_named_file_is_always_checked_and_problems_go_to_stdout(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    result = CliRunner().invoke(main, ["validate", str(compose)])
    assert result.exit_code == 1
    assert f"{compose}:1:1: error: unknown key 'services'" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("warning(s)") and result.stderr == ""
    [problem, *_] = json.loads(CliRunner().invoke(main, ["validate", "--json", str(compose)]).stdout)
    assert set(problem) == {"file", "line", "column", "path", "severity", "message"}


def test_an_opctl_document_with_a_syntax_error_is_still_reported_when_walking(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("version: 1\nsubject: {name: x\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "broken.yaml:" in result.stdout


def test_the_schema_line_names_the_kind(tmp_path: Path) -> None:
    lab = tmp_path / "odd.yaml"
    lab.write_text("# yaml-language-server: $schema=../schemas/opctl-lab.schema.json\nversion: 1\nname: odd\n")
    kind = kind_of(lab, env={})
    assert kind is not None and kind.name == "lab"
    [problem] = check_paths([tmp_path], env={}).problems
    assert "processes" in problem.message or "scenarios" in problem.message


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such file or directory" in result.stderr
