"""`chatops`: the operator's command line for the build locks, and the demo.

Each command is three small steps: parse (argparse), decide (one lock-store call, then the exit code from the
outcome) and render (text lines from :mod:`workers.protocol.render`, or one JSON object with ``--json``).

Exit codes: 0 done; 3 refused, another holder has the lock; 4 refused, the caller is not the holder or its
token is stale (and ``check``: the token does not belong to the live holder); 2 usage error; 1 anything else
(table missing, endpoint unreachable, no credentials…), as one line.

With ``--json`` a lock operation prints ``{"lockKey", "outcome", "token", ...}``: ``token`` is the token the
answer is about — the lock's token after an acquire (the holder's, when refused), the token presented to
release, extend, force-release and check. A refusal adds ``code`` (:class:`~workers.cli.codes.Code`), ``reason``
and ``holder`` (the record as stored, or null). ``list`` prints ``{"locks": [...]}``, failures
``{"error": "...", "code": ...}``.

Every AWS client the CLI makes comes from one place (:func:`aws_session`, :func:`dynamodb_client`): ``--profile``,
``--region`` (else ``AWS_REGION``, else boto3's chain) and ``--endpoint-url`` (else boto3's ``AWS_ENDPOINT_URL``…).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import boto3
import botocore.exceptions

from lockcore import machine as m
from lockcore import outcomes
from lockcore.dynamodb import DEFAULT_TABLE, REGION_ENV, DynamoDBLockStore, make_client
from lockcore.errors import LockStoreError, NoCredentials, StoreThrottled, StoreUnreachable, TableMissing
from lockcore.expressions import Item
from lockcore.record import TOKEN as TOKEN_ATTRIBUTE
from lockcore.record import LockRecord, Status
from workers.cli import config_check
from workers.cli.codes import Code, of_refusal
from workers.local import served
from workers.protocol import render

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DONE, FAILURE, USAGE, HELD_BY_SOMEONE, NOT_HOLDER = 0, 1, 2, 3, 4
INTERRUPTED = 130
DEFAULT_LEASE_SECONDS = 600
TABLE_ENV = "LOCK_TABLE_NAME"
PACKAGE = "chatops-locks"


# ------------------------------------------------------------------------------------------------- parsing
class NoRegion(LockStoreError):
    """No AWS region anywhere the CLI looks."""


class UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so that ``--json`` can answer a usage error as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


SECONDS = _count(1)
TOKEN = _count(0)


def _endpoint(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value:g}")
    return value


def version() -> str:
    """The installed package's version (its metadata), or why there is none."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return f"unknown ({PACKAGE} is not installed: pip install -e .)"


GLOBAL_OPTIONS: dict[str, dict[str, Any]] = {
    "--table": {"metavar": "NAME", "help": f"lock table (default: ${TABLE_ENV}, else {DEFAULT_TABLE})"},
    "--region": {
        "metavar": "REGION",
        "help": f"AWS region (default: ${REGION_ENV}, else $AWS_DEFAULT_REGION, else the profile's)",
    },
    "--profile": {"metavar": "NAME", "help": "AWS profile of ~/.aws/config (default: $AWS_PROFILE)"},
    "--endpoint-url": {
        "type": _endpoint,
        "help": "DynamoDB endpoint, e.g. DynamoDB Local (default: $AWS_ENDPOINT_URL)",
    },
}


