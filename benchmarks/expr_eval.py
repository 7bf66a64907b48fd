"""Time per-entity CEL evaluation: fast path vs library vs a hand-written Python loop.

Run: .venv/bin/python benchmarks/expr_eval.py [--sizes 1000,10000,100000]
Prints a table in ms and ratios; the last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.expr import compile_expr  # noqa: E402

EXPRESSIONS = [
    'item.state == "up"',
    "item.available / item.capacity >= 0.2",
    "item.count <= item.limit && item.window_ms > 0",
]


def handwritten(item: dict[str, Any]) -> tuple[bool, bool, bool]:
    return (
        item["state"] == "up",
        item["available"] // item["capacity"] >= 0.2,
        item["count"] <= item["limit"] and item["window_ms"] > 0,
    )


def make_entities(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"node-{i}", "state": "up" if i % 7 else "down", "available": i % 150, "capacity": 100,
         "count": i % 11, "limit": 10, "window_ms": 1000, "labels": {"zone": f"z{i % 3}"}}
        for i in range(n)
    ]


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--library-max", type=int, default=10000, help="largest size timed on the library")
    args = parser.parse_args()
    compiled = [compile_expr(src) for src in EXPRESSIONS]
    assert all(c.fast for c in compiled)
    figures: dict[str, Any] = {"expressions": EXPRESSIONS, "sizes": {}}
    print(f"{'entities':>9} {'fast ms':>9} {'library ms':>11} {'python ms':>10} {'fast/python':>12} {'library/fast':>13}")
    for n in (int(s) for s in args.sizes.split(",")):
        entities = make_entities(n)
        envs = [{"item": e, "tick": 1, "params": {}} for e in entities]  # envs hold more than needed

        def fast() -> None:
            for env in envs:
                for c in compiled:
                    c.evaluate(env)

        def library() -> None:
            for env in envs:
                for c in compiled:
                    c.evaluate_with_library(env)

        def python() -> None:
            for env in envs:
                handwritten(env["item"])

        for env in envs[:50]:  # same answers before timing
            assert tuple(c.evaluate(env) for c in compiled) == handwritten(env["item"])
            assert tuple(c.evaluate_with_library(env) for c in compiled) == handwritten(env["item"])
        repeats = 5 if n <= 10000 else 2
        fast_ms = best_of(repeats, fast)
        python_ms = best_of(repeats, python)
        library_ms = best_of(1, library) if n <= args.library_max else None
        row = {"fast_ms": round(fast_ms, 2), "python_ms": round(python_ms, 2),
               "library_ms": round(library_ms, 2) if library_ms is not None else None,
               "fast_over_python": round(fast_ms / python_ms, 2),
               "library_over_fast": round(library_ms / fast_ms, 1) if library_ms is not None else None}
        figures["sizes"][n] = row
        lib = f"{library_ms:11.1f}" if library_ms is not None else f"{'(skipped)':>11}"
        lof = f"{row['library_over_fast']:13.1f}" if library_ms is not None else f"{'-':>13}"
        print(f"{n:>9} {fast_ms:9.2f} {lib} {python_ms:10.2f} {row['fast_over_python']:12.2f} {lof}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
