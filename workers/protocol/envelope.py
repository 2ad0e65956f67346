"""The messages the router puts on the SQS queues, and the workers read back: one typed class per kind.

Every message body is one JSON object with ``"version"`` and ``"kind"``; :func:`read_message` returns the
matching class, or raises :class:`EnvelopeError` (one line) when the body is not one of ours.

- :class:`CommandEnvelope` (the kinds of :data:`COMMAND_KINDS`): a slash command
  already verified, parsed and authorized. ``request_id`` is Slack's ``trigger_id`` — unique per invocation, the
  worker's idempotency key and the lock owner; ``correlation_id`` is derived from it (:func:`correlation_id_of`).
  ``command`` is the parsed :data:`workers.protocol.commands.Command`.
- :class:`InteractionEnvelope` (kind ``interaction``): a button press from a message a worker posted (the unlock
  confirmation), verified and from an accepted workspace and app; the worker re-checks the token it carries.
- :class:`HomeOpened` (kind ``home_opened``): a user opened the App Home (Slack's ``app_home_opened``, deduplicated by
  its ``event_id``) or turned its page; :class:`HomeRefresh` (kind ``home_refresh``): locks changed, republish the
  Home of everyone who opened it lately (:mod:`workers.flows.home`).
- :class:`WorkflowRunEnvelope` (kind ``workflow_run``): a GitHub ``workflow_run`` webhook, signature verified,
  reduced to the fields a worker needs.

Written and read by :mod:`workers.protocol.codec`: field names camelCase, like the lock records'. A hand-off is the
queued request's own envelope with ``handedOff`` (and ``coalesced``) set.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self

from workers.protocol.codec import WHEN_SET, WireError, from_tagged, kinds_of, to_wire
from workers.protocol.commands import Command
from workers.protocol.inbound import read_json

VERSION = 1

#: Block Kit ``action_id``s the router forwards (to the status worker); anything else is acknowledged and dropped.
UNLOCK_CONFIRM_ACTION = "unlock.confirm"
UNLOCK_CANCEL_ACTION = "unlock.cancel"
LOCK_WATCH_ACTION = "lock.watch"
"""The "Notify me when free" button on a busy reply; its value is the lock key."""
ROLLBACK_CONFIRM_ACTION = "rollback.confirm"
"""*Confirm rollback*: the router makes it a deploy of the chosen commit (:mod:`workers.protocol.rollback`)."""
ROLLBACK_CANCEL_ACTION = "rollback.cancel"
INTERACTION_ACTIONS = frozenset(
    {UNLOCK_CONFIRM_ACTION, UNLOCK_CANCEL_ACTION, LOCK_WATCH_ACTION, ROLLBACK_CONFIRM_ACTION, ROLLBACK_CANCEL_ACTION}
)
#: The actions only an admin may take; the router refuses them for others, and the worker should check again.
ADMIN_ACTIONS = frozenset({UNLOCK_CONFIRM_ACTION})

HOME_PREVIOUS_ACTION: Final = "home.page.previous"
HOME_NEXT_ACTION: Final = "home.page.next"
"""Previous/Next (an action id is unique within its block): the value is the page to show."""
HOME_DEQUEUE_ACTION: Final = "home.dequeue"
"""Leave the queue of the lock in the value: the viewer's ``/build dequeue``."""
HOME_CANCEL_ACTION: Final = "home.cancel"
"""Cancel the viewer's run under the lock in the value (``<lock key>:<token>``, the holding shown): the viewer's
``/build cancel`` of that holding only."""
HOME_PAGE_ACTIONS: Final = frozenset({HOME_PREVIOUS_ACTION, HOME_NEXT_ACTION})
HOME_ACTIONS: Final = HOME_PAGE_ACTIONS | {HOME_DEQUEUE_ACTION, HOME_CANCEL_ACTION}
"""The actions only the Home has; the Home also carries "Notify me" and "Force unlock" (the messages' own)."""

DIRECT_MESSAGE_PREFIX: Final = "slack-dm:"
"""A Home press carries no ``response_url``: its envelope carries ``slack-dm:<user id>`` in that field instead,
and every answer to it goes to the user as a direct message (``chat.postMessage`` to the user id)."""


def direct_message_address(user_id: str) -> str:
    return DIRECT_MESSAGE_PREFIX + user_id


def direct_message_user(address: str) -> str | None:
    """The user a ``slack-dm:`` address names, or ``None`` for a ``response_url``."""
    return address.removeprefix(DIRECT_MESSAGE_PREFIX) if address.startswith(DIRECT_MESSAGE_PREFIX) else None


_SLACK_REQUESTS = uuid.UUID("b5f7431c-fb7b-482e-863e-1f0853826e97")
"""The namespace of the correlation ids derived from Slack requests (any fixed UUID: it only has to never change)."""


def correlation_id_of(request_id: str) -> str:
    """The correlation id of a Slack request (a slash command's or an interaction's ``trigger_id``).

    Derived, not drawn: the same request reaching the router again — a resubmission, a retried delivery — gets
    the same one, so every delivery of it looks for, and dispatches, the same run (whose name carries it). A
    UUID, as the ids logs are searched by always were.
    """
    return str(uuid.uuid5(_SLACK_REQUESTS, request_id))


