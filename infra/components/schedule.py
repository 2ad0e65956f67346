"""An EventBridge rule that invokes a function on a schedule (the reaper, every minute)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class ScheduleArgs:
    rule_name: str
    expression: str
    """``rate(1 minute)`` or ``cron(…)``."""
    function_name: pulumi.Input[str]
    function_arn: pulumi.Input[str]


class Schedule(pulumi.ComponentResource):
    """The rule, its target, and the permission for EventBridge to invoke that function from that rule only.
    A missed or failed run is not retried: the next one comes within the minute."""

    def __init__(self, name: str, args: ScheduleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:compute:Schedule", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.rule = aws.cloudwatch.EventRule(name, name=args.rule_name, schedule_expression=args.expression, opts=child)
        permission = aws.lambda_.Permission(
            name,
            function=args.function_name,
            action="lambda:InvokeFunction",
            principal="events.amazonaws.com",
            source_arn=self.rule.arn,
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            name,
            rule=self.rule.name,
            arn=args.function_arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_retry_attempts=0, maximum_event_age_in_seconds=60
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        self.arn: pulumi.Output[str] = self.rule.arn
        self.register_outputs({"ruleArn": self.arn})
