"""`chatops` end to end: `main(argv)` in this process, against a moto DynamoDB server on loopback.

Each invocation's DynamoDB requests are counted at the server (``LocalAWS.app.dynamodb_requests``), so "one
request per lock operation" is measured where it matters, not inferred from our code.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockcore import machine as m
from lockcore.outcomes import Refusal
from lockcore.record import LockRecord, Status, epoch, iso
from tests.lockcore.stores import WSGI, denying, moto_behind, throttling, without_old_item
from workers.cli.codes import MEANINGS, Code
from workers.cli.main import main, why_not_holder
from workers.local.motoserver import LOCAL_CREDENTIALS, LocalAWS

TABLE = "cli-test-locks"
RECORD_FIELDS = set(
    LockRecord("k", 1, "o", Status.IN_PROGRESS, "U1", "alice", "2025-01-01T00:00:00Z", 0, correlation_id="c")
    .as_json()
    .keys()
)


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAWS]:
    with LocalAWS() as server, pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_MAX_ATTEMPTS"):
            env.delenv(name, raising=False)
        for name, value in LOCAL_CREDENTIALS.items():
            env.setenv(name, value)
        # The CLI finds its endpoint the standard boto3 way, and its table in LOCK_TABLE_NAME.
        env.setenv("AWS_ENDPOINT_URL", server.url)
        env.setenv("LOCK_TABLE_NAME", TABLE)
        assert main(["locks", "create-table"]) == 0
        yield server


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    requests: int

    def json(self) -> dict[str, Any]:
        assert self.out.count("\n") == 1, f"not exactly one JSON line: {self.out!r}"
        body = json.loads(self.out)
        assert isinstance(body, dict)
        return body

    @property
    def one_error_line(self) -> str:
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


Chatops = Callable[..., Run]


@pytest.fixture
def chatops(aws: LocalAWS, capsys: pytest.CaptureFixture[str]) -> Chatops:
    capsys.readouterr()

    def run(*argv: str) -> Run:
        before = aws.app.dynamodb_requests
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err, aws.app.dynamodb_requests - before)

    return run


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A lock key of this test's own, so that tests sharing the table never meet."""
    return "build-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")


def acquire(chatops: Chatops, key: str, owner: str, *extra: str) -> Run:
    return chatops("locks", "acquire", key, "--owner", owner, "--json", *extra)


# --------------------------------------------------------------------------------------------- acquire
def test_acquire_takes_the_lock_in_one_request(chatops: Chatops, key: str) -> None:
    details = "--user U1 --user-name alice --component router --environment plt --correlation-id corr-1"
    run = acquire(chatops, key, "req-1", *details.split())
    body = run.json()
    assert (run.code, run.requests) == (0, 1)
    assert body["lockKey"] == key
    assert body["outcome"] == "acquired"
    assert isinstance(body["token"], int) and body["token"] >= 1
    lock = body["lock"]
    assert lock["owner"] == "req-1" and lock["lockedByName"] == "alice" and lock["correlationId"] == "corr-1"
    assert lock["status"] == "IN_PROGRESS"
    assert lock["leaseExpiresAt"] == epoch(lock["lockedAt"]) + 600, "--ttl defaults to 600 s"
    assert lock["leaseExpiresAtIso"] == iso(lock["leaseExpiresAt"])


def test_acquire_text_says_token_and_lease(chatops: Chatops, key: str) -> None:
    run = chatops("locks", "acquire", key, "--owner", "req-1", "--ttl", "90")
    assert run.code == 0
    assert re.fullmatch(rf"{key}: acquired, token 1, frees in 1m(29|30)s \(\d\d:\d\d:\d\dZ\)\n", run.out)


def test_a_second_owner_is_told_who_holds_it_and_exits_3(chatops: Chatops, key: str) -> None:
    first = acquire(chatops, key, "req-1", "--user", "U123", "--user-name", "alice")
    run = acquire(chatops, key, "req-2", "--user", "U456", "--user-name", "bob")
    body = run.json()
    assert (run.code, run.requests) == (3, 1), "the loser learns the holder from the same single request"
    assert body["outcome"] == "held"
    assert body["token"] == first.json()["token"]
    assert set(body["holder"]) == RECORD_FIELDS - {"correlationId"}
    assert body["holder"]["owner"] == "req-1" and body["holder"]["lockedBy"] == "U123"
    assert "alice (U123)" in body["reason"]

    text = chatops("locks", "acquire", key, "--owner", "req-3")
    assert text.code == 3 and text.out == ""
    assert re.fullmatch(
        rf"{key}: held by alice \(U123\) since \d\d:\d\d:\d\dZ, frees in (9m\d\ds|10m00s) "
        rf"\(\d\d:\d\d:\d\dZ\), token 1\n",
        text.err,
    )


