"""TiKV is pure config: the engine holds nothing TiKV- or PD-specific, and a new TiKV invariant
needs only YAML.

The scan looks for words that only mean something for TiKV/PD, chosen so generic code cannot
trip them by accident:

- product names: `tikv`, `PD` as a word, `placement driver`;
- PD's API and metric namespaces: `/pd/api`, `pd_<name>` (pd_cluster_status, pd_regions_status...);
- TiKV's data model in PD's spelling: `store_id`, `state_name`, `status_address`, `region_id`,
  `region_count`, `leader_count` / `leader_score` / `leader_weight`, `regions/check`,
  `miss-peer` / `down-peer` / `pending-peer`, `evict-leader` / `transfer-leader` (either separator),
  `raft` as a word (not inside "draft");
- TiKV's and PD's well-known ports: 20160, 20180, 2379.

Bare generic words (`leader`, `region`, `store`, `peer`, `scheduler`) are deliberately not in the
list: the engine has a ticket *store*, and a generic engine may well speak of leaders or regions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine.config.validate import validate_file
from tests.tikv.test_tikv_config import CONFIG, REPO, _runbook_diagnosis, tikv_lab  # noqa: F401 (autouse fixture)

ENGINE = REPO / "engine"
TEXT_SUFFIXES = {".py", ".j2", ".md", ".txt", ".json", ".yaml", ".yml", ".toml", ".lua", ".sql"}

SPECIFIC = re.compile(
    r"""
    tikv
    | \bpd\b
    | placement[\s_-]*driver
    | /pd/api
    | \bpd_[a-z]
    | \bstore_id\b | \bstate_name\b | \bstatus_address\b
    | \bregion_(?:id|count)\b | \bleader_(?:count|score|weight)\b
    | regions/check | \b(?:miss|down|pending)-peer\b
    | \bevict[-_]leader | \btransfer[-_]leader
    | \braft
    | \b(?:20160|20180|2379)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)

# A user-facing description that names PD as an example of failover; it carries no behaviour.
# The lead has been asked to reword it; any other hit fails.
DOCUMENTED_EXCEPTIONS: set[tuple[str, str]] = set()


def engine_files() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)


def specific_hits(root: Path, files: list[Path]) -> list[str]:
    hits = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = SPECIFIC.search(line)
            if match and not any(rel == f and text in line for f, text in DOCUMENTED_EXCEPTIONS):
                hits.append(f"{rel}:{number}: {match.group(0)!r} in {line.strip()}")
    return hits


def test_engine_has_no_tikv_or_pd_specifics() -> None:
    files = engine_files()
    assert len(files) > 20 and any(p.name == "loop.py" for p in files)  # the scan sees the engine
    assert specific_hits(REPO, files) == []


@pytest.mark.parametrize(
    "line",
    [
        'resp = client.get("/pd/api/v1/stores")',
        "if item['store']['state_name'] == 'Up':",
        "query = 'sum(pd_cluster_status{type=\"store_down_count\"})'",
        "# ask the Placement Driver",
        "EVICT = 'evict-leader-scheduler'",
        "addr = 'tikv1:20160'",
        "def leader_score(store): ...",
        "raft_log_lag = 3",
    ],
)
def test_the_scan_catches_tikv_code(tmp_path: Path, line: str) -> None:
    planted = tmp_path / "engine" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(f"x = 1\n{line}\n")
    assert specific_hits(tmp_path, [planted]) == [f"engine/planted.py:2: {SPECIFIC.search(line).group(0)!r} in {line}"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "line",
    [
        "store = Store(path)  # the SQLite ticket store",
        "jsonschema.Draft202012Validator(schema)",
        "leader = members[0]  # generic leader election",
        "update_ticket(ticket_id, region='eu-west-1')",
        "padding = compute_pd(x)",
        "port = 23790",
    ],
)
def test_the_scan_leaves_generic_code_alone(tmp_path: Path, line: str) -> None:
    planted = tmp_path / "engine" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(line + "\n")
    assert specific_hits(tmp_path, [planted]) == []


# --------------------------------------------------------------------------- a new invariant, YAML only

REGION_COUNT_INVARIANT = {
    "name": "store_region_count",
    "description": "No Up store holds more than 50 region replicas.",
    "severity": "warning",
    "for_each": 'stores.filter(s, s.store.state_name == "Up")',
    "key": "string(item.store.id)",
    "expr": "item.status.region_count <= 50",
    "for": "4s",
    "message": "store {{ item.store.id }} holds {{ item.status.region_count }} regions (limit 50)",
}


def config_with_extra_invariant(directory: Path) -> Path:
    """The shipped config plus one invariant, written elsewhere; file references made absolute."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["subject"]["context_file"] = str((CONFIG.parent / data["subject"]["context_file"]).resolve())
    for key in ("system_file", "ticket_file"):
        data["prompts"][key] = str((CONFIG.parent / data["prompts"][key]).resolve())
    if "lab" in data:
        data["lab"] = str((CONFIG.parent / data["lab"]).resolve())
    data["invariants"].append(REGION_COUNT_INVARIANT)
    path = directory / "tikv-plus.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_new_invariant_written_only_in_yaml_fires(tmp_path: Path, allow_outside: None) -> None:
    config = config_with_extra_invariant(tmp_path)
    assert validate_file(config, env={}) == []
    with tikv_lab(tmp_path, config=config, stores=4) as lab:
        lab.run(10)
        # Four stores share 60 regions x 3 replicas: 45 each, under the limit.
        assert [s["status"]["region_count"] for s in lab.value("stores")] == [45, 45, 45, 45]
        assert lab.reports[-1].invariants["store_region_count"]["counts"] == {"ok": 4, "pending": 0, "firing": 0, "unknown": 0, "error": 0}
        assert lab.reports[-1].invariants["store_region_count"]["health"] == "ok"
        # Taking store 4 out (the declared action, for real) pushes its replicas onto the others.
        assert lab.send("set_store_offline", {"store_id": 4}).status_code == 200
        lab.run(60, step=4)
        assert [s["status"]["region_count"] for s in lab.value("stores")] == [60, 60, 60]
        fired = sorted((t.entity_key, t.message) for t in lab.tickets() if t.invariant == "store_region_count")
        assert [key for key, _ in fired] == ["1", "2", "3"]
        for key, message in fired:  # the message is the one the ticket opened with, above 50
            count = re.fullmatch(rf"store {key} holds (\d+) regions \(limit 50\)", message)
            assert count is not None and 50 < int(count.group(1)) <= 60, message
        assert all(lab.status("store_region_count", str(i)) == "firing" for i in (1, 2, 3))
