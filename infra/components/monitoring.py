"""Alarms to an SNS topic (e-mail), and the dashboard of the lock: acquisitions, failures, duration, concurrency.

The workers write their metrics as EMF through Powertools (namespace ``ChatOps``, dimension ``service=chatops``,
see :mod:`workers.runtime`); an alarm or a graph must name the same dimension to see them.
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
BUSY: Final = "buildLockManager.acquireLock.failed"
LOCK_DURATION: Final = "buildLockManager.lockDuration"
LOCK_EXPIRED: Final = "buildLockManager.lock.expired"
DISPATCH_FAILED: Final = "buildWorker.dispatch.failed"
PERIOD: Final = 300


@dataclass(frozen=True)
class MonitoringArgs:
    prefix: str
    region: str
    alarm_email: str
    dead_letter_queues: Mapping[str, pulumi.Input[str]]
    """Queue key → DLQ name."""
    functions: Mapping[str, pulumi.Input[str]]
    """Worker name → function name."""


class Monitoring(pulumi.ComponentResource):
    """One SNS topic with an e-mail subscription (the address must confirm it once), and alarms on it:

    - a DLQ holds a message (a command failed ``maxReceiveCount`` times and nobody was told);
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
    def chatops(metric: str, label: str) -> list[Any]:
        return [NAMESPACE, metric, "service", DIMENSIONS["service"], {"label": label}]

    def graph(x: int, y: int, title: str, stat: str, metrics: list[list[Any]]) -> dict[str, Any]:
        properties = {"title": title, "region": args.region, "stat": stat, "period": PERIOD, "view": "timeSeries"}
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {**properties, "metrics": metrics},
        }

    concurrency = [
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", function_name, {"label": worker}]
        for worker, function_name in sorted(args.functions.items())
    ]
    return [
        graph(0, 0, "Lock acquisitions", "Sum", [chatops(ACQUIRED, "acquired")]),
        graph(12, 0, "Lock acquisition failures (already held)", "Sum", [chatops(BUSY, "refused: held")]),
        graph(0, 6, "Average lock duration (seconds)", "Average", [chatops(LOCK_DURATION, "held for")]),
        graph(12, 6, "Concurrent requests (executions per function)", "Maximum", concurrency),
        graph(
            0,
            12,
            "Expired locks and failed dispatches",
            "Sum",
            [chatops(LOCK_EXPIRED, "expired"), chatops(DISPATCH_FAILED, "dispatch failed")],
        ),
    ]