def _global_options(parser: argparse.ArgumentParser, *, hidden: bool) -> None:
    """Before the subcommand, or (``hidden``) after it: SUPPRESS keeps a later default from overwriting one given
    before."""
    for flag, options in GLOBAL_OPTIONS.items():
        if hidden:
            parser.add_argument(flag, **{**options, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS})
        else:
            parser.add_argument(flag, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chatops", description="Slack ChatOps build locks: operate them, or run the demo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _global_options(parser, hidden=False)
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON object")
    _global_options(common, hidden=True)
    commands = parser.add_subparsers(dest="command", required=True)

    locks = commands.add_parser(
        "locks",
        help="acquire, release, inspect the build locks",
        epilog="exit codes: 0 done, 1 failure, 2 usage, 3 held by another, 4 not the holder / stale token",
    )
    actions = locks.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str, *, keyed: bool = True) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[common], help=help_text, description=help_text)
        if keyed:
            sub.add_argument("key", metavar="KEY", help="the lock key, e.g. build-router-plt")
        return sub

    sub = action("acquire", "take the lock (exit 3 if someone else holds it)")
    sub.add_argument("--owner", required=True, help="the request that will hold it, e.g. a Slack request id")
    sub.add_argument("--user", default="", help="user id of the requester (lockedBy)")
    sub.add_argument("--user-name", default="", help="user name of the requester (lockedByName)")
    sub.add_argument("--ttl", type=SECONDS, default=DEFAULT_LEASE_SECONDS, help="lease in seconds (600)")
    sub.add_argument("--component", default="")
    sub.add_argument("--environment", default="")
    sub.add_argument("--correlation-id")

    sub = action("release", "release the lock you hold, recording the outcome (exit 4 if not yours)")
    sub.add_argument("--owner", required=True)
    sub.add_argument("--token", type=TOKEN, required=True)
    sub.add_argument("--outcome", required=True, choices=["completed", "failed"])

    sub = action("extend", "set the lease end of the lock you hold to now + TTL (exit 4 if not yours)")
    sub.add_argument("--owner", required=True)
    sub.add_argument("--token", type=TOKEN, required=True)
    sub.add_argument("--ttl", type=SECONDS, required=True, help="seconds from now")

    sub = action("force-release", "free a lock someone holds, given its current token (exit 4 if stale)")
    sub.add_argument("--token", type=TOKEN, required=True)
    sub.add_argument("--by", required=True, help="who forces it (recorded)")
    sub.add_argument("--reason", required=True, help="why (recorded)")

    sub = action("check", "the fencing check: exit 0 only if TOKEN belongs to the live holder, else 4")
    sub.add_argument("--token", type=TOKEN, required=True)

    action("show", "show one lock (exit 0 for a free or missing key)")
    sub = action("list", "list the live locks", keyed=False)
    sub.add_argument("--all", action="store_true", help="also the free ones, with their last outcome")
    action("create-table", "create the lock table (does nothing if it exists)", keyed=False)

    serve = commands.add_parser("serve", help="run the whole system on this machine (no AWS, Slack or GitHub needed)")
    serve.add_argument(
        "--port", type=TOKEN, default=served.DEFAULT_PORT, help="HTTP port on 127.0.0.1 (3000; 0: any free one)"
    )
    serve.add_argument("--config", help="chatops TOML (default: $CHATOPS_CONFIG, else docs/chatops.toml)")
    serve.add_argument("--github-api-url", default=os.environ.get("GITHUB_API_URL"), help="default: built-in")
    serve.add_argument("--slack-api-url", default=os.environ.get("SLACK_API_URL"), help="default: built-in")
    serve.add_argument("--github-delay", type=float, default=30.0, help="the built-in GitHub's run length (30 s)")
    serve.add_argument("--reaper-every", type=float, default=60.0, help="seconds between reaper runs (60)")

    demo = commands.add_parser("demo", help="the whole story on this machine: five people, one lock, one CI run")
    demo.add_argument(
        "--lock", action="store_true", help="the lock alone: 20 people race the DynamoDB store, leases, fencing"
    )

    add_try_parser(commands)
    config_check.add_parser(commands)
    return parser


