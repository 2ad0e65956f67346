"""`chatops demo --lock`: the lock alone — twenty people type `/build router plt` at once, and the lock tells them
who won; then the lease's life: a release, a higher token, an expired lease taken over, a stale token refused.

Everything runs on this machine: a moto DynamoDB on loopback (requests serialised, so single-item writes are
atomic as in DynamoDB) and the real DynamoDB lock store over HTTP. No AWS account, no credentials, no network.
The demo checks its own story as it tells it — exactly one winner, everyone else told who holds the lock,
tokens only going up, the stale holder refused — and exits 1 if any of it does not hold.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from lockcore import machine as m
from lockcore import outcomes
from lockcore.dynamodb import DEFAULT_TABLE, DynamoDBLockStore, make_client
from lockcore.record import Status
from workers.local.motoserver import LocalAWS, use_local_credentials
from workers.protocol import render

LOCK_KEY = "build-router-plt"
LEASE_SECONDS = 600
USERS = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yvonne",
)  # fmt: skip


class SimulatedClock:
    """Real time plus an offset the demo moves forward, so an expired lease needs no ten-minute wait."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: int) -> None:
        self.offset += seconds


@dataclass(frozen=True)
class User:
    name: str
    user_id: str

    def request(self, attempt: int = 1) -> m.AcquireRequest:
        # The owner is the Slack request: one per slash command typed.
        return m.AcquireRequest(
            lock_key=LOCK_KEY,
            owner=f"slack-req-{self.name}-{attempt}",
            lease_seconds=LEASE_SECONDS,
            locked_by=self.user_id,
            locked_by_name=self.name,
            component="router",
            environment="plt",
            correlation_id=f"demo-{self.name}-{attempt}",
        )


