"""The whole system on one machine: what ``chatops serve`` runs, ``chatops demo`` tells and the end-to-end tests drive.

Theory of operation. Each AWS piece of the deployed system has a local counterpart in this process, and the
product's code — router and workers — runs unchanged on top of them, configured the way a Lambda is: through
environment variables.

==========================  =====================================================================================
deployed                    here
==========================  =====================================================================================
DynamoDB, SQS, SSM          :class:`~workers.local.motoserver.LocalAWS`: moto on ``127.0.0.1``, DynamoDB
                            requests one at a time (so lock races are decided by atomic writes, as in AWS). The
                            lock table, the Powertools idempotency table and every queue with its DLQ are created
                            at start.
Function URL + router       :class:`HttpFront`: ``http.server`` on ``127.0.0.1`` turning each request into a
                            payload 2.0 event for :func:`workers.handlers.router.handler`.
SQS event source mapping    :class:`QueuePoller`, one per entry of :data:`WORKERS`: long-polls its queue, hands
                            a batch to the worker's handler (up to ``concurrency`` batches at once), deletes the
                            records that succeeded and leaves the ``batchItemFailures`` to come back after the
                            visibility timeout — :data:`VISIBILITY_TIMEOUT` here, not the deployed 6 times the
                            function timeout, so a retry is seen in seconds. After :data:`MAX_RECEIVE_COUNT`
                            receives a message goes to the queue's DLQ, which the dead-letter worker polls (the
                            entries with ``dead_letters``) as deployed: build, deploy, status, echo — not github.
EventBridge schedule        :class:`Schedule`, one per entry of :data:`SCHEDULES`: calls the handler every N s.
DynamoDB Stream mapping     :class:`~workers.local.streams.StreamPoller`: the lock table streams
                            (``NEW_AND_OLD_IMAGES``, as deployed); moto's ``dynamodbstreams`` API is read every
                            0.2 s and each batch handed to the history writer (:data:`HISTORY_WRITER`), which
                            fills the history table ``/build history`` and ``/build stats`` read.
Slack                       ``--slack-api-url``, else the built-in :class:`~workers.local.slack.SlackStandIn`
                            (every Web API method the workers call; its user groups are
                            :data:`~workers.local.slack.LOCAL_USER_GROUPS`). Replies go to a request's
                            ``response_url`` only on that Slack's ``host:port`` (or a configured host), never
                            to another port of this machine.
GitHub                      ``--github-api-url``, else the built-in :class:`~workers.local.github.GitHubStandIn`:
                            its repositories have ``main`` and :data:`RELEASE_BRANCH` (two commits to deploy, and to
                            roll back between); it records dispatches, answers run look-ups, completes each run after
                            ``--github-delay`` seconds and sends the signed ``workflow_run`` webhook back to our
                            ``/github/webhook``.
Secrets Manager / SSM       plain environment variables (:mod:`workers.adapters.secrets`); unset ones are generated for
                            the run (:class:`LocalSecrets`).
==========================  =====================================================================================

A worker is one line of :data:`WORKERS` (queue → ``module:function``, as Lambda names a handler); a module that
does not exist yet leaves its queue unconsumed and says so, rather than failing the stack.

The environment is set for the stack's lifetime (:meth:`LocalStack.start`) and put back by :meth:`LocalStack.stop`,
so tests can run one stack after another in the same process.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import importlib.util
import logging
import os
import secrets as random_secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, cast
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from aws_lambda_powertools.utilities.typing import LambdaContext

from lockcore.dynamodb import DEFAULT_TABLE, DynamoDBLockStore, make_client
from lockcore.store import Clock
from workers.adapters import queues, runtime
from workers.adapters.history_table import DEFAULT_HISTORY_TABLE, HISTORY_TABLE_ENV, HistoryTable
from workers.adapters.pending import DEFAULT_IDEMPOTENCY_TABLE, IDEMPOTENCY_TABLE_ENV
from workers.adapters.secrets import SECRET_NAMES, SecretName
from workers.handlers import router
from workers.local import served
from workers.local.github import GitHubStandIn, Repository, fake_sha, webhook_sender
from workers.local.loopback import Answer, LoopbackHandler, LoopbackServer
from workers.local.motoserver import LOCAL_CREDENTIALS, LocalAWS
from workers.local.slack import LOCAL_USER_GROUPS, SlackStandIn
from workers.local.streams import StreamPoller
from workers.protocol.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config, Queue, load_config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

LambdaHandler = Callable[[dict[str, Any], LambdaContext], Any]

REGION: Final = LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]
RELEASE_BRANCH: Final = "release/1.0"
"""A branch beside ``main`` in the built-in GitHub's repositories: a second commit to deploy (and roll back to)."""
ACCOUNT: Final = "000000000000"
VISIBILITY_TIMEOUT: Final = 10
"""Seconds a received message stays hidden: a failed record comes back after this long (deployed: 6 times the
function timeout, minutes)."""
FUNCTION_TIMEOUT: Final = 10
"""What a worker's context says it has left when it starts (Powertools Idempotency's in-progress expiry)."""
MAX_RECEIVE_COUNT: Final = 3
"""Receives before a message moves to its DLQ."""
LONG_POLL_SECONDS: Final = 1
"""Each ReceiveMessage waits up to this long for a message: short, so a stop is never kept waiting long."""
DEFAULT_GITHUB_DELAY: Final = 30.0
DEFAULT_REAPER_SECONDS: Final = 60.0
SHIPPED_CONFIG: Final = Path(__file__).resolve().parents[2] / DEFAULT_CONFIG_PATH

