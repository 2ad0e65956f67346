"""The HTTP entry point: verify, parse, enqueue, acknowledge — nothing slower.

``handler(event, context)`` takes a Lambda Function URL / API Gateway HTTP API (payload 2.0) event and returns
its response. Routes, all POST:

- ``/slack/commands`` — a slash command. Signature checked (Slack's v0 HMAC, 5 minutes: :func:`slack_signed`);
  missing, wrong or stale → 401 with no side effect. Then the workspace and app, the command
  (:func:`workers.protocol.commands.parse`), who may run it (:func:`workers.protocol.commands.decide`) and the
  ``response_url``
  host. Help, usage and refusals are answered at once (200, ephemeral); a runnable command becomes a
  :class:`~workers.protocol.envelope.CommandEnvelope` on its worker's queue and is acknowledged (200, ephemeral). A
  queue
  that cannot be written to is one ephemeral line ("couldn't queue your command, try again"), never a 5xx.
- ``/slack/interactions`` — a Block Kit button (``payload=<json>``), signed like commands: the unlock confirm and
  cancel go to the status worker as an :class:`~workers.protocol.envelope.InteractionEnvelope`; *Confirm rollback*
  goes to the deploy queue as the ``/deploy`` it confirms (:func:`rollback_deploy`), after the presser's
  authorization; anything else is acknowledged and dropped.
  A press on the App Home (``container.type`` ``view``, its view a ``home``) carries no ``response_url``: its
  envelope gets a ``slack-dm:<user>`` address instead, and its answer is a direct message
  (:mod:`workers.protocol.board`). The Home's own buttons: a page (a :class:`~workers.protocol.envelope.HomeOpened`),
  and "Leave the queue" / "Cancel my run", which become the user's ``/build dequeue`` / ``/build cancel``, decided
  as those commands are.
- ``/slack/events`` — the Events API, signed like commands: ``url_verification`` is answered with its challenge;
  an ``event_callback`` whose event is ``app_home_opened`` on the Home tab, from an accepted workspace and app,
  goes to the status worker as a :class:`~workers.protocol.envelope.HomeOpened` (which handles each ``event_id``
  once: Slack retries a delivery with the same id); any other event is acknowledged and dropped.
- ``/github/webhook`` — ``X-Hub-Signature-256`` checked in constant time; ``workflow_run`` events for the
  configured repository go to the github queue as a :class:`~workers.protocol.envelope.WorkflowRunEnvelope`.

Anything else is 404 (405 for another method on a known path). The router never calls DynamoDB or GitHub. Its
outbound calls are Slack's: ``usergroups.users.list``, when an authorization rule names a group that the
configuration does not list (:mod:`workers.adapters.usergroups`), and the answer to a button press it refuses or
cannot queue (Slack ignores a block_actions reply body: :func:`_answer_press`) — through the press's
``response_url``, or for a Home press, which has none, a direct message (``chat.postMessage``).

Status codes other than 200: 400 a body that is not what the route expects (after the signature, or when it
cannot even be read), 401 signature, 404/405 routing, 503 a GitHub event, a Slack event or a Home press that could
not be queued (GitHub lets you redeliver it, Slack retries the event, the press shows as failed), and 500 a
request that could not be served (:func:`not_served`).

A request that could not be served — its secret cannot be had (so it cannot be verified, and nothing is done),
the configuration is broken, or something unexpected — is logged as one structured error line with its
correlation id and answered by :func:`not_served`: a slash command with a 200 and one ephemeral line, since Slack
shows its user only "dispatch_failed" for any other status; an interaction or a webhook with a 500, which Slack
shows on the pressed button and GitHub on the delivery. The answer names the correlation id, never an internal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger

from workers.adapters.queues import NotQueued, enqueue
from workers.adapters.secrets import SecretUnavailable, get_secret
from workers.adapters.usergroups import GROUPS_UNKNOWN, GroupLookupFailed, member_groups
from workers.protocol import commands
from workers.protocol.config import Action, Config, ConfigError, current_config
from workers.protocol.envelope import (
    ADMIN_ACTIONS,
    HOME_ACTIONS,
    HOME_DEQUEUE_ACTION,
    HOME_PAGE_ACTIONS,
    INTERACTION_ACTIONS,
    ROLLBACK_CONFIRM_ACTION,
    CommandEnvelope,
    HomeOpened,
    InteractionEnvelope,
    WorkflowRunEnvelope,
    correlation_id_of,
    direct_message_address,
)
from workers.protocol.inbound import read_json
from workers.protocol.message import Message

if TYPE_CHECKING:
    pass

logger = Logger(service="chatops-router")

SLACK_COMMANDS_PATH = "/slack/commands"
SLACK_INTERACTIONS_PATH = "/slack/interactions"
SLACK_EVENTS_PATH = "/slack/events"
GITHUB_WEBHOOK_PATH = "/github/webhook"

COULD_NOT_QUEUE = "⚠️ Sorry, I couldn't queue your command — please try again in a moment."
INTERACTION_USAGE = "expected a form with payload=<a Slack block_actions interaction as a JSON object>"
HOME_PRESS_NAMES_NO_LOCK = (
    "⚠️ That button names no lock you can act on any more; reopen the Home for the board as it is now."
)
WEBHOOK_USAGE = "expected a GitHub workflow_run delivery: a JSON object"
EVENTS_USAGE = "expected a Slack Events API request: a JSON object with a type"
MAX_FORM_FIELDS = 64
SLACK_MAX_AGE_SECONDS = 300
"""A Slack signature older (or newer) than this is stale: Slack's rule."""
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SLACK_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_GITHUB_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