class StoryBroken(Exception):
    """What the demo showed is not what the lock did."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StoryBroken(what)


def heading(text: str) -> None:
    print(f"\n── {text} " + "─" * max(0, 74 - len(text)))


def race(users: list[User], stores: list[DynamoDBLockStore]) -> list[outcomes.AcquireOutcome]:
    """Every user acquires from its own thread and client, all released at the same instant by a barrier."""
    answers: list[outcomes.AcquireOutcome | None] = [None] * len(users)
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def contend(index: int) -> None:
        try:
            start.wait()
            answers[index] = stores[index].acquire(users[index].request())
        except BaseException as error:  # re-raised below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(i,), name=f"user-{user.name}") for i, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [outcome for outcome in answers if outcome is not None]


def tell(store: DynamoDBLockStore, who: str, what: str, outcome: outcomes.Outcome) -> None:
    """``  bob      release (token 2)  → refused: …``, continuation lines aligned under the answer."""
    prefix = f"  {who:<8} {what:<24} → "
    for line in render.outcome_lines(LOCK_KEY, outcome, store.now()):
        print(prefix + line.removeprefix(LOCK_KEY + ": ").strip())
        prefix = " " * len(prefix)


def acquired(outcome: outcomes.Outcome, what: str) -> outcomes.Acquired:
    if not isinstance(outcome, outcomes.Acquired):
        raise StoryBroken(f"{what}: expected the lock, got {outcome}")
    return outcome


@dataclass(frozen=True)
class Build:
    """One /build that holds the lock: who typed it, and the answer that gave it the lock."""

    user: User
    store: DynamoDBLockStore
    lock: outcomes.Acquired

    @property
    def token(self) -> int:
        return self.lock.token

    @property
    def owner(self) -> str:
        return self.lock.record.owner


class Story:
    """The demo's steps, in order; each prints what happened and checks it before the next one starts."""

    def __init__(self, aws: LocalAWS) -> None:
        self.aws = aws
        self.clock = SimulatedClock()
        self.users = [User(name, f"U{n:03d}") for n, name in enumerate(USERS, start=1)]
        # One client per user, as twenty Lambda invocations would have; all share the simulated clock.
        self.stores = [
            DynamoDBLockStore(DEFAULT_TABLE, client=make_client(aws.url), clock=self.clock) for _ in self.users
        ]
        self.store = self.stores[0]
        self.requests_before = aws.app.dynamodb_requests

    def store_of(self, user: User) -> DynamoDBLockStore:
        return self.stores[self.users.index(user)]

    def run(self) -> None:
        self.set_up()
        first, losers = self.race()
        self.complete(first)
        second = self.next_build(losers[0], first)
        third = self.take_over(losers[1], second)
        self.stale_release(second)
        self.fencing_check(third, second)
        self.finale(third)

    def set_up(self) -> None:
        print("chatops demo: one build lock, twenty people, a DynamoDB on this machine")
        created = "created" if self.store.create_table() else "already there"
        print(f"  moto at {self.aws.url}, one request at a time like DynamoDB's atomic single-item writes")
        print(f"  lock table {self.store.table!r} {created}; each user below has its own client")

    def race(self) -> tuple[Build, list[User]]:
        heading(f"1. {len(self.users)} people type `/build router plt` at the same instant")
        before = self.aws.app.dynamodb_requests
        answers = race(self.users, self.stores)
        requests = self.aws.app.dynamodb_requests - before
        winners = [(u, o) for u, o in zip(self.users, answers, strict=True) if isinstance(o, outcomes.Acquired)]
        expect(len(winners) == 1, f"exactly one winner, got {len(winners)}")
        user, lock = winners[0]
        first = Build(user, self.store_of(user), acquired(lock, "the winner"))
        minutes = LEASE_SECONDS // 60
        print(f"  🔒 {user.name} ({user.user_id}) got the lock: token {first.token}, lease {minutes} min")
        print(f"  The other {len(self.users) - 1} were told, each in the answer to their own single request:")
        losers = []
        for loser, outcome in zip(self.users, answers, strict=True):
            if loser is user:
                continue
            if not isinstance(outcome, outcomes.HeldBySomeone) or outcome.holder.owner != first.owner:
                raise StoryBroken(f"{loser.name} was not told that {user.name} holds the lock: {outcome}")
            print(f"    {loser.name:<8} {render.holder_line(outcome.holder, self.store.now())}")
            losers.append(loser)
        print(f"  {len(answers)} acquires, {requests} DynamoDB requests: no loser needed a second read.")
        return first, losers

    def complete(self, build: Build) -> None:
        heading("2. The build finishes: the holder releases it as COMPLETED")
        done = build.store.release(LOCK_KEY, build.owner, build.token, Status.COMPLETED)
        expect(isinstance(done, outcomes.Released), f"the holder released its own lock, got {done}")
        tell(self.store, build.user.name, f"release (token {build.token})", done)

    def next_build(self, user: User, previous: Build) -> Build:
        heading("3. The next /build gets the lock with a higher fencing token")
        store = self.store_of(user)
        build = Build(user, store, acquired(store.acquire(user.request(attempt=2)), "the next /build"))
        expect(build.token > previous.token, f"token {build.token} is above {previous.token}")
        tell(self.store, user.name, "/build router plt", build.lock)
        return build

    def take_over(self, user: User, crashed: Build) -> Build:
        heading(f"4. {crashed.user.name}'s build dies without releasing; its lease runs out")
        self.clock.advance(11 * 60)
        print("  (simulated clock +11 min: the 10-minute lease has ended; nobody had to clean up)")
        lapsed = render.status_line(self.store.get(LOCK_KEY), self.store.now())
        print(f"  {'':<8} {'show ' + LOCK_KEY:<24} → {lapsed}")
        store = self.store_of(user)
        build = Build(user, store, acquired(store.acquire(user.request(attempt=3)), "the takeover"))
        expect(build.token > crashed.token, f"token {build.token} is above {crashed.token}")
        tell(self.store, user.name, "/build router plt", build.lock)
        return build

    def stale_release(self, stale: Build) -> None:
        heading(f"5. {stale.user.name}'s build wakes up and tries to release with its old token")
        answer = stale.store.release(LOCK_KEY, stale.owner, stale.token, Status.FAILED)
        expect(
            isinstance(answer, outcomes.NotHolder) and answer.reason is outcomes.Refusal.STALE_TOKEN,
            f"the stale release was refused as STALE_TOKEN, got {answer}",
        )
        tell(self.store, stale.user.name, f"release (token {stale.token})", answer)

    def fencing_check(self, holder: Build, stale: Build) -> None:
        heading("6. The fencing check a deploy runs right before touching production")
        for build, expected in ((holder, True), (stale, False)):
            holds = self.store.check(LOCK_KEY, build.token)
            expect(holds is expected, f"check(token {build.token}) answered {holds}")
            verdict = "✅ holds the lock: go ahead" if holds else "⛔ not the holder: stop"
            print(f"  {build.user.name:<8} {f'check --token {build.token}':<24} → {verdict}")

    def finale(self, holder: Build) -> None:
        heading(f"The lock now (`chatops locks show {LOCK_KEY}`)")
        state, record = self.store.state(LOCK_KEY)
        expect(state is m.LockState.HELD and record == holder.lock.record, f"the lock ends held, got {record}")
        assert record is not None
        for line in render.table([record], self.store.now()):
            print(f"  {line}")
        total = self.aws.app.dynamodb_requests - self.requests_before
        print(f"\nEvery step above was checked, not assumed ({total} DynamoDB requests in all).")


def main() -> int:
    use_local_credentials()
    started = time.monotonic()
    with LocalAWS() as aws:
        try:
            Story(aws).run()
        except StoryBroken as broken:
            print(f"\n❌ the demo's story did not hold: {broken}")
            return 1
    print(f"Done in {time.monotonic() - started:.1f} s. Run it again: `chatops demo --lock`.")
    return 0
