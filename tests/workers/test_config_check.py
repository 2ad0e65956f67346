"""``chatops config check [FILE]``: the effective configuration (every key, defaults filled in) for a good file —
the workers' TOML or a Pulumi stack file — and every problem, one line each, with exit 1 for a bad one."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from infra import settings
from workers.cli.main import main
from workers.protocol import schema
from workers.protocol.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "docs" / "chatops.toml"
STACK_FILE = ROOT / "Pulumi.plt.yaml"


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*schema.ENV_NAMES, "CHATOPS_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_a_good_file_prints_every_key_with_its_default_and_reads_back_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"# The effective configuration of {SHIPPED}: every key, defaults filled in.\n")
    effective = tomllib.loads(out)
    assert effective["commands"]["build"] == {
        "workflow": "build.yml",
        "lease_seconds": 600,
        "requires_lock": True,
        "lock_scope": "component-environment",
        "conflict": "reject",
    }
    assert effective["github"]["api_url"] == "https://api.github.com"
    printed = tmp_path / "effective.toml"
    printed.write_text(out, encoding="utf-8")
    assert load_config(printed, {}) == replace(load_config(SHIPPED, {}), source=str(printed))


def test_the_file_defaults_to_chatops_config_and_the_overrides_that_applied_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATOPS_CONFIG", str(SHIPPED))
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/ops")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "# $GITHUB_REPOSITORY overrides its key here.\n" in out
    assert tomllib.loads(out)["github"]["repository"] == "acme/ops"


def test_a_bad_file_prints_every_problem_one_line_each_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chatops.toml"
    path.write_text('components = ["router"]\nenvironments = ["plt"]\n[slak]\n[github]\nrepo = "o/r"\n')
    assert main(["config", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"chatops config {path}: slak: unknown key (did you mean slack?)",
        f"chatops config {path}: github.repo: unknown key (did you mean repository?)",
        f"chatops config {path}: github.repository: missing (owner/name)",
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file (set CHATOPS_CONFIG)"),
        ("components = [", "not valid TOML"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    path = tmp_path / "chatops.toml"
    if content is not None:
        path.write_text(content)
    assert main(["config", "check", str(path)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"chatops config {path}: {expected}")


def test_a_stack_file_is_checked_as_the_pulumi_program_checks_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(STACK_FILE)]) == 0
    out = capsys.readouterr().out
    config = yaml.safe_load(out)["config"]
    assert config["chatops:commands"]["build"]["lockScope"] == "component-environment"
    assert config["chatops:logRetentionDays"] == 30
    given = {key.removeprefix("chatops:"): value for key, value in config.items()}
    assert settings.from_values("plt", given).values == settings.from_values("plt", _stack("plt")).values


def test_a_typo_in_a_stack_file_is_named_with_its_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))
    document["config"]["chatops:slack.teamIDs"] = ["T0123ABCD"]
    document["config"]["chatops:maxReceiveCount"] = "5000"  # as `pulumi config set` writes a number: a string
    path = tmp_path / "Pulumi.qa.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["config", "check", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    source = f"Pulumi stack qa ({path})"
    assert lines[0].startswith(f"{source}: chatops:slack.teamIDs: not a key: Pulumi reads it as one key")
    assert lines[1:] == [f"{source}: chatops:maxReceiveCount: expected a whole number from 1 to 1000, not 5000"]


def test_a_stack_files_encrypted_secret_is_accepted_and_never_shown_a_plain_one_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))
    del document["config"]["chatops:ssmParameters"]  # each at its default name
    document["config"]["chatops:githubToken"] = {"secure": "v1:AAAAciphertext"}
    path = tmp_path / "Pulumi.qa.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "githubToken" not in out and "ciphertext" not in out
    document["config"]["chatops:githubToken"] = "ghp_plain"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["config", "check", str(path)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"Pulumi stack qa ({path}): chatops:githubToken: stored in plain text")
    assert "ghp_plain" not in line


def test_config_needs_its_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 2
    assert "check" in capsys.readouterr().err


def _stack(stack: str) -> dict[str, object]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return schema.stack_values(document["config"])
