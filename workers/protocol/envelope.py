"""The messages the router puts on the SQS queues, and the workers read back: one typed class per kind.

Every message body is one JSON object with ``"version"`` and ``"kind"``; :func:`read_message` returns the
matching class, or raises :class:`EnvelopeError` (one line) when the body is not one of ours.

- :class:`CommandEnvelope` (kinds ``build``, ``deploy``, ``status``, ``unlock``, ``cancel``, ``echo``, ``history``,
  ``stats``, ``freeze``, ``unfreeze``): a slash command
  already verified, parsed and authorized. ``request_id`` is Slack's ``trigger_id`` — unique per invocation, the
  worker's idempotency key and the lock owner. ``command`` is the parsed :data:`workers.protocol.commands.Command`.
- :class:`InteractionEnvelope` (kind ``interaction``): a button press from a message a worker posted (the unlock
  confirmation), verified and from an accepted workspace and app; the worker re-checks the token it carries.
- :class:`WorkflowRunEnvelope` (kind ``workflow_run``): a GitHub ``workflow_run`` webhook, signature verified,
  reduced to the fields a worker needs.

Field names on the wire are camelCase, like the lock records'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from workers.protocol.commands import (
    ON_A_LOCK,
    Command,
    Dispatch,
    Echo,
    Freeze,
    LockStatus,
    OnALock,
    Stats,
    Unfreeze,
)
from workers.protocol.config import Action
from workers.protocol.inbound import read_json

VERSION = 1

#: Block Kit ``action_id``s the router forwards (to the status worker); anything else is acknowledged and dropped.
UNLOCK_CONFIRM_ACTION = "unlock.confirm"
UNLOCK_CANCEL_ACTION = "unlock.cancel"
LOCK_WATCH_ACTION = "lock.watch"
"""The "Notify me when free" button on a busy reply; its value is the lock key."""
INTERACTION_ACTIONS = frozenset({UNLOCK_CONFIRM_ACTION, UNLOCK_CANCEL_ACTION, LOCK_WATCH_ACTION})
#: The actions only an admin may take; the router refuses them for others, and the worker should check again.
ADMIN_ACTIONS = frozenset({UNLOCK_CONFIRM_ACTION})


class EnvelopeError(ValueError):
    """A queue message that is not one of ours (wrong JSON, version, kind or field). One line."""


# -------------------------------------------------------------------------------------------- the commands
def command_json(command: Command) -> dict[str, Any]:
    match command:
        case Dispatch(action=action, component=component, environment=environment, ref=ref, queue=queue):
            body: dict[str, Any] = {
                "kind": action.value,
                "component": component,
                "environment": environment,
                "ref": ref,
            }
            if queue:
                body["queue"] = True
            return body
        case OnALock(action=action, component=component, environment=environment):
            return {"kind": command.kind, "action": action.value, "component": component, "environment": environment}
        case LockStatus():
            return {"kind": "status"}
        case Echo(text=text):
            return {"kind": "echo", "text": text}
        case Stats(days=days):
            return {"kind": "stats", "days": days}
        case Freeze(environment=environment, reason=reason):
            return {"kind": "freeze", "environment": environment, "reason": reason}
        case Unfreeze(environment=environment):
            return {"kind": "unfreeze", "environment": environment}


def command_from_json(data: dict[str, Any]) -> Command:
    kind = data.get("kind")
    try:
        if kind in {"build", "deploy"}:
            ref = data.get("ref")
            if ref is not None and not isinstance(ref, str):
                raise EnvelopeError("command.ref: expected a string or null")
            queue = data.get("queue", False)
            if not isinstance(queue, bool):
                raise EnvelopeError("command.queue: expected a boolean")
            return Dispatch(Action(kind), _text(data, "component"), _text(data, "environment"), ref, queue)
        if kind in ON_A_LOCK:
            on_a_lock = ON_A_LOCK[kind]
            return on_a_lock(Action(_text(data, "action")), _text(data, "component"), _text(data, "environment"))
        if kind == "status":
            return LockStatus()
        if kind == "echo":
            return Echo(_text(data, "text"))
        if kind == "stats":
            return Stats(_number(data, "days"))
        if kind == "freeze":
            return Freeze(_text(data, "environment"), _text(data, "reason"))
        if kind == "unfreeze":
            return Unfreeze(_text(data, "environment"))
    except ValueError as error:
        raise EnvelopeError(f"command: {error}") from None
    raise EnvelopeError(f"command.kind: unknown kind {kind!r}")


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise EnvelopeError(f"{key}: expected a string")
    return value


def _number(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EnvelopeError(f"{key}: expected a whole number")
    return value


# ----------------------------------------------------------------------------------------------- envelopes
@dataclass(frozen=True)
class CommandEnvelope:
    request_id: str
    """Slack's ``trigger_id``: the idempotency key and the lock owner."""
    correlation_id: str
    """Chosen by the router; in every log line, metric and (for dispatches) the workflow's run-name."""
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

    @property
    def kind(self) -> str:
        return self.command.kind

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "kind": self.kind,
                "requestId": self.request_id,
                "correlationId": self.correlation_id,
                "command": command_json(self.command),
                "slash": self.slash,
                "text": self.text,
                "userId": self.user_id,
                "userName": self.user_name,
                "channelId": self.channel_id,
                "teamId": self.team_id,
                "apiAppId": self.api_app_id,
                "responseUrl": self.response_url,
                "receivedAt": self.received_at,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, body: str) -> CommandEnvelope:
        envelope = read_message(body)
        if not isinstance(envelope, cls):
            raise EnvelopeError(f"expected a command message, not kind {envelope.kind!r}")
        return envelope

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> CommandEnvelope:
        command = data.get("command")
        if not isinstance(command, dict):
            raise EnvelopeError("command: expected an object")
        return cls(
            request_id=_text(data, "requestId"),
            correlation_id=_text(data, "correlationId"),
            command=command_from_json(command),
            slash=_text(data, "slash"),
            text=_text(data, "text"),
            user_id=_text(data, "userId"),
            user_name=_text(data, "userName"),
            channel_id=_text(data, "channelId"),
            team_id=_text(data, "teamId"),
            api_app_id=_text(data, "apiAppId"),
            response_url=_text(data, "responseUrl"),
            received_at=_number(data, "receivedAt"),
        )


