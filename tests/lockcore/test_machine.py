"""The rules of the pure machine, one property each — no store, no I/O: guards evaluated and effects applied
exactly as the in-memory store does, on items Hypothesis draws (including ones our code never writes)."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from lockcore import machine as m
from lockcore.expressions import Item, apply, holds
from lockcore.record import NOTE_ATTRIBUTES, Status

NOW = 1_800_000_000
owners = st.sampled_from(["req-a", "req-b", "req-c"])
tokens = st.integers(0, 4)
leases = st.integers(1, 3600)
statuses = st.sampled_from(list(Status))


@st.composite
def items(draw: st.DrawFn) -> Item | None:
    """Any lock item: ours in every state, a legacy one (lease in `ttl`, no token), or none at all."""
    if draw(st.integers(0, 9)) == 0:
        return None
    item: Item = {"lockKey": "build-router-plt", "status": draw(statuses).value}
    if draw(st.integers(0, 3)) > 0:
        item.update(token=draw(st.integers(1, 4)), owner=draw(owners))
        item["leaseExpiresAt"] = NOW + draw(st.integers(-120, 120))
    else:
        item["ttl"] = NOW + draw(st.integers(-120, 120))
    return item


def run(transition: m.Transition, item: Item | None) -> tuple[m.WriteResult, Item | None]:
    """Perform a transition the way every store must: atomically, guard then effect."""
    if holds(transition.guard, item):
        new = apply(transition.effect, transition.key, item)
        return m.Written(new), new
    return m.Refused(item), item


def acquire(item: Item | None, owner: str, lease: int = 600, now: int = NOW) -> tuple[m.AcquireOutcome, Item | None]:
    request = m.AcquireRequest("build-router-plt", owner, lease, locked_by="U1", locked_by_name="alice")
    result, new = run(m.acquire(request, now), item)
    return m.acquire_outcome(request, result, now), new


def holder_transition(op: str, owner: str, token: int, now: int) -> m.Transition:
    """Every transition but acquire, as someone presenting ``owner`` and ``token``."""
    if op == "release":
        return m.release("build-router-plt", owner, token, Status.COMPLETED, now)
    if op == "extend":
        return m.extend("build-router-plt", owner, token, 60, now)
    if op == "note":
        return m.note("build-router-plt", owner, token, {"runId": "1"}, now)
    if op == "force-release":
        return m.force_release("build-router-plt", token, "U-admin", "stuck", now)
    assert op == "expire"
    return m.expire("build-router-plt", token, now)


# ------------------------------------------------------------------------------------------ mutual exclusion
@given(items(), owners, owners, st.integers(-5, 5))
def test_mutual_exclusion_two_owners_never_both_hold(item: Item | None, a: str, b: str, later: int) -> None:
    assume(a != b)
    first, after_first = acquire(item, a)
    second, _ = acquire(after_first, b, now=NOW + later)
    if isinstance(first, m.Acquired) and NOW + later < first.record.lease_expires_at:
        assert isinstance(second, m.HeldBySomeone)
        assert second.holder.owner == a


@given(items().map(lambda item: item and {**item, "status": "IN_PROGRESS"}))
def test_a_live_lease_is_never_taken_over(item: Item | None) -> None:
    assume(m.is_live(item, NOW))
    assert item is not None
    outcome, after = acquire(item, "someone-new")
    assert isinstance(outcome, m.HeldBySomeone)
    assert after == item


# ------------------------------------------------------------------------------------------ fencing tokens
@given(
    items(),
    st.lists(
        st.tuples(st.sampled_from([op.value for op in m.Operation]), owners, tokens,
                  st.integers(0, 700)),
        max_size=25,
    ),
)  # fmt: skip
def test_tokens_rise_by_one_on_each_acquire_and_never_go_back(
    item: Item | None, steps: list[tuple[str, str, int, int]]
) -> None:
    now = NOW
    for op, owner, token, dt in steps:
        now += dt
        before = item.get("token", 0) if item else 0
        if op == "acquire":
            outcome, item = acquire(item, owner, now=now)
            after = item.get("token", 0) if item else 0
            if isinstance(outcome, m.Acquired) and not outcome.reentered:
                assert after == int(before) + 1
            else:
                assert after == before
            continue
        _, item = run(holder_transition(op, owner, token, now), item)
        assert (item.get("token", 0) if item else 0) == before, f"{op} moved the token"


# ------------------------------------------------------------------------------------------ expiry
@given(leases, st.integers(0, 7200))
def test_a_lease_ends_exactly_at_its_lease_end(lease: int, elapsed: int) -> None:
    _, item = acquire(None, "req-a", lease=lease)
    outcome, _ = acquire(item, "req-b", now=NOW + elapsed)
    if elapsed < lease:
        assert isinstance(outcome, m.HeldBySomeone)
    else:
        assert isinstance(outcome, m.Acquired) and outcome.token == 2
    assert m.holds_token(item, 1, NOW + elapsed) == (elapsed < lease)


def test_a_legacy_lock_keeps_its_lease_in_ttl_and_loses_ttl_on_the_next_acquire() -> None:
    legacy: Item = {"lockKey": "build-router-plt", "status": "IN_PROGRESS", "ttl": NOW + 10, "lockedBy": "U9"}
    held, _ = acquire(legacy, "req-a", now=NOW + 9)
    assert isinstance(held, m.HeldBySomeone) and held.holder.lease_expires_at == NOW + 10
    taken, item = acquire(legacy, "req-a", now=NOW + 10)
    assert isinstance(taken, m.Acquired) and taken.token == 1
    assert item is not None and "ttl" not in item


# ------------------------------------------------------------------------------------------ only the holder
@given(items(), owners, tokens, st.sampled_from([Status.COMPLETED, Status.FAILED]))
def test_only_the_holder_releases(item: Item | None, owner: str, token: int, outcome: Status) -> None:
    result, after = run(m.release("build-router-plt", owner, token, outcome, NOW), item)
    answer = m.release_outcome(owner, token, outcome, result)
    presents = item is not None and item.get("owner") == owner and item.get("token") == token
    if isinstance(result, m.Written):
        assert presents and item is not None and item["status"] in ("IN_PROGRESS", "EXPIRED")
        assert after is not None and after["status"] == outcome.value
    else:
        assert after == item
        if isinstance(answer, m.Released):  # a repeat of a release that already took effect
            assert presents and answer.repeated and item is not None and item["status"] == outcome.value


@given(items(), owners, tokens, leases)
def test_only_a_live_holder_extends(item: Item | None, owner: str, token: int, lease: int) -> None:
    result, after = run(m.extend("build-router-plt", owner, token, lease, NOW), item)
    outcome = m.extend_outcome(owner, token, result, NOW)
    live_holder = m.is_live(item, NOW) and item is not None and (item.get("owner"), item.get("token")) == (owner, token)
    assert isinstance(outcome, m.Extended) == live_holder
    if live_holder:
        assert after is not None and after["leaseExpiresAt"] == NOW + lease
    else:
        assert after == item and isinstance(outcome, m.NotHolder)


def test_a_holder_whose_lease_lapsed_may_still_record_its_outcome_but_not_extend() -> None:
    _, item = acquire(None, "req-a", lease=60)
    late = NOW + 61
    extended = m.extend_outcome("req-a", 1, run(m.extend("build-router-plt", "req-a", 1, 60, late), item)[0], late)
    assert isinstance(extended, m.NotHolder) and extended.reason is m.Refusal.LEASE_ENDED
    assert not m.holds_token(item, 1, late)
    result, item = run(m.release("build-router-plt", "req-a", 1, Status.FAILED, late), item)
    assert isinstance(m.release_outcome("req-a", 1, Status.FAILED, result), m.Released)


def test_a_replaced_holder_can_neither_release_nor_extend_the_new_lock() -> None:
    _, item = acquire(None, "req-a", lease=60)
    _, item = acquire(item, "req-b", now=NOW + 60)
    late = NOW + 61
    for transition in (
        m.release("build-router-plt", "req-a", 1, Status.COMPLETED, late),
        m.extend("build-router-plt", "req-a", 1, 600, late),
        m.note("build-router-plt", "req-a", 1, {"runId": "7"}, late),
    ):
        result, after = run(transition, item)
        assert isinstance(result, m.Refused) and after == item
    outcome = m.release_outcome("req-a", 1, Status.COMPLETED, m.Refused(item))
    assert isinstance(outcome, m.NotHolder) and outcome.reason is m.Refusal.STALE_TOKEN


# ------------------------------------------------------------------------------------------ idempotence
@given(items(), owners, st.integers(0, 599))
def test_reacquire_by_the_holder_is_idempotent(item: Item | None, owner: str, later: int) -> None:
    first, after = acquire(item, owner)
    assume(isinstance(first, m.Acquired) and NOW + later < first.record.lease_expires_at)
    assert isinstance(first, m.Acquired)
    again, after_again = acquire(after, owner, now=NOW + later)
    assert isinstance(again, m.Acquired) and again.reentered and again.token == first.token
    assert after_again == after


@given(st.sampled_from([Status.COMPLETED, Status.FAILED]))
def test_repeating_a_release_answers_the_same(outcome: Status) -> None:
    _, item = acquire(None, "req-a")
    first_result, item = run(m.release("build-router-plt", "req-a", 1, outcome, NOW + 1), item)
    again_result, again = run(m.release("build-router-plt", "req-a", 1, outcome, NOW + 2), item)
    first = m.release_outcome("req-a", 1, outcome, first_result)
    repeat = m.release_outcome("req-a", 1, outcome, again_result)
    assert isinstance(first, m.Released) and not first.repeated
    assert isinstance(repeat, m.Released) and repeat.repeated and again == item
    other = Status.FAILED if outcome is Status.COMPLETED else Status.COMPLETED
    different = m.release_outcome(
        "req-a", 1, other, run(m.release("build-router-plt", "req-a", 1, other, NOW), item)[0]
    )
    assert isinstance(different, m.NotHolder) and different.reason is m.Refusal.NOT_HELD


# ------------------------------------------------------------------------------------------ force-release
@given(items(), tokens)
def test_force_release_needs_the_current_token_and_records_who_and_why(item: Item | None, token: int) -> None:
    result, after = run(m.force_release("build-router-plt", token, "U-admin", "runner died", NOW), item)
    outcome = m.force_release_outcome(token, "U-admin", result)
    current = item is not None and item.get("token") == token and item["status"] in ("IN_PROGRESS", "EXPIRED")
    assert isinstance(result, m.Written) == current
    if current:
        assert isinstance(outcome, m.ForceReleased)
        assert after is not None
        assert (after["status"], after["releasedBy"], after["releaseReason"]) == (
            "FORCE_RELEASED", "U-admin", "runner died",
        )  # fmt: skip
        assert isinstance(acquire(after, "req-new")[0], m.Acquired)
    else:
        assert after == item and isinstance(outcome, m.NotHolder | m.ForceReleased)


# ------------------------------------------------------------------------------------------ notes and the reaper
def test_notes_describe_the_current_holder_only() -> None:
    _, item = acquire(None, "req-a")
    _, item = run(m.note("build-router-plt", "req-a", 1, {"runId": "42", "runUrl": "https://gh/run/42"}, NOW), item)
    assert item is not None and item["runId"] == "42"
    _, item = run(m.release("build-router-plt", "req-a", 1, Status.COMPLETED, NOW), item)
    assert item is not None and item["runId"] == "42"  # the last outcome stays readable
    _, item = acquire(item, "req-b")
    assert item is not None and not set(item) & set(NOTE_ATTRIBUTES)


@given(items(), tokens, st.integers(-5, 5))
def test_the_reaper_marks_only_lapsed_leases(item: Item | None, token: int, dt: int) -> None:
    now = NOW + dt
    result, after = run(m.expire("build-router-plt", token, now), item)
    lapsed = m.state_of(item, now) is m.LockState.LAPSED and item is not None and item["status"] == "IN_PROGRESS"
    assert isinstance(result, m.Written) == (lapsed and item is not None and item.get("token") == token)
    if isinstance(result, m.Written):
        assert after is not None and after["status"] == "EXPIRED"


# ------------------------------------------------------------------------------------------ the table
@given(items(), st.sampled_from(list(m.Operation)), st.integers(-5, 5))
def test_every_guard_matches_the_transition_table(item: Item | None, operation: m.Operation, dt: int) -> None:
    """With the holder's own credentials, a write takes effect exactly from the states the table lists,
    and lands in one of the states the table says it leads to."""
    now = NOW + dt
    owner = str(item.get("owner", "req-a")) if item else "req-a"
    token = int(item.get("token", 0)) if item else 0
    if operation is m.Operation.ACQUIRE:
        transition = m.acquire(m.AcquireRequest("build-router-plt", "req-new", 60), now)
    else:
        transition = holder_transition(operation.value, owner, token, now)
    starts, leads_to, _ = m.TRANSITIONS[operation]
    before = m.state_of(item, now)
    result, after = run(transition, item)
    has_token = item is not None and "token" in item
    if operation is m.Operation.ACQUIRE or has_token:
        recorded_expiry = item is not None and item.get("status") == "EXPIRED"
        if operation is m.Operation.EXPIRE and recorded_expiry:
            assert isinstance(result, m.Refused)  # already recorded: nothing to do
        else:
            assert isinstance(result, m.Written) == (before in starts), f"{operation} from {before}: {result}"
    if isinstance(result, m.Written):
        assert m.state_of(after, now) in leads_to
