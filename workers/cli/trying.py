"""``chatops try "/build router plt" --as alice``: one person's Slack, against a running ``chatops serve``.

It finds the stack (:mod:`workers.local.served`: its URL, its Slack stand-in, the signing secret it generated —
else ``$SLACK_SIGNING_SECRET``), sends the command signed as Slack would (:class:`~workers.local.workspace.Workspace`,
with a ``response_url`` on the stack's own Slack stand-in), prints the app's immediate answer, then everything the
person would see that came after: what reached the request's ``response_url``, the channel's posts, their
ephemeral messages and direct messages — read from the stand-in (``GET /local/messages``) until the stack has
nothing in hand (two looks in a row), at most ``--timeout`` seconds, then ``--wait`` seconds more. Each
``--press`` then clicks a button of what was shown (by label, ``action_id`` or number) and shows what that
causes; with neither ``--press`` nor a pipe, a terminal is asked which button to press. Without a command it only
watches, ``--wait`` seconds: what someone is told while others act (a "Notify me when free" coming true).
``--home`` opens the person's App Home (Slack's signed ``app_home_opened``) and prints the board published to them.

Exit 0 once the app answered (whatever it said: a refusal is an answer), 1 when it could not be asked or
refused the request itself (one line), 2 for a usage error.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

import urllib3

from workers.local import served
from workers.local.slack import HOME_PATH, MESSAGES_PATH, PostedMessage, response_url_on
from workers.local.workspace import CHANNEL_ID, Person, Sent, Workspace, buttons, plain

SECRET_ENV = "SLACK_SIGNING_SECRET"  # noqa: S105 - a variable's name
POLL_SECONDS = 0.2
DEFAULT_TIMEOUT = 30.0
DEFAULT_CHANNEL = CHANNEL_ID
CHANNEL_NAMES = {CHANNEL_ID: "builds"}
PERSON = re.compile(r"[a-z][a-z0-9]{0,20}")
_MENTIONED = re.compile(r"<@(U0[A-Z0-9]+)>")

Ask = Callable[[str], str]
"""Shows a prompt, returns what the person typed ("" or EOFError: nothing more)."""


class TryFailed(Exception):
    """The app could not be asked, or refused the request itself: one line for the person."""


@dataclass(frozen=True)
class TryOptions:
    command: str
    """``/build router plt``; empty: send nothing, only watch (``wait``) what the person sees."""
    person: str = "alice"
    presses: Sequence[str] = ()
    url: str = served.DEFAULT_URL
    channel: str = CHANNEL_ID
    timeout: float = DEFAULT_TIMEOUT
    wait: float = 0.0
    home: bool = False
    """Open the person's App Home first, and print the board it shows."""


# ------------------------------------------------------------------------------------- the stack's Slack
@dataclass(frozen=True)
class Received:
    messages: list[PostedMessage]
    next: int
    """Where to read on from."""
    busy: bool
    """The stack still has something in hand."""


