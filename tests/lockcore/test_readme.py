"""The README's state diagram is the machine's transition table, drawn."""

from __future__ import annotations

from pathlib import Path

from lockcore.diagram import mermaid

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_diagram_is_drawn_from_the_transition_table() -> None:
    assert f"```mermaid\n{mermaid()}\n```" in README.read_text(encoding="utf-8")
