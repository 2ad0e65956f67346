"""Alarms to an SNS topic (e-mail), and the dashboard of the lock: what ``/build stats`` tells from the history
(:mod:`workers.flows.insights`), from the workers' metrics and logs instead, plus the service's health.

The workers write their metrics as EMF through Powertools (namespace ``ChatOps``, dimension ``service=chatops``,
see :mod:`workers.adapters.runtime`); an alarm or a graph must name the same dimension to see them. The dashboard,
in the
order of ``/build stats``:

- acquisitions (hand-offs from the queue included), and the requests that joined a queue instead;
- refusals: the lock busy, or the environment frozen (a deploy), and their sum;
- runs released COMPLETED and FAILED (by the webhook worker or the reaper), and the failure rate in percent, a
  metric-math expression: FAILED / (COMPLETED + FAILED) — a dispatch that failed, which ``/build stats`` counts as a
  FAILED release too, is graphed apart, with the expired locks;
- lock duration, average and p95 — of the locks released by their run's end or a failed dispatch (the releases
  that write ``buildLockManager.lockDuration``; ``/build stats`` also counts expired and force-released locks);
- the busiest keys and hours (UTC, by acquisitions): Logs Insights queries over the build worker's log group, on
  its one ``lock acquired`` line per acquisition (with ``lock_key``);
- concurrent executions per function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_aws as aws

NAMESPACE: Final = "ChatOps"
DIMENSIONS: Final = {"service": "chatops"}
ACQUIRED: Final = "buildLockManager.acquireLock.success"
QUEUED: Final = "buildLockManager.acquireLock.queued"
BUSY: Final = "buildLockManager.acquireLock.failed"
FROZEN: Final = "buildWorker.deploy.frozen"
RUN_COMPLETED: Final = "buildLockManager.run.completed"
RUN_FAILED: Final = "buildLockManager.run.failed"
LOCK_DURATION: Final = "buildLockManager.lockDuration"
LOCK_EXPIRED: Final = "buildLockManager.lock.expired"
DISPATCH_FAILED: Final = "buildWorker.dispatch.failed"
PERIOD: Final = 300

BUILD_WORKER: Final = "build"
"""The worker that takes the locks: its log group holds the ``lock acquired`` lines the busiest keys and hours
are counted from."""
ACQUIRED_LOG_MESSAGE: Final = "lock acquired"
BUSIEST_KEYS_SHOWN: Final = 5
"""As many keys as ``/build stats`` shows."""
FAILURE_RATE: Final = "100 * FILL(failed, 0) / (FILL(completed, 0) + FILL(failed, 0))"
"""Percent of the runs that ended FAILED; no point in a period without a run (0 / 0)."""
REFUSED: Final = "FILL(busy, 0) + FILL(frozen, 0)"


@dataclass(frozen=True)
class MonitoringArgs:
    prefix: str
    region: str
    alarm_email: str
    dead_letter_queues: Mapping[str, pulumi.Input[str]]
    """Queue key → DLQ name."""
    functions: Mapping[str, pulumi.Input[str]]
    """Worker name → function name."""
    told_dead_letters: frozenset[str] = frozenset()
    """The queue keys whose DLQ the dead-letter worker consumes (and so empties)."""


class Monitoring(pulumi.ComponentResource):
    """One SNS topic with an e-mail subscription (the address must confirm it once), and alarms on it:

    - a message reached a DLQ (a command failed ``maxReceiveCount`` times): on a DLQ the dead-letter worker
      consumes, a message received from it (``NumberOfMessagesReceived``: the worker empties it, so the number of
      visible messages stays near 0; a move into a DLQ is not counted by ``NumberOfMessagesSent``); on any other,
      a message waiting there;
    - a function reported errors (an invocation failed outright, not one record);
    - a lock expired while its holder should have released it (``buildLockManager.lock.expired``);
    - a workflow dispatch failed (``buildWorker.dispatch.failed``).

    The topic is not encrypted with the AWS-managed SNS key: CloudWatch alarms cannot publish to a topic under
    that key (its key policy does not admit CloudWatch), and alarm texts carry no secret.
    """

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:observability:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(f"{name}-alarms", name=f"{args.prefix}-alarms", opts=child)
        aws.sns.TopicSubscription(
            f"{name}-alarms-email", topic=self.topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
        )
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        for queue, dlq_name in sorted(args.dead_letter_queues.items()):
            if queue in args.told_dead_letters:
                self._alarm(
                    f"{name}-{queue}-dlq",
                    f"{args.prefix}-{queue}-dlq-received",
                    f"A {queue} request failed every attempt; its requester was told why (the deadletter "
                    "function's log). Read the failing worker's log and fix.",
                    namespace="AWS/SQS",
                    metric="NumberOfMessagesReceived",
                    statistic="Sum",
                    dimensions={"QueueName": dlq_name},
                    period=60,
                )
                continue
            self._alarm(
                f"{name}-{queue}-dlq",
                f"{args.prefix}-{queue}-dlq-not-empty",
                f"A {queue} message failed every attempt and waits in its DLQ: read it, fix, redrive.",
                namespace="AWS/SQS",
                metric="ApproximateNumberOfMessagesVisible",
                statistic="Maximum",
                dimensions={"QueueName": dlq_name},
                period=60,
            )
        for worker, function_name in sorted(args.functions.items()):
            self._alarm(
                f"{name}-{worker}-errors",
                f"{args.prefix}-{worker}-errors",
                f"The {worker} function failed invocations: see its log group.",
                namespace="AWS/Lambda",
                metric="Errors",
                statistic="Sum",
                dimensions={"FunctionName": function_name},
            )
        self._alarm(
            f"{name}-lock-expired",
            f"{args.prefix}-lock-expired",
            "A lock's lease ran out before its holder released it (a worker died mid-run, or a run outlived it).",
            namespace=NAMESPACE,
            metric=LOCK_EXPIRED,
            statistic="Sum",
            dimensions=DIMENSIONS,
        )
        self._alarm(
            f"{name}-dispatch-failed",
            f"{args.prefix}-dispatch-failed",
            "A workflow dispatch to GitHub failed: the user was told; check the token and GitHub's status.",
            namespace=NAMESPACE,
            metric=DISPATCH_FAILED,
            statistic="Sum",
            dimensions=DIMENSIONS,
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            name,
            dashboard_name=args.prefix,
            dashboard_body=pulumi.Output.json_dumps({"widgets": _widgets(args)}),
            opts=child,
        )
        self.topic_arn: pulumi.Output[str] = self.topic.arn
        self.register_outputs({"topicArn": self.topic_arn, "dashboard": self.dashboard.dashboard_name})

    def _alarm(
        self,
        resource_name: str,
        alarm_name: str,
        description: str,
        *,
        namespace: str,
        metric: str,
        statistic: str,
        dimensions: Mapping[str, pulumi.Input[str]],
        period: int = PERIOD,
    ) -> None:
        self.alarms.append(
            aws.cloudwatch.MetricAlarm(
                resource_name,
                name=alarm_name,
                alarm_description=description,
                namespace=namespace,
                metric_name=metric,
                statistic=statistic,
                dimensions=dict(dimensions),
                period=period,
                evaluation_periods=1,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[self.topic.arn],
                ok_actions=[self.topic.arn],
                opts=pulumi.ResourceOptions(parent=self),
            )
        )


def _widgets(args: MonitoringArgs) -> list[dict[str, Any]]:
    """The dashboard's grid: two widgets a row, 12 columns each, 6 high; ``/build stats`` first, health after."""

    def chatops(metric: str, label: str, **options: Any) -> list[Any]:
        return [NAMESPACE, metric, "service", DIMENSIONS["service"], {"label": label, **options}]

    def expression(expression: str, label: str, id_: str) -> list[Any]:
        return [{"expression": expression, "label": label, "id": id_}]

    def graph(
        x: int, y: int, title: str, stat: str, metrics: list[list[Any]], *, width: int = 12, **extra: Any
    ) -> dict[str, Any]:
        properties = {"title": title, "region": args.region, "stat": stat, "period": PERIOD, "view": "timeSeries"}
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": width,
            "height": 6,
            "properties": {**properties, **extra, "metrics": metrics},
        }

    def logs(x: int, y: int, title: str, log_group: pulumi.Input[str], query: str) -> dict[str, Any]:
        source = pulumi.Output.concat("SOURCE '", log_group, "' | ", query)
        return {
            "type": "log",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {"title": title, "region": args.region, "query": source, "view": "table"},
        }

    concurrency = [
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", function_name, {"label": worker}]
        for worker, function_name in sorted(args.functions.items())
    ]
    widgets = [
        graph(
            0,
            0,
            "Lock acquisitions, and requests queued behind the holder",
            "Sum",
            [chatops(ACQUIRED, "acquired (hand-offs included)"), chatops(QUEUED, "queued")],
        ),
        graph(
            12,
            0,
            "Refused requests: lock busy, environment frozen",
            "Sum",
            [
                chatops(BUSY, "refused: busy", id="busy"),
                chatops(FROZEN, "refused: frozen", id="frozen"),
                expression(REFUSED, "refused (busy or frozen)", "refused"),
            ],
        ),
        graph(
            0,
            6,
            "Runs ended: released COMPLETED / FAILED",
            "Sum",
            [chatops(RUN_COMPLETED, "completed"), chatops(RUN_FAILED, "failed")],
        ),
        graph(
            12,
            6,
            "Run failure rate (%): FAILED / (COMPLETED + FAILED)",
            "Sum",
            [
                chatops(RUN_COMPLETED, "completed", id="completed", visible=False),
                chatops(RUN_FAILED, "failed", id="failed", visible=False),
                expression(FAILURE_RATE, "failure rate (%)", "rate"),
            ],
            yAxis={"left": {"min": 0, "max": 100}},
        ),
        graph(
            0,
            12,
            "Lock duration (seconds): average and p95",
            "Average",
            [chatops(LOCK_DURATION, "average"), chatops(LOCK_DURATION, "p95", stat="p95")],
        ),
        graph(
            12,
            12,
            "Expired locks and failed dispatches",
            "Sum",
            [chatops(LOCK_EXPIRED, "expired"), chatops(DISPATCH_FAILED, "dispatch failed")],
        ),
    ]
    build_function = args.functions.get(BUILD_WORKER)
    if build_function is not None:
        log_group = pulumi.Output.concat("/aws/lambda/", build_function)
        acquired = f'filter message = "{ACQUIRED_LOG_MESSAGE}"'
        widgets += [
            logs(
                0,
                18,
                f"Busiest keys (top {BUSIEST_KEYS_SHOWN}, by acquisitions)",
                log_group,
                f"{acquired} | stats count(*) as acquisitions by lock_key | sort acquisitions desc"
                f" | limit {BUSIEST_KEYS_SHOWN}",
            ),
            logs(
                12,
                18,
                "Busiest hours of the day (UTC, by acquisitions)",
                log_group,
                f"{acquired} | fields floor((toMillis(@timestamp) % 86400000) / 3600000) as hour_utc"
                " | stats count(*) as acquisitions by hour_utc | sort acquisitions desc",
            ),
        ]
    widgets.append(graph(0, 24, "Concurrent requests (executions per function)", "Maximum", concurrency, width=24))
    return widgets