#: Loggers whose lines are the workers' log (Powertools JSON), sent where :meth:`LocalStack.start` is told.
WORKER_LOGGERS: Final = (runtime.SERVICE, router.logger.name, "workers.adapters.slack", "lockcore")


# ------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Worker:
    """A Lambda behind an SQS event source mapping: its queue, its handler, how it takes batches."""

    queue: Queue
    handler: str
    """``module:function``, as Lambda names a handler."""
    batch_size: int = 10
    concurrency: int = 2
    """Batches handled at once (the mapping's maximum concurrency)."""
    dead_letters: bool = False
    """It polls the queue's DLQ, not the queue (the dead-letter worker, ``infra.roster``'s
    ``consumes_dead_letters``)."""

    @property
    def function_name(self) -> str:
        return f"chatops-{self.queue.value}{'-dlq' if self.dead_letters else ''}-worker"


@dataclass(frozen=True)
class Schedule:
    """A Lambda on an EventBridge schedule."""

    name: str
    handler: str
    every_seconds: float = DEFAULT_REAPER_SECONDS


WORKERS: Final[tuple[Worker, ...]] = (
    # One command per invocation, up to five at once: five people racing for a lock race at the lock, as five
    # concurrent Lambdas would, not in the order a batch happens to list them.
    Worker(Queue.BUILD, "workers.handlers.build:handler", batch_size=1, concurrency=5),
    Worker(Queue.DEPLOY, "workers.handlers.build:handler", batch_size=1, concurrency=5),
    Worker(Queue.STATUS, "workers.handlers.status:handler"),
    Worker(Queue.ECHO, "workers.handlers.echo:handler"),
    Worker(Queue.GITHUB, "workers.handlers.webhook:handler"),
    # The requests that failed every attempt: their requesters are told (a workflow_run has none to tell).
    *(
        Worker(queue, "workers.handlers.deadletter:handler", dead_letters=True)
        for queue in (Queue.BUILD, Queue.DEPLOY, Queue.STATUS, Queue.ECHO)
    ),
)
SCHEDULES: Final[tuple[Schedule, ...]] = (Schedule("reaper", "workers.handlers.reaper:handler"),)
HISTORY_WRITER: Final = "workers.handlers.history:handler"
"""The lock table's stream feeds it."""


def load_handler(reference: str) -> LambdaHandler | None:
    """The function ``module:function`` names; ``None`` when the module does not exist (not yet written).

    A module that exists but fails to import raises: that is a bug to see, not a worker to skip.
    """
    module_name, _, function = reference.partition(":")
    if importlib.util.find_spec(module_name) is None:
        return None
    return cast("LambdaHandler", getattr(importlib.import_module(module_name), function))


def queue_name(queue: Queue, prefix: str = "chatops") -> str:
    return f"{prefix}-{queue.value}"