# ------------------------------------------------------------------------------------------ HTTP in and out
@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    """Names lower-cased."""
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"content-type": self.content_type, **self.headers},
            "body": self.body,
        }


class BadRequest(Exception):
    """The request cannot be read as what the route expects: answered 400 with this one line."""


def ephemeral(text: str) -> Response:
    """A 200 reply only the invoking user sees."""
    body = json.dumps({"response_type": "ephemeral", "text": text}, ensure_ascii=False)
    return Response(200, body, "application/json")


def read_request(event: Mapping[str, Any]) -> Request:
    """The parts of a payload 2.0 event the routes need; :class:`BadRequest` when the event is not one."""
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    method = http.get("method") if isinstance(http, dict) else None
    path = event.get("rawPath")
    headers = event.get("headers") or {}
    body = event.get("body") or ""
    if not isinstance(method, str) or not isinstance(path, str) or not isinstance(headers, dict):
        raise BadRequest("not an HTTP request event (payload format 2.0)")
    if not isinstance(body, str):
        raise BadRequest("the body is not text")
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest("the body is not valid base64 or UTF-8") from None
    lowered = {str(name).lower(): value for name, value in headers.items() if isinstance(value, str)}
    return Request(method.upper(), path, lowered, raw)


# ---------------------------------------------------------------------------------------------- signatures
# The secret is asked for only when a request carries a signature of the right shape (and, from Slack, a fresh
# one): an unsigned or stale request is refused with a 401 even while the secret cannot be had.
def slack_signed(request: Request, signing_secret: Callable[[], str]) -> bool:
    """Slack's v0 signature over the raw body (which must be UTF-8), within five minutes of now, compared in
    constant time. Checked here with the standard library: slack_sdk's ``SignatureVerifier`` computes the same, but
    importing it imports all of slack_sdk's Web API client, a third of the router's cold start."""
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _SLACK_SIGNATURE.fullmatch(signature):
        return False
    if abs(time.time() - int(timestamp)) > SLACK_MAX_AGE_SECONDS:
        return False
    try:
        request.body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return hmac.compare_digest(slack_signature(signing_secret(), timestamp, request.body), signature)


