"""Alarms to an SNS topic (e-mail), and the dashboard (:mod:`infra.components.dashboard`).

What each alarm watches and why is in the :class:`Monitoring` docstring and docs/monitoring.md; the metric names,
the design's rates and their bounds are data in :mod:`infra.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import metrics
from infra.components import dashboard
from infra.metrics import Rate

PERIOD: Final = dashboard.PERIOD


@dataclass(frozen=True)
class Query:
    """One metric an alarm's metric math reads (statistic Sum, the alarm's period)."""

    id: str
    namespace: str
    metric: str
    dimensions: Mapping[str, pulumi.Input[str]]


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
    tables: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Table key (of :data:`infra.metrics.TABLE_OPERATIONS`) → table name."""


class Monitoring(pulumi.ComponentResource):
    """One SNS topic with an e-mail subscription (the address must confirm it once), and alarms on it:

    - a message reached a DLQ (a command failed ``maxReceiveCount`` times): on a DLQ the dead-letter worker
      consumes, a message received from it (``NumberOfMessagesReceived``: the worker empties it, so the number of
      visible messages stays near 0; a move into a DLQ is not counted by ``NumberOfMessagesSent``); on any other,
      a message waiting there;
    - a function reported errors (an invocation failed outright, not one record);
    - a workflow dispatch failed (``buildWorker.dispatch.failed``);
    - one of the design's rates above its expected range, over an hour (:data:`infra.metrics.RATES`): lock
      acquisition failures above 10 % (an hour with 20 attempts or more), expirations above 1 % — never below a
      range: fewer refusals than expected is no fault;
    - a table throttled a request (read or write throttle events) or failed one (``SystemErrors``, HTTP 500).

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
            f"{name}-dispatch-failed",
            f"{args.prefix}-dispatch-failed",
            "A workflow dispatch to GitHub failed: the user was told; check the token and GitHub's status.",
            namespace=metrics.NAMESPACE,
            metric=metrics.DISPATCH_FAILED,
            statistic="Sum",
            dimensions=metrics.DIMENSIONS,
        )
        for rate in metrics.RATES:
            self._rate_alarm(name, args.prefix, rate)
        for key, table in sorted(args.tables.items()):
            self._table_alarms(name, args.prefix, key, table)
        self.dashboard = aws.cloudwatch.Dashboard(
            name,
            dashboard_name=args.prefix,
            dashboard_body=pulumi.Output.json_dumps(
                {"widgets": dashboard.widgets(args.region, args.functions, args.tables)}
            ),
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

    def _rate_alarm(self, name: str, prefix: str, rate: Rate) -> None:
        low, high = rate.expected
        judged = f" in an hour of at least {rate.min_sample}" if rate.min_sample else " in an hour"
        self._math_alarm(
            f"{name}-{rate.id.replace('_', '-')}-rate",
            f"{prefix}-{rate.id.replace('_', '-')}-rate",
            f"{rate.title.split(':')[0]} above {high:g} %{judged} (the design expects {low:g}-{high:g} %): "
            "see docs/monitoring.md for what it means and what to do.",
            [Query(id_, metrics.NAMESPACE, metric, metrics.DIMENSIONS) for id_, metric in rate.metrics.items()],
            rate.alarm_expression,
            threshold=high,
            period=metrics.RATE_PERIOD,
        )

    def _table_alarms(self, name: str, prefix: str, key: str, table: pulumi.Input[str]) -> None:
        self._math_alarm(
            f"{name}-{key}-throttled",
            f"{prefix}-{key}-table-throttled",
            f"DynamoDB throttled requests on the {key} table (on demand: a burst past its limits, or an account "
            "quota): the workers retry, then fail the message.",
            [
                Query("reads", dashboard.DYNAMODB, "ReadThrottleEvents", {"TableName": table}),
                Query("writes", dashboard.DYNAMODB, "WriteThrottleEvents", {"TableName": table}),
            ],
            "FILL(reads, 0) + FILL(writes, 0)",
        )
        operations = metrics.TABLE_OPERATIONS[key]
        queries = [
            Query(f"op_{op.lower()}", dashboard.DYNAMODB, "SystemErrors", {"TableName": table, "Operation": op})
            for op in operations
        ]
        self._math_alarm(
            f"{name}-{key}-system-errors",
            f"{prefix}-{key}-table-system-errors",
            f"DynamoDB answered HTTP 500 on the {key} table: check the AWS Health Dashboard.",
            queries,
            " + ".join(f"FILL({query.id}, 0)" for query in queries),
        )

    def _math_alarm(
        self,
        resource_name: str,
        alarm_name: str,
        description: str,
        queries: Sequence[Query],
        expression: str,
        *,
        threshold: float = 0,
        period: int = PERIOD,
    ) -> None:
        """An alarm on metric math over ``queries``: above ``threshold`` for one period."""
        reads = [
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=query.id,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=query.namespace,
                    metric_name=query.metric,
                    dimensions=dict(query.dimensions),
                    period=period,
                    stat="Sum",
                ),
                return_data=False,
            )
            for query in queries
        ]
        watched = aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="watched", expression=expression, label=alarm_name, return_data=True
        )
        self.alarms.append(
            aws.cloudwatch.MetricAlarm(
                resource_name,
                name=alarm_name,
                alarm_description=description,
                metric_queries=[*reads, watched],
                evaluation_periods=1,
                threshold=threshold,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[self.topic.arn],
                ok_actions=[self.topic.arn],
                opts=pulumi.ResourceOptions(parent=self),
            )
        )