# ------------------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class StackOptions:
    """What ``chatops serve`` takes on its command line (and tests set directly)."""

    port: int = 0
    """The HTTP front's port on 127.0.0.1 (0: any free one)."""
    config_path: str | None = None
    """The chatops TOML; default ``$CHATOPS_CONFIG``, else ``docs/chatops.toml``."""
    github_api_url: str | None = None
    """A GitHub to dispatch to; ``None``: the built-in stand-in."""
    slack_api_url: str | None = None
    """A Slack Web API for ``chat.postMessage``; ``None``: the built-in stand-in."""
    github_delay: float | None = DEFAULT_GITHUB_DELAY
    """The stand-in completes each run this many seconds after its dispatch (``None``: only when told)."""
    github_conclusion: str = "success"
    reaper_seconds: float = DEFAULT_REAPER_SECONDS
    visibility_timeout: int = VISIBILITY_TIMEOUT
    lock_table: str = DEFAULT_TABLE
    idempotency_table: str = DEFAULT_IDEMPOTENCY_TABLE
    history_table: str = DEFAULT_HISTORY_TABLE
    queue_prefix: str = "chatops"
    workers: Sequence[Worker] = WORKERS
    schedules: Sequence[Schedule] = SCHEDULES
    clock: Clock | None = None
    """What the workers' lock store (and :meth:`LocalStack.lock_store`) reads as the time; ``None``: the system's
    clock. Tests give one they move forward, to run a lease out."""

    @classmethod
    def isolated(cls, **options: Any) -> StackOptions:
        """Tables and queues with names of their own. moto keeps its state per process, not per server: a stack
        started in a process that already ran one (the demo, the tests) would otherwise find the last one's locks."""
        suffix = random_secrets.token_hex(3)
        names = {
            "lock_table": f"{DEFAULT_TABLE}-{suffix}",
            "idempotency_table": f"{DEFAULT_IDEMPOTENCY_TABLE}-{suffix}",
            "history_table": f"{DEFAULT_HISTORY_TABLE}-{suffix}",
            "queue_prefix": f"chatops-{suffix}",
        }
        return cls(**(names | options))


def config_path(given: str | None) -> str:
    """The configuration file, absolute: ``given``, ``$CHATOPS_CONFIG``, ``./docs/chatops.toml``, or the shipped one."""
    chosen = given or os.environ.get(CONFIG_ENV)
    if chosen:
        return str(Path(chosen).resolve())
    here = Path(DEFAULT_CONFIG_PATH)
    return str((here if here.is_file() else SHIPPED_CONFIG).resolve())


# ------------------------------------------------------------------------------------------------ secrets
_SECRET_SHAPES: Mapping[SecretName, str] = {
    "SLACK_SIGNING_SECRET": "{}",
    "SLACK_BOT_TOKEN": "xoxb-local-{}",
    "GITHUB_TOKEN": "ghp_local{}",
    "GITHUB_WEBHOOK_SECRET": "{}",
}


@dataclass(frozen=True)
class LocalSecrets:
    """The four secrets: each from its environment variable, or generated for this run."""

    values: Mapping[SecretName, str]
    generated: frozenset[SecretName]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LocalSecrets:
        values: dict[SecretName, str] = {}
        generated: set[SecretName] = set()
        for name in SECRET_NAMES:
            given = environ.get(name)
            if given:
                values[name] = given
            else:
                values[name] = _SECRET_SHAPES[name].format(random_secrets.token_hex(16))
                generated.add(name)
        return cls(values, frozenset(generated))

    def __getitem__(self, name: SecretName) -> str:
        return self.values[name]

    def describe(self) -> list[str]:
        """One line per secret. A generated one is shown — it opens nothing but this run's loopback servers; one
        from the environment never is."""
        return [
            f"{name}={self.values[name]}  (generated for this run; local only)"
            if name in self.generated
            else f"{name} from the environment (not shown)"
            for name in SECRET_NAMES
        ]


# ------------------------------------------------------------------------------------------- the context
class LocalContext(LambdaContext):
    """Lambda's context object for one local invocation: its name, and the time it has left."""

    def __init__(self, function_name: str, timeout_seconds: float = FUNCTION_TIMEOUT) -> None:
        self._function_name = function_name
        self._function_version = "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self._memory_limit_in_mb = 256
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{function_name}"
        self._log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]  # an instance's own deadline
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


# ---------------------------------------------------------------------------------------------- the front
def payload_event(
    method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes, source_ip: str
) -> dict[str, Any]:
    """An HTTP request as a Lambda Function URL hands it over: a payload format 2.0 event."""
    parts = urlsplit(target)
    joined: dict[str, str] = {}
    for name, value in headers:  # repeated headers are comma-joined, as the Function URL does
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": joined.get("host", "127.0.0.1"),
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


