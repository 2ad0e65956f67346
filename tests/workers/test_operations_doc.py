"""docs/operations.md is held to the code: its synopsis to the parser, its tables to the codes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from workers.cli.codes import MEANINGS, Code
from workers.cli.main import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")
WORD = re.compile(r"[a-z][a-z-]*")
CODE_ROW = re.compile(r"^\| `([A-Z_]+)` \| (\d) \| (.+) \|$", re.M)


def section(title: str) -> str:
    return DOC.read_text(encoding="utf-8").split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """Each synopsis line: the command's words (``("locks", "acquire")``) and the flags it shows."""
    block = section("Synopsis").split("```text\n", 1)[1].split("```", 1)[0]
    commands: dict[tuple[str, ...], set[str]] = {}
    for line in block.splitlines():
        words = line.split()[1:]
        path: list[str] = []
        for word in words:
            if not WORD.fullmatch(word):
                break
            path.append(word)
        commands[tuple(path)] = set(FLAG.findall(line))
    return commands


def parsed_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    """Each command one can run (the top level, for its own flags, and every leaf) and the flags its help shows."""
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    shown = {
        flag
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    }
    found = {path: shown} if not subparsers or not path else {}
    for action in subparsers:
        for name, sub in action.choices.items():
            found |= parsed_commands(sub, (*path, name))
    return found


def test_the_synopsis_names_every_command_with_exactly_its_flags() -> None:
    assert documented_commands() == parsed_commands(build_parser())


def test_the_table_of_codes_is_the_enum() -> None:
    rows = {
        code: (int(exit_status), meaning) for code, exit_status, meaning in CODE_ROW.findall(section("`chatops locks`"))
    }
    assert rows == {code.value: MEANINGS[code] for code in Code}


def test_the_documented_exit_statuses_are_those_of_the_codes() -> None:
    statuses = set(re.findall(r"^\| (\d) \| ", section("`chatops locks`"), re.M))
    assert statuses == {str(status) for status, _ in MEANINGS.values()} | {"0"}
