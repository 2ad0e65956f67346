"""The state diagram in docs/lock.md is the machine's transition table, drawn."""

from __future__ import annotations

from pathlib import Path

from lockcore.diagram import mermaid

LOCK_PAGE = Path(__file__).resolve().parents[2] / "docs" / "lock.md"


def test_the_lock_pages_diagram_is_drawn_from_the_transition_table() -> None:
    assert f"```mermaid\n{mermaid()}\n```" in LOCK_PAGE.read_text(encoding="utf-8")