def slack_signature(signing_secret: str, timestamp: str | int, body: bytes) -> str:
    """``X-Slack-Signature``: ``v0=`` and the hex HMAC-SHA256 of ``v0:<timestamp>:<body>`` with the signing
    secret."""
    signed = b"v0:" + str(timestamp).encode("ascii") + b":" + body
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def github_signed(request: Request, webhook_secret: Callable[[], str]) -> bool:
    """``X-Hub-Signature-256`` over the raw body, compared in constant time."""
    signature = request.headers.get("x-hub-signature-256", "")
    if not _GITHUB_SIGNATURE.fullmatch(signature):
        return False
    expected = "sha256=" + hmac.new(webhook_secret().encode("utf-8"), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _slack_signing_secret() -> str:
    return get_secret("SLACK_SIGNING_SECRET")


def _github_webhook_secret() -> str:
    return get_secret("GITHUB_WEBHOOK_SECRET")


def read_form(body: bytes) -> dict[str, str]:
    """A urlencoded form; the first value of each field."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not a form") from None
    return {name: values[0] for name, values in fields.items()}


# --------------------------------------------------------------------------------------------------- slash
SLASH_FIELDS = ("command", "user_id", "team_id", "response_url", "trigger_id")


def slack_command(request: Request, correlation_id: str) -> Response:
    if not slack_signed(request, _slack_signing_secret):
        logger.warning("slash command refused: missing, wrong or stale signature")
        return Response(401, "invalid signature")
    config = current_config()
    form = read_form(request.body)
    if form.get("ssl_check") == "1":  # Slack checking the certificate when the URL is configured
        return Response(200)
    missing = [name for name in SLASH_FIELDS if not form.get(name)]
    if missing:
        raise BadRequest(f"not a slash command: no {', '.join(missing)}")
    user_id, request_id = form["user_id"], form["trigger_id"]
    correlation_id = _identified(request_id)
    logger.thread_safe_append_keys(user_id=user_id, request_id=request_id, slash=form["command"])
    refused = commands.check_origin(config.slack, form["team_id"], form.get("api_app_id", ""))
    if refused is not None:
        logger.warning("slash command refused: workspace or app", team_id=form["team_id"])
        return ephemeral(commands.refusal_text(refused))

    parsed = commands.parse(form["command"], form.get("text", ""), config)
    if isinstance(parsed, commands.Help | commands.Usage):
        logger.info("slash command answered with usage", problem=getattr(parsed, "problem", "help"))
        return ephemeral(parsed.message)

    decision = authorize(config, parsed, user_id)
    if isinstance(decision, str):
        return ephemeral(decision)
    if isinstance(decision, commands.Refused):
        logger.info("slash command refused: not authorized", command=commands.describe(parsed))
        return ephemeral(commands.refusal_text(decision))
    if not config.response_url_allowed(form["response_url"]):
        logger.warning("slash command refused: response_url host not allowed")
        return ephemeral("🚫 Sorry, I can't reply to this request (its response_url is not on an allowed host).")

    envelope = CommandEnvelope(
        request_id=request_id,
        correlation_id=correlation_id,
        command=parsed,
        slash=form["command"],
        text=form.get("text", ""),
        user_id=user_id,
        user_name=form.get("user_name", ""),
        channel_id=form.get("channel_id", ""),
        team_id=form["team_id"],
        api_app_id=form.get("api_app_id", ""),
        response_url=form["response_url"],
        received_at=int(time.time()),
    )
    try:
        message_id = enqueue(
            config,
            envelope.kind,
            envelope.to_json(),
            dedup_id=request_id,
            group_id=_group_of(parsed, config),
            correlation_id=correlation_id,
        )
    except NotQueued as error:
        logger.error("slash command not queued", reason=str(error))
        return ephemeral(COULD_NOT_QUEUE)
    logger.info("slash command queued", kind=envelope.kind, message_id=message_id)
    locks = config.locks(parsed.action) if isinstance(parsed, commands.Dispatch) else config.lock_enabled
    return ephemeral(commands.acknowledgement(parsed, locks))


def _identified(request_id: str) -> str:
    """From here on, the request's own correlation id — the same for every delivery of it — rather than this
    delivery's (:func:`workers.protocol.envelope.correlation_id_of`)."""
    correlation_id = correlation_id_of(request_id)
    logger.thread_safe_append_keys(correlation_id=correlation_id)
    return correlation_id


def _group_of(command: commands.Command, config: Config) -> str:
    """The FIFO message group: one per lock, so one lock's requests are handled in order."""
    match command:
        case (
            commands.Dispatch(action=action, component=component, environment=environment)
            | commands.Unlock(action=action, component=component, environment=environment)
            | commands.Cancel(action=action, component=component, environment=environment)
        ):
            return config.commands[action].lock_key(component, environment)
        case _:
            return command.kind


def authorize(config: Config, command: commands.Command, user_id: str) -> commands.Decision | str:
    """:func:`workers.protocol.commands.decide`, after finding the user's groups when a rule needs them.

    A string is the reply when the groups could not be looked up: fail closed, and say so.
    """
    audience = commands.audience_for(config, command)
    try:
        groups = member_groups(config.slack, audience, user_id)
    except (GroupLookupFailed, SecretUnavailable) as error:
        logger.error("user-group lookup failed", reason=str(error))
        return GROUPS_UNKNOWN
    return commands.decide(command, audience, user_id, groups)


# ---------------------------------------------------------------------------------------------- interaction
def slack_interaction(request: Request, correlation_id: str) -> Response:
    if not slack_signed(request, _slack_signing_secret):
        logger.warning("interaction refused: missing, wrong or stale signature")
        return Response(401, "invalid signature")
    config = current_config()
    payload = _interaction_payload(request)
    if payload.get("type") != "block_actions":
        logger.info("interaction ignored", type=str(payload.get("type")))
        return Response(200)
    user = _object(payload, "user")
    team_id = _string(_object(payload, "team"), "id") or _string(user, "team_id")
    user_id = _string(user, "id")
    request_id = _string(payload, "trigger_id")
    if request_id:
        correlation_id = _identified(request_id)
    logger.thread_safe_append_keys(user_id=user_id, request_id=request_id)
    refused = commands.check_origin(config.slack, team_id, _string(payload, "api_app_id"))
    if refused is not None:
        logger.warning("interaction refused: workspace or app", team_id=team_id)
        return ephemeral(commands.refusal_text(refused))
    at_home = _object(payload, "container").get("type") == "view" and _object(payload, "view").get("type") == "home"
    action = _our_action(payload, INTERACTION_ACTIONS | (HOME_ACTIONS if at_home else frozenset()))
    if action is None:
        logger.info("interaction ignored: no action of ours")
        return Response(200)
    action_id = str(action["action_id"])
    # A Home press has no response_url: it is answered by direct message (workers.protocol.board).
    response_url = direct_message_address(user_id) if at_home else _string(payload, "response_url")
    if not user_id or not request_id or not (at_home or config.response_url_allowed(response_url)):
        raise BadRequest("the interaction lacks a user, a trigger_id or an allowed response_url")
    if action_id in HOME_ACTIONS:
        return home_press(config, action_id, _string(action, "value"), user_id, team_id=team_id, request_id=request_id,
                          correlation_id=correlation_id)  # fmt: skip
    if action_id in ADMIN_ACTIONS:
        admins = config.authorization.admins
        try:
            groups = member_groups(config.slack, admins, user_id)
        except (GroupLookupFailed, SecretUnavailable) as error:
            logger.error("user-group lookup failed", reason=str(error))
            return ephemeral(GROUPS_UNKNOWN)
        if not commands.is_admin(config, user_id, groups):
            # Slack ignores a block_actions reply body; the confirm button only ever goes to an admin, so this
            # is a race with a configuration change or a forgery, and is logged, not answered.
            logger.warning("interaction refused: not an admin", action_id=action_id)
            return Response(200)
    envelope = InteractionEnvelope(
        request_id=request_id,
        correlation_id=correlation_id,
        action_id=action_id,
        value=_string(action, "value"),
        user_id=user_id,
        user_name=_string(user, "username") or _string(user, "name"),
        team_id=team_id,
        api_app_id=_string(payload, "api_app_id"),
        channel_id=_string(_object(payload, "channel"), "id") or _string(_object(payload, "container"), "channel_id"),
        response_url=response_url,
        received_at=int(time.time()),
    )
    return _queue_press(config, envelope)


def _queue_press(config: Config, envelope: InteractionEnvelope) -> Response:
    """On to its worker: the status worker's buttons as they are, *Confirm rollback* as the deploy it confirms."""
    queued: InteractionEnvelope | CommandEnvelope = envelope
    request_id, correlation_id, response_url = envelope.request_id, envelope.correlation_id, envelope.response_url
    if envelope.action_id == ROLLBACK_CONFIRM_ACTION:
        deploy = rollback_deploy(config, envelope)
        if isinstance(deploy, str):
            return _answer_press(response_url, deploy, correlation_id)
        queued = deploy
    try:
        message_id = enqueue(
            config,
            queued.kind,
            queued.to_json(),
            dedup_id=request_id,
            group_id=_group_of(queued.command, config) if isinstance(queued, CommandEnvelope) else queued.kind,
            correlation_id=correlation_id,
        )
    except NotQueued as error:
        logger.error("interaction not queued", reason=str(error))
        return _answer_press(response_url, COULD_NOT_QUEUE, correlation_id)
    logger.info("interaction queued", action_id=envelope.action_id, message_id=message_id)
    return Response(200)


def rollback_deploy(config: Config, press: InteractionEnvelope) -> CommandEnvelope | str:
    """*Confirm rollback*, pressed: an ordinary ``/deploy`` of the chosen commit, marked as a rollback and carrying
    the lock as the answer saw it — when the presser may deploy there now; else what to tell them. The press's
    ``trigger_id`` is the request id, so a redelivered press is the same request to the build worker."""
    # Off the router's cold start: the rollback's words and rules bring lockcore's records (a rare press pays it).
    from workers.protocol.rollback import RollbackTarget, not_understood  # noqa: PLC0415

    target = RollbackTarget.read(press.value, config)
    if target is None:
        logger.warning("rollback confirm ignored: a button value that names no rollback", value=press.value[:80])
        return not_understood().text
    command = commands.Dispatch(
        Action.DEPLOY, target.component, target.environment, ref=target.sha, rollback_of=target.lock_seen
    )
    decision = authorize(config, command, press.user_id)
    if isinstance(decision, str):
        return decision
    if isinstance(decision, commands.Refused):
        logger.info("rollback confirm refused: not authorized", command=commands.describe(command))
        return commands.refusal_text(decision)
    return CommandEnvelope(
        request_id=press.request_id,
        correlation_id=press.correlation_id,
        command=command,
        slash=Action.DEPLOY.slash,
        text=f"rollback {target.component} {target.environment}",
        user_id=press.user_id,
        user_name=press.user_name,
        channel_id=press.channel_id,
        team_id=press.team_id,
        api_app_id=press.api_app_id,
        response_url=press.response_url,
        received_at=press.received_at,
    )


def _answer_press(response_url: str, text: str, correlation_id: str) -> Response:
    """Slack ignores a block_actions reply body: the presser hears ``text`` through the response_url (a direct
    message for a Home press), or, when that fails too, from Slack itself (a 5xx marks the button with an error)."""
    from workers.adapters import runtime  # noqa: PLC0415 — the workers' clients, off the router's cold start

    try:
        told = runtime.slack_replies().reply(response_url, Message(text), correlation_id=correlation_id)
    except Exception as error:
        logger.error("press not answered either", reason=str(error))
        told = False
    return Response(200) if told else Response(503, "could not answer the press; press again", "text/plain")


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _interaction_payload(request: Request) -> Mapping[str, Any]:
    try:
        payload = read_json(read_form(request.body).get("payload", ""))
    except (BadRequest, ValueError) as error:
        raise BadRequest(f"{INTERACTION_USAGE} ({error})") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"{INTERACTION_USAGE} (the payload is not an object)")
    return payload


