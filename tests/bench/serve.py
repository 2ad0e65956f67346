"""The slash command's benchmark (`nox -s bench`): the router's cold start, and `/build` end to end on the local
stack, one at a time and 100 at once.

1. **Cold import** — fresh interpreters, the candidates interleaved, median of ``--rounds``: ``import boto3`` (the
   baseline), the router, the build worker; each as a ratio to the baseline of the same run.
2. **First acknowledgement in a fresh interpreter** — the router imported and one signed ``/build`` acknowledged,
   its message sent to SQS (moto on loopback, in this process); beside it the least any Lambda that queues can do:
   import boto3, make an SQS client, send one message.
3. **The router's own acknowledgement** — :func:`workers.handlers.router.handler` called in this process (warm,
   no HTTP) on signed ``/build`` events, ``--warm`` of them.
4. **End to end** — on the local stack (:class:`~workers.local.stack.LocalStack`, what ``chatops serve`` runs): a
   signed ``/build`` over HTTP → the "🔨 Building" reply at its ``response_url`` on the Slack stand-in, whose
   arrival the stand-in stamps. The GitHub stand-in answers each dispatch at once. ``--sequential`` requests one
   after the other, then ``--burst`` released together by a barrier; each on a lock of its own, so that every one
   is dispatched.

Not a test: nothing is timed against a limit. It does check what it times — every request answered 200 with its
acknowledgement, every reply the "🔨 Building" one, one dispatch per lock, one message queued per acknowledged
command — and exits 1 otherwise: a latency of a wrong answer is worthless.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from tests.bench.report import Result, expect, machine_line, run
from workers.handlers import router
from workers.local.motoserver import LOCAL_CREDENTIALS, LocalAWS, use_local_credentials
from workers.local.slack import SlackStandIn
from workers.local.stack import LocalStack, StackOptions, payload_event
from workers.local.workspace import Person, Sent, Workspace, slack_signature
from workers.protocol.config import Queue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "docs" / "chatops.toml"
SIGNING_SECRET = "bench-signing-secret"
RESPONSE_URL = "https://hooks.slack.com/commands/T0BENCH/1/bench"
ACKNOWLEDGED = "⏳ Got it: /build"
BUILDING = "🔨 Building"
REPLY_WAIT_SECONDS = 120.0

IMPORTS = {
    "python -c pass": "pass",
    "import boto3": "import boto3",
    "import workers.handlers.router": "import workers.handlers.router",
    "import workers.handlers.build": "import workers.handlers.build",
}
BASELINE = "import boto3"

# Each child prints one line `RESULT {json}` (the router's own log lines go to stdout too). Both import only what
# they time after `started`; the form and its signature are made before, with the standard library.
_FORM = """
import hashlib, hmac, json, os, time
from urllib.parse import urlencode
now = str(int(time.time()))
form = urlencode({{"command": "/build", "text": "router plt", "user_id": "U0BENCH", "team_id": "T0BENCH",
    "channel_id": "C0BENCH", "trigger_id": "{trigger}", "response_url": "{response_url}"}})
signature = "v0=" + hmac.new(os.environ["SLACK_SIGNING_SECRET"].encode(), f"v0:{{now}}:{{form}}".encode(),
    hashlib.sha256).hexdigest()
"""
ROUTER_CHILD = (
    _FORM
    + """
started = time.perf_counter()
from workers.handlers import router
imported = time.perf_counter()
event = {{"version": "2.0", "rawPath": "/slack/commands", "body": form, "isBase64Encoded": False,
    "requestContext": {{"http": {{"method": "POST"}}}},
    "headers": {{"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": now,
        "x-slack-signature": signature}}}}
answer = router.handler(event, None)
done = time.perf_counter()
print("RESULT " + json.dumps({{"import_ms": (imported - started) * 1000, "first_ms": (done - imported) * 1000,
    "status": answer["statusCode"], "text": json.loads(answer["body"]).get("text", "")}}))
"""
)
BOTO3_CHILD = (
    _FORM
    + """
started = time.perf_counter()
import boto3
imported = time.perf_counter()
sqs = boto3.client("sqs")
sent = sqs.send_message(QueueUrl=os.environ["BUILD_QUEUE_URL"], MessageBody=form)
done = time.perf_counter()
print("RESULT " + json.dumps({{"import_ms": (imported - started) * 1000, "first_ms": (done - imported) * 1000,
    "status": sent["ResponseMetadata"]["HTTPStatusCode"], "text": ""}}))
