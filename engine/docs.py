"""The generated references: docs/config.md, docs/lab.md, docs/testing.md and docs/eval.md, from
the models of the file languages (engine.config.docs renders them; a test fails when one is stale).

    python -m engine.docs        # rewrite all three
"""

from __future__ import annotations

from pathlib import Path

from engine.config.docs import Reference, render_reference
from engine.config.types_doc import types_section
from engine.config.models import Config
from engine.evals.docs import DOCS_FILE as EVAL_DOCS, eval_reference, shipped_eval_files
from engine.lab.models import Lab
from engine.redis_commands import vocabulary_markdown
from engine.schemas import SCHEMA_FILES, schema_of
from engine.testing.model import TestFile

ROOT = Path(__file__).resolve().parents[1]
CONVENTIONS = """\
Conventions: unknown keys are errors; durations are strings with a unit (`250ms`, `5s`, `2m`,
`1h30m`, `1d`); paths are relative to the file; `${VAR}` and `${VAR:-default}` are replaced
from the environment in any string."""

CONFIG_INTRO = f"""\
Generated from the models by `python -m engine.docs` (a test fails when this file is stale).
The JSON Schema for editors is `schemas/{SCHEMA_FILES['config']}`; start a config with
`# yaml-language-server: $schema=../schemas/{SCHEMA_FILES['config']}` (the path relative to the
file). Lab files and test files have references of their own: [lab.md](lab.md),
[testing.md](testing.md); [tutorial.md](tutorial.md) writes a whole subject step by step, and
[semantics.md](semantics.md) says what values look like and what happens when things fail.

{CONVENTIONS} In a CEL expression `${...}` is an error: the environment reaches expressions
only through typed `vars`. CEL expressions see every observation by name, `prev` (the previous
tick's values), `now` (unix seconds), `vars` and, inside `for_each`, `item`; action guards also
see `params`. Every expression is type-checked before anything runs: see [Types](#types) at the
end."""

LAB_INTRO = f"""\
Generated from the models by `python -m engine.docs` (a test fails when this file is stale).
A lab file says how to run a subject on loopback (`opctl lab up|status|down`) and which faults
`opctl demo` plays against it. A config names its lab with `lab: PATH`. The JSON Schema for
editors is `schemas/{SCHEMA_FILES['lab']}` (`# yaml-language-server: $schema=...`).

{CONVENTIONS} A step is a mapping with exactly one key naming its kind."""

LAB_APPENDIX = """\
## Against a service already running

A lab without `processes` starts nothing: `opctl lab up` and `opctl lab down` have nothing to
do, and `opctl demo` plays its scenarios against whatever its `exports` point at, a service you
started yourself. `wait_until: {expr: ...}` steps check a CEL condition on the config's own
observations, so a scenario can wait for the service to look ready the way the operator sees it:

<!-- file: examples/beehive/running.yaml -->
```yaml
# yaml-language-server: $schema=../../schemas/opctl-lab.schema.json
version: 1
name: beehive_running
state_dir: ${OPCTL_LAB_STATE_DIR:-../../.opctl/lab/beehive_running}
exports:
  BEEHIVE_URL: ${BEEHIVE_URL:-http://127.0.0.1:18480}
scenarios:
  - name: stuck_bee
    setup:
      - wait_until: {expr: "hive.bees.size() >= 2", timeout: 10s}
    inject:
      - http: {method: POST, url: "${BEEHIVE_URL:-http://127.0.0.1:18480}/chaos/stick/bee-2"}
    expect: {fires: bee_heartbeat, key: bee-2, action: restart_bee}
```

With the hive running (`python3 examples/beehive/beehive.py --token hive-token`), play it with
`opctl demo examples/beehive/beehive.yaml --lab examples/beehive/running.yaml --scenario stuck_bee`
(`--lab` plays another lab file than the config's `lab:`)."""