class EnvelopeError(ValueError):
    """A queue message that is not one of ours (wrong JSON, version, kind or field). One line."""


# ----------------------------------------------------------------------------------------------- envelopes
class OnTheQueue:
    """What every envelope does: ``{"version": 1, "kind": …, <its fields>}`` through :mod:`workers.protocol.codec`."""

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **to_wire(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, body: str) -> Self:
        envelope = read_message(body)
        if not isinstance(envelope, cls):
            raise EnvelopeError(f"expected a {cls.__name__} message, not kind {envelope.kind!r}")
        return envelope


@dataclass(frozen=True)
class CommandEnvelope(OnTheQueue):
    request_id: str
    """Slack's ``trigger_id``: the idempotency key and the lock owner."""
    correlation_id: str
    """:func:`correlation_id_of` the request id (a message queued by an older router may carry a random one); in
    every log line, metric and (for dispatches) the workflow's run-name."""
    command: Command
    slash: str
    """The slash command as invoked (``/build``)."""
    text: str
    """The text after it, as typed."""
    user_id: str
    user_name: str
    channel_id: str
    team_id: str
    api_app_id: str
    response_url: str
    """Already checked against the configured response_url hosts."""
    received_at: int
    """Epoch seconds when the router accepted the request."""

    handed_off: int | None = field(default=None, metadata=WHEN_SET)
    """The token the lock was handed to this request with, from its queue (:func:`workers.flows.handoff.pass_on`);
    ``None`` for a request as the router sent it."""
    coalesced: tuple[str, ...] = field(default=(), metadata=WHEN_SET)
    """On a hand-off: the owner ids of the identical requests that waited with it, and run as its run."""
    kind_from: ClassVar[str] = "command"

    @property
    def kind(self) -> str:
        return self.command.kind


@dataclass(frozen=True)
class InteractionEnvelope(OnTheQueue):
    request_id: str
    """The interaction's ``trigger_id``."""
    correlation_id: str
    action_id: str
    """One of :data:`INTERACTION_ACTIONS`."""
    value: str
    """The button's value, as the worker that posted it wrote it (the unlock confirm: lock key and token)."""
    user_id: str
    user_name: str
    team_id: str
    api_app_id: str
    channel_id: str
    response_url: str
    received_at: int
    kind: ClassVar[str] = "interaction"


@dataclass(frozen=True)
class WorkflowRunEnvelope(OnTheQueue):
    delivery_id: str
    """GitHub's ``X-GitHub-Delivery``: unique per delivery (a redelivery keeps it)."""
    correlation_id: str
    action: str
    """``requested``, ``in_progress`` or ``completed``."""
    run_id: int
    run_attempt: int
    name: str
    display_title: str
    """The run-name, which carries our correlation id for runs we dispatched."""
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str
    workflow_path: str
    repository: str
    """owner/name."""
    received_at: int
    event: str | None = field(default=None, metadata=WHEN_SET)
    """``workflow_run.event`` (``workflow_dispatch``, ``pull_request``…). ``None`` in a message written before the
    router noted it: such a message changes no lock (:mod:`workers.protocol.runs`)."""
    workflow_id: int | None = field(default=None, metadata=WHEN_SET)
    kind: ClassVar[str] = "workflow_run"


@dataclass(frozen=True)
class HomeOpened(OnTheQueue):
    event_id: str
    """Slack's ``event_id`` (the same on every retried delivery), or a page press's ``trigger_id``."""
    correlation_id: str
    user_id: str
    team_id: str
    received_at: int
    page: int = field(default=0, metadata=WHEN_SET)
    kind: ClassVar[str] = "home_opened"


@dataclass(frozen=True)
class HomeRefresh(OnTheQueue):
    correlation_id: str
    received_at: int
    users: tuple[str, ...] = field(default=(), metadata=WHEN_SET)
    """Only these viewers (the rest of a refresh that met its cap); empty: everyone who opened the Home lately."""
    kind: ClassVar[str] = "home_refresh"


HomeEnvelope = HomeOpened | HomeRefresh
Envelope = CommandEnvelope | InteractionEnvelope | WorkflowRunEnvelope | HomeOpened | HomeRefresh
COMMAND_KINDS = frozenset(kinds_of(Command))
"""Every kind of command envelope: the actions' (``build``, ``deploy``), ``echo`` and the verbs' (``VERB_TABLE``)."""


def read_message(body: str) -> Envelope:
    """Any queue message body back into its envelope."""
    try:
        data = read_json(body)
    except ValueError as error:
        raise EnvelopeError(f"message body: not JSON we read ({error})") from None
    if not isinstance(data, dict):
        raise EnvelopeError("message body: expected a JSON object")
    if data.get("version") != VERSION:
        raise EnvelopeError(f"version: expected {VERSION}, not {data.get('version')!r}")
    try:
        envelope: Envelope = from_tagged(Envelope, data)
    except WireError as error:
        raise EnvelopeError(str(error)) from None
    return envelope
