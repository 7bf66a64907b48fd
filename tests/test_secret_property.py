"""Redaction by construction: a random secret planted in every secret position never appears in
anything opctl writes: stdout and stderr of `run`, `tickets`, `actions`, `prompt` and
`validate`, the store (a full SQL dump), the prompt, `/metrics`. The observed target echoes
the secrets back (in a body, in a header's value, as Redis would with `requirepass`), as a
hostile or careless system would.

And the patterns for secrets the loader never collected (bearer tokens, URL credentials,
secret-named keys, longest secret first), each on its own.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine.redact import MASK, Redactor
from tests.json_server import JsonServer
from tests.ports import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
SECRET = st.text(alphabet="abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=10, max_size=24)

CONFIG = """\
version: 1
subject: {{name: vault}}
targets:
  api:
    url: "http://opsuser:${{URL_PASS}}@127.0.0.1:{port}"
    token: "${{API_TOKEN}}"
    headers: {{X-Tenant: "${{TENANT_HEADER}}", X-Api-Key: "{literal_key}"}}
  hook:
    url: "http://127.0.0.1:{port}/hooks/${{HOOK_PATH}}?sig=${{HOOK_SIG}}"
    secret_url: true
interval: 200ms
observations:
  nodes: {{http: {{target: api, path: /v1/nodes}}, select: body.nodes}}
  echo: {{http: {{target: api, path: /v1/echo}}}}
  hooked: {{http: {{target: hook, path: /v1/ping}}}}
invariants:
  - name: node_up
    for_each: nodes
    key: item.id
    expr: 'item.state == "up"'
    message: "node {{{{ item.id }}}} is {{{{ item.state }}}}: {{{{ item.note }}}}"
    runbook: [{{action: restart, params: {{node_id: item.id}}, reason: "restart it"}}]
actions:
  - name: restart
    description: Restart one node.
    params: {{type: object, required: [node_id], properties: {{node_id: {{type: string}}}}}}
    http: {{target: api, method: POST, path: "/v1/nodes/{{node_id}}/restart"}}
