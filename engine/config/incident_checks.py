"""Checks of incidents and muting: `inhibited_by` names known invariants (or `target_up`),
never its own invariant, and a target's `inhibited_by` names declared invariants; inhibitions
form no cycle (each invariant of a cycle would mute the next while it fires, so a whole cause
could go unreported); `incidents.group_by` names fields a ticket has; the built-in name
`target_up` is not declared again."""

from __future__ import annotations

from engine.config.checks import PartialConfig, _names_hint
from engine.config.loader import LoadedDocument
from engine.config.models import GROUP_BY_FIELDS, TARGET_UP, is_identifier
from engine.config.problems import DocPath, Problem
from engine.config.reads import targets_read


def incident_problems(doc: LoadedDocument, partial: PartialConfig) -> list[Problem]:
    problems: list[Problem] = []

    def report(path: DocPath, message: str) -> None:
        mark = doc.mark_for(path)
        problems.append(Problem(doc.file, mark.line, mark.column, path, message))

    known = partial.invariant_names | {TARGET_UP}
    # the muting graph: `target_up` is one node per target (it mutes an invariant only for the
    # targets that invariant reads), so an invariant and a target may inhibit each other's
    # different entities without a cycle
    edges: dict[str, list[tuple[str, DocPath]]] = {}
    for index, inv in partial.invariants:
        base: DocPath = ("invariants", index)
        if inv.name == TARGET_UP:
            report(base + ("name",), f"'{TARGET_UP}' is the built-in invariant of target health; set `down_after`, "
                                     "`severity`, `runbook` and `inhibited_by` on a target instead, or pick another name")
        for i, name in enumerate(inv.inhibited_by):
            path = base + ("inhibited_by", i)
            if name == inv.name:
                report(path, f"invariant '{inv.name}' cannot inhibit itself")
            elif name not in known:
                report(path, f"invariant '{inv.name}' is inhibited_by unknown invariant '{name}'; "
                             f"{_names_hint(name, known, 'invariants')}")
            elif name == TARGET_UP:
                for target in sorted(targets_read(inv, partial.observations)):
                    edges.setdefault(inv.name, []).append((_target_node(target), path))
            else:
                edges.setdefault(inv.name, []).append((name, path))
    for target_name, target in partial.targets.items():
        for i, name in enumerate(target.inhibited_by):
            path = ("targets", target_name, "inhibited_by", i)
            if name == TARGET_UP:
                report(path, f"target '{target_name}' cannot be inhibited_by {TARGET_UP}: name the invariant that "
                             "sees the cause (a target's own health is its target_up)")
            elif name not in partial.invariant_names:
                report(path, f"target '{target_name}' is inhibited_by unknown invariant '{name}'; "
                             f"{_names_hint(name, partial.invariant_names, 'invariants')}")
            else:
                edges.setdefault(_target_node(target_name), []).append((name, path))
    for cycle, path in _cycles(edges):
        report(path, f"inhibition cycle: {' -> '.join(cycle)}: while they fire each mutes the next, so "
                     "none of them would be diagnosed or notified; remove one of these inhibitions")
    if partial.incidents is not None:
        for i, field in enumerate(partial.incidents.group_by):
            label = field.removeprefix("labels.")
            if field not in GROUP_BY_FIELDS and not (field.startswith("labels.") and label and is_identifier(label)):
                report(("incidents", "group_by", i), f"group_by '{field}' is not a ticket field; use "
                                                     f"{', '.join(GROUP_BY_FIELDS)} or labels.<name>")
    return problems


def _target_node(target: str) -> str:
    return f"{TARGET_UP}[{target}]"


def _cycles(edges: dict[str, list[tuple[str, DocPath]]]) -> list[tuple[list[str], DocPath]]:
    """Each inhibition cycle once (as the names around it), with the place of its first edge."""
    found: list[tuple[list[str], DocPath]] = []
    seen_cycles: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(name: str, trail: list[str], paths: list[DocPath]) -> None:
        if name in trail:
            start = trail.index(name)
            members = frozenset(trail[start:])
            if members not in seen_cycles:
                seen_cycles.add(members)
                found.append(([*trail[start:], name], paths[start]))
            return
        if name in done:
            return
        for target, path in edges.get(name, ()):
            visit(target, [*trail, name], [*paths, path])
        done.add(name)

    for name in sorted(edges):
        visit(name, [], [])
    return found
