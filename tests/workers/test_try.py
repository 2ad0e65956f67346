"""`chatops try` end to end: a real `chatops serve` in a subprocess (started here), `try` as a person would run it.

The serve generates its signing secret and writes its card (workers.local.served) to a run directory of this
module's own; `try` finds both there, signs, sends, and reads the serve's Slack stand-in over HTTP. Nothing of ours
is stood in for: what `try` prints is what the router and the workers said.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3

from tests.workers.serving import chatops_serve
from workers.cli import trying
from workers.cli.main import main
from workers.local import served
from workers.local.slack import SlackStandIn

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Serve:
    url: str
    run_dir: Path
    described: str


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    run_dir = tmp_path_factory.mktemp("run")
    # Runs that last the test module (nobody's lock frees by itself), no reaper in between; a secret generated.
    argv = ("--github-delay", "600", "--reaper-every", "3600")
    with chatops_serve(*argv, env={"XDG_RUNTIME_DIR": str(run_dir)}) as serving:
        yield Serve(serving.url, run_dir, serving.described)
    assert not list((run_dir / "chatops").iterdir()), "serve took its card away when it stopped"


@pytest.fixture
def chatops_try(serve: Serve, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TryRun]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(serve.run_dir))
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    capsys.readouterr()

    def run(*argv: str) -> Ran:
        code = main(["try", *argv, "--url", serve.url])
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    yield run


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def seen(self, where: str, starting: str) -> bool:
        """A message shown ``where`` ("only you", "#builds", "DM") whose first line starts with ``starting``."""
        return any(line[2:].startswith(f"{where:<10} {starting}") for line in self.out.splitlines())


TryRun = Callable[..., Ran]


# ------------------------------------------------------------------------------------------------ a command
def test_a_build_shows_the_answer_then_what_the_worker_posted(serve: Serve, chatops_try: TryRun) -> None:
    assert f"try      chatops try '/build router plt' --as alice --url {serve.url}" in serve.described
    ran = chatops_try("/build router plt", "--as", "alice")
    assert (ran.code, ran.err) == (0, ""), ran.err
    assert ran.out.splitlines()[0] == "alice ▸ /build router plt"
    assert ran.seen("only you", "⏳ Got it: /build router plt — checking the lock")
    assert ran.seen("#builds", "🔨 Building router (plt)… run "), "the worker's reply, waited for"


def test_the_home_shows_the_live_board(serve: Serve, chatops_try: TryRun) -> None:
    assert chatops_try("/deploy api plt", "--as", "dave").code == 0
    ran = chatops_try("--home", "--as", "carol")
    assert (ran.code, ran.err) == (0, ""), ran.err
    lines = ran.out.splitlines()
    assert lines[0] == "carol ▸ opens the App Home"
    assert "  Home       Build and deploy locks" in lines
    assert ran.seen("Home", "*`deploy-api-plt`* · token"), ran.out
    assert "  Home       [🔔 Notify me when free]" in lines


def test_someone_waits_for_a_busy_lock_and_is_told_when_an_admin_frees_it(
    serve: Serve, chatops_try: TryRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert chatops_try("/build api plt", "--as", "alice").code == 0
    busy = chatops_try("/build api plt", "--as", "bob", "--press", "Notify me when free")
    assert busy.code == 0, busy.err
    assert busy.seen("only you", "⚠️ Build already in progress — started by alice")
    assert "             [Notify me when free]" in busy.out.splitlines()
    assert "bob ▸ [Notify me when free]" in busy.out.splitlines()
    assert busy.seen("only you", "👀 I'll tell you here when `build-api-plt` is free")

    # bob keeps watching (another terminal) while the admin force-unlocks, confirming with the button.
    watched = io.StringIO()
    watching = trying.TryOptions("", "bob", url=serve.url, wait=6)
    watcher = threading.Thread(target=trying.run, args=(watching, watched, io.StringIO()))
    watcher.start()
    unlocked = chatops_try("/build unlock api plt", "--as", "admin", "--press", "force unlock")
    watcher.join()
    assert unlocked.code == 0, unlocked.err
    assert unlocked.seen("only you", "*Force-unlock `build-api-plt`?*")
    assert "             [Force unlock]  [Cancel]" in unlocked.out.splitlines()
    assert "admin ▸ [Force unlock]" in unlocked.out.splitlines()
    assert unlocked.seen("only you", "✅ Force-released `build-api-plt`")
    assert unlocked.seen("#builds", "🔓 @admin force-unlocked `build-api-plt`")

    lines = watched.getvalue().splitlines()
    assert lines[0] == "bob ▸ watching for 6 s"
    assert any(line.startswith("  only you   🔓 `build-api-plt` is free now") for line in lines), lines
    assert any(line.startswith("  #builds    🔓 @admin force-unlocked") for line in lines), "the channel too"


def test_at_a_terminal_the_person_picks_the_button(serve: Serve, chatops_try: TryRun) -> None:
    assert chatops_try("/build router prod", "--as", "carol").code == 0
    asked: list[str] = []
    answers = iter(["cancel", ""])

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    out = io.StringIO()
    options = trying.TryOptions("/build unlock router prod", "admin", url=serve.url)
    assert trying.run(options, out, io.StringIO(), ask=ask) == 0
    assert asked[0] == "press [1] Force unlock  [2] Cancel  (Enter: done) "
    assert "admin ▸ [Cancel]" in out.getvalue().splitlines()
    status = chatops_try("/build status --locks", "--as", "carol").out
    held = status.split("*`build-router-prod`*")[1].splitlines()
    assert held[1].strip() == "*Holder* carol (@carol)", "the lock is carol's still: a field, on one line"


# ------------------------------------------------------------------------------------------------ failures
def test_no_serve_at_the_url_is_one_line(serve: Serve, chatops_try: TryRun, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code = main(["try", "/build router plt", "--url", nowhere])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(f"chatops try: error: no `chatops serve` is running at {nowhere} ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_wrong_secret_is_named(
    serve: Serve, chatops_try: TryRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    card = served.read(serve.url)
    assert card is not None and card.signing_secret and card.slack_url
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    served.write(served.Served(serve.url, card.slack_url, "not-the-secret", card.pid))
    ran = chatops_try("/build router plt")
    assert ran.code == 1 and ran.err.startswith("chatops try: error: the app at ")
    assert "refused the signature (401): is SLACK_SIGNING_SECRET the one it uses?" in ran.err

    served.write(served.Served(serve.url, card.slack_url, None, card.pid))  # a serve given the secret in its env
    told = chatops_try("/build router plt")
    assert told.code == 1 and "took SLACK_SIGNING_SECRET from its environment: set the same here" in told.err
    monkeypatch.setenv("SLACK_SIGNING_SECRET", card.signing_secret)
    assert chatops_try("/build help").code == 0, "with the same secret here, it is answered"


def test_a_button_that_was_not_shown_is_named_with_those_that_were(chatops_try: TryRun) -> None:
    ran = chatops_try("/build help", "--as", "dave", "--press", "Launch")
    assert ran.code == 1 and ran.out.startswith("dave ▸ /build help\n")
    assert ran.err == "chatops try: error: no button 'Launch' in what was shown (buttons: none)\n"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["build router plt"], 'a slash command and its text, e.g. "/build router plt"'),
        ([], "without a COMMAND, only --wait SECONDS"),
        (["/build router plt", "--as", "Alice Smith"], "--as takes a name like alice"),
    ],
)
def test_usage_errors_exit_2(chatops_try: TryRun, argv: list[str], said: str) -> None:
    ran = chatops_try(*argv)
    assert ran.code == 2 and said in ran.err and ran.out == ""


# --------------------------------------------------------------------------------- the stand-in, read remotely
def test_the_slack_stand_in_lists_what_it_received_to_another_process() -> None:
    busy = [True]
    with SlackStandIn(app_busy=lambda: busy[0]) as slack:
        remote = trying.RemoteSlack(slack.url)
        start = remote.received()
        assert (start.messages, start.busy) == ([], True)
        reply = remote.response_url("carol-1")
        assert reply == slack.response_url("carol-1")
        http = urllib3.PoolManager()
        http.request("POST", reply, body=json.dumps({"text": "hi"}), headers={"Content-Type": "application/json"})
        http.request("POST", f"{slack.api_url}chat.postMessage", json={"channel": "C1", "text": "all"})
        busy[0] = False
        seen = remote.received(start.next)
        assert [(m.path, m.text) for m in seen.messages] == [
            ("/commands/T0LOCAL/carol-1/stand-in", "hi"),
            ("/api/chat.postMessage", "all"),
        ]
        assert seen.busy is False and remote.received(seen.next).messages == []
