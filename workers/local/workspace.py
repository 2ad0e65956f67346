"""People in a Slack workspace, as the local stack sees them: signed requests over real HTTP, replies read back.

Slack does three things for a user that the local stack must do instead: it signs what they type and click
(``X-Slack-Signature``, v0: HMAC-SHA256 of ``v0:<timestamp>:<body>`` with the signing secret), posts it to the
app's URLs, and shows them what the app answers — the HTTP reply at once, then whatever reaches the
``response_url`` that came with the request. :class:`Workspace` sends the first as Slack would, each command with
its own ``trigger_id`` and its own ``response_url`` on the :class:`~workers.local.slack.SlackStandIn`, and
reads the second from that stand-in.

Used by ``chatops demo`` and the end-to-end tests; it is a client of the product, never part of it.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3

from workers.handlers.router import slack_signature as signature_of
from workers.local.slack import PostedMessage

TEAM_ID = "T0LOCAL"
APP_ID = "A0LOCAL"
CHANNEL_ID = "C0BUILDS"


@dataclass(frozen=True)
class Person:
    name: str
    user_id: str

    @classmethod
    def named(cls, name: str) -> Person:
        """``alice`` is ``U0ALICE``, as in the shipped configuration (whose admin is ``U0ADMIN``)."""
        return cls(name, f"U0{name.upper()}")


class SlackView(Protocol):
    """Where people's replies go and are read back: the :class:`~workers.local.slack.SlackStandIn` in this
    process, or one in another process read over HTTP (``chatops try``)."""

    @property
    def url(self) -> str: ...

    def response_url(self, name: str = "1") -> str: ...

    def messages(self, path_contains: str = "") -> list[PostedMessage]: ...


def slack_signature(secret: str, timestamp: int, body: str) -> str:
    """What Slack puts in ``X-Slack-Signature`` for ``body`` sent at ``timestamp``."""
    return signature_of(secret, timestamp, body.encode("utf-8"))


@dataclass(frozen=True)
class Sent:
    """One request a person made: what the app answered at once, and where the rest of the answer goes."""

    person: Person
    text: str
    status: int
    body: str
    response_url: str
    request_id: str

    @property
    def acknowledgement(self) -> str:
        """The text of the immediate answer (JSON ``text``, or the body as it is)."""
        try:
            answer = json.loads(self.body)
        except ValueError:
            return self.body
        return str(answer.get("text", "")) if isinstance(answer, dict) else self.body


class Workspace:
    """Signs and sends what people type and click; reads what reached their ``response_url``\\s."""

    def __init__(self, app_url: str, signing_secret: str, slack: SlackView, channel_id: str = CHANNEL_ID) -> None:
        self.app_url = app_url.rstrip("/")
        self.signing_secret = signing_secret
        self.slack = slack
        self.channel_id = channel_id
        self._http = urllib3.PoolManager(maxsize=16)
        self._numbers = itertools.count(1)
        # Request ids and response_urls unique to this workspace: another one talking to the same app (a second
        # `chatops try`) must not look like a retry of this one's requests, nor read its replies.
        self._session = secrets.token_hex(3)
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            return next(self._numbers)

    def _post(self, path: str, form: Mapping[str, str]) -> tuple[int, str]:
        return self._signed(path, urlencode(form), "application/x-www-form-urlencoded")

    def _signed(
        self, path: str, body: str, content_type: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        """``body`` POSTed to the app at ``path``, signed now as Slack signs it."""
        timestamp = int(time.time())
        response = self._http.request(
            "POST",
            f"{self.app_url}{path}",
            body=body.encode(),
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": str(timestamp),
                "X-Slack-Signature": slack_signature(self.signing_secret, timestamp, body),
                "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
                **(headers or {}),
            },
            timeout=10.0,
            retries=False,
        )
        return response.status, response.data.decode("utf-8", "replace")

    def command(self, person: Person, slash: str, text: str, *, response_url: str | None = None) -> Sent:
        """``person`` types ``slash text`` in the channel. ``response_url``: another than the request's own on the
        Slack stand-in (a forged request)."""
        number = self._next()
        request_id = f"{number}{int(time.time())}.{person.user_id}.{self._session}{number:04d}"
        response_url = response_url or self.slack.response_url(f"{person.name}-{number}-{self._session}")
        status, body = self._post(
            "/slack/commands",
            {
                "token": "unused-verification-token",
                "team_id": TEAM_ID,
                "team_domain": "local",
                "channel_id": self.channel_id,
                "channel_name": "builds",
                "user_id": person.user_id,
                "user_name": person.name,
                "command": slash,
                "text": text,
                "api_app_id": APP_ID,
                "response_url": response_url,
                "trigger_id": request_id,
            },
        )
        return Sent(person, f"{slash} {text}", status, body, response_url, request_id)

    def press(self, person: Person, button: Mapping[str, Any], message_url: str) -> Sent:
        """``person`` clicks ``button`` (a Block Kit element) in the message that came to ``message_url``."""
        number = self._next()
        request_id = f"{number}{int(time.time())}.{person.user_id}.{self._session}button"
        response_url = self.slack.response_url(f"{person.name}-{number}-{self._session}-button")
        payload = {
            "type": "block_actions",
            "user": {"id": person.user_id, "username": person.name, "name": person.name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "unused-verification-token",
            "container": {"type": "message", "message_ts": "1.2", "channel_id": self.channel_id, "is_ephemeral": True},
            "trigger_id": request_id,
            "team": {"id": TEAM_ID, "domain": "local"},
            "channel": {"id": self.channel_id, "name": "builds"},
            "response_url": response_url,
            "actions": [
                {
                    "action_id": button.get("action_id", ""),
                    "block_id": "unlock",
                    "type": "button",
                    "value": button.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        status, body = self._post("/slack/interactions", {"payload": json.dumps(payload)})
        return Sent(person, f"[{button.get('action_id')}] after {message_url}", status, body, response_url, request_id)

    def open_home(self, person: Person, *, retries: int = 0) -> str:
        """``person`` opens the app's Home tab: Slack's signed ``app_home_opened`` event to ``/slack/events`` — and,
        with ``retries``, Slack delivering the same event again that many times (``X-Slack-Retry-Num``). The
        event's id."""
        event_id = f"Ev{self._session}{self._next():06d}"
        body = json.dumps(
            {
                "token": "unused-verification-token",
                "team_id": TEAM_ID,
                "api_app_id": APP_ID,
                "type": "event_callback",
                "event_id": event_id,
                "event_time": int(time.time()),
                "event": {"type": "app_home_opened", "user": person.user_id, "channel": "D0HOME", "tab": "home"},
            }
        )
        for attempt in range(retries + 1):
            retry = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"} if attempt else {}
            self._signed("/slack/events", body, "application/json", retry)
        return event_id

    # ------------------------------------------------------------------------------------------ reading
    def replies(self, sent: Sent) -> list[PostedMessage]:
        """What reached the request's ``response_url`` so far, oldest first."""
        path = sent.response_url.removeprefix(self.slack.url)
        return [message for message in self.slack.messages(path) if message.path == path]

    def channel_posts(self) -> list[PostedMessage]:
        """What the bot posted with ``chat.postMessage``, oldest first."""
        return self.slack.messages("/api/chat.postMessage")

    def await_replies(self, sent: Sent, count: int = 1, timeout: float = 10.0) -> list[PostedMessage]:
        """The request's replies once there are ``count``; :class:`TimeoutError` if they do not come."""
        deadline = time.monotonic() + timeout
        while len(replies := self.replies(sent)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sent.person.name}'s {sent.text!r} had {len(replies)} replies, not {count}")
            time.sleep(0.05)
        return replies


def buttons(message: PostedMessage) -> list[dict[str, Any]]:
    """The buttons of a Block Kit message, in order."""
    blocks = message.body.get("blocks", []) if isinstance(message.body, dict) else []
    return [
        element
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "actions"
        for element in block.get("elements", [])
        if isinstance(element, dict) and element.get("type") == "button"
    ]


_DATE = re.compile(r"<!date\^[0-9]+\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")


def plain(text: str, people: Sequence[Person] = ()) -> str:
    """Slack mrkdwn as a terminal can show it: dates by their fallback, links by their label, mentions by name."""
    names = {person.user_id: person.name for person in people}
    text = _DATE.sub(lambda match: match[1], text)
    text = _LINK.sub(lambda match: match[2], text)
    text = _MENTION.sub(lambda match: "@" + names.get(match[1], match[1]), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
