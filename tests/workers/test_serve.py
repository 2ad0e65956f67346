"""``chatops serve`` under load and abuse: a burst of people is each answered, a malformed request gets a 4xx at
once, its Slack stand-in serves every Web API method the workers call, and its replies go to that stand-in only.

The stack is the one ``chatops serve`` runs (:class:`~workers.local.stack.LocalStack`): the router behind real
HTTP, moto on loopback, the workers polling their queues, the GitHub and Slack stand-ins.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from slack_sdk import WebClient

from workers.local.loopback import MAX_BODY_BYTES, READ_TIMEOUT_SECONDS, REQUEST_QUEUE_SIZE
from workers.local.slack import LOCAL_USER_GROUPS, SlackStandIn
from workers.local.stack import WORKERS as LOCAL_WORKERS
from workers.local.stack import HttpFront, LocalStack, StackOptions
from workers.local.workspace import Person, Sent, Workspace
from workers.protocol.config import response_url_allowed

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ROOT / "workers"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
ALICE, CAROL = Person.named("alice"), Person.named("carol")
KEYS = ("router plt", "router prod", "api plt", "api prod")
"""Every /build lock of the shipped configuration: two components, two environments."""


@contextlib.contextmanager
def serving() -> Iterator[tuple[LocalStack, Workspace]]:
    """The stack as ``chatops serve`` starts it (runs end only when told), its logs thrown away."""
    options = StackOptions.isolated(github_delay=None, reaper_seconds=3600)
    with open(os.devnull, "w", encoding="utf-8") as quiet, LocalStack(options, logs=quiet) as stack:
        assert stack.slack is not None
        yield stack, Workspace(stack.url, stack.secrets["SLACK_SIGNING_SECRET"], stack.slack)


# ------------------------------------------------------------------------------------------------- a burst
def test_a_hundred_simultaneous_builds_are_each_answered_and_each_lock_dispatched_once() -> None:
    people = [Person(f"user{n}", f"U0USER{n:03d}") for n in range(100)]
    with serving() as (stack, workspace):
        assert stack.github is not None
        start = threading.Barrier(len(people))
        sent: dict[int, Sent | BaseException] = {}

        def send(n: int) -> None:
            start.wait()
            try:
                sent[n] = workspace.command(people[n], "/build", KEYS[n % len(KEYS)])
            except BaseException as error:  # a reset connection: recorded, and the assertion below names it
                sent[n] = error

        threads = [threading.Thread(target=send, args=(n,)) for n in range(len(people))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        failed = {n: answer for n, answer in sent.items() if not isinstance(answer, Sent) or answer.status != 200}
        assert failed == {}, f"{len(failed)} of 100 not answered 200, e.g. {next(iter(failed.values()), None)!r}"
        requests = [answer for answer in sent.values() if isinstance(answer, Sent)]
        assert all(request.acknowledgement.startswith("⏳ Got it: /build") for request in requests)

        replies = {request.request_id: workspace.await_replies(request, timeout=60)[0].text for request in requests}
        for key in KEYS:
            component, environment = key.split()
            texts = [replies[r.request_id] for r in requests if r.text == f"/build {key}"]
            started = [text for text in texts if text.startswith(f"🔨 Building {component} ({environment})")]
            assert len(texts) == 25 and len(started) == 1, (key, texts[:3])
            assert all(t.startswith("⚠️ Build already in progress") for t in texts if t not in started), key
        dispatched = sorted(run.name.split()[0] for run in stack.github.runs)
        assert dispatched == sorted(f"build-{key.replace(' ', '-')}" for key in KEYS), "one dispatch per lock"


# ------------------------------------------------------------------------------------------ malformed requests
class Recorder:
    """A router that records what reached it and answers 200."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, event: dict[str, Any], _: object) -> dict[str, Any]:
        self.paths.append(event["rawPath"])
        return {"statusCode": 200, "body": "ok"}