def add_try_parser(commands: Any) -> None:
    """``chatops try`` (:mod:`workers.cli.trying`)."""
    trying = commands.add_parser(
        "try",
        help="send a slash command to a running `chatops serve` as someone, and show every reply they see",
        description="Sends COMMAND, signed as Slack would, to a running `chatops serve` and prints what the person "
        "sees: the immediate answer, then what reaches them in the channel, ephemerally and by DM.",
        epilog="exit codes: 0 answered (a refusal is an answer), 1 not asked (no serve, bad signature, no such "
        "button), 2 usage",
    )
    trying.add_argument(
        "text",
        metavar="COMMAND",
        nargs="?",
        default="",
        help='a slash command and its text, e.g. "/build router plt" (none: only --wait and watch)',
    )
    trying.add_argument("--as", dest="person", default="alice", metavar="NAME", help="who sends it (alice)")
    trying.add_argument("--home", action="store_true", help="first open their App Home and print its lock board")
    trying.add_argument(
        "--press",
        action="append",
        default=[],
        metavar="BUTTON",
        help="then press the button with this label, action_id or number (repeatable, in order); "
        "at a terminal you are asked instead",
    )
    trying.add_argument("--url", type=_endpoint, default=served.DEFAULT_URL, help=f"the serve ({served.DEFAULT_URL})")
    trying.add_argument("--channel", metavar="ID", help="the channel it is sent from (the local workspace's #builds)")
    trying.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="the most to wait for the stack to finish what it started (30)",
    )
    trying.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="then keep showing what the person sees for this long (0)",
    )


# ------------------------------------------------------------------------------------------------ deciding
@dataclass(frozen=True)
class Answer:
    """What a command says: its exit code, its text lines and its JSON object."""

    code: int
    lines: list[str]
    body: dict[str, Any] = field(default_factory=dict)


def exit_code(outcome: outcomes.Outcome) -> int:
    if isinstance(outcome, outcomes.HeldBySomeone):
        return HELD_BY_SOMEONE
    if isinstance(outcome, outcomes.NotHolder):
        return NOT_HOLDER
    return DONE


OUTCOME_NAMES: dict[type[outcomes.Outcome], str] = {
    outcomes.Acquired: "acquired",
    outcomes.HeldBySomeone: "held",
    outcomes.Released: "released",
    outcomes.Extended: "extended",
    outcomes.ForceReleased: "force-released",
    outcomes.MarkedExpired: "expired",
    outcomes.NotHolder: "not-holder",
}


def outcome_name(outcome: outcomes.Outcome) -> str:
    if isinstance(outcome, outcomes.Acquired) and outcome.reentered:
        return "reentered"
    return OUTCOME_NAMES[type(outcome)]


def outcome_json(lock_key: str, outcome: outcomes.Outcome, presented: int | None, now: int) -> dict[str, Any]:
    body: dict[str, Any] = {"lockKey": lock_key, "outcome": outcome_name(outcome)}
    match outcome:
        case outcomes.HeldBySomeone(holder):
            body |= {
                "token": holder.token,
                "code": Code.HELD,
                "reason": render.holder_line(holder, now),
                "holder": holder.as_json(),
            }
        case outcomes.NotHolder(reason, current):
            body |= {
                "token": presented,
                "code": of_refusal(reason),
                "reason": reason.value,
                "holder": current.as_json() if current is not None else None,
            }
        case outcomes.Acquired(record) | outcomes.Extended(record) | outcomes.MarkedExpired(record):
            body |= {"token": record.token, "lock": record.as_json()}
        case outcomes.Released(record, repeated=repeated) | outcomes.ForceReleased(record, repeated=repeated):
            body |= {"token": record.token, "repeated": repeated, "lock": record.as_json()}
    return body


def outcome_answer(lock_key: str, outcome: outcomes.Outcome, now: int, presented: int | None = None) -> Answer:
    return Answer(
        exit_code(outcome),
        render.outcome_lines(lock_key, outcome, now),
        outcome_json(lock_key, outcome, presented, now),
    )


def record_json(record: LockRecord, now: int) -> dict[str, Any]:
    return {**record.as_json(), "state": m.state_of(record.to_item(), now).value}


