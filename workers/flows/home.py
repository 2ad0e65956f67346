"""The App Home: a user's lock board published when they open it, and republished while they may be looking.

- **opened** (:class:`~workers.protocol.envelope.HomeOpened`: Slack's ``app_home_opened``, or a page press) —
  handled once per ``event_id``: Slack retries a delivery it thinks was lost with the same id, and the ledger's
  ``told`` mark (put after publishing, so a crash in between publishes again) makes the retry do nothing. The
  user is kept as a recent viewer (:meth:`~workers.adapters.ledger.Ledger.home_opened`), then the board is read
  and published to them.
- **refresh** (:class:`~workers.protocol.envelope.HomeRefresh`, queued by the history writer when no refresh is
  pending already: :mod:`workers.handlers.history`) — the pending-refresh mark is deleted first, so that a lock
  change from here on queues a refresh of its own while every change before is on the board read next; then the
  board is read once and published to each user who opened the Home within
  :data:`~workers.protocol.board.HOME_WINDOW_SECONDS`, at the page they were on, with their own buttons. At most
  :data:`MAX_PUBLISHES` per message, newest viewers first; the rest go back on the queue as a refresh of their own.

``views.publish`` is Tier 4 (100+ a minute per workspace). A 429 raises :class:`HomeRateLimited`: the message goes
back to the queue (SQS's visibility timeout, minutes, where a ``Retry-After`` is seconds) and is handled again
with the board as it is then — no refresh is lost, and none is published stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from lockcore.errors import LockStoreError
from lockcore.record import LockRecord
from lockcore.store import LockStore
from workers.adapters import runtime
from workers.adapters.history_table import HistoryTable
from workers.adapters.ledger import LedgerError
from workers.adapters.queues import NotQueued, enqueue
from workers.adapters.secrets import SecretUnavailable
from workers.adapters.usergroups import GroupLookupFailed, member_groups
from workers.flows.freeze import reason_of
from workers.flows.windows import next_windows
from workers.protocol.board import HOME_WINDOW_SECONDS, Board, Viewer, home_view
from workers.protocol.commands import is_admin
from workers.protocol.config import Config
from workers.protocol.envelope import HomeEnvelope, HomeOpened, HomeRefresh
from workers.protocol.history import FREEZE_PREFIX, HistoryEvent

MAX_PUBLISHES: Final = 50
"""Homes published per message: half of Tier 4's minute, so that one refresh leaves room for the opens."""
HISTORY_LOCKS: Final = 5
"""The history shown is the newest events of this many most recently changed locks (one Query each)."""
HISTORY_PER_LOCK: Final = 3
HANDLED_PREFIX: Final = "home-event#"


class HomeRateLimited(runtime.RetryLater):
    """Slack answered ``views.publish`` with 429: the message is handled again later, the board read afresh."""


class BoardUnavailable(runtime.RetryLater):
    """The lock table or the ledger did not answer: the message is handled again later."""


def handle(envelope: HomeEnvelope, *, config: Config, store: LockStore) -> None:
    match envelope:
        case HomeOpened():
            opened(envelope, config, store)
        case HomeRefresh():
            refresh(envelope, config, store)


def opened(envelope: HomeOpened, config: Config, store: LockStore) -> None:
    ledger = runtime.ledger()
    handled = HANDLED_PREFIX + envelope.event_id
    if ledger.told(handled):
        runtime.logger.info("home opened: this event was handled already", event_id=envelope.event_id)
        return
    now = store.now()
    try:
        ledger.home_opened(envelope.user_id, envelope.page, now)
    except LedgerError as error:  # published all the same; only its later refreshes are lost
        runtime.logger.error("home opened: the viewer could not be kept", reason=str(error))
    publish(read_board(store, now, config), [(envelope.user_id, envelope.page)], config, envelope.correlation_id)
    ledger.mark_told(handled)
    runtime.logger.info("home published", user_id=envelope.user_id, page=envelope.page)