class HttpFront:
    """The router behind HTTP on ``127.0.0.1``, as the Function URL puts it behind HTTPS: each request a payload 2.0
    event, taken in as :mod:`workers.local.loopback` describes (a burst waits its turn, malformed ones get a 4xx)."""

    def __init__(self, handler: Callable[[dict[str, Any], object], dict[str, Any]], port: int = 0) -> None:
        self._server = LoopbackServer(port, _front_handler(handler))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="router", daemon=True
        )

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _front_handler(handler: Callable[[dict[str, Any], object], dict[str, Any]]) -> type[LoopbackHandler]:
    class Handler(LoopbackHandler):
        server_version = "chatops-local"

        def respond(self, body: bytes) -> Answer:
            event = payload_event(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
            answer = handler(event, LocalContext("chatops-router"))
            payload = str(answer.get("body") or "")
            raw = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode("utf-8")
            headers = {str(name): str(value) for name, value in (answer.get("headers") or {}).items()}
            return Answer(int(answer.get("statusCode", 200)), raw, headers)

    return Handler


# ---------------------------------------------------------------------------------------- the pollers
def sqs_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    """One received message as a record of the SQS event Lambda's event source mapping delivers."""
    body = message.get("Body", "")
    return {
        "messageId": message.get("MessageId", ""),
        "receiptHandle": message.get("ReceiptHandle", ""),
        "body": body,
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


@dataclass
class PollerStats:
    invocations: int = 0
    records: int = 0
    failed_records: int = 0
    in_flight: int = 0


class QueuePoller:
    """One worker's event source mapping: receive, invoke, delete what succeeded."""

    def __init__(
        self,
        worker: Worker,
        handler: LambdaHandler,
        sqs: SQSClient,
        queue_url: str,
        queue_arn: str,
        *,
        timeout_seconds: float = FUNCTION_TIMEOUT,
    ) -> None:
        self.worker = worker
        self.handler = handler
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.timeout_seconds = timeout_seconds
        self.stats = PollerStats()
        self._stats_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(worker.concurrency)
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(worker.concurrency, thread_name_prefix=worker.function_name)
        self._thread = threading.Thread(target=self._poll, name=f"poller-{worker.function_name}", daemon=True)

    @property
    def function_name(self) -> str:
        return self.worker.function_name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    @property
    def busy(self) -> bool:
        with self._stats_lock:
            return self.stats.in_flight > 0

    def _poll(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.2):  # every invocation busy: receive nothing more for now
                continue
            try:
                received = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.worker.batch_size,
                    WaitTimeSeconds=LONG_POLL_SECONDS,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                self._slots.release()
                if not self._stopping.is_set():
                    log.warning("receive from %s failed: %s", self.queue_url.rsplit("/", 1)[-1], error)
                    self._stopping.wait(1.0)
                continue
            messages = received.get("Messages", [])
            if not messages:
                self._slots.release()
                continue
            with self._stats_lock:
                self.stats.in_flight += 1
            self._pool.submit(self._invoke, messages)

    def _invoke(self, messages: list[MessageTypeDef]) -> None:
        try:
            event = {"Records": [sqs_record(message, self.queue_arn) for message in messages]}
            ids = [message.get("MessageId", "") for message in messages]
            try:
                answer = self.handler(event, LocalContext(self.function_name, self.timeout_seconds))
                failures = answer.get("batchItemFailures", []) if isinstance(answer, dict) else []
                failed = {str(failure.get("itemIdentifier")) for failure in failures}
            except Exception:  # as in Lambda: a handler that raises fails the whole batch
                log.exception("%s raised: the whole batch goes back to the queue", self.function_name)
                failed = set(ids)
            done = [message for message in messages if message.get("MessageId", "") not in failed]
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": message.get("ReceiptHandle", "")}
                        for index, message in enumerate(done)
                    ],
                )
            with self._stats_lock:
                self.stats.invocations += 1
                self.stats.records += len(messages)
                self.stats.failed_records += len(messages) - len(done)
        except Exception:  # the poller's own plumbing: log it, keep polling
            log.exception("invoking %s failed", self.function_name)
        finally:
            with self._stats_lock:
                self.stats.in_flight -= 1
            self._slots.release()


# --------------------------------------------------------------------------------------- the schedules
def scheduled_event(name: str) -> dict[str, Any]:
    """What EventBridge Scheduler hands a Lambda on a schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/chatops-{name}"],
        "detail": {},
    }


class ScheduledRun:
    """Calls a handler every ``every_seconds`` (first after one period), until stopped."""

    def __init__(self, schedule: Schedule, handler: LambdaHandler, every_seconds: float) -> None:
        self.schedule = schedule
        self.handler = handler
        self.every_seconds = every_seconds
        self.runs = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"schedule-{schedule.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def run_now(self) -> Any:
        """One run, in the caller's thread (tests, or an operator who will not wait a minute)."""
        self.runs += 1
        return self.handler(scheduled_event(self.schedule.name), LocalContext(f"chatops-{self.schedule.name}"))

    def _loop(self) -> None:
        while not self._stopping.wait(self.every_seconds):
            try:
                self.run_now()
            except Exception:
                log.exception("scheduled %s failed; it runs again in %s s", self.schedule.name, self.every_seconds)