def _our_action(payload: Mapping[str, Any], ours: frozenset[str]) -> Mapping[str, Any] | None:
    """The first of the pressed actions that is one of ``ours``."""
    actions = payload.get("actions")
    candidates = actions if isinstance(actions, list) else []
    return next((item for item in candidates if isinstance(item, dict) and item.get("action_id") in ours), None)


def home_press(
    config: Config, action_id: str, value: str, user_id: str, *, team_id: str, request_id: str, correlation_id: str
) -> Response:
    """A Home button of its own: a page turned, or the user's ``/build dequeue`` / ``/build cancel`` of a lock."""
    if action_id in HOME_PAGE_ACTIONS:
        page = int(value) if value.isascii() and value.isdecimal() and len(value) < 6 else 0
        opened = HomeOpened(request_id, correlation_id, user_id, team_id, int(time.time()), page)
        return _queue_home(config, opened)
    command = _command_on(config, action_id, value)
    # A Home shows these buttons only on locks, to whom they are allowed: a stale Home (published before a freeze
    # took its key, or the configuration changed) or a forgery. Rare, so answered from here by direct message.
    if command is None:
        logger.warning("home press refused: a button value that names no lock", value=value[:80])
        return _answer_press(direct_message_address(user_id), HOME_PRESS_NAMES_NO_LOCK, correlation_id)
    decision = authorize(config, command, user_id)
    if not isinstance(decision, commands.Allowed):
        logger.warning("home press refused", command=commands.describe(command))
        text = decision if isinstance(decision, str) else commands.refusal_text(decision)
        return _answer_press(direct_message_address(user_id), text, correlation_id)
    words = f"{command.kind} {command.component} {command.environment}"
    envelope = CommandEnvelope(
        request_id=request_id,
        correlation_id=correlation_id,
        command=command,
        slash=f"/{command.action.value}",
        text=words,
        user_id=user_id,
        user_name="",
        channel_id="",
        team_id=team_id,
        api_app_id=config.slack.app_id or "",
        response_url=direct_message_address(user_id),
        received_at=int(time.time()),
    )
    try:
        enqueue(config, envelope.kind, envelope.to_json(), dedup_id=request_id, group_id=_group_of(command, config),
                correlation_id=correlation_id)  # fmt: skip
    except NotQueued as error:
        logger.error("home press not queued", reason=str(error))
        return Response(503, "could not queue the press; press again", "text/plain")
    logger.info("home press queued", kind=envelope.kind)
    return Response(200)


