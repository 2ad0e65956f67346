"""Slack on loopback: where the local stack's replies go, and where the tests read what users would see.

- ``/api/<method>``: every Web API method the workers call (:attr:`SlackStandIn.WEB_API`), with its arguments from the
  query, a JSON or a form body (as slack_sdk's ``WebClient`` sends them), answered like the Web API:
  ``chat.postMessage`` and ``chat.postEphemeral`` with ``{"ok": true, "channel", "ts"}``,
  ``views.publish`` with ``{"ok": true, "view"}`` — keeping each user's latest Home (:meth:`SlackStandIn.home`;
  ``GET /local/home?user=U…`` to another process) — ``usergroups.users.list`` with the members of a group given
  to the stand-in (``user_groups``; the local stack gives :data:`LOCAL_USER_GROUPS`) or ``no_such_subteam``.
  With a configured ``token`` that the request does not carry: ``{"ok": false, "error": "invalid_auth"}`` with
  HTTP 200, as Slack does. Other methods: ``unknown_method``.
- Any other path is a ``response_url`` (hand them out with :meth:`SlackStandIn.response_url`): a POST is
  accepted with ``ok`` — up to 5 per URL, as Slack allows; the sixth, or any after
  :meth:`SlackStandIn.expire_response_url` (Slack's 30 minutes, without the wait), answers 404 ``used_url`` /
  ``expired_url`` (the code treats any answer but 200 as not delivered, whatever the exact words).

Everything received is recorded (:attr:`~workers.local.standin.StandInServer.requests`);
:meth:`SlackStandIn.messages` lists what was posted where, and ``GET /local/messages?after=N`` the same to
another process (``chatops try``): ``{"messages": [{"path", "body"}], "next", "busy"}`` — the posts
received from the ``N``-th request on, where to read on from, and whether the app is still at work on something
(``app_busy``; ``false`` when not told). ``fail_next`` makes the next posts answer 500 (or any
status), ``fail_next(status=200, body={"ok": False, "error": "channel_not_found"})`` a Slack-level refusal.

Kept with the local stack rather than under ``tests/`` because ``chatops serve``/``chatops demo`` need a Slack to
reply to when there is none, and the tests should check against that same one.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from workers.local.standin import RecordedRequest, Reply, StandInServer

API_PREFIX = "/api/"
MESSAGES_PATH = "/local/messages"
HOME_PATH = "/local/home"
RESPONSE_URL_USES = 5
"""Posts Slack accepts per ``response_url`` (within its 30 minutes)."""
LOCAL_USER_GROUPS: Mapping[str, tuple[str, ...]] = {"S0PLATFORM": ("U0ALICE", "U0BOB")}
"""The local workspace's user groups: the one the shipped configuration names (prod deploys), with alice and bob
in it, so that ``/deploy api prod`` is allowed to them and refused to others, as in a real workspace."""


@dataclass(frozen=True)
class PostedMessage:
    """One message as Slack received it: where it went and its JSON body."""

    path: str
    """``/api/chat.postMessage``, ``/api/chat.postEphemeral``, or the response_url's path."""
    body: Any

    @property
    def text(self) -> str:
        return str(self.body.get("text", "")) if isinstance(self.body, dict) else str(self.body)


def response_url_on(stand_in_url: str, name: str) -> str:
    """The ``response_url`` called ``name`` on the stand-in at ``stand_in_url``."""
    return f"{stand_in_url}/commands/T0LOCAL/{name}/stand-in"