"""
)


# ---------------------------------------------------------------------------------------------------- numbers
def percentile(samples: Sequence[float], p: int) -> float:
    """The ``p``-th percentile (inclusive method: the largest sample at most, never beyond it)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def spread(samples_ms: Sequence[float]) -> Result:
    return {
        "n": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms),
    }


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """This environment without AWS or Slack settings of its own, plus ``extra``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "GITHUB_", "CHATOPS_"))}
    return kept | dict(LOCAL_CREDENTIALS) | extra


# ------------------------------------------------------------------------------------------------ cold import
def cold_import(rounds: int) -> Result:
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    environment = child_environment({})
    for _ in range(rounds):  # interleaved: a busy moment of the machine weighs on every candidate alike
        for name, code in IMPORTS.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, check=True)
            samples[name].append((time.perf_counter() - started) * 1000)
    baseline = statistics.median(samples[BASELINE])
    return {
        "rounds": rounds,
        "rows": [
            {"what": name, "median_ms": statistics.median(times), "ratio": statistics.median(times) / baseline}
            for name, times in samples.items()
        ],
    }


# ----------------------------------------------------------------------------------------- first acknowledgement
def first_acknowledgement(rounds: int, aws: LocalAWS) -> Result:
    sqs: SQSClient = boto3.client("sqs", endpoint_url=aws.url, region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"])
    queues = {name: sqs.create_queue(QueueName=f"bench-first-{name}")["QueueUrl"] for name in ("router", "boto3")}
    children = {"router": ROUTER_CHILD, "boto3": BOTO3_CHILD}
    runs: dict[str, list[Result]] = {name: [] for name in children}
    for number in range(rounds):
        for name, code in children.items():
            script = code.format(trigger=f"{number}.bench.{name}", response_url=RESPONSE_URL)
            environment = child_environment(
                {
                    "AWS_ENDPOINT_URL": aws.url,
                    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "CHATOPS_CONFIG": str(SHIPPED_CONFIG),
                    Queue.BUILD.url_env: queues[name],
                }
            )
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
            )
            wall = (time.perf_counter() - started) * 1000
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            expect(done.returncode == 0 and line is not None, f"the {name} child failed: {done.stderr[-500:]}")
            assert line is not None
            run: Result = json.loads(line.removeprefix("RESULT ")) | {"wall_ms": wall}
            expect(run["status"] == 200, f"the {name} child was answered {run['status']}")
            expect(name != "router" or run["text"].startswith(ACKNOWLEDGED), f"the router answered {run['text']!r}")
            runs[name].append(run)
    queued = {name: _queue_depth(sqs, url) for name, url in queues.items()}
    expect(queued == {name: rounds for name in children}, f"one message queued per run, not {queued}")
    rows = {
        name: {
            field: statistics.median(run[field] for run in done_runs) for field in ("import_ms", "first_ms", "wall_ms")
        }
        | {"runs": len(done_runs), "queued": queued[name]}
        for name, done_runs in runs.items()
    }
    for row in rows.values():
        row["in_process_ms"] = row["import_ms"] + row["first_ms"]
    rows["router"]["ratio"] = rows["router"]["wall_ms"] / rows["boto3"]["wall_ms"]
    return {"rounds": rounds, "rows": rows}


def _queue_depth(sqs: SQSClient, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# ---------------------------------------------------------------------------------------------- the local stack
@contextlib.contextmanager
def bench_config(components: int) -> Iterator[str]:
    """The shipped configuration with ``components`` components (``c000``…): a lock of its own per request."""
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    names = ", ".join(f'"c{n:03d}"' for n in range(components))
    replaced, count = re.subn(r"^components = \[.*\]$", f"components = [{names}]", text, flags=re.MULTILINE)
    expect(count == 1, f"{SHIPPED_CONFIG} has no one-line `components = [...]` to replace")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chatops.toml"
        path.write_text(replaced, encoding="utf-8")
        yield str(path)


@contextlib.contextmanager
def local_stack(config: str, **options: Any) -> Iterator[LocalStack]:
    """A stack of its own, its logs and EMF lines thrown away; runs end only when told."""
    stack_options = StackOptions.isolated(config_path=config, github_delay=None, reaper_seconds=3600, **options)
    with (
        open(os.devnull, "w", encoding="utf-8") as quiet,
        contextlib.redirect_stdout(quiet),
        LocalStack(stack_options, logs=quiet) as stack,
    ):
        yield stack


def warm_acknowledgement(config: str, count: int) -> Result:
    """``router.handler`` in this process, on a stack without workers (nothing else competes for the CPU)."""
    with local_stack(config, workers=(), schedules=()) as stack:
        secret = stack.secrets["SLACK_SIGNING_SECRET"]
        router.handler(_signed_build("warm-up", secret), None)  # the SQS client is made once per process
        times = []
        for number in range(count):
            event = _signed_build(f"{number}.warm", secret)
            started = time.perf_counter()
            answer = router.handler(event, None)
            times.append((time.perf_counter() - started) * 1000)
            expect(answer["statusCode"] == 200 and ACKNOWLEDGED in answer["body"], f"answered {answer}")
        queued = stack.queue_depths()[Queue.BUILD][0]
        expect(queued == count + 1, f"{count + 1} commands acknowledged, {queued} queued")
        return spread(times) | {"queued": queued - 1}


def _signed_build(trigger: str, secret: str) -> dict[str, Any]:
    form = (
        "command=%2Fbuild&text=c000+plt&user_id=U0BENCH&team_id=T0LOCAL&channel_id=C0BUILDS"
        f"&trigger_id={trigger}&response_url={RESPONSE_URL}"
    )
    now = int(time.time())
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Slack-Request-Timestamp", str(now)),
        ("X-Slack-Signature", slack_signature(secret, now, form)),
    ]
    return payload_event("POST", router.SLACK_COMMANDS_PATH, headers, form.encode(), "127.0.0.1")


@dataclasses.dataclass
class Timed:
    """One request of the end-to-end runs: when it was sent, acknowledged, and answered at its response_url."""

    sent: Sent
    started: float
    acknowledged: float
    replied: float = 0.0
    reply: str = ""


def end_to_end(config: str, sequential: int, burst: int) -> Result:
    with local_stack(config) as stack:
        slack, github = stack.slack, stack.github
        expect(slack is not None and github is not None, "the stack runs its own stand-ins")
        assert slack is not None and github is not None
        workspace = Workspace(stack.url, stack.secrets["SLACK_SIGNING_SECRET"], slack)

        def send(lock_number: int, barrier: threading.Barrier | None = None) -> Timed:
            person = Person(f"user{lock_number}", f"U0USER{lock_number:03d}")
            if barrier is not None:
                barrier.wait()
            started = time.monotonic()
            sent = workspace.command(person, "/build", f"c{lock_number:03d} plt")
            return Timed(sent, started, time.monotonic())

        served = stack.aws.app  # counts the DynamoDB requests it answers
        before = served.dynamodb_requests
        one_at_a_time = [await_reply(slack, send(number)) for number in range(sequential)]
        stack.settle(REPLY_WAIT_SECONDS)
        per_build = (served.dynamodb_requests - before) / sequential
        barrier = threading.Barrier(burst)
        at_once: list[Timed] = []
        appending = threading.Lock()

        def one(lock_number: int) -> None:
            timed = send(lock_number, barrier)
            with appending:
                at_once.append(timed)

        threads = [threading.Thread(target=one, args=(sequential + n,)) for n in range(burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expect(len(at_once) == burst, f"{burst - len(at_once)} of the burst's requests raised (a reset connection?)")
        for timed in at_once:
            await_reply(slack, timed)
        dispatched = len(github.runs)
        expect(dispatched == sequential + burst, f"{sequential + burst} locks, {dispatched} dispatches")
        return {
            "one_at_a_time": summary(one_at_a_time),
            "at_once": summary(at_once),
            "dispatches": dispatched,
            "dynamodb_requests_per_build": per_build,
            "build_worker_concurrency": next(w.concurrency for w in stack.options.workers if w.queue is Queue.BUILD),
        }


def await_reply(slack: SlackStandIn, timed: Timed) -> Timed:
    """The first reply at the request's response_url, and when the stand-in received it."""
    sent = timed.sent
    expect(sent.status == 200 and sent.acknowledgement.startswith(ACKNOWLEDGED), f"answered {sent.status} {sent.body}")
    path = sent.response_url.removeprefix(slack.url)
    deadline = time.monotonic() + REPLY_WAIT_SECONDS
    while not (replies := [r for r in slack.requests_to("POST", path) if r.path == path]):
        expect(time.monotonic() < deadline, f"no reply to {sent.text} in {REPLY_WAIT_SECONDS:.0f} s")
        time.sleep(0.02)
    body = replies[0].body
    timed.reply = str(body.get("text", "")) if isinstance(body, dict) else str(body)
    timed.replied = replies[0].received_at
    expect(timed.reply.startswith(BUILDING), f"{sent.text} was answered {timed.reply!r}")
    return timed


