"""The console in a real headless Chromium (tests/serve/browser.py).

1. The rate limiter lab, `opctl run` in approve mode and `opctl serve` beside it: node2 is
   SIGKILLed; the ticket appears on the overview without a reload; on its page the diagnosis and
   the pending deregister_node proposal show; Approve runs it on the loop's next tick, and the
   page shows the execution and its verification.
2. Against a registry on a JsonServer: the kill switch turned on from the UI (behind its
   confirmation) stops acting within one tick, and an observed value holding `<script>` renders
   as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.lab import supervisor
from engine.lab.chaos import run_steps
from engine.lab.spec import load_lab
from engine.store import Store
from tests.act.act_support import SECRET, config_data, nodes
from tests.json_server import JsonServer
from tests.lab.demo_support import RATELIMITER, lab_env
from tests.ports import free_port
from tests.serve.browser import browser, click, needs_chromium, press, screenshots, sign_in, tab_to, text_of, until  # noqa: F401 (a fixture)
from tests.serve.serve_support import APPROVER, ROOT, TOKENS
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, needs_chromium]


class Processes:
    """`opctl run` and `opctl serve` as subprocesses, stopped at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[str]] = []

    def start(self, name: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
        out = (self.tmp_path / f"{name}.out").open("w")
        process = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.started.append(process)
        return process

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.out").read_text()

    def ticks(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output("run").splitlines() if line.startswith("{")]

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def serve(processes: Processes, config: Path, store: Path, env: dict[str, str]) -> str:
    import httpx

    port = free_port()
    process = processes.start("serve", "serve", str(config), "--store", str(store), "--port", str(port),
                              env={**env, "OPCTL_SERVE_TOKENS": TOKENS})  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, processes.output("serve")
        try:
            return httpx.get(f"{url}/api/v1/openapi.json", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(answers, timeout=60)
    return url


def registry_console(
    tmp_path: Path, processes: Processes, server: JsonServer, browser: Any, **overrides: Any
) -> tuple[str, Path]:
    """`opctl run` (execute mode, 300 ms ticks) against a registry of healthy nodes on `server`,
    `opctl serve` beside it, and the browser signed in as an approver: (console url, store)."""
    server.set("/v1/nodes", nodes())
    server.set("/v1/nodes/n2", {"deleted": "n2"})
    data = config_data(server.url, diagnosis={"provider": "runbook"}, interval="300ms", mode="execute", **overrides)
    config = tmp_path / "opctl.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "API_TOKEN": SECRET, "HOOK_SECRET": "hook-secret-42"}
    store = tmp_path / "state.db"
    processes.start("run", "run", str(config), "--json", env=env)
    wait_for(lambda: processes.ticks(), timeout=60)
    url = serve(processes, config, store, env)
    sign_in(browser, url, APPROVER)
    return url, store


def test_kill_a_node_see_it_live_approve_and_watch_it_verified(tmp_path: Path, processes: Processes, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    state = tmp_path / "lab"
    env = {**lab_env(RATELIMITER, state), "OPCTL_LAB_LOAD_REPORT_S": "1"}
    spec = load_lab(ROOT / "subjects" / "ratelimiter" / "lab.yaml", env)
    status = supervisor.up(spec, env=env)
    try:
        run_env = {**env, **status.exports}
        store = tmp_path / "store.db"
        mode = subprocess.run([sys.executable, "-m", "engine", "mode", str(RATELIMITER), "approve", "--store", str(store)],
                              cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert mode.returncode == 0, mode.stderr
        processes.start("run", "run", str(RATELIMITER), "--store", str(store), "--interval", "1s", "--json", env=run_env)
        url = serve(processes, RATELIMITER, store, run_env)
        wait_for(lambda: processes.ticks(), timeout=60)

        sign_in(browser, url, APPROVER)
        until(browser, lambda d: d.find_elements(By.ID, "no-tickets"))
        browser.execute_script("window.notReloaded = true")

        asyncio.run(run_steps(spec.scenario("kill_node").inject, spec, env=run_env))
        until(browser, lambda d: "node_heartbeat / node2" in text_of(d, "tr.ticket-row"), timeout=90)
        assert browser.execute_script("return window.notReloaded") is True  # live, through the stream
        screenshots(browser, "overview", lambda d: d.find_elements(By.CSS_SELECTOR, "tr.ticket-row"))

        browser.set_window_size(1440, 900)
        click(browser, "tr.ticket-row a.ticket-link")
        waiting = "div.proposal[data-action=deregister_node][data-status=awaiting_approval]"
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, waiting), timeout=90)
        assert text_of(browser, "#diagnosis-summary") and "node2" in text_of(browser, "#diagnosis")
        screenshots(browser, "incident", lambda d: d.find_elements(By.CSS_SELECTOR, waiting))

        browser.set_window_size(1440, 900)
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"{waiting} input"))[0].send_keys("node2 is gone")
        click(browser, f"{waiting} button.approve")
        until(browser, lambda d: "succeeded" in text_of(d, "#executions"), timeout=60)
        until(browser, lambda d: "verified" in text_of(d, "#verification"), timeout=120)
        screenshots(browser, "incident-verified", lambda d: d.find_elements(By.CSS_SELECTOR, ".verification-event"))

        with Store(store) as opened:
            [ticket] = opened.tickets(limit=10)
            approved = [e for e in opened.events(ticket.id) if e.kind == "approved"]
            assert [(e.actor, e.data.get("reason")) for e in approved] == [("console:ann", "node2 is gone")]
            [execution] = opened.executions(ticket_id=ticket.id)
            assert (execution.action, execution.status) == ("deregister_node", "succeeded")
            # the loop ran it on its next tick: the execution began in the first tick after the approval
            ticks_between = [t for t in processes.ticks() if approved[0].at < t["at"] < execution.started_at]
            assert len(ticks_between) <= 1, ticks_between
    finally:
        supervisor.down(spec)


