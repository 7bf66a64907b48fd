"""One CLI grammar: the config first (or OPCTL_CONFIG), `--store` wherever a store is read, ids
positional, `--json`/`--output table|wide|tsv|json` on listings, results on stdout and
diagnostics on stderr, exit 0/1/2; read-only commands never create a store; the mode's
precedence shown; the old spellings still work with a deprecation note."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from engine.cli import main
from tests.act.act_support import SECRET, config_data, nodes
from tests.json_server import JsonServer

LONG = "a very long message " * 8


@pytest.fixture
def server() -> Iterator[JsonServer]:
    with JsonServer() as srv:
        srv.set("/v1/nodes", nodes("n2"))
        yield srv


def write(tmp_path: Path, server: JsonServer, **overrides: Any) -> Path:
    data = config_data(server.url, diagnosis={"provider": "runbook"}, mode="approve", **overrides)
    data["invariants"][0]["message"] = "node {{ item.id }} is {{ item.state }}: " + LONG.strip()
    path = tmp_path / "opctl.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def opctl(*args: str, **env: str) -> Result:
    return CliRunner(env={"API_TOKEN": SECRET, "OPCTL_CONFIG": "", **env}).invoke(main, list(args))


@pytest.fixture
def ran(tmp_path: Path, server: JsonServer) -> Path:
    """A config whose store holds one open ticket with one proposal awaiting approval."""
    config = write(tmp_path, server)
    result = opctl("run", str(config), "--once", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["actions"][0]["status"] == "awaiting_approval"
    return config


def test_the_config_comes_first_or_from_opctl_config_and_the_store_alone_is_enough(ran: Path) -> None:
    db = str(ran.parent / "state.db")
    by_argument = json.loads(opctl("tickets", "list", str(ran), "--json").stdout)
    by_env = json.loads(opctl("tickets", "list", "--json", OPCTL_CONFIG=str(ran)).stdout)
    by_store = json.loads(opctl("tickets", "list", "--store", db, "--json").stdout)
    by_url = json.loads(opctl("tickets", "list", "--store", f"sqlite://{db}", "--json").stdout)
    assert by_argument == by_env == by_store == by_url
    [ticket] = by_argument
    assert {"id", "invariant", "key", "status", "severity", "message", "labels", "held"} <= set(ticket) and "snapshot" not in ticket
    shown = json.loads(opctl("tickets", "show", "--store", db, "1", "--json").stdout)
    assert shown["id"] == 1 and {"snapshot", "events", "proposals", "executions", "tokens"} <= set(shown)
    assert json.loads(opctl("tickets", "show", "1", "--json", OPCTL_CONFIG=str(ran)).stdout)["id"] == 1
    [proposal] = json.loads(opctl("actions", "list", str(ran), "--status", "awaiting_approval", "--json").stdout)
    assert (proposal["id"], proposal["action"], proposal["params"]) == (1, "deregister_node", {"node_id": "n2"})
    assert json.loads(opctl("actions", "show", "--store", db, "1", "--json").stdout)["executions"] == []
    prompt = opctl("prompt", str(ran), "1")
    assert prompt.exit_code == 0 and prompt.stdout.startswith("===== system =====") and prompt.stderr == ""
    approved = opctl("actions", "approve", "--store", db, "1", "--reason", "checked")
    assert approved.exit_code == 0 and approved.stdout.startswith("proposal #1 (deregister_node) is approved")


def test_usage_mistakes_exit_2_with_a_message_on_stderr(ran: Path) -> None:
    missing = opctl("tickets", "list")
    assert missing.exit_code == 2 and "give the subject's config as the first argument, or set OPCTL_CONFIG" in missing.stderr
    assert missing.stdout == ""
    assert opctl("tickets", "show", str(ran), "one").exit_code == 2
    assert opctl("tickets", "show", str(ran), "1", "2").exit_code == 2
    contradiction = opctl("tickets", "list", str(ran), "--json", "--output", "tsv")
    assert contradiction.exit_code == 2 and "contradict" in contradiction.stderr
    assert opctl("prompt", "--store", "x.db", "1").exit_code == 2  # a prompt needs the config's templates
    scheme = opctl("tickets", "list", "--store", "postgres://db/opctl")
    assert scheme.exit_code == 1 and "unknown scheme 'postgres'" in scheme.stderr and "postgresql://" in scheme.stderr


def test_the_old_spellings_work_with_a_deprecation_note(ran: Path) -> None:
    listed = opctl("tickets", "list", "--config", str(ran), "--json")
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1
    assert "warning: `--config C` is deprecated" in listed.stderr
    prompt = opctl("prompt", "--config", str(ran), "--ticket", "1")
    assert prompt.exit_code == 0 and "===== user =====" in prompt.stdout
    assert "`--ticket ID` is deprecated" in prompt.stderr
    twice = opctl("tickets", "list", str(ran), "--config", str(ran))
    assert twice.exit_code == 2 and "twice" in twice.stderr


def test_read_only_commands_never_create_a_store(tmp_path: Path, server: JsonServer) -> None:
    config = write(tmp_path, server)
    db = tmp_path / "state.db"
    for args in (("tickets", "list"), ("tickets", "show", "1"), ("actions", "list"), ("actions", "show", "1"),
                 ("prompt", "1"), ("resume",), ("actions", "approve", "1")):  # fmt: skip
        result = opctl(*args[:-1] if args[-1] == "1" else args, *([str(config), "1"] if args[-1] == "1" else [str(config)]))
        assert result.exit_code == 1, (args, result.output)
        assert f"error: no store at {db} yet: run `opctl run {config}` first" in result.stderr
        assert not db.exists(), args
    shown = opctl("mode", str(config))
    assert shown.exit_code == 0 and shown.stdout == "mode is approve (from the config)\n" and not db.exists()


def test_listings_never_truncate_when_piped_and_have_wide_tsv_and_json(ran: Path) -> None:
    table = opctl("tickets", "list", str(ran))
    assert table.exit_code == 0 and LONG.strip() in table.stdout  # not cut to 80 columns
    assert "id" in table.stdout.splitlines()[1] and "labels" not in table.stdout
    wide = opctl("tickets", "list", str(ran), "--output", "wide")
    assert "labels" in wide.stdout and "verify until" in wide.stdout and LONG.strip() in wide.stdout
    header, row = opctl("tickets", "list", str(ran), "-o", "tsv").stdout.splitlines()
    assert header.split("\t")[:4] == ["id", "status", "severity", "invariant"] and "labels" in header.split("\t")
    assert row.split("\t")[:4] == ["1", "open", "critical", "node_up"] and len(row.split("\t")) == len(header.split("\t"))
    [proposal_row] = opctl("actions", "list", str(ran), "-o", "tsv").stdout.splitlines()[1:]
    assert proposal_row.split("\t")[:3] == ["1", "#1", "deregister_node"]


def test_mode_precedence_is_shown_set_warned_about_and_cleared(ran: Path) -> None:
    assert opctl("mode", str(ran)).stdout == "mode is approve (from the config)\n"
    set_ = opctl("mode", str(ran), "execute")
    assert set_.exit_code == 0 and set_.stdout == "mode is execute (overrides the config's approve until `opctl mode --clear`)\n"
    shown = opctl("mode", str(ran))
    assert shown.stdout.startswith("mode is execute (set by cli:") and "the config says approve" in shown.stdout
    as_json = json.loads(opctl("mode", str(ran), "--json").stdout)
    assert (as_json["mode"], as_json["source"], as_json["config_mode"]) == ("execute", "override", "approve")
    assert as_json["actor"].startswith("cli:") and isinstance(as_json["at"], float)
    ran_once = opctl("run", str(ran), "--once", "--json")
    assert ran_once.exit_code == 0
    [warning] = ran_once.stderr.splitlines()
    assert warning.startswith("warning: acting mode is execute, set by cli:") and "opctl mode --clear" in warning
    assert json.loads(ran_once.stdout)["mode"] == "execute"
    cleared = opctl("mode", str(ran), "--clear")
    assert cleared.stdout == "mode is approve (from the config)\n"
    assert opctl("mode", str(ran), "--clear").stdout == "mode is approve (from the config); there was no override\n"
    quiet = opctl("run", str(ran), "--once", "--json")
    assert quiet.stderr == "" and json.loads(quiet.stdout)["mode"] == "approve"
    only_store = opctl("mode", "--store", str(ran.parent / "state.db"))
    assert only_store.stdout.startswith("no mode override in this store")
    assert opctl("mode", str(ran), "execute", "--clear").exit_code == 2


def test_demo_list_without_a_config_lists_every_shipped_scenario() -> None:
    listed = opctl("demo", "--list")
    assert listed.exit_code == 0, listed.output
    assert "configs/ratelimiter.yaml:" in listed.stdout and "configs/tikv.yaml:" in listed.stdout
    assert any(line.startswith("kill_node ") and " fires node_heartbeat" in line for line in listed.stdout.splitlines())
    entries = json.loads(opctl("demo", "--list", "--json").stdout)
    assert {e["scenario"] for e in entries} >= {"kill_node", "store_down", "disk_full"}
    kill = next(e for e in entries if e["scenario"] == "kill_node")
    assert kill == {**kill, "config": "configs/ratelimiter.yaml", "fires": "node_heartbeat", "key": "node2", "action": "deregister_node"}
    header = opctl("demo", "--list", "-o", "tsv").stdout.splitlines()[0]
    assert header.split("\t") == ["config", "scenario", "fires", "key", "action", "description"]
    assert opctl("demo", "--scenario", "kill_node").exit_code == 2