TEST_INTRO = f"""\
Generated from the models by `python -m engine.docs` (a test fails when this file is stale).
A test file runs a config offline over virtual time (`opctl test PATH...`): fixtures stand in
for the observations, recorded diagnoses for the model, a recorder for the targets of actions;
each case checks the invariant states, tickets, prompts and actions after the tick at its time.
`opctl test --property` also runs the file's property tests. The JSON Schema for editors is
`schemas/{SCHEMA_FILES['test']}` (`# yaml-language-server: $schema=...`).

{CONVENTIONS} A test file is recognised by its top-level `config:` with `cases:` or
`properties:`."""

TEST_APPENDIX = """\
## Fixtures

One fixture per observation of the config, in one of these forms:

<!-- example: TestFile.fixtures -->
```yaml
fixtures:
  qps: "1000x20 _x2 1000x20"            # series notation: one value per tick, `_` an observation error
  latency: {values: "1+1x10"}           # the same, spelled out
  registry: {value: [{id: n1, state: up}]}   # one value for the whole test
  nodes: {json_file: fixtures/nodes.json}    # a value from a JSON file, relative to the test file
  redis_ping: {error: "connection refused"}  # the observation fails at every tick
  hive:                                       # steps: each holds from its time until the next
    - {from: 0s, value: {queue: 3, bees: []}}
    - {from: 6s, error: "timeout after 1s"}
```

The series notation is promtool's: `1 2 3` three values; `5x3` four values (5 and three more);
`1+1x3` is 1 2 3 4, `10-2x2` is 10 8 6; `_` an error at that tick, `_x3` three of them. Numbers
written without a fraction or exponent stay integers (so `x == 3` holds in CEL).

A fixture's value is what the observation's `select` yields, e.g. the list of nodes for
`select: body.nodes`; for a `fanout` target it is one entry per endpoint,
`{endpoint, ok, value, error}` (see [semantics.md](semantics.md)).

## Recorded diagnoses

`diagnoses:` answer in place of a model for tickets of an invariant (and key): the replay
provider returns `diagnosis` (the same fields a model returns: `summary`, `root_cause`,
`confidence`, `evidence`, `recommended_actions` with `action`, `params`, `reason`). Without
one, a config's runbook answers."""


def references() -> dict[str, tuple[Path, Reference]]:
    """docs file -> what it is generated from."""
    configs = [*sorted((ROOT / "configs").glob("*.yaml")), ROOT / "examples" / "beehive" / "beehive.yaml"]
    labs = [*sorted(ROOT.glob("subjects/*/lab.yaml")), *sorted(ROOT.glob("examples/*/lab.yaml"))]
    tests = [*sorted(ROOT.glob("subjects/*/tests/*.yaml")), *sorted(ROOT.glob("examples/*/tests/*.yaml"))]
    beehive = ROOT / "examples" / "beehive"
    return {
        "config": (ROOT / "docs" / "config.md", Reference(
            Config, "The opctl config language", CONFIG_INTRO, "Config (the document)", schema_of("config"), configs,
            beehive / "beehive.yaml", ROOT, types_section() + "\n" + vocabulary_markdown(),
        )),
        "lab": (ROOT / "docs" / "lab.md", Reference(
            Lab, "opctl lab files", LAB_INTRO, "Lab (the document)", schema_of("lab"), labs, beehive / "lab.yaml", ROOT,
            LAB_APPENDIX,
        )),
        "test": (ROOT / "docs" / "testing.md", Reference(
            TestFile, "opctl test files", TEST_INTRO, "TestFile (the document)", schema_of("test"), tests,
            beehive / "tests" / "bees.yaml", ROOT, TEST_APPENDIX,
        )),
        "eval": (EVAL_DOCS, eval_reference(shipped_eval_files())),
    }  # fmt: skip


def render(kind: str) -> str:
    return render_reference(references()[kind][1])


if __name__ == "__main__":
    for kind, (path, reference) in references().items():
        path.write_text(render_reference(reference))