mode: approve
store: state.db
"""


def _opctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)


# each example runs opctl for real (a few seconds); shrinking would only rerun the same failure
@settings(max_examples=4, deadline=None, phases=[Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=SECRET, url_pass=SECRET, tenant=SECRET, literal=SECRET, hook_path=SECRET, hook_sig=SECRET, requirepass=SECRET)
def test_a_planted_secret_never_leaves_opctl(tmp_path_factory, token, url_pass, tenant, literal, hook_path, hook_sig, requirepass) -> None:  # type: ignore[no-untyped-def]
    planted = {"API_TOKEN": "t-" + token, "URL_PASS": "p-" + url_pass, "TENANT_HEADER": "h-" + tenant,
               "HOOK_PATH": "k-" + hook_path, "HOOK_SIG": "s-" + hook_sig}
    literal_key, observed_pass = "l-" + literal, "r-" + requirepass
    secrets = [*planted.values(), literal_key, observed_pass]
    if len(set(secrets)) < len(secrets):
        return
    tmp = tmp_path_factory.mktemp("secrets")
    with JsonServer() as server:
        echoed = " ".join(secrets[:-1])
        server.set("/v1/nodes", {"nodes": [{"id": "n1", "state": "down", "note": f"echo {echoed} Bearer {planted['API_TOKEN']}"}]})
        server.set("/v1/echo", {"headers": {"x-tenant": planted["TENANT_HEADER"], "x-api-key": literal_key},
                                "config": {"requirepass": observed_pass}, "pairs": ["masterauth", observed_pass]})
        server.set(f"/hooks/{planted['HOOK_PATH']}/v1/ping", {"ok": True})
        config = tmp / "vault.yaml"
        config.write_text(CONFIG.format(port=server.port, literal_key=literal_key))
        env = {**os.environ, **planted, "OPCTL_CONFIG": ""}
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(config), "--json", "--metrics-port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        try:
            metrics = wait_for(lambda: proc.poll() is not None or ((t := _metrics(port)) and "opctl_tickets_opened_total{" in t and t), timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            run_out, run_err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and isinstance(metrics, str), run_err
        outputs = {"run": run_out + run_err, "metrics": metrics}
        for args in (("tickets", "list", "--json"), ("tickets", "show", "1"), ("actions", "list", "--json"), ("prompt", "1")):
            result = _opctl(*args, env={**env, "OPCTL_CONFIG": str(config)})
            assert result.returncode == 0, (args, result.stderr)
            outputs[" ".join(args)] = result.stdout + result.stderr
        # a secret quoted by a validation error
        bad = tmp / "bad.yaml"
        bad.write_text(config.read_text().replace("interval: 200ms", "interval: ${API_TOKEN}"))
        outputs["validate"] = (r := _opctl("validate", str(bad), env=env)).stdout + r.stderr
        assert r.returncode != 0 and "interval" in outputs["validate"]
    with sqlite3.connect(tmp / "state.db") as db:
        outputs["store"] = "\n".join(db.iterdump())
    assert '"state": "down"' in outputs["store"] or "down" in outputs["store"]  # the observation is there
    assert "n1" in outputs["prompt 1"]
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"


def _metrics(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.TransportError:
        return None


# ------------------------------------------------------------ secrets the loader never saw


def test_bearer_tokens_are_masked_without_being_known() -> None:
    redact = Redactor().text
    assert redact("Authorization: Bearer abc.DEF-123_x") == f"Authorization: Bearer {MASK}"
    assert redact("bearer   zz9-Token") == f"bearer   {MASK}"
    assert redact("Bearer short") == "Bearer short"  # under six characters: not a token shape


def test_url_credentials_are_masked_without_being_known() -> None:
    redact = Redactor().text
    assert redact("redis://:hunter22@cache:6379/0 down") == f"redis://:{MASK}@cache:6379/0 down"
    assert redact("see https://bob:pa55word@h.example/x") == f"see https://bob:{MASK}@h.example/x"
    assert redact("http://h.example:8080/x") == "http://h.example:8080/x"


def test_secret_named_keys_and_pairs_are_masked_and_then_known_everywhere() -> None:
    redactor = Redactor()
    observed = {"requirepass": "rp-1234", "nested": [{"api_key": "ak-9876", "ok": "fine"}], "reply": ["masterauth", "ma-5555", "maxmemory", "100"]}
    assert redactor.value(observed) == {"requirepass": MASK, "nested": [{"api_key": MASK, "ok": "fine"}], "reply": ["masterauth", MASK, "maxmemory", "100"]}
    # a value read from a secret field is masked wherever it appears next
    assert redactor.text("AUTH rp-1234 then ak-9876 and ma-5555") == f"AUTH {MASK} then {MASK} and {MASK}"
    # under a secret-named key even a value too short to be learned is masked
    assert Redactor().value({"password": "abc", "reply": ["requirepass", "x1"]}) == {"password": MASK, "reply": ["requirepass", MASK]}
    assert Redactor().text("password=abcd1234 token: 'zzzz9999'") == f"password={MASK} token: '{MASK}'"
    assert Redactor().text("CONFIG SET requirepass newpass99") == f"CONFIG SET requirepass {MASK}"


def test_the_longest_secret_is_masked_first() -> None:
    redactor = Redactor(["abcd", "abcd-efgh-1234"])
    assert redactor.text("x abcd-efgh-1234 y abcd") == f"x {MASK} y {MASK}"
    assert json.dumps(Redactor(["abcd-efgh", "abcd"]).value({"m": "abcd-efgh"})) == json.dumps({"m": MASK})


def test_lab_json_never_prints_the_limiter_token() -> None:
    from engine.lab.supervisor import LabStatus

    status = LabStatus("ratelimiter", "/tmp/x", (), {"RATELIMITER_TOKEN": "lab-token-77", "REDIS_URL": "redis://127.0.0.1:1/0"})
    shown = json.dumps(status.as_json())
    assert "lab-token-77" not in shown and json.loads(shown)["exports"] == {"RATELIMITER_TOKEN": MASK, "REDIS_URL": "redis://127.0.0.1:1/0"}
    assert status.exports["RATELIMITER_TOKEN"] == "lab-token-77"  # the operator still reaches the lab with it
