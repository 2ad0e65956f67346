"""The README stays short and its commands are the ones CI runs; every link in the docs leads somewhere.

The facts each page of ``docs/`` states are held to the code by the tests of their topic (the help and the
verbs in ``tests/workers/test_commands.py``, the workflow contract in ``tests/workers/test_workflow_examples.py``,
the state diagram in ``tests/lockcore/test_diagram.py``); this module holds the pages together.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
CI_RUN = ROOT / ".ci" / "run"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)


def _prose(text: str) -> str:
    """The text outside code: a link written inside a code block or span is an example, not a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to
    hyphens; inline code keeps its text."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return frozenset(anchors)


def _relative_links(page: Path) -> Iterator[str]:
    for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: … lead outside the repository
            yield target


def test_the_readme_is_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        assert destination.exists(), f"{page.name}: {target} leads to no file"
        assert destination.is_relative_to(ROOT), f"{page.name}: {target} leads out of the repository"
        if anchor:
            assert destination.suffix == ".md", f"{page.name}: {target} has an anchor into a page that has none"
            assert anchor in _anchors(destination), f"{page.name}: {target} names no heading of {destination.name}"


def test_the_link_check_reads_links_and_anchors_as_github_does() -> None:
    assert _slug("Deploying to AWS (`pulumi up`, one stack per environment)") == (
        "deploying-to-aws-pulumi-up-one-stack-per-environment"
    )
    assert _slug("3. The secrets, in SSM") == "3-the-secrets-in-ssm"
    assert _slug("The stack's configuration (Pulumi)") == "the-stacks-configuration-pulumi"
    assert list(_LINK.findall(_prose("[a](b.md#c) `[x](nowhere.md)` [d](https://e)"))) == ["b.md#c", "https://e"]


def _commands(script: str) -> list[tuple[str, ...]]:
    """Each command line of a shell script as the shell splits it into words; comments and blank lines left out."""
    return [words for line in script.splitlines() if (words := tuple(shlex.split(line, comments=True)))]


def _readme_commands() -> list[tuple[str, ...]]:
    """The README's first bash block: set up once, run the demo, run every test."""
    block = re.search(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert block is not None, "the README shows its commands in a ```bash block"
    return _commands(block[1])


def test_the_readme_gives_the_setup_the_demo_and_every_test_as_three_lines() -> None:
    setup, demo, every_test = _readme_commands()
    assert setup == ("python3", "-m", "venv", ".venv", "&&", ".venv/bin/pip", "install", "nox[uv]")
    assert (demo, every_test) == ((".venv/bin/nox", "-s", "demo"), (".venv/bin/nox",))
    assert "python3-venv" in README.read_text(encoding="utf-8"), "the apt package a bare image needs"


def test_ci_runs_exactly_the_readmes_setup_and_test_command() -> None:
    setup, _demo, every_test = _readme_commands()
    steps = [words for words in _commands(CI_RUN.read_text(encoding="utf-8")) if words[0] not in {"set", "cd"}]
    assert steps == [setup, every_test]


def test_the_noxfile_has_the_demo_session_and_runs_lint_types_and_tests_by_default() -> None:
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    assert re.search(r"^@nox\.session\ndef demo\(", noxfile, re.M)
    sessions = re.search(r"^nox\.options\.sessions = \[(.*)\]$", noxfile, re.M)
    assert sessions is not None and set(re.findall(r'"(\w+)"', sessions[1])) == {"lint", "checks"}
    checks = noxfile[noxfile.index("def checks(") : noxfile.index("def _pytest(")]
    assert '"mypy"' in checks and "_pytest(session)" in checks, "checks runs the type check and the tests"


def _github_workflow() -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    if True in document:  # YAML 1.1 reads the key `on` as the boolean true; GitHub reads it as "on"
        document["on"] = document.pop(True)
    return document


def test_the_github_workflow_runs_ci_on_every_push_and_pull_request_on_python_3_11_and_3_12() -> None:
    workflow = _github_workflow()
    assert {"push", "pull_request"} <= set(workflow["on"])
    (job,) = workflow["jobs"].values()
    assert {"3.11", "3.12"} <= set(job["strategy"]["matrix"]["python-version"])
    steps = job["steps"]
    runs = [step["run"].strip() for step in steps if "run" in step]
    assert runs == ["bash .ci/run"], "the workflow runs what CI runs, and only that"
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"{step['uses']}: pin a major version"
