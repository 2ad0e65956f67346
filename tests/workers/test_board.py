"""The App Home board (:mod:`workers.protocol.board`): within every Block Kit limit for any number of locks, queues,
watchers and history events, hostile names included, and the viewer's own locks always shown first."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lockcore.record import LockRecord, QueueEntry, Requester, Status, iso
from workers.protocol import board, envelope
from workers.protocol.envelope import LOCK_WATCH_ACTION, UNLOCK_CONFIRM_ACTION
from workers.protocol.history import EventKind, HistoryEvent
from workers.protocol.windows import Occurrence

NOW = 1_800_000_000
VIEWER = "U0VIEWER"
HOSTILE = st.text(alphabet=st.sampled_from("ab<>&|*_~`@!#^ \n\u202e😀"), max_size=300)


def lock(
    key: str, holder: str, name: str, *, queue: tuple[str, ...] = (), watchers: tuple[str, ...] = ()
) -> LockRecord:
    return LockRecord(
        lock_key=key,
        token=7,
        owner=f"owner-{key}",
        status=Status.IN_PROGRESS,
        locked_by=holder,
        locked_by_name=name,
        locked_at=iso(NOW - 60),
        lease_expires_at=NOW + 600,
        notes={"runUrl": f"https://github.com/o/r/actions/runs/1?{name}", "runId": "1", "commitSha": name},
        queue=tuple(QueueEntry(requesters=(Requester(f"o-{u}", u, name),), lease_seconds=60) for u in queue),
        watchers=watchers,
    )


@st.composite
def boards(draw: st.DrawFn) -> board.Board:
    """Up to 1000 locks: their shape drawn from a seed (one draw per board, not per lock, keeps it fast)."""
    count = draw(st.integers(0, 1000))
    names = draw(st.lists(HOSTILE, min_size=1, max_size=5))
    users = [VIEWER, "U0ALICE", "U0BOB", "W0CAROL", "<!channel>", ""]
    rng = random.Random(draw(st.integers(0, 2**32)))
    records = []
    for index in range(count):
        kind = rng.choice(["build-router", "deploy-api", "freeze"])
        key = f"{kind}-{index}" if kind != "freeze" else f"freeze-env{index}"
        queue = tuple(rng.choices(users, k=rng.choice([0, 0, 1, 3, 60])))
        watchers = tuple(rng.choices(users, k=rng.choice([0, 1, 40])))
        records.append(lock(key, rng.choice(users), names[index % len(names)], queue=queue, watchers=watchers))
    events = [
        HistoryEvent(f"build-k{i}", rng.choice(list(EventKind)), i, iso(NOW - i), "U0ALICE", names[0])
        for i in range(draw(st.integers(0, 50)))
    ]
    reasons = {r.lock_key: names[-1] for r in records if r.lock_key.startswith("freeze-")}
    scheduled = [  # each environment's next freeze window
        Occurrence(f"env{i}", names[0], NOW + 60 * i, NOW + 60 * i + 600, names[-1])
        for i in range(draw(st.integers(0, 15)))
    ]
    return board.Board(records, NOW, events, reasons, scheduled)


def within_limits(view: dict[str, Any]) -> None:
    blocks = view["blocks"]
    assert view["type"] == "home"
    assert len(blocks) <= board.MAX_BLOCKS
    block_ids = [block["block_id"] for block in blocks if "block_id" in block]
    assert len(block_ids) == len(set(block_ids)), "block_ids repeat"
    for block in blocks:
        assert len(block.get("block_id", "")) <= board.MAX_BLOCK_ID
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= board.MAX_HEADER_TEXT
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= board.MAX_TEXT
            assert len(block.get("fields", [])) <= board.MAX_FIELDS
            assert all(len(field["text"]) <= board.MAX_FIELD_TEXT for field in block.get("fields", []))
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= board.MAX_CONTEXT_ELEMENTS
            assert all(len(element["text"]) <= board.MAX_TEXT for element in block["elements"])
        if block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for button in block["elements"]:
                assert len(button["text"]["text"]) <= board.MAX_BUTTON_TEXT
                assert len(button["action_id"]) <= board.MAX_ACTION_ID
                assert len(button["value"]) <= board.MAX_VALUE
            action_ids = [b["action_id"] for b in block["elements"]]
            assert len(action_ids) == len(set(action_ids)), "action_ids repeat within a block"
    assert len(json.dumps(view).encode()) < 250_000, "views.publish refuses a view over 250 kB (view_too_large)"


def keys_shown(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"])


@given(boards(), st.booleans(), st.integers(-2, 200))
def test_the_home_is_within_every_block_kit_limit_and_shows_the_viewers_own_locks(
    shown: board.Board, admin: bool, page: int
) -> None:
    view = board.home_view(shown, board.Viewer(VIEWER, admin=admin, page=page))
    within_limits(view)
    mine = [
        r.lock_key
        for r in sorted(shown.live(), key=lambda r: r.lock_key)
        if not r.lock_key.startswith("freeze-")
        and (r.locked_by == VIEWER or VIEWER in r.watchers or any(q.requesters[0].user == VIEWER for q in r.queue))
    ]
    text = keys_shown(view)
    for key in mine[: board.MAX_MINE]:
        assert f"`{key}`" in text
    if len(mine) > board.MAX_MINE:
        assert f"{len(mine) - board.MAX_MINE} more of yours" in text


def test_the_holder_may_cancel_a_waiting_user_may_leave_and_an_admin_may_force_unlock() -> None:
    records = [lock("build-router-plt", VIEWER, "viewer"), lock("deploy-api-prod", "U0BOB", "bob", queue=(VIEWER,))]
    view = board.home_view(board.Board(records, NOW), board.Viewer(VIEWER, admin=True))
    actions = {
        (button["action_id"], button["value"])
        for block in view["blocks"]
        if block["type"] == "actions"
        for button in block["elements"]
    }
    assert (envelope.HOME_CANCEL_ACTION, "build-router-plt:7") in actions  # the holding shown
    assert (envelope.HOME_DEQUEUE_ACTION, "deploy-api-prod") in actions
    assert (LOCK_WATCH_ACTION, "deploy-api-prod") in actions
    assert (UNLOCK_CONFIRM_ACTION, "deploy-api-prod:7") in actions
    assert (LOCK_WATCH_ACTION, "build-router-plt") not in actions  # one's own lock: nothing to be told


def test_someone_else_sees_no_cancel_no_leave_and_no_force_unlock() -> None:
    records = [lock("build-router-plt", "U0ALICE", "alice", queue=("U0BOB",))]
    view = board.home_view(board.Board(records, NOW), board.Viewer("U0CAROL"))
    buttons = [b["action_id"] for block in view["blocks"] if block["type"] == "actions" for b in block["elements"]]
    assert buttons == [LOCK_WATCH_ACTION]


def test_hundreds_of_locks_page_with_previous_and_next() -> None:
    records = [lock(f"build-c{index:03d}-plt", "U0ALICE", "alice") for index in range(100)]
    first = board.home_view(board.Board(records, NOW), board.Viewer(VIEWER))
    second = board.home_view(board.Board(records, NOW), board.Viewer(VIEWER, page=1))
    assert "`build-c000-plt`" in keys_shown(first)
    assert "`build-c000-plt`" not in keys_shown(second)
    assert f"`build-c{board.PAGE_SIZE:03d}-plt`" in keys_shown(second)
    paging = [b for block in second["blocks"] if block.get("block_id") == "paging" for b in block["elements"]]
    assert [(b["action_id"], b["value"]) for b in paging] == [
        (envelope.HOME_PREVIOUS_ACTION, "0"),
        (envelope.HOME_NEXT_ACTION, "2"),
    ]


def test_a_freeze_shows_its_reason_and_end_and_hostile_text_is_escaped() -> None:
    frozen = lock("freeze-prod", "U0ADMIN", "<!channel> admin")
    view = board.home_view(
        board.Board([frozen], NOW, freeze_reasons={"freeze-prod": "release <@U0ALL>"}), board.Viewer(VIEWER)
    )
    text = keys_shown(view)
    assert "release &lt;@U0ALL&gt;" in text
    assert "<!channel>" not in text
    assert "Ends at" in text


def test_a_lock_no_longer_live_is_not_on_the_board() -> None:
    ended = lock("build-router-plt", "U0ALICE", "alice")
    ended = LockRecord(**{**ended.__dict__, "status": Status.COMPLETED})
    assert "`build-router-plt`" not in keys_shown(board.home_view(board.Board([ended], NOW), board.Viewer(VIEWER)))


def test_a_home_press_is_answered_by_direct_message() -> None:
    address = envelope.direct_message_address("U0ALICE")
    assert envelope.direct_message_user(address) == "U0ALICE"
    assert envelope.direct_message_user("https://hooks.slack.com/commands/T/1/x") is None
