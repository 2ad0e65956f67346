"""The local stack end to end for freeze, history and stats: signed slash commands over HTTP, moto's SQS and
DynamoDB — the lock table's real stream read by the stack's stream poller into the history writer — and the
GitHub and Slack stand-ins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockcore import machine as m
from tests.workers.test_local_stack import ALICE, BOB, Local, running
from workers.adapters.history_table import history_table
from workers.local.stack import StackOptions
from workers.local.workspace import Person
from workers.protocol.history import EventKind

pytestmark = pytest.mark.timeout(60)

ADMIN = Person("admin", "U0ADMIN")


@pytest.fixture
def local() -> Iterator[Local]:
    with running(StackOptions.isolated(github_delay=None, reaper_seconds=3600)) as stack:
        yield stack


def test_a_build_and_its_failure_appear_in_history_and_stats(local: Local) -> None:
    local.reply(local.send(ALICE, "router plt"))
    [run] = local.runs()
    local.github.complete_run(run.id, "failure")
    local.until_state(m.LockState.FAILED)
    local.stack.wait_until(lambda: len(history_table().recent("build-router-plt")) == 2, "the release in history")

    history = local.reply(local.send(BOB, "history router plt"))
    lines = history.body["blocks"][-1]["text"]["text"].split("\n")
    assert "❌ released FAILED by alice (<@U0ALICE>) after" in lines[0]
    assert "🔒 acquired by alice (<@U0ALICE>) (token 1)" in lines[-1]

    stats = local.reply(local.send(BOB, "stats 1"))
    assert "Locks over the last 1 day: 1 acquisitions, 0 refused, failure rate 100%" in stats.text

    local.reply(local.send(ALICE, "router plt"))
    busy = local.reply(local.send(BOB, "router plt"))
    assert busy.text.startswith("⚠️ Build already in progress")
    refused = lambda: any(e.kind is EventKind.REFUSE for e in history_table().since(0))  # noqa: E731
    local.stack.wait_until(refused, "the refusal in history (put once bob was told)")
    acquired = lambda: len(history_table().recent("build-router-plt")) == 3  # noqa: E731 — the stream is its own pace
    local.stack.wait_until(acquired, "alice's second acquisition in history")
    stats = local.reply(local.send(BOB, "stats 1"))
    assert "Locks over the last 1 day: 2 acquisitions, 1 refused" in stats.text


def test_an_admin_freezes_prod_deploys_are_refused_then_unfrozen_they_run(local: Local) -> None:
    frozen = local.reply(local.send(ADMIN, "freeze plt release week", "/deploy"))
    assert frozen.text.startswith("✅ Froze *plt*")
    assert local.channel_post("🧊").endswith("froze deploys to *plt*: “release week”.")

    refused = local.reply(local.send(ALICE, "api plt", "/deploy"))
    assert refused.text.startswith("🧊 Deploys to *plt* are frozen by admin (<@U0ADMIN>) since <!date^")
    assert local.runs("deploy-api-plt") == []

    status = local.reply(local.send(ALICE, "status --locks"))
    assert "freeze-plt" in status.text

    local.reply(local.send(ADMIN, "unfreeze plt", "/deploy"))
    assert local.channel_post("☀️").startswith("☀️ <@U0ADMIN> lifted the freeze on *plt*")
    started = local.reply(local.send(ALICE, "api plt", "/deploy"))
    assert started.text.startswith("🚀 Deploying api (plt)")

    local.stack.wait_until(lambda: len(history_table().recent("freeze-plt")) == 2, "the unfreeze in history")
    local.stack.wait_until(lambda: bool(history_table().recent("deploy-api-plt")), "the deploy in history")
    history = local.reply(local.send(ADMIN, "history api plt", "/deploy"))
    assert "🔒 acquired by alice (<@U0ALICE>) (token 1)" in history.body["blocks"][-1]["text"]["text"]
    assert [e.kind for e in history_table().recent("freeze-plt")] == [EventKind.UNFREEZE, EventKind.FREEZE]