def test_the_holder_acquiring_again_reenters_with_the_same_token(chatops: Chatops, key: str) -> None:
    first = acquire(chatops, key, "req-1").json()
    again = acquire(chatops, key, "req-1")
    assert again.code == 0
    assert again.json()["outcome"] == "reentered"
    assert again.json()["token"] == first["token"]


# --------------------------------------------------------------------------------------------- release
def test_release_by_the_holder_records_the_outcome(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1").json()["token"]
    run = chatops("locks", "release", key, "--owner", "req-1", "--token", str(token), "--outcome", "failed", "--json")
    body = run.json()
    assert (run.code, run.requests) == (0, 1)
    assert body == {
        "lockKey": key,
        "outcome": "released",
        "token": token,
        "repeated": False,
        "lock": body["lock"],
    }
    assert body["lock"]["status"] == "FAILED" and "releasedAt" in body["lock"]

    repeated = chatops("locks", "release", key, "--owner", "req-1", "--token", str(token), "--outcome", "failed")
    assert repeated.code == 0 and "already released" in repeated.out


def test_release_by_someone_else_is_refused_with_4(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1").json()["token"]
    run = chatops(
        "locks", "release", key, "--owner", "req-2", "--token", str(token), "--outcome", "completed", "--json"
    )
    body = run.json()
    assert (run.code, run.requests) == (4, 1)
    assert body["outcome"] == "not-holder"
    assert body["reason"] == Refusal.NOT_OWNER.value
    assert body["token"] == token and body["holder"]["owner"] == "req-1"


def test_release_with_a_stale_token_is_refused_with_4(chatops: Chatops, key: str) -> None:
    old = acquire(chatops, key, "req-1").json()["token"]
    chatops("locks", "force-release", key, "--token", str(old), "--by", "U9", "--reason", "stuck")
    new = acquire(chatops, key, "req-2").json()["token"]
    assert new > old

    run = chatops("locks", "release", key, "--owner", "req-1", "--token", str(old), "--outcome", "completed")
    assert run.code == 4 and run.out == ""
    assert run.err.splitlines()[0] == f"{key}: refused: {Refusal.STALE_TOKEN.value}"
    assert f"token {new}" in run.err.splitlines()[1]


def test_release_of_a_key_never_locked_is_refused_with_4(chatops: Chatops, key: str) -> None:
    run = chatops("locks", "release", key, "--owner", "o", "--token", "1", "--outcome", "completed", "--json")
    assert run.code == 4
    assert run.json()["holder"] is None and run.json()["reason"] == Refusal.NO_LOCK.value


# ---------------------------------------------------------------------------------------------- extend
def test_extend_sets_the_lease_end_to_now_plus_ttl(chatops: Chatops, key: str) -> None:
    body = acquire(chatops, key, "req-1", "--ttl", "60").json()
    run = chatops("locks", "extend", key, "--owner", "req-1", "--token", str(body["token"]), "--ttl", "3600", "--json")
    assert (run.code, run.requests) == (0, 1)
    acquired_at = body["lock"]["leaseExpiresAt"] - 60
    assert acquired_at + 3600 <= run.json()["lock"]["leaseExpiresAt"] <= acquired_at + 3600 + 5, "now + 3600 s"
    assert run.json()["outcome"] == "extended"


def test_extend_by_a_stale_token_is_refused_with_4(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1").json()["token"]
    run = chatops("locks", "extend", key, "--owner", "req-1", "--token", str(token + 1), "--ttl", "60", "--json")
    assert (run.code, run.requests) == (4, 1)
    assert run.json()["reason"] == Refusal.STALE_TOKEN.value


# --------------------------------------------------------------------------------------- force-release
def test_force_release_with_the_current_token_records_who_and_why(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1").json()["token"]
    run = chatops(
        "locks",
        "force-release",
        key,
        "--token",
        str(token),
        "--by",
        "U9",
        "--reason",
        "runner died",
        "--json",
    )
    assert (run.code, run.requests) == (0, 1)
    lock = run.json()["lock"]
    assert (lock["status"], lock["releasedBy"], lock["releaseReason"]) == (
        "FORCE_RELEASED",
        "U9",
        "runner died",
    )
    assert run.json()["outcome"] == "force-released"


def test_force_release_with_a_stale_token_is_refused_with_4(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1").json()["token"]
    run = chatops("locks", "force-release", key, "--token", str(token - 1), "--by", "U9", "--reason", "x")
    assert (run.code, run.requests) == (4, 1)
    assert Refusal.STALE_TOKEN.value in run.err


def test_force_release_without_a_reason_fails_in_one_line(chatops: Chatops, key: str) -> None:
    run = chatops("locks", "force-release", key, "--token", "1", "--by", "U9", "--reason", "")
    assert run.code == 1 and run.requests == 0
    assert "who did it and why" in run.one_error_line


# ----------------------------------------------------------------------------------------------- check
def test_check_passes_only_for_the_live_holders_token(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1").json()["token"]
    live = chatops("locks", "check", key, "--token", str(token), "--json")
    assert (live.code, live.requests) == (0, 1)
    assert live.json() == {"lockKey": key, "token": token, "holds": True, "outcome": "holds"}

    wrong = chatops("locks", "check", key, "--token", str(token + 1), "--json")
    assert (wrong.code, wrong.requests) == (4, 1)
    assert wrong.json()["holds"] is False and wrong.json()["outcome"] == "not-holder" and wrong.json()["reason"]

    chatops("locks", "release", key, "--owner", "req-1", "--token", str(token), "--outcome", "completed")
    released = chatops("locks", "check", key, "--token", str(token))
    assert released.code == 4 and "stop" in released.err


def test_check_of_a_missing_key_exits_4(chatops: Chatops, key: str) -> None:
    assert chatops("locks", "check", key, "--token", "0").code == 4


# ------------------------------------------------------------------------------------------------ show
def test_show_of_a_missing_key_exits_0_and_says_it_is_free(chatops: Chatops, key: str) -> None:
    run = chatops("locks", "show", key)
    assert run.code == 0
    assert run.out == f"{key}: free: no lock has been taken under this key yet\n"
    body = chatops("locks", "show", key, "--json").json()
    assert body == {"lockKey": key, "state": "FREE", "token": 0, "lock": None}


def test_show_of_a_held_lock_is_a_table(chatops: Chatops, key: str) -> None:
    acquire(chatops, key, "req-1", "--user", "U1", "--user-name", "alice")
    run = chatops("locks", "show", key)
    assert run.code == 0
    heading, row, sentence = run.out.splitlines()
    assert heading.split() == ["KEY", "STATE", "HOLDER", "SINCE", "EXPIRES", "IN", "TOKEN"]
    assert row.startswith(f"{key}  HELD") and "alice (U1)" in row
    assert sentence.startswith(f"{key}: held by alice (U1) since")
    body = chatops("locks", "show", key, "--json").json()
    assert body["state"] == "HELD" and body["token"] == 1 and body["lock"]["owner"] == "req-1"


def test_show_of_a_released_lock_exits_0_with_its_last_outcome(chatops: Chatops, key: str) -> None:
    token = acquire(chatops, key, "req-1", "--user-name", "alice").json()["token"]
    chatops("locks", "release", key, "--owner", "req-1", "--token", str(token), "--outcome", "completed")
    run = chatops("locks", "show", key)
    assert run.code == 0 and "COMPLETED" in run.out and "free: last taken by alice" in run.out


# ------------------------------------------------------------------------------------ list, create-table
def test_create_table_is_idempotent_and_list_shows_live_then_all(chatops: Chatops) -> None:
    table = ("--table", "cli-list-locks")
    created = chatops(*table, "locks", "create-table", "--json")
    assert created.code == 0 and created.json() == {"table": "cli-list-locks", "created": True}
    again = chatops(*table, "locks", "create-table")
    assert again.code == 0 and "already exists" in again.out
    assert chatops(*table, "locks", "list").out == "no live locks in cli-list-locks\n"

    for name, user in (("build-api-dev", "carol"), ("build-router-plt", "alice"), ("deploy-web-prd", "bob")):
        acquire(chatops, name, f"req-{user}", *table, "--user-name", user)
    chatops(
        *table,
        "locks",
        "release",
        "build-api-dev",
        "--owner",
        "req-carol",
        "--token",
        "1",
        "--outcome",
        "completed",
    )

    live = chatops(*table, "locks", "list", "--json")
    assert live.code == 0
    assert [(lock["lockKey"], lock["state"]) for lock in live.json()["locks"]] == [
        ("build-router-plt", "HELD"),
        ("deploy-web-prd", "HELD"),
    ]
    everything = chatops(*table, "locks", "list", "--all", "--json").json()["locks"]
    assert [(lock["lockKey"], lock["state"]) for lock in everything] == [
        ("build-api-dev", "COMPLETED"),
        ("build-router-plt", "HELD"),
        ("deploy-web-prd", "HELD"),
    ]
    assert all(RECORD_FIELDS - {"correlationId"} | {"state"} <= set(lock) for lock in everything)
    assert everything[0]["releasedAt"].endswith("Z")

    text = chatops(*table, "locks", "list", "--all").out.splitlines()
    assert len(text) == 4 and text[0].startswith("KEY")
    state_column = text[0].index("STATE")
    assert [line[state_column:].split()[0] for line in text[1:]] == ["COMPLETED", "HELD", "HELD"]
    assert "carol" in text[1] and "alice" in text[2] and "bob" in text[3]


def test_table_given_after_the_subcommand_counts_too(chatops: Chatops, key: str) -> None:
    run = chatops("locks", "show", key, "--table", "no-such-table")
    assert run.code == 1 and "no-such-table" in run.one_error_line


# -------------------------------------------------------------------------------------------- failures
def test_a_missing_table_fails_with_one_line(chatops: Chatops, key: str) -> None:
    run = chatops("--table", "no-such-table", "locks", "acquire", key, "--owner", "req-1")
    assert (run.code, run.out) == (1, "")
    line = run.one_error_line
    assert line.startswith("chatops: error: ") and "no-such-table" in line and "create-table" in line

    as_json = chatops("--table", "no-such-table", "locks", "acquire", key, "--owner", "req-1", "--json")
    assert as_json.code == 1 and "no-such-table" in as_json.json()["error"] and as_json.err == ""


def test_an_unreachable_endpoint_fails_with_one_line(
    chatops: Chatops, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a loopback port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    # botocore reads AWS_MAX_ATTEMPTS: one attempt is enough to see how the CLI reports the failure.
    run = chatops("locks", "acquire", key, "--owner", "req-1")
    assert run.code == 1
    assert run.one_error_line == f"chatops: error: cannot reach DynamoDB at http://127.0.0.1:{closed}"
    assert chatops("locks", "list", "--json").json() == {
        "error": f"cannot reach DynamoDB at http://127.0.0.1:{closed}",
        "code": "UNREACHABLE",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["locks", "acquire", "k"],  # --owner missing
        ["locks", "acquire", "k", "--owner", "o", "--ttl", "0"],
        ["locks", "release", "k", "--owner", "o", "--token", "1", "--outcome", "maybe"],
        ["locks", "check", "k", "--token", "three"],
        ["locks", "unlock", "k"],
        ["locks"],
        [],
    ],
)
def test_usage_errors_exit_2(chatops: Chatops, argv: list[str]) -> None:
    run = chatops(*argv)
    assert (run.code, run.out, run.requests) == (2, "", 0)
    assert run.err.startswith("usage: chatops") and "error:" in run.err


def test_usage_errors_with_json_print_one_error_object(chatops: Chatops) -> None:
    run = chatops("locks", "acquire", "k", "--json", "--ttl", "-5")
    assert run.code == 2 and run.err == ""
    assert run.json() == {"error": "argument --ttl: must be at least 1, not -5", "code": "USAGE"}
    missing = chatops("locks", "release", "k", "--json")
    assert missing.code == 2 and "required" in missing.json()["error"]


# ------------------------------------------------------------------------------------------------ --version
def test_version_is_the_installed_packages(chatops: Chatops, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"chatops {metadata.version('chatops-locks')}\n"


# ---------------------------------------------------------------------------- --region, --profile, --endpoint-url
def test_endpoint_url_wins_over_the_environment_before_or_after_the_subcommand(
    chatops: Chatops, aws: LocalAWS, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert chatops("locks", "show", key).code == 1, "the environment's endpoint is closed"
    before = chatops("--endpoint-url", aws.url, "locks", "acquire", key, "--owner", "req-1")
    after = chatops("locks", "show", key, "--endpoint-url", aws.url, "--json")
    assert (before.code, before.requests, after.code) == (0, 1, 0), before.err + after.err
    assert after.json()["state"] == "HELD"
    bad = chatops("locks", "show", key, "--endpoint-url", "localhost:8000")
    assert bad.code == 2 and "not an http(s) URL" in bad.err


def test_region_comes_from_the_flag_then_aws_region_then_aws_default_region(
    chatops: Chatops, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto keeps a table per region: the table exists in ca-central-1 (AWS_DEFAULT_REGION) only."""
    assert chatops("locks", "show", key).code == 0
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # botocore 1.43 alone would ignore it
    elsewhere = chatops("locks", "show", key)
    assert elsewhere.code == 1 and "(eu-west-1)" in elsewhere.one_error_line
    assert chatops("--region", "ca-central-1", "locks", "show", key).code == 0
    assert chatops("locks", "show", key, "--region", "ca-central-1").code == 0
    assert "(ap-south-1)" in chatops("locks", "show", key, "--region", "ap-south-1").one_error_line


def test_a_profile_gives_its_region_and_an_unknown_one_is_one_line(
    chatops: Chatops, key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    # A named profile takes its credentials from the profile, not from the environment.
    config.write_text("[profile elsewhere]\nregion = eu-central-1\naws_access_key_id = x\naws_secret_access_key = x\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    run = chatops("--profile", "elsewhere", "locks", "show", key)
    assert run.code == 1 and "(eu-central-1)" in run.one_error_line, "the profile's region, no table there"
    unknown = chatops("locks", "show", key, "--profile", "nobody", "--json")
    assert unknown.code == 1 and unknown.json()["code"] == "AWS_CONFIG" and "nobody" in unknown.json()["error"]


def test_no_region_anywhere_names_what_to_set(chatops: Chatops, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    run = chatops("locks", "show", key)
    assert run.code == 1 and run.requests == 0
    assert run.one_error_line == (
        "chatops: error: no AWS region: pass --region or set AWS_REGION (or a region in the AWS profile)"
    )


# ------------------------------------------------------------------------------------ a store without ALL_OLD
def test_a_lost_race_on_a_store_without_the_old_item_is_told_who_holds_it(chatops: Chatops, key: str) -> None:
    """dynalite, older DynamoDB Local: the loser exits 3 naming the holder (it used to exit 1), at the cost of
    one consistent read; nothing to configure."""
    counted = Counted()
    with moto_behind(lambda app: counted(without_old_item(app))) as url:
        at = ("--endpoint-url", url, "--table", "no-all-old")
        assert chatops(*at, "locks", "create-table").code == 0
        assert acquire(chatops, key, "req-1", *at, "--user-name", "alice").code == 0
        sent = len(counted.targets)
        lost = acquire(chatops, key, "req-2", *at)
        assert lost.code == 3 and lost.json()["holder"]["lockedByName"] == "alice" and lost.json()["code"] == "HELD"
        assert counted.targets[sent:] == ["UpdateItem", "GetItem"]


@dataclass
class Counted:
    """A middleware that notes each DynamoDB operation it passes on."""

    targets: list[str] = field(default_factory=list)

    def __call__(self, app: WSGI) -> WSGI:
        def note(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
            if target.startswith("DynamoDB_"):
                self.targets.append(target.rsplit(".", maxsplit=1)[-1])
            return app(environ, start_response)

        return note


# ------------------------------------------------------------------------------------------- --json codes
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _held(chatops: Chatops, key: str) -> Run:
    acquire(chatops, key, "req-1")
    return acquire(chatops, key, "req-2")


def _lapsed(chatops: Chatops, key: str) -> int:
    token = int(acquire(chatops, key, "req-1", "--ttl", "1").json()["token"])
    time.sleep(1.2)
    return token


def _released(chatops: Chatops, key: str) -> int:
    token = int(acquire(chatops, key, "req-1").json()["token"])
    chatops("locks", "release", key, "--owner", "req-1", "--token", str(token), "--outcome", "completed")
    return token


def _replaced(chatops: Chatops, key: str) -> int:
    token = int(acquire(chatops, key, "req-1").json()["token"])
    chatops("locks", "force-release", key, "--token", str(token), "--by", "U9", "--reason", "x")
    acquire(chatops, key, "req-2")
    return token


def _on(middleware: Callable[[WSGI], WSGI], *argv: str) -> Callable[[Chatops, str], Run]:
    def run(chatops: Chatops, key: str) -> Run:
        with moto_behind(middleware) as url:
            return chatops(*argv, key, "--json", "--endpoint-url", url)

    return run


def _environment(changes: dict[str, str | None], *argv: str) -> Callable[[Chatops, str], Run]:
    def run(chatops: Chatops, key: str) -> Run:
        with pytest.MonkeyPatch.context() as env:
            for name, value in changes.items():
                if value is None:
                    env.delenv(name, raising=False)
                else:
                    env.setenv(name, value)
            env.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found earlier
            return chatops(*argv, key, "--json")

    return run


Scenario = Callable[[Chatops, str], Run]
REFUSALS: dict[str, tuple[Code, Scenario]] = {
    "acquire a held lock": (Code.HELD, _held),
    "release by another owner": (
        Code.NOT_OWNER,
        lambda c, k: c(
            "locks", "release", k, "--owner", "req-9", "--token", str(_lapsed(c, k)), "--outcome", "failed", "--json"
        ),
    ),
    "release with a replaced token": (
        Code.STALE_TOKEN,
        lambda c, k: c(
            "locks", "release", k, "--owner", "req-1", "--token", str(_replaced(c, k)), "--outcome", "failed", "--json"
        ),
    ),
    "release of a key never locked": (
        Code.NO_LOCK,
        lambda c, k: c("locks", "release", k, "--owner", "o", "--token", "1", "--outcome", "failed", "--json"),
    ),
    "extend a lapsed lease": (
        Code.LEASE_ENDED,
        lambda c, k: c(
            "locks", "extend", k, "--owner", "req-1", "--token", str(_lapsed(c, k)), "--ttl", "60", "--json"
        ),
    ),
    "force-release a released lock": (
        Code.NOT_HELD,
        lambda c, k: c(
            "locks", "force-release", k, "--token", str(_released(c, k)), "--by", "U9", "--reason", "x", "--json"
        ),
    ),
    "check a key never locked": (Code.NO_LOCK, lambda c, k: c("locks", "check", k, "--token", "1", "--json")),
    "check a replaced token": (
        Code.STALE_TOKEN,
        lambda c, k: c("locks", "check", k, "--token", str(_replaced(c, k)), "--json"),
    ),
    "check a lapsed lease": (
        Code.LEASE_ENDED,
        lambda c, k: c("locks", "check", k, "--token", str(_lapsed(c, k)), "--json"),
    ),
    "check a released lock": (
        Code.NOT_HELD,
        lambda c, k: c("locks", "check", k, "--token", str(_released(c, k)), "--json"),
    ),
    "a missing table": (Code.TABLE_MISSING, lambda c, k: c("locks", "show", k, "--table", "nowhere", "--json")),
    "an unreachable endpoint": (
        Code.UNREACHABLE,
        _environment({"AWS_MAX_ATTEMPTS": "1"}, "locks", "show", "--endpoint-url", "http://127.0.0.1:9"),
    ),
    "no credentials": (
        Code.NO_CREDENTIALS,
        _environment(
            {
                "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None,
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true",
            },
            "locks",
            "show",
        ),
    ),
    "no region": (
        Code.NO_REGION,
        _environment(
            {"AWS_DEFAULT_REGION": None, "AWS_REGION": None, "AWS_CONFIG_FILE": "/nonexistent"}, "locks", "show"
        ),
    ),
    "throttled": (Code.THROTTLED, _on(throttling, "--table", "t", "locks", "show")),
    "access denied": (Code.STORE_ERROR, _on(denying, "--table", "t", "locks", "show")),
    "an unknown profile": (Code.AWS_CONFIG, lambda c, k: c("locks", "show", k, "--profile", "nobody", "--json")),
    "a force-release without a reason": (
        Code.INVALID,
        lambda c, k: c("locks", "force-release", k, "--token", "1", "--by", "U9", "--reason", "", "--json"),
    ),
    "a usage error": (Code.USAGE, lambda c, k: c("locks", "extend", k, "--json")),
}
NOT_FROM_A_COMMAND_LINE = {
    Code.LEASE_RUNS: "only the reaper's expire is refused because a lease still runs; no command expires",
    Code.CHANGED: "only a store whose writes are not atomic can answer it",
    Code.TRY_AGAIN: "an item deleted between a refused write and its read, or 32 writers landing in between",
    Code.NOT_INSTALLED: "the local extra is installed wherever these tests run",
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_every_refusal_and_failure_carries_a_code_of_the_enum(
    chatops: Chatops, key: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    expected, scenario = REFUSALS[case]
    run = scenario(chatops, key)
    body = run.json()
    assert body["code"] == expected and body["code"] in set(Code)
    assert run.code == MEANINGS[Code(body["code"])][0], "the exit status the code comes with"
    assert ("error" in body) == (run.code in (1, 2)) and ("reason" in body) == (run.code in (3, 4))
    assert run.err == ""


def test_every_code_is_met_above_or_says_why_not() -> None:
    met = {code for code, _ in REFUSALS.values()}
    assert met | set(NOT_FROM_A_COMMAND_LINE) == set(Code) and not met & set(NOT_FROM_A_COMMAND_LINE)
    assert {refusal.name for refusal in Refusal} <= {code.name for code in Code}
    assert set(MEANINGS) == set(Code)


@pytest.mark.parametrize("case", ["no region", "a missing table", "an unreachable endpoint", "an unknown profile"])
def test_an_expected_failure_is_one_line_without_json_too(
    chatops: Chatops, key: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    _, scenario = REFUSALS[case]
    run = scenario(lambda *argv: chatops(*[arg for arg in argv if arg != "--json"]), key)
    assert run.code == 1 and run.out == ""
    assert run.one_error_line.startswith("chatops: error: ")


items = st.none() | st.fixed_dictionaries(
    {"lockKey": st.just("k")},
    optional={
        "token": st.integers(0, 3),
        "owner": st.sampled_from(["req-1", "req-2"]),
        "status": st.sampled_from([status.value for status in Status]),
        "leaseExpiresAt": st.integers(0, 4),
        "ttl": st.integers(0, 4),
    },
)


@given(item=items, token=st.integers(0, 3), now=st.integers(0, 4))
def test_check_refuses_exactly_when_the_fencing_check_does_and_says_why(
    item: dict[str, Any] | None, token: int, now: int
) -> None:
    refusal = why_not_holder(item, token, now)
    assert (refusal is None) == m.holds_token(item, token, now)
    assert (refusal is Refusal.NO_LOCK) == (item is None)
    if refusal is not None and item is not None and item.get("token") == token:
        live = m.state_of(item, now) is m.LockState.HELD
        assert not live and refusal in (Refusal.LEASE_ENDED, Refusal.NOT_HELD)


# ------------------------------------------------------------------------------------------------ demo
# The demos run a stack of their own in this process, and moto keeps one state per process: stopping it leaves
# this module's table behind. They come last.
def test_demo_tells_and_checks_the_story(chatops: Chatops, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL", "LOCK_TABLE_NAME"):
        monkeypatch.delenv(name)  # the demo needs none of them
    run = chatops("demo")
    assert run.code == 0, run.out + run.err
    out = run.out
    assert "story did not hold" not in out

    race = out.split("── 2.")[0]
    started = re.findall(r"^  (\w+) +🔨 Building router \(plt\)… run (\d+) +\(in the channel\)$", race, re.M)
    assert len(started) == 1, race
    winner, run_id = started[0]
    told = re.findall(r"^  (\w+) +⚠️ Build already in progress — started by (\w+) ", race, re.M)
    assert len(told) == 4 and {holder for _, holder in told} == {winner}
    assert winner not in {loser for loser, _ in told}
    assert f"one run dispatched: #{run_id}" in race and "fencing token 1" in race

    assert re.search(rf"1 lock held right now: build-router-plt \({winner}\)", out)
    assert "✅ router (plt) built in" in out and f"started by @{winner}" in out
    assert "build-router-plt: COMPLETED, token 1" in out
    assert re.search(r"build-router-plt: held by \w+, token 1 → 2", out)
    assert re.search(r"--token 2 → ✅ holds the lock", out) and re.search(r"--token 1 → ⛔ not the holder", out)

    queue = out.split("── 5.")[1].split("── 6.")[0]
    first = re.search(r"^  (\w+) +/build router plt --queue → ⏳ Queued: position 1 behind (\w+) ", queue, re.M)
    assert first is not None, queue
    head, holder = first.groups()
    assert re.search(r"/build router plt --queue → ⏳ Queued with an identical request already waiting", queue)
    watcher = re.search(r"^  (\w+) +\[Notify me when free\] → 👀 I'll tell you here when", queue, re.M)
    assert watcher is not None
    assert f"⏭️ Handed to @{head} (and 1 identical request), next in line (token 3)." in queue
    assert re.search(rf"^  {head} +🔨 Building router \(plt\)… run \d+", queue, re.M)
    assert f"waited with {head}'s and runs as this one" in queue
    assert f"(only {watcher[1]} sees) 🔓 `build-router-plt` is free now (COMPLETED)" in queue
    assert "/build dequeue router plt → ✅ You left the queue of `build-router-plt` (you were at position 1)" in queue
    assert f"/build status --locks → … ⏳ Waiting: 1. @{head} (+1 identical)" in queue
    assert holder not in {head, watcher[1]}

    assert "🚫 Sorry, you may not run /deploy unlock api plt" in out
    assert "Force-released `deploy-api-plt` (token 1), recorded as FORCE_RELEASED" in out
    assert "@admin force-unlocked `deploy-api-plt`" in out
    assert "/deploy api plt → 🧊 Deploys to *plt* are frozen by admin" in out
    assert re.search(r"/build stats → Locks over the last 7 days: \d+ acquisitions", out)
    assert out.count("(the distributed lock is switched off)") == 2
    assert "2 runs of api (plt) at once; no build-api-plt lock" in out

    home = out.split("── 9.")[1]
    assert "alice     Home → `build-router-plt` held by bob" in home
    assert "alice     Home → `build-router-plt` free again; Lately: release by bob" in home

    rollback = out.split("── 10.")[1].split("── 11.")[0]
    shown = re.search(
        r"Goes live: `(\w{7})`, deployed by bob \(@bob\).*\n.*Live now: `(\w{7})`, deployed by carol", rollback
    )
    assert shown is not None and shown[1] != shown[2], rollback
    assert f"[Confirm rollback] → ⏪ Rolling back api (plt) to `{shown[1]}`" in rollback
    assert re.search(rf"run #\d+ on main, inputs sha={shown[1]}…", rollback)
    assert f"at `{shown[1]}` (⏪ rollback)" in rollback

    window = out.split("── 11.")[1]
    assert "froze prod until Monday 09:00 CEST (65 h" in window
    assert "/deploy api prod → 🧊 Deploys to *prod* are frozen by the scheduled window weekend until" in window
    assert re.search(r"/deploy api prod → 🚀 Deploying api \(prod\)", window)


# ------------------------------------------------------------------------------------------------ the lock alone
def test_the_lock_demo_tells_and_checks_its_story(chatops: Chatops, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL", "LOCK_TABLE_NAME"):
        monkeypatch.delenv(name)  # the demo needs none of them
    run = chatops("demo", "--lock")
    assert run.code == 0, run.out + run.err
    out = run.out

    winners = re.findall(r"🔒 (\w+) \(U\d+\) got the lock: token (\d+)", out)
    assert len(winners) == 1
    winner, first_token = winners[0][0], int(winners[0][1])
    told = re.findall(r"^ {4}(\w+) +held by (\w+) \(U\d+\) since \S+, frees in \S+ \((\S+)\), token (\d+)$", out, re.M)
    assert len(told) == 19
    assert {holder for _, holder, _, _ in told} == {winner}
    assert {int(token) for *_, token in told} == {first_token}
    assert winner not in {loser for loser, *_ in told}
    assert "20 acquires, 20 DynamoDB requests" in out

    assert f"release (token {first_token})" in out and "released as COMPLETED" in out
    later = [int(token) for token in re.findall(r"→ acquired, token (\d+)", out)]
    assert len(later) == 2 and first_token < later[0] < later[1]
    assert "(simulated clock +11 min" in out
    assert f"release (token {later[0]})" in out and f"refused: {Refusal.STALE_TOKEN.value}" in out
    assert re.search(rf"check --token {later[1]} +→ ✅ holds the lock", out)
    assert re.search(rf"check --token {later[0]} +→ ⛔ not the holder", out)
    assert "story did not hold" not in out
