"""Benchmark: what redacting observed values costs a tick.

Every observed value is redacted where it is observed (`Observer._result` calls
`Redactor.value`), so each tick pays for it over every entity: redaction holds by construction,
and this is its price. The value here is a node registry of 1k and 10k entities (eight fields
each: strings, numbers, a nested object), as an HTTP observation returns it, with a Redactor that
knows five secrets; none of them occurs in the data, which is the common case. Also timed: the
same value with one secret planted in one entity, and, for scale, `json.dumps` of the value (what
any search over the value as one text would cost before searching).

The last line printed is one JSON object:

    ms_1k, ms_10k                   median ms of Redactor.value, nothing to mask
    planted_ms_10k                  median ms with one known secret in one entity
    json_dumps_ms_10k               median ms of json.dumps of the same 10k value
    us_per_entity                   ms_10k / 10k, in microseconds
    runs                            timed runs per figure

Run: .venv/bin/python benchmarks/redaction.py [--runs N]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from engine.redact import Redactor

SECRETS = ("lab-token-0123456789", "s3cr3t-redis-pass", "hook-secret-abcdef", "sk-ant-api03-xyz789", "pg-password-42")


def registry(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"node{i}",
            "address": f"10.0.{i // 250}.{i % 250}:8080",
            "state": "up" if i % 50 else "stale",
            "policy_version": 7,
            "decisions": 1000 + i,
            "failure_mode_decisions": 0,
            "labels": {"zone": f"z{i % 3}", "pool": "default"},
            "last_seen": 1_760_000_000.5 + i,
        }
        for i in range(count)
    ]


def median_ms(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    redactor = Redactor(SECRETS)
    small, large = registry(1_000), registry(10_000)
    planted = copy.deepcopy(large)
    planted[5_000]["labels"]["pool"] = f"token {SECRETS[0]}"
    assert redactor.value(planted)[5_000]["labels"]["pool"] != planted[5_000]["labels"]["pool"]
    assert redactor.value(large) == large
    figures: dict[str, float] = {
        "ms_1k": median_ms(lambda: redactor.value(small), args.runs),
        "ms_10k": median_ms(lambda: redactor.value(large), args.runs),
        "planted_ms_10k": median_ms(lambda: redactor.value(planted), args.runs),
        "json_dumps_ms_10k": median_ms(lambda: json.dumps(large), args.runs),
    }
    figures["us_per_entity"] = round(figures["ms_10k"] * 1000 / len(large), 2)
    figures["runs"] = args.runs
    print(f"redacting a node registry, nothing to mask: 1k {figures['ms_1k']} ms, 10k {figures['ms_10k']} ms "
          f"({figures['us_per_entity']} us per entity)")
    print(f"10k with one secret planted: {figures['planted_ms_10k']} ms; json.dumps of the 10k value: {figures['json_dumps_ms_10k']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