MALFORMED = {
    "a Content-Length that is not a number": (b"POST /bad-length HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
    "a negative Content-Length": (b"POST /negative HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    "two Content-Lengths": (b"POST /two HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    "no Content-Length": (b"POST /no-length HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    "a chunked body": (b"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", 411),
    "a body over the limit": (
        f"POST /big HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode() + b"x" * 70_000,
        413,
    ),
    "a body shorter than announced": (b"POST /short HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this", 408),
    "a method nobody speaks": (b"BREW /pot HTTP/1.1\r\n\r\n", 405),
    "HTTP/2 in plain text": (b"GET /two HTTP/2.0\r\n\r\n", 400),
    "a request line that is not one": (b"hello there\r\n\r\n", 400),
}


def raw_exchange(url: str, request: bytes) -> tuple[int, float]:
    """Send ``request`` as it is and keep the connection open; the status answered and how long it took."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=READ_TIMEOUT_SECONDS + 5) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n" not in answer and (chunk := connection.recv(4096)):
            answer += chunk
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert found, (request[:40], answer[:80])
    return int(found[1]), time.monotonic() - started


def test_each_malformed_request_gets_its_4xx_at_once_and_never_reaches_the_router() -> None:
    router = Recorder()
    front = HttpFront(router)
    front.start()
    try:
        answers: dict[str, tuple[int, float]] = {}

        def exchange(name: str) -> None:
            answers[name] = raw_exchange(front.url, MALFORMED[name][0])

        threads = [threading.Thread(target=exchange, args=(name,)) for name in MALFORMED]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert {name: status for name, (status, _) in answers.items()} == {
            name: status for name, (_, status) in MALFORMED.items()
        }
        slowest = max(seconds for _, seconds in answers.values())
        assert slowest < READ_TIMEOUT_SECONDS + 2, "the short body waits for the read timeout, no longer"
        assert router.paths == []
        good = urllib3.PoolManager().request("POST", f"{front.url}/fine", body=b"a=1", retries=False)
        assert (good.status, router.paths) == (200, ["/fine"]), "and the front still serves"
    finally:
        front.stop()


# ---------------------------------------------------------------------------------------------- the replies
def test_a_response_url_elsewhere_on_this_machine_is_refused_and_nothing_is_sent_there() -> None:
    with serving() as (stack, workspace), SlackStandIn() as elsewhere:
        assert stack.slack is not None
        stand_in_host = stack.slack.url.removeprefix("http://")
        for response_url in (
            elsewhere.response_url("mallory"),  # another port of this machine
            stack.slack.response_url("x").replace("127.0.0.1", "localhost"),  # same port, another name
        ):
            answer = workspace.command(ALICE, "/build", "router plt", response_url=response_url)
            assert answer.status == 200 and "can't reply to this request" in answer.acknowledgement, response_url
        stack.settle()
        assert elsewhere.requests == [] and stack.slack.requests == []
        assert stack.github is not None and stack.github.runs == []
        assert response_url_allowed(f"http://{stand_in_host}/commands/x", frozenset({stand_in_host}))

        fine = workspace.command(ALICE, "/build", "router plt")
        assert workspace.await_replies(fine)[0].text.startswith("🔨 Building router (plt)"), "its own stand-in is fine"


def test_a_host_listed_with_a_port_allows_that_port_only() -> None:
    hosts = frozenset({"127.0.0.1:8123", "hooks.example.com:8443"})
    assert response_url_allowed("http://127.0.0.1:8123/commands/1", hosts)
    assert not response_url_allowed("http://127.0.0.1:8124/commands/1", hosts)
    assert not response_url_allowed("http://127.0.0.1/commands/1", hosts)
    assert response_url_allowed("https://hooks.example.com:8443/x", hosts)
    assert not response_url_allowed("https://hooks.example.com/x", hosts)
    assert not response_url_allowed("http://hooks.example.com:8443/x", hosts), "https unless loopback"


# ----------------------------------------------------------------------------------------- the Slack stand-in
def test_the_slack_stand_in_serves_every_web_api_method_the_workers_call() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in WORKERS.rglob("*.py") if "local" not in path.parts)
    called = {
        name.replace("_", ".")
        for name in re.findall(r"\.((?:chat|usergroups|users|conversations|views|reactions)_[A-Za-z_]+)\(", source)
    }
    assert "usergroups.users.list" in called
    assert called <= set(SlackStandIn.WEB_API), called - set(SlackStandIn.WEB_API)

    with SlackStandIn(token="xoxb-t", user_groups={"S0OPS": ("U0ALICE",)}) as slack:
        client = WebClient(token="xoxb-t", base_url=slack.api_url)
        assert client.chat_postMessage(channel="C0", text="hi")["ok"]
        assert client.chat_postEphemeral(channel="C0", user="U0ALICE", text="hi")["ok"]
        assert client.usergroups_users_list(usergroup="S0OPS")["users"] == ["U0ALICE"]
        with pytest.raises(Exception, match="no_such_subteam"):
            client.usergroups_users_list(usergroup="S0NOPE")
        with pytest.raises(Exception, match="invalid_auth"):
            WebClient(token="xoxb-wrong", base_url=slack.api_url).usergroups_users_list(usergroup="S0OPS")


def test_a_prod_deploy_in_the_default_configuration_asks_slack_for_the_group_and_is_decided() -> None:
    assert ALICE.user_id in LOCAL_USER_GROUPS["S0PLATFORM"] and CAROL.user_id not in LOCAL_USER_GROUPS["S0PLATFORM"]
    with serving() as (stack, workspace):
        allowed = workspace.command(ALICE, "/deploy", "api prod")
        assert allowed.acknowledgement.startswith("⏳ Got it: /deploy api prod"), allowed.body
        assert workspace.await_replies(allowed)[0].text.startswith("🚀 Deploying api (prod)")
        refused = workspace.command(CAROL, "/deploy", "api prod")
        assert refused.acknowledgement.startswith("🚫") and "S0PLATFORM" in refused.acknowledgement, refused.body
        assert stack.slack is not None
        asked = [request for request in stack.slack.requests if request.path == "/api/usergroups.users.list"]
        assert [request.body["usergroup"] for request in asked] == ["S0PLATFORM"], "asked once, then cached"


# ------------------------------------------------------------------------------------------------- the docs
def test_the_operations_doc_states_what_serve_does() -> None:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    section = " ".join(text[text.index("## `chatops serve`") :].split())  # one line: prose wraps anywhere
    assert f"listen backlog holds {REQUEST_QUEUE_SIZE} waiting connections" in section
    assert f"a body over {MAX_BODY_BYTES // 2**20} MB" in section
    assert f"408 after {READ_TIMEOUT_SECONDS:g} s, the read timeout" in section
    documented = {int(code) for code in re.findall(r"\| (4[0-9]{2})\b", section)}
    assert documented == {status for _, status in MALFORMED.values()}, "every status the test sends for"
    methods = re.findall(r"`([a-z]+\.[A-Za-z.]+)`", section.split("**Replies go")[0].split("Web API method")[1])
    assert sorted(methods) == sorted(SlackStandIn.WEB_API)
    [(group, members)] = LOCAL_USER_GROUPS.items()
    assert f"one user group, `{group}`, with alice (`{members[0]}`) and bob (`{members[1]}`)" in section
    build = next(worker for worker in LOCAL_WORKERS if worker.queue.value == "build")
    assert {5: "five"}[build.concurrency] + " at a time" in section