class RemoteSlack:
    """The Slack stand-in of a ``chatops serve`` in another process, read over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._http = urllib3.PoolManager()

    def response_url(self, name: str = "1") -> str:
        return response_url_on(self.url, name)

    def received(self, after: int = 0) -> Received:
        try:
            answer = self._http.request(
                "GET", f"{self.url}{MESSAGES_PATH}", fields={"after": str(after)}, timeout=5.0, retries=False
            )
            body = json.loads(answer.data) if answer.status == 200 else None
        except (urllib3.exceptions.HTTPError, ValueError) as error:
            raise TryFailed(
                f"cannot read the Slack stand-in at {self.url} (is `chatops serve` running?): {error}"
            ) from None
        if not isinstance(body, dict):
            raise TryFailed(f"the Slack stand-in at {self.url} answered HTTP {answer.status} to {MESSAGES_PATH}")
        return Received(
            [PostedMessage(str(m["path"]), m["body"]) for m in body["messages"]],
            int(body["next"]),
            bool(body["busy"]),
        )

    def messages(self, path_contains: str = "") -> list[PostedMessage]:
        return [message for message in self.received().messages if path_contains in message.path]

    def home(self, user_id: str) -> dict[str, Any] | None:
        """The Home last published to ``user_id``, as the stand-in keeps it."""
        try:
            answer = self._http.request(
                "GET", f"{self.url}{HOME_PATH}", fields={"user": user_id}, timeout=5.0, retries=False
            )
            view = json.loads(answer.data).get("view") if answer.status == 200 else None
        except (urllib3.exceptions.HTTPError, ValueError, AttributeError) as error:
            raise TryFailed(f"cannot read the Home from the Slack stand-in at {self.url}: {error}") from None
        return view if isinstance(view, dict) else None


# ------------------------------------------------------------------------------------- what a person sees
@dataclass
class View:
    """One person's Slack: where their requests' replies go, and what of the rest reaches them."""

    person: Person
    channel: str
    response_paths: set[str] = field(default_factory=set)
    people: dict[str, Person] = field(default_factory=dict)

    def follow(self, path: str) -> None:
        """Replies to ``path`` (a request's ``response_url`` on the stand-in) are the person's."""
        self.response_paths.add(path)

    def where(self, message: PostedMessage) -> str | None:
        """Where the person sees ``message`` ("only you", "#builds", "DM"), or ``None`` if they do not."""
        body = message.body if isinstance(message.body, dict) else {}
        if message.path in self.response_paths:
            return self.channel_label if body.get("response_type") == "in_channel" else "only you"
        if message.path == "/api/chat.postEphemeral" and body.get("user") == self.person.user_id:
            return "only you"
        if message.path == "/api/chat.postMessage":
            if body.get("channel") == self.channel:
                return self.channel_label
            if body.get("channel") == self.person.user_id:
                return "DM"
        return None

    @property
    def channel_label(self) -> str:
        return f"#{CHANNEL_NAMES.get(self.channel, self.channel)}"

    def lines(self, message: PostedMessage) -> list[str]:
        """The message as Slack shows it: its blocks (buttons as ``[label]``), else its text; mrkdwn made plain."""
        body = message.body if isinstance(message.body, dict) else {"text": str(message.body)}
        shown = _block_lines(_blocks_of(body)) or str(body.get("text", "")).splitlines()
        for user_id in _MENTIONED.findall(" ".join(shown)):
            self.people.setdefault(user_id, Person(user_id[2:].lower(), user_id))
        people = [self.person, *self.people.values()]
        return [plain(line, people) for line in shown]


def _blocks_of(body: dict[str, Any]) -> list[Any]:
    blocks = body.get("blocks")
    if isinstance(blocks, str):  # a form-encoded Web API call carries them as JSON text
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return []
    return blocks if isinstance(blocks, list) else []


def _text_of(part: Any) -> str:
    return str(part.get("text", "")) if isinstance(part, dict) else ""


def _block_lines(blocks: list[Any]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("section", "header"):
            lines += _text_of(block.get("text")).splitlines()
            lines += [" ".join(_text_of(part).split("\n")) for part in block.get("fields", []) if _text_of(part)]
        elif kind == "context":
            lines.append("  ".join(_text_of(part) for part in block.get("elements", []) if _text_of(part)))
        elif kind == "actions":
            labels = [_label(e) for e in block.get("elements", []) if isinstance(e, dict) and e.get("type") == "button"]
            lines.append("  ".join(f"[{label}]" for label in labels))
    return [line for line in lines if line]


def _label(button: dict[str, Any]) -> str:
    return _text_of(button.get("text")) or str(button.get("action_id", "?"))


# ------------------------------------------------------------------------------------------ the session
class Session:
    """One ``chatops try``: the requests, what they caused, the buttons shown so far."""

    def __init__(self, options: TryOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        card = served.read(options.url)
        if card is None:
            raise TryFailed(
                f"no `chatops serve` is running at {options.url} (it would have written "
                f"{served.card_path(options.url)}): start one with `chatops serve`, or name its URL with --url"
            )
        if card.slack_url is None:
            raise TryFailed(
                f"the `chatops serve` at {options.url} sends replies to a Slack of its --slack-api-url, where they"
                " cannot be read back: start it without --slack-api-url"
            )
        secret = card.signing_secret or os.environ.get(SECRET_ENV)
        if not secret:
            raise TryFailed(
                f"the `chatops serve` at {options.url} took {SECRET_ENV} from its environment: set the same here"
            )
        self.slack = RemoteSlack(card.slack_url)
        self.workspace = Workspace(options.url, secret, self.slack, channel_id=options.channel)
        self.view = View(Person.named(options.person), options.channel)
        self.shown: list[tuple[PostedMessage, Sent]] = []
        """Every message shown that carries buttons, and the request it answered."""

    def run(self, ask: Ask | None) -> None:
        cursor = self.slack.received().next
        if self.options.home:
            cursor = self._open_home(cursor)
        if self.options.command:
            cursor = self._converse(cursor, ask)
        elif not self.options.home:
            self._heading(f"watching for {self.options.wait:g} s")
        if self.options.wait > 0:
            self._watch(cursor, self.options.wait)

    def _converse(self, cursor: int, ask: Ask | None) -> int:
        """The command, then each press: what each caused, until the stack is idle."""
        slash, _, text = self.options.command.strip().partition(" ")
        sent = self._sent(partial(self.workspace.command, self.view.person, slash, text.strip()))
        self._heading(f"{slash} {text.strip()}".strip())
        self._immediate(sent)
        cursor = self._follow(sent, cursor, self.options.timeout)
        presses = list(self.options.presses)
        while True:
            choice = presses.pop(0) if presses else self._ask(ask)
            if not choice:
                break
            button, answered = self._button(choice)
            cursor = self.slack.received().next
            pressed = self._sent(partial(self.workspace.press, self.view.person, button, answered.response_url))
            self._heading(f"[{_label(button)}]")
            if pressed.status != 200:
                raise TryFailed(f"the app answered the press with HTTP {pressed.status}: {pressed.body.strip()[:200]}")
            cursor = self._follow(pressed, cursor, self.options.timeout)
        return cursor

    def _open_home(self, cursor: int) -> int:
        """Open the Home, wait until the stack is idle, and print the board it was given."""
        self._heading("opens the App Home")
        try:
            self.workspace.open_home(self.view.person)
        except urllib3.exceptions.HTTPError as error:
            raise TryFailed(f"cannot reach `chatops serve` at {self.options.url}: {error}") from None
        cursor = self._follow(None, cursor, self.options.timeout)
        view = self.slack.home(self.view.person.user_id)
        if view is None:
            raise TryFailed("no Home was published (is the stack's status worker running?)")
        lines = _block_lines(view.get("blocks", [])) if isinstance(view.get("blocks"), list) else []
        people = [self.view.person, *self.view.people.values()]
        for line in lines:
            print(f"  {'Home':<10} {plain(line, people)}", file=self.out)
        return cursor

    # -------------------------------------------------------------------------------------------- steps
    def _sent(self, send: Callable[[], Sent]) -> Sent:
        try:
            sent = send()
        except urllib3.exceptions.HTTPError as error:
            raise TryFailed(f"cannot reach `chatops serve` at {self.options.url}: {error}") from None
        self.view.follow(self._path(sent))
        return sent

    def _path(self, sent: Sent) -> str:
        return sent.response_url.removeprefix(self.slack.url)

    def _immediate(self, sent: Sent) -> None:
        if sent.status == 401:
            raise TryFailed(
                f"the app at {self.options.url} refused the signature (401): is {SECRET_ENV} the one it uses?"
            )
        if sent.status != 200:
            raise TryFailed(f"the app answered HTTP {sent.status}: {' '.join(sent.body.split())[:200]}")
        if not sent.body.strip():
            return  # an empty 200 is an acknowledgement: Slack shows nothing
        try:
            answer = json.loads(sent.body)
        except ValueError:
            answer = {"text": sent.body}
        if isinstance(answer, dict):
            self._show(PostedMessage(self._path(sent), answer), sent)

    def _follow(self, sent: Sent | None, cursor: int, timeout: float) -> int:
        """Show what reaches the person until the stack is idle twice in a row, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        idle = 0
        while idle < 2:
            received = self.slack.received(cursor)
            cursor = self._show_received(received, sent)
            idle = idle + 1 if not received.busy else 0
            if time.monotonic() > deadline:
                print(f"  … still at work after {timeout:g} s; stopped waiting (--timeout)", file=self.out)
                break
            if idle < 2:
                time.sleep(POLL_SECONDS)
        return cursor

    def _watch(self, cursor: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            cursor = self._show_received(self.slack.received(cursor), None)

    def _show_received(self, received: Received, sent: Sent | None) -> int:
        for message in received.messages:
            self._show(message, sent)
        return received.next

    def _show(self, message: PostedMessage, sent: Sent | None) -> None:
        where = self.view.where(message)
        if where is None:
            return
        lines = self.view.lines(message) or [""]
        print(f"  {where:<10} {lines[0]}", file=self.out)
        for line in lines[1:]:
            print(f"  {'':<10} {line}", file=self.out)
        body = message.body if isinstance(message.body, dict) else {}
        if body.get("replace_original") is True:
            print(f"  {'':<10} (in place of the message it answers)", file=self.out)
        if buttons(message) and sent is not None:
            self.shown.append((message, sent))
        self.out.flush()

    def _heading(self, what: str) -> None:
        print(f"{self.view.person.name} ▸ {what}", file=self.out, flush=True)

    # ------------------------------------------------------------------------------------------ buttons
    def _buttons(self) -> list[tuple[dict[str, Any], Sent]]:
        """The buttons shown so far, newest message first, each once; with the request each message answered."""
        found: list[tuple[dict[str, Any], Sent]] = []
        seen: set[tuple[str, str]] = set()
        for message, sent in reversed(self.shown):
            for button in buttons(message):
                identity = (str(button.get("action_id")), str(button.get("value")))
                if identity not in seen:
                    seen.add(identity)
                    found.append((button, sent))
        return found

    def _button(self, choice: str) -> tuple[dict[str, Any], Sent]:
        offered = self._buttons()
        wanted = choice.strip().casefold()
        for number, (button, sent) in enumerate(offered, start=1):
            if wanted in (str(number), _label(button).casefold(), str(button.get("action_id", "")).casefold()):
                return button, sent
        labels = "  ".join(f"[{_label(button)}]" for button, _ in offered) or "none"
        raise TryFailed(f"no button {choice!r} in what was shown (buttons: {labels})")

    def _ask(self, ask: Ask | None) -> str:
        offered = self._buttons()
        if ask is None or not offered:
            return ""
        menu = "  ".join(f"[{number}] {_label(button)}" for number, (button, _) in enumerate(offered, start=1))
        try:
            return ask(f"press {menu}  (Enter: done) ").strip()
        except EOFError:
            return ""


def run(options: TryOptions, out: TextIO | None = None, err: TextIO | None = None, ask: Ask | None = None) -> int:
    """``chatops try``: 0 once the app answered, 1 with one line on ``err`` when it could not be asked."""
    out = out or sys.stdout
    err = err or sys.stderr
    usage = _usage_error(options)
    if usage is not None:
        print(f"chatops try: error: {usage}", file=err)
        return 2
    try:
        Session(options, out).run(ask)
    except TryFailed as failed:
        print(f"chatops try: error: {' '.join(str(failed).split())}", file=err)
        return 1
    return 0


def _usage_error(options: TryOptions) -> str | None:
    if options.command and (not options.command.startswith("/") or not options.command[1:].strip()):
        return f'a slash command and its text, e.g. "/build router plt", not {options.command!r}'
    if not options.command and (options.presses or (not options.home and options.wait <= 0)):
        return "without a COMMAND, only --wait SECONDS: watch what the person sees (or --home)"
    if not PERSON.fullmatch(options.person):
        return f"--as takes a name like alice (lower case), not {options.person!r}"
    return None


def terminal_ask() -> Ask | None:
    """``input`` when a person is at a terminal (stdin and stdout), else no questions."""
    return input if sys.stdin.isatty() and sys.stdout.isatty() else None
