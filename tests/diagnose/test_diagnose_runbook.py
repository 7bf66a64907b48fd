"""The runbook and replay providers: offline, deterministic, the same Diagnosis type."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose_support import NOW, SECRET, config_data, write_config
from engine.act import StoreDiagnosisCache, StoreTokenLedger
from engine.config.validate import LoadedConfig, load_config
from engine.diagnose import Diagnoser, Diagnosis, DiagnosisRequest, fingerprint
from engine.diagnose.runbook import RUNBOOK_CONFIDENCE, runbook_diagnosis
from engine.errors import ConfigError
from engine.observe import ObservationResult
from engine.store import Store, Ticket


def ticket(invariant: str, key: str, message: str, ticket_id: int = 7) -> Ticket:
    return Ticket(ticket_id, invariant, key, {}, "critical", "open", False, NOW - 60, NOW, None, 3, message, {}, None)


async def no_observing(name: str) -> ObservationResult:
    raise AssertionError(f"an offline provider observed {name!r}")


def offline(loaded: LoadedConfig, store: Store) -> Diagnoser:
    return Diagnoser(
        loaded, observe=no_observing, cache=StoreDiagnosisCache(store), ledger=StoreTokenLedger(store), clock=lambda: NOW, env={}
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state.db")
    yield opened
    opened.close()


def request_for(loaded: LoadedConfig, invariant_name: str, key: str, item: Any, observations: dict[str, Any], message: str = "m") -> DiagnosisRequest:
    invariant = loaded.config.invariant(invariant_name)
    assert invariant is not None
    return DiagnosisRequest(ticket(invariant_name, key, message), invariant, item, key, observations)


def test_runbook_on_the_shipped_config_evaluates_params_offline(store: Store) -> None:
    loaded = load_config("configs/ratelimiter.yaml", env={})  # provider auto, no key: runbook
    diagnoser = offline(loaded, store)
    assert diagnoser.provider == "runbook"
    node = {"id": "n2", "address": "127.0.0.1:18082", "state": "down"}
    heartbeat = request_for(loaded, "node_heartbeat", "n2", node, {"registry": [node]}, "node n2 (127.0.0.1:18082) is down")
    memory = request_for(
        loaded, "redis_memory_headroom", "", None,
        {"redis_memory": {"maxmemory": 64 * 1024 * 1024, "used_memory": 63 * 1024 * 1024}, "redis_stats": {"evicted_keys": 3}},
    )

    async def both() -> list[Diagnosis]:
        return [await diagnoser.diagnose(heartbeat, mode="execute"), await diagnoser.diagnose(memory, mode="execute")]

    first, second = asyncio.run(both())
    for result in (first, second):
        assert isinstance(result, Diagnosis)
        assert result.provider == "runbook" and result.model is None and result.fallback_reason is None
        assert result.confidence == RUNBOOK_CONFIDENCE and result.input_tokens == 0
    assert first.summary == "node n2 (127.0.0.1:18082) is down"
    assert first.root_cause == "Every registered node heartbeats; a stale or down node serves nobody."
    assert [(a.action, a.params) for a in first.recommended_actions] == [("deregister_node", {"node_id": "n2"})]
    assert first.recommended_actions[0].reason.startswith("A node that stopped heartbeating is dead")
    assert [(a.action, a.params) for a in second.recommended_actions] == [("raise_redis_maxmemory", {"bytes": 128 * 1024 * 1024})]
    assert second.evidence[0].endswith("is false for the whole cluster")


def test_an_entry_whose_params_fail_is_left_out_with_the_reason(tmp_path: Path) -> None:
    loaded = write_config(tmp_path, config_data("http://127.0.0.1:9", diagnosis={"provider": "runbook"}))
    item = {"id": "n2", "state": "down", "note": f"password={SECRET}"}
    request = request_for(loaded, "node_up", "n2", item, {"nodes": [item], "limits": {}})  # no `default`
    result = runbook_diagnosis(loaded, request, NOW)
    assert [a.action for a in result.recommended_actions] == ["deregister_node"]
    assert any(e.startswith("runbook entry 2 (set_limit) left out: param 'limit' (limits.default * 2)") for e in result.evidence)
    assert all(SECRET not in e for e in result.evidence)  # the entity in the evidence is redacted


def test_an_invariant_without_runbook_recommends_nothing_and_says_so() -> None:
    loaded = load_config("configs/ratelimiter.yaml", env={})
    item = {"endpoint": "http://127.0.0.1:18081", "value": 503}
    result = runbook_diagnosis(loaded, request_for(loaded, "node_redis_reachable", item["endpoint"], item, {}), NOW)
    assert result.recommended_actions == []
    assert result.evidence[-1] == "invariant `node_redis_reachable` has no runbook entries: a human should look"


@pytest.fixture(scope="module")
def shipped_config() -> LoadedConfig:
    return load_config("configs/ratelimiter.yaml", env={})


@settings(max_examples=50, deadline=None)
@given(node_id=st.text(min_size=1, max_size=60), maxmemory=st.integers(0, 10**12))
def test_runbook_is_deterministic_and_params_follow_the_entity(shipped_config: LoadedConfig, node_id: str, maxmemory: int) -> None:
    loaded = shipped_config
    node = {"id": node_id, "state": "down"}
    request = request_for(loaded, "node_heartbeat", node_id, node, {"registry": [node]})
    first, again = runbook_diagnosis(loaded, request, NOW), runbook_diagnosis(loaded, request, NOW)
    assert first == again
    assert first.recommended_actions[0].params == {"node_id": node_id}
    memory = request_for(loaded, "redis_memory_headroom", "", None, {"redis_memory": {"maxmemory": maxmemory}})
    assert runbook_diagnosis(loaded, memory, NOW).recommended_actions[0].params == {"bytes": maxmemory * 2}


def test_fingerprint_is_stable_per_ticket_and_entity() -> None:
    loaded = load_config("configs/ratelimiter.yaml", env={})
    node = {"id": "n2", "state": "down", "decisions": 4}
    base = request_for(loaded, "node_heartbeat", "n2", node, {"registry": [node]})
    reordered = request_for(loaded, "node_heartbeat", "n2", dict(reversed(list(node.items()))), {"registry": []})
    assert fingerprint(base) == fingerprint(reordered)  # key order and other observations do not matter
    assert fingerprint(base) != fingerprint(request_for(loaded, "node_heartbeat", "n2", dict(node, decisions=5), {}))
    other_ticket = DiagnosisRequest(ticket("node_heartbeat", "n2", "m", ticket_id=8), base.invariant, node, "n2", {})
    assert fingerprint(base) != fingerprint(other_ticket)


# ------------------------------------------------------------------ replay


RECORDED = {
    "summary": "n2 is down",
    "root_cause": "its process died",
    "confidence": 0.8,
    "evidence": ["state=down"],
    "alternatives_considered": [],
    "recommended_actions": [{"action": "deregister_node", "params": {"node_id": "n2"}, "reason": "dead"}],
}


def replay_config(tmp_path: Path, entries: Any) -> LoadedConfig:
    (tmp_path / "diagnoses.json").write_text(json.dumps(entries))
    return write_config(
        tmp_path, config_data("http://127.0.0.1:9", diagnosis={"provider": "replay", "replay_file": "diagnoses.json"})
    )


def test_replay_answers_with_the_first_matching_entry(tmp_path: Path, store: Store) -> None:
    loaded = replay_config(
        tmp_path,
        [
            {"match": {"invariant": "node_up", "key": "n9"}, "diagnosis": dict(RECORDED, summary="n9")},
            {"match": {"invariant": "node_up"}, "model": "recorded-model", "diagnosis": RECORDED},
            {"diagnosis": dict(RECORDED, summary="catch-all")},
        ],
    )
    diagnoser = offline(loaded, store)
    item = {"id": "n2", "state": "down"}
    result = asyncio.run(diagnoser.diagnose(request_for(loaded, "node_up", "n2", item, {}), mode="execute"))
    assert result == Diagnosis(**RECORDED, provider="replay", model="recorded-model")


def test_replay_without_a_match_falls_back_to_the_runbook(tmp_path: Path, store: Store) -> None:
    loaded = replay_config(tmp_path, [{"match": {"key": "n9"}, "diagnosis": RECORDED}])
    item = {"id": "n2", "state": "down"}
    result = asyncio.run(offline(loaded, store).diagnose(request_for(loaded, "node_up", "n2", item, {"limits": {"default": 5}}), mode="execute"))
    assert result.provider == "runbook"
    assert result.fallback_reason == "replay: no entry of diagnosis.replay_file matches invariant 'node_up', key 'n2'"
    assert [(a.action, a.params) for a in result.recommended_actions] == [
        ("deregister_node", {"node_id": "n2"}),
        ("set_limit", {"limit": 10}),
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"diagnosis": RECORDED}, "must hold a JSON list"),
        ([{"diagnosis": dict(RECORDED, confidence=2)}], r"entry 0: diagnosis\.confidence: Input should be less than or equal to 1"),
        ([{"diagnosis": RECORDED}, {"match": {"node": "n2"}, "diagnosis": RECORDED}], r"entry 1: match\.node: Extra inputs"),
        ([{"match": {}}], r"entry 0: diagnosis: Field required"),
    ],
)
def test_a_wrong_replay_file_is_a_config_error_naming_the_entry(tmp_path: Path, store: Store, entries: Any, message: str) -> None:
    loaded = replay_config(tmp_path, entries)
    with pytest.raises(ConfigError, match=message):
        offline(loaded, store)


def test_a_replay_file_that_is_not_json_is_a_config_error(tmp_path: Path, store: Store) -> None:
    loaded = replay_config(tmp_path, [])
    (tmp_path / "diagnoses.json").write_text("[{")
    with pytest.raises(ConfigError, match=r"diagnoses\.json is not valid JSON"):
        offline(loaded, store)


# Integers in CEL's int64 range: JSON numbers beyond it reach CEL as doubles (its int is int64),
# so the runbook cannot hand them back unchanged.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(item=json_values | st.dictionaries(st.sampled_from(["id", "state"]), json_values))
def test_runbook_never_raises_whatever_the_entity(shipped_config: LoadedConfig, item: Any) -> None:
    request = request_for(shipped_config, "node_heartbeat", "k", item, {"registry": [item]})
    result = runbook_diagnosis(shipped_config, request, NOW)
    params = [a.params for a in result.recommended_actions]
    if isinstance(item, dict) and "id" in item:
        assert params == [{"node_id": item["id"]}]
    else:
        assert params == [] and "left out" in result.evidence[-1]


def test_a_long_runbook_is_cut_to_the_submission_bounds(tmp_path: Path) -> None:
    data = config_data("http://127.0.0.1:9", diagnosis={"provider": "runbook"})
    entry = {"action": "deregister_node", "params": {"node_id": "item.id"}, "reason": "r" * 10_000}
    data["invariants"][0]["runbook"] = [entry] * 12
    loaded = write_config(tmp_path, data)
    item = {"id": "n2", "state": "down"}
    result = runbook_diagnosis(loaded, request_for(loaded, "node_up", "n2", item, {}), NOW)
    assert len(result.recommended_actions) == 10
    assert all(len(a.reason) <= 4000 for a in result.recommended_actions)
    assert result.evidence[-1] == "runbook entry 12 (deregister_node) left out: at most 10 actions are proposed"