# ------------------------------------------------------------------------------------------ the stack
@dataclass
class _Environment:
    """Variables set for the stack's lifetime, and what they were before."""

    saved: dict[str, str | None] = field(default_factory=dict)

    def set(self, name: str, value: str | None) -> None:
        if name not in self.saved:
            self.saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved.clear()


class LocalStack:
    """Everything, started in order and stopped in reverse. Use as a context manager, or start/stop."""

    def __init__(
        self,
        options: StackOptions | None = None,
        *,
        logs: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``logs``: where the workers' JSON log lines go while the stack runs (default: where they go now);
        ``environ``: where the secrets are read from (default ``os.environ``)."""
        self.options = options or StackOptions()
        self.logs = logs
        self.secrets = LocalSecrets.from_environment(os.environ if environ is None else environ)
        self.config_path = config_path(self.options.config_path)
        self.config: Config = load_config(self.config_path)
        self.aws = LocalAWS()
        self.front = HttpFront(router.handler, self.options.port)
        self.github: GitHubStandIn | None = None
        self.slack: SlackStandIn | None = None
        self.pollers: dict[Queue, QueuePoller] = {}
        self.dead_letter_pollers: dict[Queue, QueuePoller] = {}
        """The dead-letter worker's, by the queue whose DLQ each polls."""
        self.schedules: dict[str, ScheduledRun] = {}
        self.history: StreamPoller | None = None
        """The lock table's stream feeding the history writer; :meth:`StreamPoller.drain` to catch up now."""
        self.missing: list[str] = []
        """What cannot run because its module does not exist: a line each, for :meth:`describe`."""
        self.queue_urls: dict[Queue, str] = {}
        self.dlq_urls: dict[Queue, str] = {}
        self.deliver_webhooks = True
        """False: the GitHub stand-in's webhooks are lost on the way, as in a GitHub outage (the reaper's case)."""
        self._env = _Environment()
        self._log_streams: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        self._started = False
        self._aws_running = False
        self._observer: SQSClient | None = None
        """The SQS client :meth:`queue_depths` asks, from whichever thread."""

    # ------------------------------------------------------------------------------------- addresses
    @property
    def url(self) -> str:
        """The HTTP front: ``http://127.0.0.1:<port>``."""
        return self.front.url

    @property
    def aws_url(self) -> str:
        """The moto endpoint (``AWS_ENDPOINT_URL``) for DynamoDB, SQS and SSM."""
        return self.aws.url

    @property
    def github_api_url(self) -> str:
        return self.github.api_url if self.github is not None else str(self.options.github_api_url)

    @property
    def slack_api_url(self) -> str:
        return self.slack.api_url if self.slack is not None else str(self.options.slack_api_url)

    @property
    def reply_hosts(self) -> tuple[str, ...]:
        """Where replies may go besides the configuration's hosts: the Slack this stack talks to, as ``host:port``
        when it is on loopback — its own stand-in's port, not any port of this machine."""
        parts = urlsplit(self.slack_api_url)
        host = (parts.hostname or "").lower()
        if host not in ("127.0.0.1", "localhost"):
            return ()
        port = parts.port or (443 if parts.scheme == "https" else 80)  # a URL without one means its scheme's
        return (f"{host}:{port}",)

    def lock_store(self) -> DynamoDBLockStore:
        """A lock store on this stack's table (its own client), reading the stack's clock."""
        return DynamoDBLockStore(
            self.options.lock_table, client=make_client(self.aws_url, REGION), clock=self.options.clock
        )

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> LocalStack:
        """Start everything, in order; if a part fails, stop what started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._started = True
        if self.logs is not None:
            self._send_logs_to(self.logs)
        for name, value in LOCAL_CREDENTIALS.items():  # never a real account's credentials, even on loopback
            self._env.set(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_DYNAMODB"):
            self._env.set(name, None)
        self.aws.start()
        self._aws_running = True
        self._env.set("AWS_ENDPOINT_URL", self.aws.url)
        self._create_tables()
        self._create_queues()
        self._observer = self.sqs()  # made here: boto3's default session makes clients safely in one thread only
        self.front.start()
        self._start_stand_ins()
        self._set_environment()
        queues.forget_clients()
        runtime.reset(lock_clock=self.options.clock)
        self._start_workers()

    def stop(self) -> None:
        """Stop everything that started, newest first, and put the environment back. Safe to call twice."""
        for schedule in self.schedules.values():
            schedule.stop()
        self.schedules.clear()
        if self.history is not None:
            self.history.stop()
            self.history = None
        every = [*self.pollers.values(), *self.dead_letter_pollers.values()]
        for poller in every:
            poller._stopping.set()  # all at once: each finishes its current long poll in parallel
        for poller in every:
            poller.stop()
        self.pollers.clear()
        self.dead_letter_pollers.clear()
        if self.github is not None:
            self.github.stop()
            self.github = None
        if self.slack is not None:
            self.slack.stop()
            self.slack = None
        if self._started:
            self.front.stop()
            if self._aws_running:
                self.aws.stop()
                self._aws_running = False
            self._started = False
        self._observer = None
        self._env.restore()
        queues.forget_clients()
        runtime.reset()
        for handler, stream in self._log_streams:
            handler.setStream(stream)
        self._log_streams.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- the parts
    def _create_tables(self) -> None:
        DynamoDBLockStore(self.options.lock_table, client=make_client(self.aws.url, REGION)).create_table()
        dynamodb = make_client(self.aws.url, REGION)
        if "LatestStreamArn" not in dynamodb.describe_table(TableName=self.options.lock_table)["Table"]:
            dynamodb.update_table(
                TableName=self.options.lock_table,
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
        HistoryTable(self.options.history_table, dynamodb).create_table()
        try:
            dynamodb.create_table(
                TableName=self.options.idempotency_table,
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except dynamodb.exceptions.ResourceInUseException:
            return  # moto's state is the process's: a stack started before in this process made it
        dynamodb.update_time_to_live(
            TableName=self.options.idempotency_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
        )

    def sqs(self) -> SQSClient:
        return boto3.client("sqs", endpoint_url=self.aws.url, region_name=REGION)

    def _create_queues(self) -> None:
        sqs = self.sqs()
        for queue in Queue:
            name = queue_name(queue, self.options.queue_prefix)
            dlq_url = sqs.create_queue(
                QueueName=f"{name}-dlq", Attributes={"VisibilityTimeout": str(self.options.visibility_timeout)}
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{MAX_RECEIVE_COUNT}"}}'
            self.queue_urls[queue] = sqs.create_queue(
                QueueName=name,
                Attributes={"VisibilityTimeout": str(self.options.visibility_timeout), "RedrivePolicy": redrive},
            )["QueueUrl"]
            self.dlq_urls[queue] = dlq_url

    def _start_stand_ins(self) -> None:
        if self.options.slack_api_url is None:
            self.slack = SlackStandIn(
                token=self.secrets["SLACK_BOT_TOKEN"], user_groups=LOCAL_USER_GROUPS, app_busy=self._busy
            ).start()
        if self.options.github_api_url is None:
            self.github = GitHubStandIn(
                [
                    Repository(
                        repository,
                        branches={RELEASE_BRANCH: fake_sha(repository, RELEASE_BRANCH)},
                        workflows=tuple(sorted(workflows)),
                    )
                    for repository, workflows in self.config.workflows_by_repository().items()
                ],
                token=self.secrets["GITHUB_TOKEN"],
                complete_after=self.options.github_delay,
                conclusion=self.options.github_conclusion,
            ).start()
            webhook_url = f"{self.front.url}{router.GITHUB_WEBHOOK_PATH}"
            send = webhook_sender(webhook_url, self.secrets["GITHUB_WEBHOOK_SECRET"])

            def deliver(action: str, run: Mapping[str, Any]) -> None:
                if self.deliver_webhooks:
                    send(action, run)

            self.github.on_workflow_run(deliver)

    def _set_environment(self) -> None:
        hosts = sorted({*self.config.slack.response_url_hosts, *self.reply_hosts})
        settings: dict[str, str] = {
            CONFIG_ENV: self.config_path,
            "RESPONSE_URL_HOSTS": ",".join(hosts),
            "GITHUB_API_URL": self.github_api_url,
            "SLACK_API_URL": self.slack_api_url,
            runtime.LOCK_TABLE_ENV: self.options.lock_table,
            IDEMPOTENCY_TABLE_ENV: self.options.idempotency_table,
            HISTORY_TABLE_ENV: self.options.history_table,
            **{queue.url_env: url for queue, url in self.queue_urls.items()},
        }
        settings.update({name: value for name, value in self.secrets.values.items()})
        for name, value in settings.items():
            self._env.set(name, value)
        for name in SECRET_NAMES:  # the plain variable decides; an SSM parameter name must not
            self._env.set(f"{name}_PARAM", None)

    def _start_workers(self) -> None:
        sqs = self.sqs()
        for worker in self.options.workers:
            handler = load_handler(worker.handler)
            what = f"{worker.queue.value}{' DLQ' if worker.dead_letters else ' queue'}"
            if handler is None:
                self.missing.append(f"{worker.handler} does not exist: {what} not consumed")
                continue
            url = (self.dlq_urls if worker.dead_letters else self.queue_urls)[worker.queue]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            poller = QueuePoller(worker, handler, self.sqs(), url, arn)
            (self.dead_letter_pollers if worker.dead_letters else self.pollers)[worker.queue] = poller
            poller.start()
        for schedule in self.options.schedules:
            handler = load_handler(schedule.handler)
            if handler is None:
                self.missing.append(f"{schedule.handler} does not exist: no {schedule.name} runs")
                continue
            run = ScheduledRun(schedule, handler, self.options.reaper_seconds)
            self.schedules[schedule.name] = run
            run.start()
        writer = load_handler(HISTORY_WRITER)
        if writer is None:
            self.missing.append(f"{HISTORY_WRITER} does not exist: the lock stream is not read")
            return
        dynamodb = make_client(self.aws.url, REGION)
        stream_arn = dynamodb.describe_table(TableName=self.options.lock_table)["Table"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams", endpoint_url=self.aws.url, region_name=REGION)
        self.history = StreamPoller(streams, stream_arn, writer, lambda: LocalContext("chatops-history"))
        self.history.start()

    def _send_logs_to(self, stream: TextIO) -> None:
        for name in WORKER_LOGGERS:
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler):
                    self._log_streams.append((handler, handler.stream))
                    handler.setStream(stream)

    # ------------------------------------------------------------------------------------ observing
    def queue_depths(self, *, dead_letters: bool = False) -> dict[Queue, tuple[int, int]]:
        """Per queue (``dead_letters``: per queue's DLQ): (visible, in flight) messages."""
        sqs = self._observer or self.sqs()
        depths = {}
        for queue, url in (self.dlq_urls if dead_letters else self.queue_urls).items():
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depths[queue] = (
                int(attributes.get("ApproximateNumberOfMessages", "0")),
                int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
            )
        return depths

    def dead_letters(self, queue: Queue) -> list[str]:
        """The bodies waiting in ``queue``'s DLQ (received and made visible again at once)."""
        sqs = self.sqs()
        received = sqs.receive_message(QueueUrl=self.dlq_urls[queue], MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [message.get("Body", "") for message in received.get("Messages", [])]

    def _busy(self) -> bool:
        """For the Slack stand-in's readers in another process (``chatops try``): not :meth:`settled` yet."""
        return self._started and not self.settled()

    def settled(self) -> bool:
        """Nothing queued, nothing being handled, no run event on its way, no dead letter untold."""
        if any(poller.busy for poller in (*self.pollers.values(), *self.dead_letter_pollers.values())):
            return False
        if self.github is not None and not self.github.drain(0):
            return False
        consumed, told = set(self.pollers), set(self.dead_letter_pollers)
        return all(depth == (0, 0) for queue, depth in self.queue_depths().items() if queue in consumed) and all(
            depth == (0, 0) for queue, depth in self.queue_depths(dead_letters=True).items() if queue in told
        )

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Poll ``condition`` until it holds; :class:`TimeoutError` naming ``what`` if it does not in time."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.05)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until :meth:`settled` holds twice in a row (a worker may be about to send the next message)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for the stack to settle: {self.queue_depths()}")
            streak = streak + 1 if self.settled() else 0
            time.sleep(0.05)

    # ------------------------------------------------------------------------------------ describing
    def ready_line(self) -> str:
        return f"chatops serve: ready at {self.url} — DynamoDB at AWS_ENDPOINT_URL={self.aws_url}"

    def describe(self) -> Iterator[str]:
        """What runs where, for a person: the lines after the ready line."""
        yield f"  Slack    POST {self.url}{router.SLACK_COMMANDS_PATH}  and  {router.SLACK_INTERACTIONS_PATH}"
        if self.slack is not None:
            yield f"           chat.postMessage → built-in Slack stand-in at {self.slack.api_url}"
            groups = "; ".join(f"{group}: {', '.join(members)}" for group, members in self.slack.user_groups.items())
            yield f"           usergroups.users.list → {groups or 'no groups'}"
        else:
            yield f"           chat.postMessage → {self.slack_api_url}"
        allowed = ", ".join(sorted({*self.config.slack.response_url_hosts, *self.reply_hosts}))
        yield f"           replies → each request's response_url, on {allowed} only"
        yield f"  GitHub   POST {self.url}{router.GITHUB_WEBHOOK_PATH}"
        if self.github is not None:
            after = (
                f"completes each run {self.options.github_delay:g} s after its dispatch"
                if self.options.github_delay is not None
                else "completes runs only when told"
            )
            yield f"           dispatches → built-in GitHub stand-in at {self.github.api_url}: {after},"
            yield "           then sends the signed workflow_run webhook back here"
        else:
            yield f"           dispatches → {self.github_api_url}"
        consumed = ", ".join(queue_name(queue, self.options.queue_prefix) for queue in self.pollers) or "none"
        yield f"  workers  {consumed} (visibility {self.options.visibility_timeout} s, DLQ after {MAX_RECEIVE_COUNT})"
        if self.dead_letter_pollers:
            told = ", ".join(
                f"{queue_name(queue, self.options.queue_prefix)}-dlq" for queue in self.dead_letter_pollers
            )
            yield f"           dead letters ← {told}: each requester is told why"
        for name, run in self.schedules.items():
            yield f"           {name} every {run.every_seconds:g} s"
        if self.history is not None:
            yield f"           history writer ← the lock table's stream, into {self.options.history_table}"
        for missing in self.missing:
            yield f"           not running: {missing}"
        yield f"  config   {self.config_path}"
        for line in self.secrets.describe():
            yield f"  secret   {line}"
        credentials = " ".join(f"{name}={value}" for name, value in LOCAL_CREDENTIALS.items())
        yield f"  locks    AWS_ENDPOINT_URL={self.aws_url} {credentials} chatops locks list"
        elsewhere = "" if self.url == served.DEFAULT_URL else f" --url {self.url}"
        yield f"  try      chatops try '/build router plt' --as alice{elsewhere}"


# ------------------------------------------------------------------------------------------ chatops serve
def serve(options: StackOptions, out: TextIO | None = None, stop: threading.Event | None = None) -> int:
    """``chatops serve``: start the stack, print the ready line, run until Ctrl-C, SIGTERM or ``stop``.

    stdout carries the stack's own lines (the ready line first, then what runs where); the workers' JSON logs
    and EMF metrics go to stderr, as a Lambda's go to CloudWatch.
    """
    out = out or sys.stdout
    stop = stop or threading.Event()
    stack = LocalStack(options, logs=sys.stderr)
    card: served.Served | None = None
    restore_signals = _stop_on_signals(stop)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # EMF metrics are printed; they are log, not output
            stack.start()
            card = _card(stack)
            try:
                served.write(card)  # for `chatops try`
            except OSError as error:
                card = None
                print(f"chatops serve: `chatops try` will not find this stack: {error}", file=out)
            print(stack.ready_line(), file=out, flush=True)
            for line in stack.describe():
                print(line, file=out)
            print("  Ctrl-C stops it.", file=out, flush=True)
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        if card is not None:
            served.remove(card)
        stack.stop()
        restore_signals()
    print("chatops serve: stopped", file=out, flush=True)
    return 0


def _card(stack: LocalStack) -> served.Served:
    generated = "SLACK_SIGNING_SECRET" in stack.secrets.generated
    return served.Served(
        url=stack.url,
        slack_url=stack.slack.url if stack.slack is not None else None,
        signing_secret=stack.secrets["SLACK_SIGNING_SECRET"] if generated else None,
        pid=os.getpid(),
    )


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM (and SIGINT) set ``stop``; only in the main thread, where Python allows signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    for number in previous:
        signal.signal(number, lambda *_: stop.set())

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def options_from(args: Any) -> StackOptions:
    """``chatops serve``'s parsed arguments (see :func:`workers.cli.main.build_parser`) as options."""
    return StackOptions(
        port=args.port,
        config_path=args.config,
        github_api_url=args.github_api_url or None,
        slack_api_url=args.slack_api_url or None,
        github_delay=args.github_delay,
        reaper_seconds=args.reaper_every,
    )
