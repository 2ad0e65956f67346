"""The state diagram of docs/lock.md, drawn from :data:`lockcore.machine.TRANSITIONS` so that the two cannot drift."""

from __future__ import annotations

from lockcore.machine import TRANSITIONS, LockState

_ORDER = list(LockState)


def mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> FREE"]
    edges: dict[tuple[LockState, LockState], list[str]] = {}
    for operation, (starts, leads_to, _who) in TRANSITIONS.items():
        for start in sorted(starts, key=_ORDER.index):
            for end in sorted(leads_to, key=_ORDER.index):
                edges.setdefault((start, end), []).append(operation.value)
    for (start, end), operations in sorted(edges.items(), key=lambda e: (_ORDER.index(e[0][0]), _ORDER.index(e[0][1]))):
        lines.append(f"    {start.value} --> {end.value}: {' / '.join(operations)}")
    lines.append("    HELD --> LAPSED: lease end passes (no write)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(mermaid())