@dataclass(frozen=True)
class InteractionEnvelope:
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

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "kind": self.kind,
                "requestId": self.request_id,
                "correlationId": self.correlation_id,
                "actionId": self.action_id,
                "value": self.value,
                "userId": self.user_id,
                "userName": self.user_name,
                "teamId": self.team_id,
                "apiAppId": self.api_app_id,
                "channelId": self.channel_id,
                "responseUrl": self.response_url,
                "receivedAt": self.received_at,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, body: str) -> InteractionEnvelope:
        envelope = read_message(body)
        if not isinstance(envelope, cls):
            raise EnvelopeError(f"expected an interaction message, not kind {envelope.kind!r}")
        return envelope

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> InteractionEnvelope:
        return cls(
            request_id=_text(data, "requestId"),
            correlation_id=_text(data, "correlationId"),
            action_id=_text(data, "actionId"),
            value=_text(data, "value"),
            user_id=_text(data, "userId"),
            user_name=_text(data, "userName"),
            team_id=_text(data, "teamId"),
            api_app_id=_text(data, "apiAppId"),
            channel_id=_text(data, "channelId"),
            response_url=_text(data, "responseUrl"),
            received_at=_number(data, "receivedAt"),
        )


@dataclass(frozen=True)
class WorkflowRunEnvelope:
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
    event: str | None
    """``workflow_run.event`` (``workflow_dispatch``, ``pull_request``…). ``None`` in a message written before the
    router noted it: such a message changes no lock (:mod:`workers.protocol.runs`)."""
    workflow_id: int | None
    kind: ClassVar[str] = "workflow_run"

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "kind": self.kind,
                "deliveryId": self.delivery_id,
                "correlationId": self.correlation_id,
                "action": self.action,
                "runId": self.run_id,
                "runAttempt": self.run_attempt,
                "name": self.name,
                "displayTitle": self.display_title,
                "status": self.status,
                "conclusion": self.conclusion,
                "htmlUrl": self.html_url,
                "headSha": self.head_sha,
                "workflowPath": self.workflow_path,
                "repository": self.repository,
                "receivedAt": self.received_at,
                "event": self.event,
                "workflowId": self.workflow_id,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, body: str) -> WorkflowRunEnvelope:
        envelope = read_message(body)
        if not isinstance(envelope, cls):
            raise EnvelopeError(f"expected a workflow_run message, not kind {envelope.kind!r}")
        return envelope

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> WorkflowRunEnvelope:
        conclusion = data.get("conclusion")
        if conclusion is not None and not isinstance(conclusion, str):
            raise EnvelopeError("conclusion: expected a string or null")
        event = data.get("event")  # absent from messages queued before the router noted it
        if event is not None and not isinstance(event, str):
            raise EnvelopeError("event: expected a string or null")
        workflow_id = data.get("workflowId")
        if workflow_id is not None:
            workflow_id = _number(data, "workflowId")
        return cls(
            delivery_id=_text(data, "deliveryId"),
            correlation_id=_text(data, "correlationId"),
            action=_text(data, "action"),
            run_id=_number(data, "runId"),
            run_attempt=_number(data, "runAttempt"),
            name=_text(data, "name"),
            display_title=_text(data, "displayTitle"),
            status=_text(data, "status"),
            conclusion=conclusion,
            html_url=_text(data, "htmlUrl"),
            head_sha=_text(data, "headSha"),
            workflow_path=_text(data, "workflowPath"),
            repository=_text(data, "repository"),
            received_at=_number(data, "receivedAt"),
            event=event,
            workflow_id=workflow_id,
        )


Envelope = CommandEnvelope | InteractionEnvelope | WorkflowRunEnvelope
COMMAND_KINDS = frozenset(
    {"build", "deploy", "status", "unlock", "cancel", "echo", "history", "stats", "freeze", "unfreeze", "dequeue"}
)


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
    kind = data.get("kind")
    if kind in COMMAND_KINDS:
        envelope: Envelope = CommandEnvelope._from_dict(data)
        if envelope.kind != kind:
            raise EnvelopeError(f"kind {kind!r} does not match command kind {envelope.kind!r}")
        return envelope
    if kind == InteractionEnvelope.kind:
        return InteractionEnvelope._from_dict(data)
    if kind == WorkflowRunEnvelope.kind:
        return WorkflowRunEnvelope._from_dict(data)
    raise EnvelopeError(f"kind: unknown kind {kind!r}")
