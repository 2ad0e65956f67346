"""Replies to Slack: to a command's ``response_url``, and to a channel through the Web API.

A reply is the last step of a piece of work whose real effect (a lock taken or released, a run dispatched) has
already happened, so a reply that fails must not undo or disturb it: every method here logs the failure with the
caller's correlation id and returns ``False``; none raises.

``response_url``\\s arrive inside the request, so they are only followed to hosts on an allow-list — Slack's
``hooks.slack.com`` by default — and over https; loopback (http too) only when the local stack allows it.
Anything else is refused, logged, and nothing is sent: a forged URL cannot turn a worker into a request relay.

A Home press has no ``response_url``: its envelope carries a ``slack-dm:<user>`` address instead
(:func:`workers.protocol.envelope.direct_message_address`), and :meth:`SlackReplies.reply` sends to it as a direct
message. :meth:`SlackReplies.publish_home` publishes a user's App Home (``views.publish``) and, unlike the rest,
reports a rate limit (HTTP 429 and its ``Retry-After``) so that the caller can try again rather than lose it.

The Web API goes to ``SLACK_API_URL`` (default ``https://slack.com/api/``) through slack_sdk's ``WebClient``.
Logs are stdlib ``logging`` under ``workers.adapters.slack``, with ``correlation_id`` as an extra field (Powertools'
``copy_config_to_registered_loggers`` renders them as the Lambda's JSON lines).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from workers.protocol.config import DEFAULT_RESPONSE_URL_HOSTS, DEFAULT_SLACK_API_URL, response_url_allowed
from workers.protocol.envelope import direct_message_user
from workers.protocol.message import Message

log = logging.getLogger(__name__)

API_URL_ENV: Final = "SLACK_API_URL"
DEFAULT_API_URL: Final = DEFAULT_SLACK_API_URL
DEFAULT_RESPONSE_HOSTS: Final = frozenset(DEFAULT_RESPONSE_URL_HOSTS)
DEFAULT_TIMEOUT_SECONDS: Final = 10


@dataclass(frozen=True)
class Published:
    """What ``views.publish`` answered: ``ok``, or ``retry_after`` seconds when Slack rate-limited it (HTTP 429)."""

    ok: bool
    retry_after: int | None = None


class SlackReplies:
    """Where replies go: the ``response_url`` allow-list, and the Web API with the bot token.

    ``response_hosts`` are exact host names (no sub-domains implied); ``allow_loopback`` also accepts
    ``127.0.0.0/8``, ``::1`` and ``localhost``, over http or https — for the local stack only.
    ``api_url`` defaults to ``SLACK_API_URL`` from the environment, then Slack's.
    """

    def __init__(
        self,
        bot_token: str,
        *,
        api_url: str | None = None,
        response_hosts: Iterable[str] = DEFAULT_RESPONSE_HOSTS,
        allow_loopback: bool = False,
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        base_url = api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        self.api_url = base_url if base_url.endswith("/") else f"{base_url}/"
        self.response_hosts = frozenset(host.lower() for host in response_hosts)
        self.allow_loopback = allow_loopback
        self.timeout = timeout
        self._web = WebClient(token=bot_token, base_url=self.api_url, timeout=timeout)

    def __repr__(self) -> str:  # never the token
        return f"SlackReplies(api_url={self.api_url!r}, response_hosts={sorted(self.response_hosts)!r})"

    def response_url_allowed(self, url: str) -> bool:
        """https on an allowed host; loopback (http or https) when allowed or listed. No user info in the URL."""
        return response_url_allowed(url, self.response_hosts, allow_loopback=self.allow_loopback)

    # ------------------------------------------------------------------------------------------------ replies
    def reply(self, response_url: str, message: Message, *, correlation_id: str) -> bool:
        """Answer a command or interaction through its ``response_url``. ``True`` when Slack took it.

        A refused URL sends nothing. (Slack allows 5 replies per ``response_url`` within 30 minutes; later
        news goes to :meth:`post_message`.) A ``slack-dm:`` address (a Home press) is a direct message.
        """
        user = direct_message_user(response_url)
        if user is not None:
            return self.post_message(user, message, correlation_id=correlation_id)
        if not self.response_url_allowed(response_url):
            log.warning(
                "reply refused: response_url host %r is not allowed",
                _host_of(response_url),
                extra={"correlation_id": correlation_id, "allowed_hosts": sorted(self.response_hosts)},
            )
            return False
        try:
            response = WebhookClient(response_url, timeout=self.timeout).send(
                text=message.text,
                blocks=message._blocks(),
                response_type=message.response_type.value,
                replace_original=message.replace_original or None,
            )
        except Exception as error:  # connection refused, timeout, TLS…: the reply is lost, the work is not
            log.warning(
                "reply to response_url failed: %s",
                _one_line(error),
                extra={"correlation_id": correlation_id, "host": _host_of(response_url)},
            )
            return False
        if response.status_code != 200:
            log.warning(
                "reply to response_url failed: HTTP %s %s",
                response.status_code,
                (response.body or "")[:200],
                extra={"correlation_id": correlation_id, "host": _host_of(response_url)},
            )
            return False
        return True

    def post_message(self, channel: str, message: Message, *, correlation_id: str) -> bool:
        """Post in a channel (``chat.postMessage``) — for news after the ``response_url`` has expired."""
        return self._call(
            "chat.postMessage",
            correlation_id,
            lambda: self._web.chat_postMessage(channel=channel, text=message.text, blocks=message._blocks()),
        )

    def post_ephemeral(self, channel: str, user: str, message: Message, *, correlation_id: str) -> bool:
        """Show ``user`` a message in ``channel`` that only they see (``chat.postEphemeral``)."""
        return self._call(
            "chat.postEphemeral",
            correlation_id,
            lambda: self._web.chat_postEphemeral(
                channel=channel, user=user, text=message.text, blocks=message._blocks()
            ),
        )

    def publish_home(self, user_id: str, view: Mapping[str, Any], *, correlation_id: str) -> Published:
        """Publish ``user_id``'s App Home (``views.publish``, Tier 4)."""
        try:
            self._web.views_publish(user_id=user_id, view=dict(view))
        except SlackApiError as error:
            if getattr(error.response, "status_code", None) == 429:
                headers = getattr(error.response, "headers", None) or {}
                wait = next((v for k, v in headers.items() if k.lower() == "retry-after"), "1")
                retry_after = int(wait) if str(wait).isdigit() else 1
                log.warning(
                    "views.publish rate-limited: retry after %ss", retry_after, extra={"correlation_id": correlation_id}
                )
                return Published(ok=False, retry_after=max(retry_after, 1))
            _refused("views.publish", error, correlation_id)
            return Published(ok=False)
        except Exception as error:  # connection refused, timeout…: this Home stays as it was until the next one
            log.warning("views.publish failed: %s", _one_line(error), extra={"correlation_id": correlation_id})
            return Published(ok=False)
        return Published(ok=True)

    def _call(self, method: str, correlation_id: str, call: Callable[[], object]) -> bool:
        try:
            call()  # slack_sdk raises SlackApiError on HTTP errors and on {"ok": false}
        except SlackApiError as error:
            _refused(method, error, correlation_id)
            return False
        except Exception as error:  # connection refused, timeout…: the post is lost, the work is not
            log.warning("%s failed: %s", method, _one_line(error), extra={"correlation_id": correlation_id})
            return False
        return True


def _refused(method: str, error: SlackApiError, correlation_id: str) -> None:
    status = getattr(error.response, "status_code", "?")
    said = error.response.get("error") if isinstance(error.response.data, dict) else None
    log.warning(
        "%s failed: HTTP %s, %s",
        method,
        status,
        said or "no Slack error code",
        extra={"correlation_id": correlation_id},
    )


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
