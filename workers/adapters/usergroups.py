"""Who is in a Slack user group, for authorization rules that name groups (``<!subteam^S…>``).

A slash command does not say which groups its user is in, so a rule naming a group needs an answer from
somewhere: the configuration (``[slack.user_groups]``, for the local stack and tests) or Slack's
``usergroups.users.list`` (the bot token needs ``usergroups:read``), cached for five minutes per warm Lambda.
A lookup that fails raises :class:`GroupLookupFailed`: the router then refuses, never guesses.

:func:`member_groups` is what the router and the workers ask before :func:`workers.protocol.commands.admits` decides.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from workers.adapters.secrets import get_secret
from workers.protocol.commands import admits
from workers.protocol.config import Audience, SlackSettings

CACHE_SECONDS = 300
TIMEOUT_SECONDS = 1  # the router must answer Slack within 3 s, and a rule may name more than one group
GROUPS_UNKNOWN = "⚠️ Sorry, I couldn't check your user groups with Slack just now — please try again."
"""What a user is told when their groups had to be looked up and could not be: refused, never guessed."""


class GroupLookupFailed(Exception):
    """The members of a group could not be had. One line, naming the group."""


class UserGroups:
    """Members of user groups: configured ones first, then Slack's answer, cached."""

    _cache: ClassVar[dict[tuple[str, str], tuple[float, frozenset[str]]]] = {}  # shared by instances: one warm Lambda
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        configured: Mapping[str, frozenset[str]],
        api_url: str,
        token: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configured = configured
        self._api_url = api_url
        self._token = token
        self._clock = clock

    def members(self, group_id: str) -> frozenset[str]:
        if group_id in self._configured:
            return self._configured[group_id]
        key = (self._api_url, group_id)
        now = self._clock()
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        members = self._ask_slack(group_id)
        with self._cache_lock:
            self._cache[key] = (now + CACHE_SECONDS, members)
        return members

    def groups_of(self, user_id: str, audience: Audience) -> frozenset[str]:
        """The groups of ``audience`` that ``user_id`` is a member of."""
        return frozenset(group for group in sorted(audience.groups) if user_id in self.members(group))

    def _ask_slack(self, group_id: str) -> frozenset[str]:
        # slack_sdk is imported with the client, on the first group that must be asked: the router imports this
        # module, and most commands never ask (a third of its cold start otherwise).
        from slack_sdk import WebClient  # noqa: PLC0415
        from slack_sdk.errors import SlackApiError, SlackClientError  # noqa: PLC0415

        try:
            # No retries: slack_sdk's default handler would retry a timed-out connection once, past Slack's 3 s.
            client = WebClient(token=self._token(), base_url=self._api_url, timeout=TIMEOUT_SECONDS, retry_handlers=[])
            response = client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as error:
            reason = error.response.get("error", "error") if error.response is not None else "error"
            raise GroupLookupFailed(f"Slack refused usergroups.users.list for {group_id}: {reason}") from None
        except (SlackClientError, OSError) as error:
            raise GroupLookupFailed(f"Slack did not answer usergroups.users.list for {group_id}: {error}") from None
        users = response.get("users")
        if not isinstance(users, list):
            raise GroupLookupFailed(f"Slack's usergroups.users.list answer for {group_id} has no users")
        return frozenset(user for user in users if isinstance(user, str))

    @classmethod
    def forget(cls) -> None:
        """Empty the cache (tests; a group changed and five minutes is too long)."""
        with cls._cache_lock:
            cls._cache.clear()


def member_groups(slack: SlackSettings, audience: Audience, user_id: str) -> frozenset[str]:
    """The groups of ``audience`` that ``user_id`` is in, for :func:`workers.protocol.commands.admits` — looked up
    only when
    they matter: the audience names groups and does not admit the user already (anyone, or by user id).

    Raises :class:`GroupLookupFailed`, or :class:`~workers.adapters.secrets.SecretUnavailable` for the bot token, when
    Slack must be asked and cannot be.
    """
    if not audience.groups or admits(audience, user_id):
        return frozenset()
    directory = UserGroups(slack.user_groups, slack.api_url, lambda: get_secret("SLACK_BOT_TOKEN"))
    return directory.groups_of(user_id, audience)
