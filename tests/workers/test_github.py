"""The GitHub client against the GitHub stand-in: real HTTP on loopback, faults injected at the server."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.adapters.github import (
    MAX_INPUTS,
    GitHubAuthError,
    GitHubClient,
    GitHubError,
    GitHubNotFound,
    GitHubRejected,
    GitHubServerError,
    GitHubUnreachable,
)
from workers.local.github import GitHubStandIn, Repository, RunDetails, fake_sha, render_run_name, webhook_sender
from workers.local.slack import SlackStandIn
from workers.local.standin import Reply
from workers.protocol.workflow import RUN_NAME_EXPRESSION, Run, parse_run_name, run_name

TOKEN = "ghp_TopSecretToken0123456789"
REPO = "acme/platform"
DISPATCHES = "/dispatches"


def inputs(key: str = "build-router-plt", cid: str = "trig.123.abc") -> dict[str, str]:
    return {"component": "router", "environment": "plt", "lock_key": key, "correlation_id": cid, "lock_token": "7"}


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    repo = Repository(REPO, default_branch="trunk", branches={"release/1.2": fake_sha(REPO, "release/1.2")})
    with GitHubStandIn([repo], token=TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def client(github: GitHubStandIn) -> GitHubClient:
    return GitHubClient(TOKEN, api_url=github.api_url, timeout=0.5, backoff=0)


def since() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


# ------------------------------------------------------------------------------------------------ run names
def test_run_name_is_the_documented_convention() -> None:
    assert run_name("build-router-plt", "abc123") == "build-router-plt · cid=abc123"
    assert parse_run_name("build-router-plt · cid=abc123") == ("build-router-plt", "abc123")
    assert RUN_NAME_EXPRESSION == "${{ inputs.lock_key }} · cid=${{ inputs.correlation_id }}"


def test_a_workflow_rendering_the_expression_gives_the_run_name() -> None:
    assert render_run_name(RUN_NAME_EXPRESSION, inputs(), "build.yml") == run_name("build-router-plt", "trig.123.abc")


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("Deploy deploy-api-prod · cid=1.2.f0", ("deploy-api-prod", "1.2.f0")),
        ("build-router-plt · cid=abc  ", ("build-router-plt", "abc")),
        ("build", None),
        ("build-router-plt cid=abc", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_run_name_reads_the_end_of_any_name(name: str | None, parsed: tuple[str, str] | None) -> None:
    assert parse_run_name(name) == parsed


@pytest.mark.parametrize(("key", "cid"), [("build router", "x"), ("k", "a b"), ("", "x"), ("k", "a·b")])
def test_run_name_refuses_parts_that_would_not_parse_back(key: str, cid: str) -> None:
    with pytest.raises(ValueError, match="cannot go in a run name"):
        run_name(key, cid)


_PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._:/@+-", min_size=1, max_size=40)


@given(key=_PART, cid=_PART)
def test_run_names_round_trip(key: str, cid: str) -> None:
    assert parse_run_name(run_name(key, cid)) == (key, cid)


# --------------------------------------------------------------------------------------------------- refs
def test_resolve_ref_without_ref_takes_the_default_branch(github: GitHubStandIn, client: GitHubClient) -> None:
    assert client.resolve_ref(REPO) == ("trunk", fake_sha(REPO, "trunk"))
    assert [r.path for r in github.requests] == [f"/repos/{REPO}", f"/repos/{REPO}/commits/trunk"]


def test_resolve_ref_with_a_branch_name_containing_a_slash(github: GitHubStandIn, client: GitHubClient) -> None:
    assert client.resolve_ref(REPO, "release/1.2") == ("release/1.2", fake_sha(REPO, "release/1.2"))
    assert len(github.requests) == 1


def test_the_client_sends_the_token_and_the_api_version(github: GitHubStandIn, client: GitHubClient) -> None:
    client.resolve_ref(REPO, "trunk")
    headers = github.requests[0].headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"


def test_an_unknown_ref_is_rejected_with_githubs_words(client: GitHubClient) -> None:
    with pytest.raises(GitHubRejected, match="No commit found for SHA: nope") as caught:
        client.resolve_ref(REPO, "nope")
    assert caught.value.status == 422


def test_github_enterprise_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with GitHubStandIn([Repository(REPO)], path_prefix="/api/v3") as enterprise:
        monkeypatch.setenv("GITHUB_API_URL", f"{enterprise.url}/api/v3/")
        client = GitHubClient(TOKEN, timeout=0.5)
        assert client.api_url == f"{enterprise.url}/api/v3"
        assert client.resolve_ref(REPO)[0] == "main"
        assert enterprise.requests[0].path == f"/api/v3/repos/{REPO}"


def test_the_default_base_url_is_githubs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    assert GitHubClient(TOKEN).api_url == "https://api.github.com"
    assert TOKEN not in repr(GitHubClient(TOKEN))


# ----------------------------------------------------------------------------------------------- dispatch
def test_dispatch_returns_the_run_and_the_run_carries_the_run_name(github: GitHubStandIn, client: GitHubClient) -> None:
    result = client.dispatch_workflow(REPO, "build.yml", "trunk", inputs())

    assert result.has_run and result.run_id is not None
    assert result.html_url == f"{github.url}/{REPO}/actions/runs/{result.run_id}"
    (sent,) = github.requests_to("POST", DISPATCHES)
    assert sent.path == f"/repos/{REPO}/actions/workflows/build.yml/dispatches"
    assert sent.body == {"ref": "trunk", "inputs": inputs(), "return_run_details": True}
    run = client.get_run(REPO, result.run_id)
    assert (run.lock_key, run.correlation_id) == ("build-router-plt", "trig.123.abc")
    assert (run.status, run.conclusion, run.head_sha) == ("queued", None, fake_sha(REPO, "trunk"))


def test_a_204_dispatch_has_no_run_and_the_run_is_found_by_correlation_id(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    github.run_details = RunDetails.IGNORED
    client.dispatch_workflow(REPO, "build.yml", "trunk", inputs(cid="other"))
    before = since()

    result = client.dispatch_workflow(REPO, "build.yml", "trunk", inputs(cid="mine"))

    assert not result.has_run and result.run_id is None and result.html_url is None
    run = client.find_run(REPO, "build.yml", "mine", before)
    assert run is not None and run.correlation_id == "mine" and run.id == github.runs[-1].id
    listing = github.requests_to("GET", "/runs")[-1]
    assert listing.query["event"] == "workflow_dispatch"
    assert listing.query["created"].startswith(">=")


def test_a_server_refusing_return_run_details_is_asked_again_without_it(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    github.run_details = RunDetails.REFUSED

    result = client.dispatch_workflow(REPO, "deploy.yml", "trunk", inputs())

    assert not result.has_run
    first, second = github.requests_to("POST", DISPATCHES)
    assert first.body["return_run_details"] is True
    assert "return_run_details" not in second.body
    assert len(github.runs) == 1


def test_find_run_is_none_for_an_unknown_correlation_id(client: GitHubClient) -> None:
    client.dispatch_workflow(REPO, "build.yml", "trunk", inputs(cid="a"))
    assert client.find_run(REPO, "build.yml", "b", since()) is None
    assert client.find_run(REPO, "deploy.yml", "a", since()) is None


def test_await_run_gives_up_after_its_time(client: GitHubClient) -> None:
    started = time.monotonic()
    assert client.await_run(REPO, "build.yml", "never", since(), within=0.3, every=0.1) is None
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "bad_inputs",
    [{f"i{n}": "x" for n in range(MAX_INPUTS + 1)}, {"lock_token": 7}],
    ids=["26 inputs", "not a string"],
)
def test_inputs_github_would_refuse_are_not_sent(
    github: GitHubStandIn, client: GitHubClient, bad_inputs: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="inputs"):
        client.dispatch_workflow(REPO, "build.yml", "trunk", bad_inputs)
    assert github.requests == []


def test_twenty_five_inputs_are_fine(client: GitHubClient) -> None:
    assert client.dispatch_workflow(REPO, "build.yml", "trunk", {f"i{n}": "x" for n in range(MAX_INPUTS)}).has_run


# ---------------------------------------------------------------------------------------------- run status
def test_get_run_follows_the_run_to_its_conclusion(github: GitHubStandIn, client: GitHubClient) -> None:
    run_id = client.dispatch_workflow(REPO, "build.yml", "trunk", inputs()).run_id
    assert run_id is not None
    github.start_run(run_id)
    assert client.get_run(REPO, run_id).status == "in_progress"
    github.complete_run(run_id, "failure")

    run = client.get_run(REPO, run_id)

    assert run.completed and run.conclusion == "failure"
    assert run.html_url.endswith(f"/actions/runs/{run_id}")
    assert run.created_at and run.updated_at


def test_cancel_run_cancels_once_and_then_says_it_was_over(github: GitHubStandIn, client: GitHubClient) -> None:
    run_id = client.dispatch_workflow(REPO, "build.yml", "trunk", inputs()).run_id
    assert run_id is not None

    assert client.cancel_run(REPO, run_id) is True
    assert client.get_run(REPO, run_id).conclusion == "cancelled"
    assert client.cancel_run(REPO, run_id) is False
    assert github.requests_to("POST", "/cancel")[0].path == f"/repos/{REPO}/actions/runs/{run_id}/cancel"


def test_an_unknown_run_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(GitHubNotFound, match="run 42 in acme/platform"):
        client.get_run(REPO, 42)


# ------------------------------------------------------------------------------------------------- errors
def test_a_wrong_token_is_refused_without_showing_either_token(
    github: GitHubStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "ghp_WrongToken9876543210"
    client = GitHubClient(wrong, api_url=github.api_url, timeout=0.5)
    with caplog.at_level(logging.DEBUG), pytest.raises(GitHubAuthError, match="refused the token") as caught:
        client.dispatch_workflow(REPO, "build.yml", "trunk", inputs())
    assert caught.value.status == 401
    for secret in (wrong, TOKEN):
        assert secret not in str(caught.value)
        assert secret not in caplog.text


def test_a_403_is_a_token_without_the_right(github: GitHubStandIn, client: GitHubClient) -> None:
    github.fail_next(status=403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(GitHubAuthError, match=r"may not act on workflow build\.yml in acme/platform \(403: Resource"):
        client.dispatch_workflow(REPO, "build.yml", "trunk", inputs())


def test_a_rate_limit_says_when_it_resets(github: GitHubStandIn, client: GitHubClient) -> None:
    github.fail_next(status=403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1795000000"})
    with pytest.raises(GitHubServerError, match=r"rate limit reached \(403, resets at \d\d:\d\d:\d\dZ\)"):
        client.get_run(REPO, 1)


@pytest.mark.parametrize(
    ("call", "subject"),
    [
        (lambda c: c.resolve_ref("acme/nothing"), "repository acme/nothing"),
        (lambda c: c.dispatch_workflow(REPO, "nope.yml", "trunk", {}), "workflow nope.yml in acme/platform"),
        (lambda c: c.find_run(REPO, "nope.yml", "x", since()), "workflow nope.yml in acme/platform"),
    ],
    ids=["repository", "workflow", "workflow runs"],
)
def test_404_names_what_was_not_found(
    client: GitHubClient, call: Callable[[GitHubClient], object], subject: str
) -> None:
    with pytest.raises(GitHubNotFound) as caught:
        call(client)
    assert str(caught.value) == f"GitHub has no {subject}, or the token cannot see it (404)"


def test_422_on_dispatch_carries_githubs_message(client: GitHubClient) -> None:
    with pytest.raises(GitHubRejected, match="No ref found for: no-such-branch") as caught:
        client.dispatch_workflow(REPO, "build.yml", "no-such-branch", inputs())
    assert "\n" not in str(caught.value)


def test_a_get_answered_500_is_retried(github: GitHubStandIn, client: GitHubClient) -> None:
    github.fail_next(1, status=502, method="GET")

    assert client.resolve_ref(REPO, "trunk")[1] == fake_sha(REPO, "trunk")

    assert len(github.requests_to("GET", "/commits/trunk")) == 2


def test_a_get_failing_every_time_ends_as_a_server_error(github: GitHubStandIn, client: GitHubClient) -> None:
    github.fail_next(10, status=500, method="GET")
    with pytest.raises(GitHubServerError, match=r"failed \(500: 500 from the GitHub stand-in\)") as caught:
        client.resolve_ref(REPO, "trunk")
    assert caught.value.status == 500
    assert len(github.requests) == 3  # the first try and two retries


def test_a_dispatch_answered_500_is_not_sent_again(github: GitHubStandIn, client: GitHubClient) -> None:
    github.fail_next(1, status=500, method="POST")
    with pytest.raises(GitHubServerError):
        client.dispatch_workflow(REPO, "build.yml", "trunk", inputs())
    assert len(github.requests_to("POST", DISPATCHES)) == 1


def test_a_dispatch_that_times_out_is_not_sent_again(github: GitHubStandIn, client: GitHubClient) -> None:
    github.hang_next(1, seconds=3, method="POST")
    started = time.monotonic()
    with pytest.raises(GitHubUnreachable) as caught:
        client.dispatch_workflow(REPO, "build.yml", "trunk", inputs())
    assert str(caught.value) == f"GitHub at {github.api_url} did not answer in 0.5 s"
    assert time.monotonic() - started < 2
    assert len(github.requests_to("POST", DISPATCHES)) == 1


def test_a_get_that_times_out_is_unreachable(github: GitHubStandIn, client: GitHubClient) -> None:
    github.hang_next(1, seconds=3)
    with pytest.raises(GitHubUnreachable, match=r"did not answer in 0\.5 s"):
        client.get_run(REPO, 1)
    assert len(github.requests) == 1  # a hang is not given a second chance


def test_a_refused_connection_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GitHubClient(TOKEN, api_url=f"http://127.0.0.1:{port}", timeout=0.5, backoff=0)
    with caplog.at_level(logging.DEBUG), pytest.raises(GitHubUnreachable, match="could not be reached") as caught:
        client.dispatch_workflow(REPO, "build.yml", "trunk", inputs())
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in caplog.text


def test_a_server_echoing_the_token_does_not_get_it_into_the_message(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    github.fail_next(status=422, body={"message": f"bad header Bearer {TOKEN}"})
    with pytest.raises(GitHubError) as caught:
        client.resolve_ref(REPO, "trunk")
    assert TOKEN not in str(caught.value)
    assert "Bearer ***" in str(caught.value)


# ----------------------------------------------------------------------------------------------- webhooks
def test_the_stand_in_completes_runs_and_sends_signed_workflow_run_webhooks() -> None:
    secret = "webhook-secret"
    with SlackStandIn() as receiver, GitHubStandIn([Repository(REPO)], complete_after=0.2) as github:
        github.on_workflow_run(webhook_sender(f"{receiver.url}/github/webhook", secret))
        client = GitHubClient("", api_url=github.api_url, timeout=1)
        run_id = client.dispatch_workflow(REPO, "build.yml", "main", inputs()).run_id

        deadline = time.monotonic() + 5
        while github.runs[0].status != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert github.drain()

        deliveries = receiver.requests
        assert [d.body["action"] for d in deliveries] == [
            "requested",
            "in_progress",
            "completed",
        ]
        for delivery in deliveries:
            assert delivery.headers["x-github-event"] == "workflow_run"
            expected = "sha256=" + hmac.new(secret.encode(), delivery.raw, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(delivery.headers["x-hub-signature-256"], expected)
        completed = Run.from_json(deliveries[-1].body["workflow_run"])
        assert (completed.id, completed.conclusion, completed.lock_key) == (run_id, "success", "build-router-plt")
        assert client.get_run(REPO, completed.id).completed


class UnfilteredGitHub(GitHubStandIn):
    """A server that lists every run of the workflow whatever ``event`` is asked for: what a run found by its
    name is, the client checks for itself."""

    def _list_runs(self, repo: Repository, workflow: str, query: Mapping[str, str]) -> Reply:
        return super()._list_runs(repo, workflow, {k: v for k, v in query.items() if k != "event"})


@pytest.mark.parametrize("event", ["pull_request", "push", "pull_request_target", "schedule"])
def test_find_run_takes_only_a_dispatched_run_whatever_its_title(event: str) -> None:
    with UnfilteredGitHub([Repository(REPO)], token=TOKEN) as github:
        client = GitHubClient(TOKEN, api_url=github.api_url, timeout=0.5, backoff=0)
        before = since()
        title = run_name("build-router-plt", "mine")
        github.trigger_run(REPO, "build.yml", event, title)
        assert client.find_run(REPO, "build.yml", "mine", before) is None  # named for the lock, not dispatched

        client.dispatch_workflow(REPO, "build.yml", "main", inputs(cid="mine"))
        github.trigger_run(REPO, "build.yml", event, title)  # listed first: the newest
        run = client.find_run(REPO, "build.yml", "mine", before)
        assert run is not None and run.id == github.runs[1].id and run.event == "workflow_dispatch"