def _command_on(config: Config, action_id: str, value: str) -> commands.Dequeue | commands.Cancel | None:
    """The command a Home button means on the lock its value names (as the board wrote it: a lock key, and for
    *Cancel my run* ``:<token>``, the holding shown, so that a stale Home cancels no later one), if it names one."""
    lock_key, _, token = value.partition(":")
    if token and not (token.isascii() and token.isdecimal() and len(token) <= 18):
        return None
    target = config.lock_targets().get(lock_key)
    if target is None:
        return None
    action, component, environment = target
    if action_id == HOME_DEQUEUE_ACTION:
        return commands.Dequeue(action, component, environment)
    return commands.Cancel(action, component, environment, token=int(token) if token else None)


# -------------------------------------------------------------------------------------------------- events
def slack_event(request: Request, correlation_id: str) -> Response:
    """The Events API. Slack retries a delivery it did not see acknowledged within 3 s (``X-Slack-Retry-Num``)
    with the same ``event_id``: each is queued again, and the worker handles the id once."""
    if not slack_signed(request, _slack_signing_secret):
        logger.warning("event refused: missing, wrong or stale signature")
        return Response(401, "invalid signature")
    try:
        payload = read_json(request.body)
    except ValueError as error:
        raise BadRequest(f"{EVENTS_USAGE} ({error})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise BadRequest(EVENTS_USAGE)
    if payload["type"] == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not challenge or len(challenge) > 500:
            raise BadRequest("a url_verification without a challenge")
        return Response(200, json.dumps({"challenge": challenge}), "application/json")
    if payload["type"] != "event_callback":
        logger.info("event ignored", type=str(payload["type"])[:40])
        return Response(200)
    event = _object(payload, "event")
    event_id, team_id, user_id = _string(payload, "event_id"), _string(payload, "team_id"), _string(event, "user")
    logger.thread_safe_append_keys(event_id=event_id, retry=request.headers.get("x-slack-retry-num"))
    if event.get("type") != "app_home_opened" or event.get("tab") != "home":
        logger.info("event ignored", event_type=str(event.get("type"))[:40], tab=str(event.get("tab"))[:20])
        return Response(200)
    if not event_id or not user_id:
        raise BadRequest("an app_home_opened without an event_id or a user")
    config = current_config()
    refused = commands.check_origin(config.slack, team_id, _string(payload, "api_app_id"))
    if refused is not None:
        logger.warning("event refused: workspace or app", team_id=team_id)
        return Response(200)
    correlation_id = _identified(event_id)
    return _queue_home(config, HomeOpened(event_id, correlation_id, user_id, team_id, int(time.time())))


def _queue_home(config: Config, opened: HomeOpened) -> Response:
    """Queued for the status worker, and acknowledged at once: no Web API call on the way. Not queued: a 503,
    and Slack retries the event (a page press shows as failed; the user presses again)."""
    try:
        message_id = enqueue(config, opened.kind, opened.to_json(), dedup_id=opened.event_id, group_id=opened.kind,
                             correlation_id=opened.correlation_id)  # fmt: skip
    except NotQueued as error:
        logger.error("home not queued", reason=str(error))
        return Response(503, "could not queue the event; retry it", "text/plain")
    logger.info("home queued", user_id=opened.user_id, message_id=message_id)
    return Response(200)


# ------------------------------------------------------------------------------------------------- GitHub
def github_webhook(request: Request, correlation_id: str) -> Response:
    if not github_signed(request, _github_webhook_secret):
        logger.warning("GitHub webhook refused: missing or wrong signature")
        return Response(401, "invalid signature")
    event = request.headers.get("x-github-event", "")
    delivery_id = request.headers.get("x-github-delivery", "")
    logger.thread_safe_append_keys(github_event=event, delivery_id=delivery_id)
    if event == "ping":
        return Response(200, "pong")
    if event != "workflow_run":
        logger.info("GitHub event ignored")
        return Response(200, f"ignored: {event or 'no'} event")
    config = current_config()
    try:
        payload = read_json(request.body)
    except ValueError as error:
        raise BadRequest(f"{WEBHOOK_USAGE} ({error})") from None
    if not isinstance(payload, dict) or not delivery_id:
        raise BadRequest(f"{WEBHOOK_USAGE} (not an object, or no X-GitHub-Delivery)")
    run = _object(payload, "workflow_run")
    repository = _string(_object(payload, "repository"), "full_name")
    if not config.serves_repository(repository):
        logger.info("GitHub event ignored: another repository", repository=repository)
        return Response(200, "ignored: another repository")
    run_id = _int(run, "id")
    if run_id is None:
        raise BadRequest("the workflow_run has no id")
    conclusion = run.get("conclusion")
    envelope = WorkflowRunEnvelope(
        delivery_id=delivery_id,
        correlation_id=correlation_id,
        action=_string(payload, "action"),
        run_id=run_id,
        run_attempt=_int(run, "run_attempt") or 1,
        name=_string(run, "name"),
        display_title=_string(run, "display_title"),
        status=_string(run, "status"),
        conclusion=conclusion if isinstance(conclusion, str) else None,
        html_url=_string(run, "html_url"),
        head_sha=_string(run, "head_sha"),
        workflow_path=_string(run, "path"),
        repository=repository,
        received_at=int(time.time()),
        event=_string(run, "event"),
        workflow_id=_int(run, "workflow_id"),
    )
    try:
        message_id = enqueue(
            config,
            envelope.kind,
            envelope.to_json(),
            dedup_id=delivery_id,
            group_id=str(run_id),
            correlation_id=correlation_id,
        )
    except NotQueued as error:
        logger.error("GitHub event not queued", reason=str(error))
        return Response(503, "could not queue the event; redeliver it")
    logger.info("GitHub event queued", run_id=run_id, action=envelope.action, message_id=message_id)
    return Response(202, "queued")


# ---------------------------------------------------------------------------------------------- the handler
Route = Callable[[Request, str], Response]
ROUTES: Mapping[str, Route] = {
    SLACK_COMMANDS_PATH: slack_command,
    SLACK_INTERACTIONS_PATH: slack_interaction,
    SLACK_EVENTS_PATH: slack_event,
    GITHUB_WEBHOOK_PATH: github_webhook,
}


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    correlation_id = str(uuid.uuid4())
    # The request's keys are the thread's own: `chatops serve` answers requests on many threads at once, and a
    # Lambda instance answers one at a time (where the two calls are the same). Powertools keeps thread-local keys
    # for every logger of the thread: cleared once answered, so that nothing logged on it later wears them.
    logger.clear_state()
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(correlation_id=correlation_id)
    aws_request_id = getattr(context, "aws_request_id", None)
    if isinstance(aws_request_id, str):
        logger.thread_safe_append_keys(function_request_id=aws_request_id)
    try:
        response = respond(event, correlation_id)
        logger.info("answered", path=str(event.get("rawPath")), status=response.status)
    finally:
        logger.thread_safe_clear_keys()
    return response.to_event()


def respond(event: Mapping[str, Any], correlation_id: str) -> Response:
    try:
        request = read_request(event)
        route = ROUTES.get(request.path)
        if route is None:
            return Response(404, "not found")
        if request.method != "POST":
            return Response(405, "method not allowed", headers={"allow": "POST"})
        return route(request, correlation_id)
    except BadRequest as error:
        logger.warning("bad request", reason=str(error))
        return Response(400, str(error))
    except SecretUnavailable as error:
        logger.error("request not verified: its secret cannot be had; nothing done", reason=str(error))
        what = "can't verify requests right now, so it did nothing"
    except ConfigError as error:
        logger.error("configuration error: nothing done", reason=str(error))
        what = "is misconfigured right now, so it did nothing"
    except Exception as error:
        # One JSON line all the same: Powertools puts the traceback in its `exception` field.
        logger.exception("unexpected failure", error=type(error).__name__)
        what = "ran into an unexpected error"
    # The id the log lines carry: the request's own once its route has read it (see `_identified`).
    identified = logger.thread_safe_get_current_keys().get("correlation_id")
    return not_served(event, identified if isinstance(identified, str) else correlation_id, what)


def not_served(event: Mapping[str, Any], correlation_id: str, what: str) -> Response:
    """The answer to a request that could not be served (the log says why): ``what`` ChatOps did, and the
    correlation id an admin finds the log line by.

    A slash command gets a 200 with one ephemeral line: for any other status Slack shows its user only
    "dispatch_failed". Anything else gets a 500: Slack ignores the body of a 200 to an interaction but marks the
    pressed button as failed on a 500, and GitHub marks the delivery failed, for redelivery.
    """
    if event.get("rawPath") == SLACK_COMMANDS_PATH:
        return ephemeral(f"⚠️ Sorry, ChatOps {what}. An admin can find why in the router's log: {correlation_id}.")
    return Response(500, f"ChatOps {what} (correlation id {correlation_id})")