def refresh(envelope: HomeRefresh, config: Config, store: LockStore) -> None:
    ledger = runtime.ledger()
    if not envelope.users:  # the rest of a refresh (``users``) does not stand for the changes since its mark
        try:
            ledger.clear_home_refresh()
        except LedgerError as error:  # a mark left there would hold back the refreshes of the changes to come
            raise BoardUnavailable(f"the pending-refresh mark could not be deleted: {error}") from None
    now = store.now()
    try:
        recent = ledger.home_viewers(since=now - HOME_WINDOW_SECONDS)
    except LedgerError as error:
        raise BoardUnavailable(f"the ledger did not say who has the Home open: {error}") from None
    if envelope.users:
        recent = {user: seen for user, seen in recent.items() if user in envelope.users}
    viewers = [(user, page) for user, (_, page) in sorted(recent.items(), key=lambda item: -item[1][0])]
    if not viewers:
        runtime.logger.info("home refresh: nobody has the Home open")
        return
    now_viewers, later = viewers[:MAX_PUBLISHES], viewers[MAX_PUBLISHES:]
    # The rest is queued only once these are published: a 429 brings this message back, and a rest queued by
    # every delivery of it would multiply the publishes that are being rate-limited.
    publish(read_board(store, now, config), now_viewers, config, envelope.correlation_id)
    if later:
        rest = HomeRefresh(envelope.correlation_id, now, tuple(user for user, _ in later))
        try:
            enqueue(config, rest.kind, rest.to_json(), dedup_id=f"{envelope.correlation_id}-{len(later)}",
                    group_id=rest.kind, correlation_id=envelope.correlation_id)  # fmt: skip
        except NotQueued as error:  # they see the board at their next open, or the next change
            runtime.logger.error("home refresh: the rest could not be queued", viewers=len(later), reason=str(error))
    runtime.logger.info("home refreshed", viewers=len(now_viewers), later=len(later))


def publish(board: Board, viewers: Sequence[tuple[str, int]], config: Config, correlation_id: str) -> None:
    """Each viewer's Home, with the buttons they may press; raises :class:`HomeRateLimited` on a 429."""
    slack = runtime.slack_replies()
    for user_id, page in viewers:
        view = home_view(board, Viewer(user_id, admin=_admin(config, user_id), page=page))
        published = slack.publish_home(user_id, view, correlation_id=correlation_id)
        if published.retry_after is not None:
            raise HomeRateLimited(f"views.publish rate-limited, retry after {published.retry_after}s")


def read_board(store: LockStore, now: int, config: Config) -> Board:
    try:
        records = store.list(include_free=True)  # the free ones too: whose history is newest
    except LockStoreError as error:
        raise BoardUnavailable(f"the lock table did not answer: {error}") from None
    reasons = {r.lock_key: reason_of(r) for r in records if r.lock_key.startswith(FREEZE_PREFIX)}
    return Board(records, now, _recent_events(records, runtime.history()), reasons, next_windows(config, now))


def _recent_events(records: Sequence[LockRecord], history: HistoryTable) -> list[HistoryEvent]:
    """The newest events of the most recently changed locks; none when the history does not answer."""
    changed = sorted(records, key=lambda r: max(r.locked_at, r.released_at or ""), reverse=True)[:HISTORY_LOCKS]
    try:
        return [event for record in changed for event in history.recent(record.lock_key, limit=HISTORY_PER_LOCK)]
    except LedgerError as error:
        runtime.logger.warning("home: the history did not answer; the board shows none", reason=str(error))
        return []


def _admin(config: Config, user_id: str) -> bool:
    """Whether the viewer gets the Force unlock buttons: fail closed when their groups cannot be looked up (the
    worker checks again when one is pressed)."""
    try:
        return is_admin(config, user_id, member_groups(config.slack, config.authorization.admins, user_id))
    except (GroupLookupFailed, SecretUnavailable) as error:
        runtime.logger.warning("home: the viewer's groups are unknown; no admin buttons", reason=str(error))
        return False