def summary(requests: Sequence[Timed]) -> Result:
    return {
        "requests": len(requests),
        "acknowledged": sum(t.sent.status == 200 for t in requests),
        "building": sum(t.reply.startswith(BUILDING) for t in requests),
        "ack": spread([(t.acknowledged - t.started) * 1000 for t in requests]),
        "reply": spread([(t.replied - t.started) * 1000 for t in requests]),
    }


# ------------------------------------------------------------------------------------------------------ output
def markdown(result: Result) -> str:
    cold = result["cold_import"]
    lines = [
        f"**Cold import** — a fresh interpreter per run (`python -c …`, wall time from spawn to exit), "
        f"{cold['rounds']} runs of each, interleaved; median",
        "",
        "| what | median (ms) | ratio to `import boto3` |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{row['what']}` | {row['median_ms']:.0f} | {row['ratio']:.2f} |" for row in cold["rows"]]
    first = result["first_ack"]
    router_row, boto3_row = first["rows"]["router"], first["rows"]["boto3"]
    lines += [
        "",
        f"**First acknowledgement in a fresh interpreter** — {first['rounds']} runs each, interleaved; median; "
        "SQS is moto on loopback",
        "",
        "| what | import (ms) | first request (ms) | both (ms) | wall, spawn to exit (ms) | messages queued |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in (
        ("router: import, acknowledge one signed `/build` (one SQS send)", router_row),
        ("boto3 alone: import, make an SQS client, send one message", boto3_row),
    ):
        lines.append(
            f"| {label} | {row['import_ms']:.0f} | {row['first_ms']:.0f} | {row['in_process_ms']:.0f} | "
            f"{row['wall_ms']:.0f} | {row['queued']} of {row['runs']} |"
        )
    lines.append(f"| **ratio router / boto3 alone** (wall) | | | | **{router_row['ratio']:.2f}** | |")
    warm, e2e = result["warm_ack"], result["end_to_end"]
    lines += [
        "",
        "**Acknowledgement and reply** — signed `/build`, each on a lock of its own; the GitHub stand-in answers "
        f"each dispatch at once; the build worker takes {e2e['build_worker_concurrency']} commands at a time "
        "(the local stack's event source mapping)",
        "",
        "| load | requests | answered 200 | 🔨 replies | ack p50 (ms) | ack p99 (ms) | 🔨 reply p50 (ms) "
        "| 🔨 reply p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| `router.handler` alone, warm, in process (no HTTP; {warm['queued']} queued) | {warm['n']} | {warm['n']} "
        f"| — | {warm['p50_ms']:.1f} | {warm['p99_ms']:.1f} | — | — |",
    ]
    for label, row in (("one at a time, over HTTP", e2e["one_at_a_time"]), ("all at once, over HTTP", e2e["at_once"])):
        lines.append(
            f"| {label} | {row['requests']} | {row['acknowledged']} | {row['building']} | {row['ack']['p50_ms']:.1f} "
            f"| {row['ack']['p99_ms']:.1f} | {row['reply']['p50_ms']:.0f} | {row['reply']['p99_ms']:.0f} |"
        )
    lines += [
        "",
        f"Dispatches: {e2e['dispatches']}, one per lock. DynamoDB requests per `/build` one at a time, everything "
        f"included (idempotency record, lock, history writer): {e2e['dynamodb_requests_per_build']:.1f}.",
        "",
        machine_line(result),
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="fresh interpreters per candidate (default 15)")
    parser.add_argument("--warm", type=int, default=200, help="router.handler calls in process (default 200)")
    parser.add_argument("--sequential", type=int, default=20, help="/build one after the other (default 20)")
    parser.add_argument("--burst", type=int, default=100, help="/build all at once (default 100)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of markdown")
    args = parser.parse_args(argv)
    if min(args.rounds, args.warm, args.sequential, args.burst) < 1:
        parser.error("every count at least 1")
    return args


def main(argv: list[str] | None = None) -> Result:
    """Run the benchmark, print it, and return the results; exits 1 if anything measured went wrong."""
    args = parse(argv)
    use_local_credentials()

    def measure() -> Result:
        result: Result = {"cold_import": cold_import(args.rounds)}
        with LocalAWS() as aws:
            result["first_ack"] = first_acknowledgement(args.rounds, aws)
        with bench_config(args.sequential + args.burst) as config:
            result["warm_ack"] = warm_acknowledgement(config, args.warm)
            result["end_to_end"] = end_to_end(config, args.sequential, args.burst)
        return result

    return run(measure, markdown, as_json=args.json)


if __name__ == "__main__":
    main()
