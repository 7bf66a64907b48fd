"""Silences: matchers, states, the store's records and `opctl silence add|list|expire`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import StoreError
from engine.silences import MATCHER_NAMES, Matcher, Silence, parse_matcher, silencing, ticket_labels
from engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ratelimiter.yaml"
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(name=st.sampled_from(MATCHER_NAMES), value=values, regex=st.booleans())
def test_a_matchers_text_reads_back_as_the_same_matcher(name: str, value: str, regex: bool) -> None:
    if regex:
        value = re.escape(value)
    matcher = Matcher(name, value, regex)
    assert parse_matcher(matcher.text()) == matcher


@given(value=values, other=values)
def test_an_equality_matcher_matches_exactly_its_value_and_an_escaped_regex_the_same(value: str, other: str) -> None:
    labels = ticket_labels("inv", other, "critical")
    assert Matcher("key", value).matches(labels) == (value == other)
    assert Matcher("key", re.escape(value), regex=True).matches(labels) == (value == other)


@given(start=st.floats(0, 1e9), length=st.floats(0.001, 1e6), at=st.floats(0, 2e9))
def test_a_silence_mutes_only_while_active(start: float, length: float, at: float) -> None:
    silence = Silence(1, (Matcher("invariant", "inv"),), start, start + length, "me", "why", start)
    labels = ticket_labels("inv", "k", "warning")
    assert silence.mutes(labels, at) == (start <= at < start + length)
    assert silence.state(at) == ("pending" if at < start else "active" if at < start + length else "expired")


def test_every_matcher_must_match_and_no_matcher_mutes_nothing() -> None:
    both = Silence(1, (Matcher("invariant", "inv"), Matcher("severity", "crit.*", regex=True)), 0, 10, "me", "why", 0)
    assert both.mutes(ticket_labels("inv", "k", "critical"), 5)
    assert not both.mutes(ticket_labels("inv", "k", "warning"), 5)
    assert not Silence(2, (), 0, 10, "me", "why", 0).mutes(ticket_labels("inv", "k", "critical"), 5)
    assert silencing([both], ticket_labels("inv", "k", "critical"), 5) == both


@pytest.mark.parametrize(("text", "message"), [
    ("foo=1", "unknown matcher name 'foo'"), ("key", "write NAME=VALUE or NAME=~REGEX"), ("key=~(", "not a regular expression"),
])  # fmt: skip
def test_bad_matchers_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_matcher(text)


def test_the_store_adds_lists_and_expires_silences_with_audit_events(tmp_path: Path) -> None:
    now = [1000.0]
    with Store(tmp_path / "s.db", clock=lambda: now[0]) as store:
        added = store.add_silence([Matcher("key", "n2")], starts_at=None, ends_at=2000.0, actor="me", comment="maintenance")
        assert (added.state(now[0]), added.created_by) == ("active", "me")
        assert store.silences(active_at=1500.0) == [added] and store.silences(active_at=2000.0) == []
        now[0] = 1200.0
        expired = store.expire_silence(added.id, actor="you")
        assert expired.ends_at == 1200.0 and expired.state(1200.0) == "expired"
        assert [(e.kind, e.actor) for e in store.events()] == [("silence_added", "me"), ("silence_expired", "you")]
        with pytest.raises(StoreError, match="already expired"):
            store.expire_silence(added.id, actor="you")
        with pytest.raises(StoreError, match="needs a comment"):
            store.add_silence([Matcher("key", "n2")], starts_at=None, ends_at=2000.0, actor="me", comment=" ")
        with pytest.raises(StoreError, match="end after it starts"):
            store.add_silence([Matcher("key", "n2")], starts_at=None, ends_at=1200.0, actor="me", comment="x")
        with pytest.raises(StoreError, match="no silence #9"):
            store.expire_silence(9, actor="me")


def opctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_cli_adds_lists_and_expires_silences(tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    added = opctl("silence", "add", str(CONFIG), "--store", store, "--match", "invariant=node_heartbeat", "--match", "key=~node[12]",
                  "--duration", "2h", "--comment", "rolling restart")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("silence #1 (invariant=node_heartbeat key=~node[12]) until ")
    listed = json.loads(opctl("silence", "list", "--store", store, "--output", "json").stdout)
    assert [(s["id"], s["state"], s["comment"], s["created_by"].startswith("cli:")) for s in listed] == [(1, "active", "rolling restart", True)]
    assert listed[0]["ends_at"] - listed[0]["starts_at"] == 7200
    assert opctl("silence", "expire", "--store", store, "1").stdout == "silence #1 has expired\n"
    assert json.loads(opctl("silence", "list", "--store", store, "--output", "json").stdout) == []
    assert [s["state"] for s in json.loads(opctl("silence", "list", "--store", store, "--all", "--output", "json").stdout)] == ["expired"]
    again = opctl("silence", "expire", "--store", store, "1")
    assert again.returncode == 1 and again.stderr == "error: silence #1 has already expired; nothing to do\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--match", "colour=red", "--duration", "1h", "--comment", "x"], "unknown matcher name 'colour'"),
    (["--match", "key=n1", "--duration", "soon", "--comment", "x"], "--duration"),
    (["--match", "key=n1", "--duration", "1h"], "Missing option '--comment'"),
])  # fmt: skip
def test_the_cli_refuses_a_bad_silence_with_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = opctl("silence", "add", "--store", str(tmp_path / "s.db"), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_silenced_ticket_is_recorded_but_not_acted_on_and_the_next_episode_after_it_expires_is(tmp_path: Path) -> None:
    from tests.act.act_support import api, config_data, nodes, open_engine

    for server in api():  # a registry on a real HTTP server: n2 is down
        engine = open_engine(tmp_path, config_data(server.url, diagnosis={"provider": "runbook"}))
        try:
            silence = engine.store.add_silence([Matcher("key", "n2")], starts_at=None, ends_at=engine.clock.now + 60,
                                               actor="me", comment="replacing its disk")  # fmt: skip
            for step in range(3):
                engine.tick(engine.clock.now + step)
            ticket = engine.only_ticket()
            assert ticket.status == "open" and ticket.parked == "muted"
            assert ticket.muted_by == f"silenced by #{silence.id} (key=n2; me: replacing its disk)"
            assert "muted" in engine.kinds(ticket.id) and engine.proposals() == []
            assert [m for m, _, _, _ in server.requests if m != "GET"] == []
            engine.store.expire_silence(silence.id, actor="me")
            engine.tick(engine.clock.now + 1)
            # muting holds for the ticket's episode (engine.incidents.muting); the next episode is acted on
            assert engine.ticket(ticket.id).parked == "muted" and engine.proposals() == []
            server.set("/v1/nodes", nodes(up=("n1", "n2")))
            engine.tick(engine.clock.now + 1)
            assert engine.ticket(ticket.id).status == "resolved"
            server.set("/v1/nodes", nodes("n2"))
            for _ in range(2):
                engine.tick(engine.clock.now + 1)
            assert [(p.ticket_id, p.action, p.status) for p in engine.proposals()] == [(ticket.id + 1, "deregister_node", "succeeded")]
        finally:
            engine.close()
