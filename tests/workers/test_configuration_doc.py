"""docs/configuration.md states what the schema is: every key with its type, default and meaning (and no key the
schema does not know), every variable that overrides one, each lock scope's key, and an example file that loads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from workers.protocol import schema
from workers.protocol.config import Action, LockScope

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _section(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


def test_every_key_the_schema_knows_is_documented_with_its_type_default_and_meaning_and_no_other() -> None:
    rows = {line for line in _section("## Every key").splitlines() if line.startswith(("| `", "| —"))}
    expected = {row.markdown for row in schema.reference()}
    assert sorted(rows - expected) == [], "rows the schema does not have (or has otherwise)"
    assert sorted(expected - rows) == [], "keys the doc leaves out (paste these rows)"


def test_every_variable_that_overrides_a_key_is_in_the_variables_table() -> None:
    table = _section("## Environment variables")
    documented = set(re.findall(r"^\| `([A-Z_]+)`", table, re.M))
    assert set(schema.ENV_NAMES) <= documented


def test_the_scope_table_gives_each_scopes_key() -> None:
    table = _section("### Locks: `requires_lock` and `lock_scope`")
    for scope in LockScope:
        key = schema.lock_key(Action.BUILD, scope, "router", "plt")
        assert re.search(rf"^\| `{scope.value}`( \(default\))? \| `{key}` \|", table, re.M), scope


def test_the_example_file_is_a_file_the_workers_accept() -> None:
    section = _section("## The configuration file")
    example = re.search(r"A file with everything in it:\n\n```toml\n(.*?)```", section, re.S)
    assert example is not None
    checked = schema.check(tomllib.loads(example[1]), schema.Form.FILE, "docs/configuration.md")
    assert checked.errors == ()
    assert checked.values["github"]["components"]["billing"]["repository"] == "example-org/billing"