class SlackStandIn(StandInServer):
    """The Slack Web API methods the workers call and ``response_url``\\s, on ``127.0.0.1``."""

    name = "Slack stand-in"

    def __init__(
        self,
        *,
        token: str | None = None,
        user_groups: Mapping[str, tuple[str, ...]] | None = None,
        port: int = 0,
        app_busy: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(port)
        self.token = token
        self.user_groups = dict(user_groups or {})
        """Each group's members, as ``usergroups.users.list`` answers them."""
        self.app_busy = app_busy
        self._ts = itertools.count(1)
        self._ts_lock = threading.Lock()
        self._uses: dict[str, int] = {}
        self._homes: dict[str, Any] = {}
        self._published: list[str] = []
        self._expired: set[str] = set()

    def expire_response_url(self, name: str) -> None:
        """The ``response_url`` called ``name`` is older than Slack's 30 minutes: posts to it are refused."""
        with self._ts_lock:
            self._expired.add(self.response_url(name).removeprefix(self.url))

    @property
    def api_url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=…)``, with its trailing slash."""
        return f"{self.url}{API_PREFIX}"

    def response_url(self, name: str = "1") -> str:
        """A ``response_url`` on this stand-in (``/commands/T0/<name>/…``, shaped like Slack's)."""
        return response_url_on(self.url, name)

    def messages(self, path_contains: str = "") -> list[PostedMessage]:
        """Every POST received (successful or not) whose path contains ``path_contains``, oldest first."""
        return [PostedMessage(r.path, r.body) for r in self.requests_to("POST", path_contains)]

    def home(self, user_id: str) -> Any:
        """The Home last published to ``user_id`` (``views.publish``'s ``view``), or ``None``."""
        with self._ts_lock:
            return self._homes.get(user_id)

    def homes_published(self, user_id: str | None = None) -> int:
        """How many ``views.publish`` calls Slack accepted (for ``user_id``, or anyone's)."""
        with self._ts_lock:
            return sum(1 for user in self._published if user_id is None or user == user_id)

    def answer(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == MESSAGES_PATH:
            return self._messages_since(request)
        if request.method == "GET" and request.path == HOME_PATH:
            return Reply(200, {"view": self.home(request.query.get("user", ""))})
        if request.path.startswith(API_PREFIX):
            return self._call(request.path.removeprefix(API_PREFIX), request)
        return self._response_url(request)

    def _messages_since(self, request: RecordedRequest) -> Reply:
        try:
            after = max(int(request.query.get("after", "0")), 0)
        except ValueError:
            return Reply(400, {"error": "after: a whole number"})
        received = self.requests
        posts = [{"path": r.path, "body": r.body} for r in received[after:] if r.method == "POST"]
        busy = self.app_busy() if self.app_busy is not None else False
        return Reply(200, {"messages": posts, "next": len(received), "busy": busy})

    # --------------------------------------------------------------------------------------------- Web API
    def _call(self, method: str, request: RecordedRequest) -> Reply:
        serve = self.WEB_API.get(method)
        if serve is None:
            return _refused("unknown_method")
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return _refused("invalid_auth")
        arguments = {**request.query, **(request.body if isinstance(request.body, dict) else {})}
        return serve(self, arguments)

    def _post_message(self, arguments: Mapping[str, Any]) -> Reply:
        if not arguments.get("channel"):
            return _refused("channel_not_found")
        channel, text = arguments["channel"], arguments.get("text")
        return Reply(200, {"ok": True, "channel": channel, "ts": self._next_ts(), "message": {"text": text}})

    def _post_ephemeral(self, arguments: Mapping[str, Any]) -> Reply:
        if not arguments.get("channel"):
            return _refused("channel_not_found")
        if not arguments.get("user"):
            return _refused("user_not_in_channel")
        return Reply(200, {"ok": True, "message_ts": self._next_ts()})

    def _usergroup_members(self, arguments: Mapping[str, Any]) -> Reply:
        members = self.user_groups.get(str(arguments.get("usergroup", "")))
        if members is None:
            return _refused("no_such_subteam")
        return Reply(200, {"ok": True, "users": list(members)})

    def _views_publish(self, arguments: Mapping[str, Any]) -> Reply:
        user, view = arguments.get("user_id"), arguments.get("view")
        if isinstance(view, str):  # a form body carries the view as JSON text
            try:
                view = json.loads(view)
            except ValueError:
                view = None
        if not isinstance(user, str) or not user:
            return _refused("user_not_found")
        if not isinstance(view, dict) or view.get("type") != "home" or not isinstance(view.get("blocks"), list):
            return _refused("invalid_arguments")
        with self._ts_lock:
            self._homes[user] = view
            self._published.append(user)
        return Reply(200, {"ok": True, "view": {"id": f"V{user}", **view}})

    WEB_API: ClassVar[Mapping[str, Callable[[SlackStandIn, Mapping[str, Any]], Reply]]] = {
        "chat.postMessage": _post_message,
        "views.publish": _views_publish,
        "chat.postEphemeral": _post_ephemeral,
        "usergroups.users.list": _usergroup_members,
    }
    """The Web API methods served, each with its arguments: every one the workers call."""

    def _next_ts(self) -> str:
        with self._ts_lock:
            return f"1700000000.{next(self._ts):06d}"

    # ------------------------------------------------------------------------------------------ response_url
    def _response_url(self, request: RecordedRequest) -> Reply:
        if request.method != "POST":
            return Reply(405, "method not allowed")
        with self._ts_lock:
            if request.path in self._expired:
                return Reply(404, "expired_url")
            self._uses[request.path] = uses = self._uses.get(request.path, 0) + 1
        return Reply(200, "ok") if uses <= RESPONSE_URL_USES else Reply(404, "used_url")


def _refused(error: str) -> Reply:
    """A Web API refusal: HTTP 200 with ``ok`` false, as Slack answers."""
    return Reply(200, {"ok": False, "error": error})
