"""Observed text never drives the terminal: a node id `[/]` is text, not rich markup (it crashed
`opctl run` on a TTY and `tickets list/show`), and an OSC 52 clipboard write, `ESC[2J` or an
OSC 8 hyperlink inside an observed value reaches the terminal as visible, inert characters.
Checked on real terminals: `script` (a pty) for the raw bytes of `tickets list/show`, and tmux
(80x24) for the live view of `opctl run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from engine.cli import main
from engine.safe_text import escape_controls, plain
from tests.json_server import JsonServer
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
OSC52 = "\x1b]52;c;aGVsbG8=\x07"
CLEAR = "\x1b[2J"
OSC8 = "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
HOSTILE_ID = f"[/]{OSC52}{CLEAR}{OSC8}\x9b2J"
RAW = (b"\x1b]52", b"\x1b[2J", b"\x1b]8;", b"\xc2\x9b")  # what must never reach the terminal


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@given(st.text())
def test_escaped_text_holds_no_control_character(text: str) -> None:
    assert not any(is_control(ch) for ch in escape_controls(text))
    assert not any(is_control(ch) and ch != "\n" for ch in escape_controls(text, multiline=True))


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_any_text_renders_as_itself_never_as_markup(text: str) -> None:
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    console.print(plain(text))
    shown = console.export_text(styles=False)
    assert "".join(shown.split()) == "".join(escape_controls(text).split())


def test_known_sequences_become_visible_escapes() -> None:
    assert escape_controls(OSC52) == "\\x1b]52;c;aGVsbG8=\\x07"
    assert escape_controls("a\u202eb\tc\r\n") == "a\\u202eb\\tc\\r\\n"
    assert escape_controls("line one\nline two", multiline=True) == "line one\nline two"


# ----------------------------------------------------------------------------- on real terminals


def config_for(tmp_path: Path, server: JsonServer) -> Path:
    data = {
        "version": 1,
        "subject": {"name": "hostile"},
        "targets": {"api": {"url": server.url, "timeout": "1s"}},
        "interval": "200ms",
        "observations": {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}, "select": "body.nodes"}},
        "invariants": [{
            "name": "node_up", "for_each": "nodes", "key": "item.id", "expr": 'item.state == "up"',
            "message": "node {{ item.id }} is {{ item.state }}",
        }],
        "store": "state.db",
    }  # fmt: skip
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Path]:
    with JsonServer() as server:
        server.set("/v1/nodes", {"nodes": [{"id": HOSTILE_ID, "state": "down"}]})
        yield config_for(tmp_path, server)


def on_a_pty(args: list[str], tmp_path: Path) -> bytes:
    """What `opctl ARGS` writes to a real terminal (a pty made by `script`), byte for byte."""
    if shutil.which("script") is None:
        pytest.skip("`script` (util-linux) is not installed; .ci/run installs it")
    log = tmp_path / "typescript"
    command = " ".join(["exec", sys.executable, "-m", "engine", *(f"'{a}'" for a in args)])
    done = subprocess.run(
        ["script", "-q", "-e", "-c", command, str(log)], cwd=ROOT, env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"},
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, log.read_bytes().decode(errors="replace")
    return log.read_bytes()


def test_tickets_list_and_show_print_observed_text_inertly_on_a_tty(tmp_path: Path, hostile: Path) -> None:
    ran = CliRunner().invoke(main, ["run", str(hostile), "--once", "--json"])
    assert ran.exit_code == 0, ran.output
    for args in (["tickets", "list", str(hostile)], ["tickets", "show", str(hostile), "1"], ["actions", "list", str(hostile)]):
        raw = on_a_pty(args, tmp_path)
        assert b"Traceback" not in raw and b"MarkupError" not in raw, raw
        for sequence in RAW:
            assert sequence not in raw, (args, sequence)
    shown = on_a_pty(["tickets", "show", str(hostile), "1"], tmp_path).decode()
    assert "[/]\\x1b]52;c;aGVsbG8=\\x07\\x1b[2J" in "".join(shown.split())


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10, check=True).stdout


@pytest.mark.slow
def test_opctl_run_on_a_tty_shows_a_hostile_node_id_and_keeps_running(tmp_path: Path, hostile: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed; .ci/run installs it")
    session = f"opctl-safety-{os.getpid()}"
    raw = tmp_path / "pane.raw"
    command = f"cd {ROOT} && exec {sys.executable} -m engine run {hostile}"
    env = ["-e", "TERM=xterm-256color"]
    tmux("-L", session, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", *env, command)
    try:
        tmux("-L", session, "pipe-pane", "-t", session, f"cat >> {raw}")
        def screen_with(text: str) -> str:
            screen = tmux("-L", session, "capture-pane", "-p", "-t", session)
            return screen if text in screen else ""

        screen = wait_for(lambda: screen_with("Open tickets (1)"))
        assert "mode observe (from the config)" in screen and "kill switch off" in screen
        assert "[/]\\x1b]52" in screen  # the id is shown, escaped, and the view did not crash
        wait_for(lambda: screen_with("tick 5 "))  # still ticking
        for sequence in RAW:
            assert sequence not in raw.read_bytes(), sequence
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], capture_output=True, timeout=10)