def test_the_kill_switch_from_the_ui_stops_acting_and_observed_html_is_text(
    tmp_path: Path, processes: Processes, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    payload = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    with JsonServer() as server:
        url, store = registry_console(tmp_path, processes, server, browser)

        # by keyboard only: Tab to the button, Enter opens the confirmation; Escape leaves it unchanged
        until(browser, lambda d: d.find_elements(By.ID, "kill-button"))
        tab_to(browser, "kill-button")
        press(browser, Keys.ENTER)
        dialog = until(browser, lambda d: d.find_element(By.ID, "kill-dialog"))
        assert dialog.is_displayed() and "Turn the kill switch ON?" in dialog.text
        press(browser, Keys.ESCAPE)
        until(browser, lambda d: not d.find_element(By.ID, "kill-dialog").is_displayed())
        with Store(store) as opened:
            assert opened.killed() is None
        tab_to(browser, "kill-button")
        press(browser, Keys.ENTER)
        until(browser, lambda d: d.find_element(By.ID, "kill-dialog").is_displayed())
        tab_to(browser, "kill-reason")
        press(browser, "hands off")
        tab_to(browser, "kill-confirm")
        press(browser, Keys.ENTER)
        until(browser, lambda d: "ON" in text_of(d, "#card-kill"))
        with Store(store) as opened:
            killed = opened.killed()
        assert killed is not None and (killed["actor"], killed["value"]) == ("console:ann", "hands off")
        # within one tick: the first tick that starts after the switch reports it
        wait_for(lambda: [t for t in processes.ticks() if t["at"] > killed["at"]], timeout=30)
        later = [t for t in processes.ticks() if t["at"] > killed["at"]]
        assert later[0]["killed"] is True or later[1:2] and later[1]["killed"] is True

        server.set("/v1/nodes", {"nodes": [{"id": "n1", "state": "up"}, {"id": "n2", "state": "down"},
                                           {"id": "n3", "state": payload}]})  # fmt: skip

        def parked() -> list[Any]:
            with Store(store) as opened:
                return [t for t in opened.tickets(status="open") if t.parked == "kill_switch"]

        wait_for(lambda: len(parked()) == 2, timeout=60)
        assert [m for m, _, _, _ in server.requests if m != "GET"] == []  # nothing acted

        until(browser, lambda d: payload in text_of(d, "tr.ticket-row"), timeout=60)  # the markup shows as text
        assert browser.execute_script("return window.pwned") is None
        assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
        n3 = next(t.id for t in parked() if t.entity_key == "n3")
        browser.get(f"{url}/#/tickets/{n3}")
        until(browser, lambda d: payload in text_of(d, "#message") and payload.replace('"', '\\"') in text_of(d, "#snapshot"))
        assert browser.execute_script("return window.pwned") is None
        assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []


def test_a_silence_made_in_the_ui_mutes_the_next_matching_ticket(tmp_path: Path, processes: Processes, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    from tests.notify.receiver import Receiver

    with JsonServer() as server, Receiver() as hook:
        notify = [{"name": "chatops", "webhook": {"url": hook.url, "secret": "${HOOK_SECRET}", "format": "json"}, "events": ["opened"]}]
        url, store = registry_console(tmp_path, processes, server, browser, notify=notify)

        click(browser, "nav a[href='#/silences']")
        until(browser, lambda d: d.find_elements(By.ID, "silence-form"))
        browser.find_element(By.ID, "sil-key").send_keys("n2")
        browser.find_element(By.ID, "sil-comment").send_keys("replacing n2's disk")
        click(browser, "#sil-add")
        until(browser, lambda d: "key=n2" in text_of(d, "#silences tr.silence") and "active" in text_of(d, "#silences"))
        with Store(store) as opened:
            [silence] = opened.silences()
        assert [m.text() for m in silence.matchers] == ["key=n2"] and silence.created_by == "console:ann"
        assert silence.ends_at - silence.starts_at == 3600 and silence.comment == "replacing n2's disk"

        server.set("/v1/nodes", nodes("n2", "n3"))  # n2 is silenced, n3 is not
        click(browser, "nav a[href='#/']")
        until(browser, lambda d: f"silenced #{silence.id}" in text_of(d, "tr.ticket-row") and "muted" in text_of(d, "tr.ticket-row"),
              timeout=60)  # fmt: skip
        wait_for(lambda: any(b"n3" in body for _, body, _ in hook.accepted()), timeout=60)  # n3's incident is notified
        assert not any(b"n2" in body for _, body, _ in hook.requests)  # the silenced one never is
        with Store(store) as opened:
            [ticket] = [t for t in opened.tickets() if t.entity_key == "n2"]
        assert ticket.parked == "muted" and (ticket.muted_by or "").startswith(f"silenced by #{silence.id} (key=n2")
        assert "/v1/nodes/n2" not in [p for m, p, _, _ in server.requests if m != "GET"]  # execute mode: n2 not acted on
        browser.get(f"{url}/#/tickets/{ticket.id}")
        until(browser, lambda d: f"silenced by #{silence.id}" in text_of(d, "#muted"))