def acquire(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    request = m.AcquireRequest(
        lock_key=args.key,
        owner=args.owner,
        lease_seconds=args.ttl,
        locked_by=args.user,
        locked_by_name=args.user_name,
        component=args.component,
        environment=args.environment,
        correlation_id=args.correlation_id,
    )
    return outcome_answer(args.key, store.acquire(request), store.now())


def release(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    outcome = store.release(args.key, args.owner, args.token, Status(args.outcome.upper()))
    return outcome_answer(args.key, outcome, store.now(), args.token)


def extend(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    outcome = store.extend(args.key, args.owner, args.token, args.ttl)
    return outcome_answer(args.key, outcome, store.now(), args.token)


def force_release(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    outcome = store.force_release(args.key, args.token, args.by, args.reason)
    return outcome_answer(args.key, outcome, store.now(), args.token)


def check(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    item = store.item(args.key)  # the fencing check's one strongly consistent read
    return check_answer(args.key, args.token, why_not_holder(item, args.token, store.now()))


def why_not_holder(item: Item | None, presented: int, now: int) -> outcomes.Refusal | None:
    """The fencing check — :func:`lockcore.machine.holds_token`'s verdict — and, when it fails, why."""
    if m.holds_token(item, presented, now):
        return None
    if item is None:
        return outcomes.Refusal.NO_LOCK
    if item.get(TOKEN_ATTRIBUTE) != presented:
        return outcomes.Refusal.STALE_TOKEN
    if m.state_of(item, now) is m.LockState.LAPSED:
        return outcomes.Refusal.LEASE_ENDED
    return outcomes.Refusal.NOT_HELD


def show(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    state, record = store.state(args.key)
    return show_answer(args.key, state, record, store.now())


def list_locks(args: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    return list_answer(store.table, store.list(include_free=args.all), args.all, store.now())


def create_table(_: argparse.Namespace, store: DynamoDBLockStore) -> Answer:
    created = store.create_table()
    said = "created" if created else "already exists; nothing to do"
    return Answer(DONE, [f"table {store.table}: {said}"], {"table": store.table, "created": created})


ACTIONS: dict[str, Callable[[argparse.Namespace, DynamoDBLockStore], Answer]] = {
    # One lock-store call each (`list`: one paginated scan; `create-table`: create, wait, enable TTL).
    "acquire": acquire,
    "release": release,
    "extend": extend,
    "force-release": force_release,
    "check": check,
    "show": show,
    "list": list_locks,
    "create-table": create_table,
}


def check_answer(lock_key: str, presented: int, refusal: outcomes.Refusal | None) -> Answer:
    body: dict[str, Any] = {"lockKey": lock_key, "token": presented, "holds": refusal is None}
    if refusal is None:
        line = f"{lock_key}: token {presented} is the live holder's: go ahead"
        return Answer(DONE, [line], {**body, "outcome": "holds"})
    reason = f"token {presented} is not the live holder's token on {lock_key}: {refusal.value}"
    body |= {"outcome": "not-holder", "code": of_refusal(refusal), "reason": reason}
    return Answer(NOT_HOLDER, [f"{reason}: stop"], body)


def show_answer(lock_key: str, state: m.LockState, record: LockRecord | None, now: int) -> Answer:
    body: dict[str, Any] = {
        "lockKey": lock_key,
        "state": state.value,
        "token": record.token if record is not None else 0,
        "lock": record.as_json() if record is not None else None,
    }
    lines = render.table([record], now) if record is not None else []
    return Answer(DONE, [*lines, f"{lock_key}: {render.status_line(record, now)}"], body)


def list_answer(table: str, records: Sequence[LockRecord], include_free: bool, now: int) -> Answer:
    body = {"locks": [record_json(record, now) for record in records]}
    if not records:
        return Answer(DONE, [f"no {'locks' if include_free else 'live locks'} in {table}"], body)
    return Answer(DONE, render.table(records, now), body)


# ----------------------------------------------------------------------------------------------- rendering
def emit(answer: Answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer.body, sort_keys=True))
        return
    # A refusal is an answer, not a crash, but a script piping stdout should not mistake it for success.
    stream = sys.stdout if answer.code == DONE else sys.stderr
    for line in answer.lines:
        print(line, file=stream)


def fail(message: str, as_json: bool, code: Code) -> int:
    line = " ".join(message.split())  # one line, whatever the library put in it
    if as_json:
        print(json.dumps({"error": line, "code": code}))
    else:
        print(f"chatops: error: {line}", file=sys.stderr)
    return FAILURE


def not_installed(what: str, error: ImportError, as_json: bool) -> int:
    needs = f"{what} needs the local stack ({error}): pip install 'chatops-locks[local]'"
    return fail(needs, as_json, Code.NOT_INSTALLED)


FAILURES: tuple[tuple[type[Exception], Code], ...] = (
    # The first that matches names the failure (the subclasses before LockStoreError itself).
    (TableMissing, Code.TABLE_MISSING),
    (StoreUnreachable, Code.UNREACHABLE),
    (NoCredentials, Code.NO_CREDENTIALS),
    (StoreThrottled, Code.THROTTLED),
    (NoRegion, Code.NO_REGION),
    (LockStoreError, Code.STORE_ERROR),
    (botocore.exceptions.BotoCoreError, Code.AWS_CONFIG),
    (LookupError, Code.TRY_AGAIN),
    (ValueError, Code.INVALID),
)


def failure_code(error: Exception) -> Code:
    return next(code for kind, code in FAILURES if isinstance(error, kind))


def table_name(args: argparse.Namespace) -> str:
    return str(args.table or os.environ.get(TABLE_ENV) or DEFAULT_TABLE)


# ----------------------------------------------------------------------------------------------------- AWS
def aws_session(args: argparse.Namespace) -> tuple[boto3.Session, str]:
    """The session every AWS client of the CLI comes from (``--profile``), and its region: ``--region``, else
    ``AWS_REGION`` (as the AWS CLI v2 and the other SDKs read it first), else boto3's chain."""
    session = boto3.Session(profile_name=args.profile)
    region = args.region or os.environ.get(REGION_ENV) or session.region_name
    if not region:
        raise NoRegion(f"no AWS region: pass --region or set {REGION_ENV} (or a region in the AWS profile)")
    return session, region


def dynamodb_client(args: argparse.Namespace) -> DynamoDBClient:
    session, region = aws_session(args)
    return make_client(args.endpoint_url, region, session)


def main(argv: Sequence[str] | None = None) -> int:
    """``chatops``; Ctrl-C is one line, not a traceback."""
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("chatops: interrupted", file=sys.stderr)
        return INTERRUPTED


def run(arguments: list[str]) -> int:
    as_json = "--json" in arguments
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except UsageError as error:
        if as_json:
            print(json.dumps({"error": str(error), "code": Code.USAGE}))
        else:
            error.parser.print_usage(sys.stderr)
            print(f"{error.parser.prog}: error: {error}", file=sys.stderr)
        return USAGE
    if args.command == "serve":
        try:
            from workers.local import stack  # noqa: PLC0415 - moto is only needed here (the `local` extra)
        except ImportError as error:
            return not_installed("serve", error, as_json)
        return stack.serve(stack.options_from(args))
    if args.command == "config":
        return config_check.run(args)
    if args.command == "demo":
        try:
            from workers.cli import demo, lock_demo  # noqa: PLC0415 - moto is only needed here (the `local` extra)
        except ImportError as error:
            return not_installed("the demo", error, as_json)
        return lock_demo.main() if args.lock else demo.main()
    if args.command == "try":
        from workers.cli import trying  # noqa: PLC0415 - only `try` speaks to a local stack

        options = trying.TryOptions(
            args.text,
            args.person,
            args.press,
            args.url,
            args.channel or trying.DEFAULT_CHANNEL,
            timeout=args.timeout,
            wait=args.wait,
            home=args.home,
        )
        return trying.run(options, ask=None if args.press else trying.terminal_ask())
    try:
        store = DynamoDBLockStore(table_name(args), client=dynamodb_client(args))
        answer = ACTIONS[args.action](args, store)
    except tuple(kind for kind, _ in FAILURES) as error:
        return fail(str(error), as_json, failure_code(error))
    emit(answer, as_json)
    return answer.code


if __name__ == "__main__":
    sys.exit(main())
