"""What the workers say in Slack, before it is sent: a message (text, blocks, who sees it) and mrkdwn escaping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


def escape(text: str) -> str:
    """Text a user typed or a record holds, safe inside mrkdwn: no links, mentions or ``<!channel>`` of its own
    (Slack's three control characters, ``&``, ``<`` and ``>``, as entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ResponseType(StrEnum):
    EPHEMERAL = "ephemeral"
    """Only the user who sent the command sees it (Slack's default)."""
    IN_CHANNEL = "in_channel"
    """Everyone in the channel sees it, and the command with it."""


@dataclass(frozen=True)
class Message:
    """What to say. ``text`` is always set: it is the notification text and the fallback for ``blocks``.

    ``response_type`` and ``replace_original`` only mean something for a ``response_url`` reply; a Web API post
    is in the channel (``post_message``) or ephemeral (``post_ephemeral``) by the method chosen.
    """

    text: str
    blocks: Sequence[Mapping[str, Any]] | None = None
    response_type: ResponseType = ResponseType.EPHEMERAL
    replace_original: bool = False

    @classmethod
    def in_channel(cls, text: str, blocks: Sequence[Mapping[str, Any]] | None = None) -> Message:
        return cls(text, blocks, ResponseType.IN_CHANNEL)

    def _blocks(self) -> list[dict[str, Any]] | None:
        return [dict(block) for block in self.blocks] if self.blocks else None


def confirm_or_cancel(block_id: str, confirm: tuple[str, str], cancel_action: str, value: str) -> dict[str, Any]:
    """An actions block of two buttons carrying the same ``value``: ``confirm`` (action id, label; red) and Cancel."""
    confirm_action, label = confirm
    return {
        "type": "actions",
        "block_id": block_id,
        "elements": [
            {
                "type": "button",
                "action_id": confirm_action,
                "text": {"type": "plain_text", "text": label},
                "style": "danger",
                "value": value,
            },
            {
                "type": "button",
                "action_id": cancel_action,
                "text": {"type": "plain_text", "text": "Cancel"},
                "value": value,
            },
        ],
    }
