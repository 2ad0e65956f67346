"""Messages written before a deploy are read after it: queue bodies, the envelopes kept for queued requests.

``fixtures/envelopes-v1/`` holds bodies exactly as the version-1 codec wrote them (one file each, its bytes and a
newline): an envelope of every kind, a command of every verb, the envelope a queued request keeps in the
PendingRequests table (``command-build-queue``) and hand-offs with and without coalesced requesters. A Powertools
idempotency record is keyed on the body's top-level ``requestId`` (the build worker's ``event_key_jmespath``), so
a body that reads back the same and encodes the same bytes keeps its record too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.flows import handoff
from workers.protocol import commands
from workers.protocol.codec import from_wire
from workers.protocol.config import Action
from workers.protocol.envelope import CommandEnvelope, Envelope, InteractionEnvelope, WorkflowRunEnvelope, read_message

ROLLBACK_SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "envelopes-v1"


def command(name: str, parsed: commands.Command, slash: str = "/build", text: str = "router plt") -> CommandEnvelope:
    return CommandEnvelope(
        request_id=f"1234.5678.{name}",
        correlation_id=f"cid-{name}",
        command=parsed,
        slash=slash,
        text=text,
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C0CHAN",
        team_id="T0TEAM",
        api_app_id="A0APP",
        response_url="https://hooks.slack.com/commands/T0TEAM/1/x",
        received_at=1_767_261_600,
    )


REASON = "release día — <!channel> & co"
ECHOED = 'héllo <@U0BOB> & "quotes"'
QUEUED = command("queue", commands.Dispatch(Action.BUILD, "router", "plt", queue=True), text="router plt --queue")
WRITTEN: dict[str, Envelope] = {
    "command-build": command("build", commands.Dispatch(Action.BUILD, "router", "plt")),
    "command-deploy-ref": command(
        "deploy", commands.Dispatch(Action.DEPLOY, "api", "prod", "release/1.2"), "/deploy", "api prod release/1.2"
    ),
    "command-build-queue": QUEUED,
    "command-status": command("status", commands.LockStatus(), text="status --locks"),
    "command-unlock": command("unlock", commands.Unlock(Action.BUILD, "router", "plt"), text="unlock router plt"),
    "command-cancel": command("cancel", commands.Cancel(Action.DEPLOY, "api", "prod"), "/deploy", "cancel api prod"),
    "command-history": command("history", commands.History(Action.BUILD, "router", "plt"), text="history router plt"),
    "command-dequeue": command("dequeue", commands.Dequeue(Action.BUILD, "router", "plt"), text="dequeue router plt"),
    "command-stats": command("stats", commands.Stats(14), text="stats 14"),
    "command-freeze": command("freeze", commands.Freeze("prod", REASON), "/deploy", f"freeze prod {REASON}"),
    "command-unfreeze": command("unfreeze", commands.Unfreeze("prod"), "/deploy", "unfreeze prod"),
    "command-echo": command("echo", commands.Echo(ECHOED), "/echo", ECHOED),
    "command-rollback": command(
        "rollback", commands.Rollback(Action.DEPLOY, "api", "plt", 2), "/deploy", "rollback api plt 2"
    ),
    "command-deploy-rollback": command(
        "deploy-rollback",
        commands.Dispatch(Action.DEPLOY, "api", "plt", ref=ROLLBACK_SHA, rollback_of="7.COMPLETED"),
        "/deploy",
        "rollback api plt",
    ),
    "interaction-unlock-confirm": InteractionEnvelope(
        request_id="1234.5678.press",
        correlation_id="cid-press",
        action_id="unlock.confirm",
        value="build-router-plt:7",
        user_id="U0ADMIN",
        user_name="admin",
        team_id="T0TEAM",
        api_app_id="A0APP",
        channel_id="C0CHAN",
        response_url="https://hooks.slack.com/actions/T0TEAM/2/y",
        received_at=1_767_261_700,
    ),
    "workflow-run-completed": WorkflowRunEnvelope(
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        correlation_id="cid-build",
        action="completed",
        run_id=30433642,
        run_attempt=1,
        name="build",
        display_title="build router plt [cid-build]",
        status="completed",
        conclusion="success",
        html_url="https://github.com/acme/app/actions/runs/30433642",
        head_sha="1a2b3c4d5e6f70819a2b3c4d5e6f70819a2b3c4d",
        workflow_path=".github/workflows/build.yml",
        repository="acme/app",
        received_at=1_767_261_900,
    ),
    "workflow-run-in-progress": WorkflowRunEnvelope(
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0959",
        correlation_id="",
        action="in_progress",
        run_id=30433643,
        run_attempt=2,
        name="deploy",
        display_title="deploy api prod",
        status="in_progress",
        conclusion=None,
        html_url="https://github.com/acme/app/actions/runs/30433643",
        head_sha="",
        workflow_path=".github/workflows/deploy.yml",
        repository="acme/app",
        received_at=1_767_261_901,
    ),
}
HANDED_OFF: dict[str, tuple[int, tuple[str, ...]]] = {
    "handed-off": (8, ()),
    "handed-off-coalesced": (9, ("1234.5678.carol", "1234.5678.dave")),
}


def written(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8").removesuffix("\n")


def test_the_fixtures_are_every_kind_and_every_verb() -> None:
    assert {path.stem for path in FIXTURES.glob("*.json")} == set(WRITTEN) | set(HANDED_OFF)
    kinds = {envelope.kind for envelope in WRITTEN.values()}
    assert kinds == {"build", "deploy", *commands.VERBS - {"help"}, "echo", "interaction", "workflow_run"}


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_a_body_written_before_the_deploy_reads_back_the_same(name: str) -> None:
    assert read_message(written(name)) == WRITTEN[name]


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_an_envelope_is_written_in_the_same_bytes_as_before(name: str) -> None:
    assert WRITTEN[name].to_json() == written(name)


@pytest.mark.parametrize("name", sorted(HANDED_OFF))
def test_a_hand_off_written_before_the_deploy_reads_back_the_same(name: str) -> None:
    body = written(name)
    token, coalesced = HANDED_OFF[name]
    assert CommandEnvelope.from_json(body) == replace(QUEUED, handed_off=token, coalesced=coalesced)
    assert handoff.handed_off_body(QUEUED, token, coalesced) == body


# ------------------------------------------------------------------------------------- new bodies, round trip
words = st.text(max_size=30)
numbers = st.integers(min_value=0, max_value=2**53)
parsed: st.SearchStrategy[commands.Command] = st.one_of(
    st.builds(commands.Dispatch, st.sampled_from(Action), words, words, st.none() | words, st.booleans()),
    st.builds(
        lambda verb, *args: verb(*args),
        st.sampled_from(list(commands.ON_A_LOCK.values())),
        st.sampled_from(Action),
        words,
        words,
    ),
    st.just(commands.LockStatus()),
    st.builds(commands.Echo, words),
    st.builds(commands.Stats, numbers),
    st.builds(commands.Freeze, words, words),
    st.builds(commands.Unfreeze, words),
)
envelopes: st.SearchStrategy[Envelope] = st.one_of(
    st.builds(
        CommandEnvelope,
        *([words] * 2),
        parsed,
        *([words] * 8),
        numbers,
        st.none() | numbers,
        st.lists(words, max_size=3).map(tuple),
    ),
    st.builds(InteractionEnvelope, *([words] * 10), numbers),
    st.builds(
        WorkflowRunEnvelope,
        words,
        words,
        words,
        numbers,
        numbers,
        *([words] * 3),
        st.none() | words,
        *([words] * 4),
        numbers,
    ),
)


@given(envelopes)
def test_every_envelope_reads_back_as_it_was_written(envelope: Envelope) -> None:
    body = envelope.to_json()
    assert read_message(body) == envelope
    assert type(envelope).from_json(body) == envelope
    data = json.loads(body)
    assert list(data)[:2] == ["version", "kind"] and data["kind"] == envelope.kind
    assert all("_" not in name for name in data)  # camelCase on the wire, like the lock records


def test_an_optional_field_added_later_is_one_line_and_older_bodies_still_read() -> None:
    @dataclass(frozen=True)
    class Later(WorkflowRunEnvelope):
        run_started_at: str | None = None

    older = json.loads(written("workflow-run-completed"))
    later = from_wire(Later, older)
    stamped = Later(**{**vars(later), "run_started_at": "2026-01-01T00:00:00Z"})
    assert later.run_started_at is None and json.loads(stamped.to_json())["runStartedAt"] == "2026-01-01T00:00:00Z"
    assert read_message(json.dumps({**older, "runStartedAt": "x"})) == WRITTEN["workflow-run-completed"]  # ignored


def test_a_workflow_run_queued_before_the_router_noted_its_event_reads_as_none() -> None:
    """Upgrade safety for the run's authority: today's bodies carry no ``event``; they read as ``None`` (and such an
    event changes no lock — the reaper settles it through GitHub's API)."""
    envelope = WRITTEN["workflow-run-completed"]
    assert isinstance(envelope, WorkflowRunEnvelope) and (envelope.event, envelope.workflow_id) == (None, None)
