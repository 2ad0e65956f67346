"""A command queue and its dead-letter queue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

VISIBILITY_FACTOR: Final = 6
"""Lambda's guidance for an SQS event source: visibility timeout at least six times the function timeout (the
reference design's 4x is not enough — a retried invocation could see its own message again mid-flight)."""
DLQ_RETENTION_SECONDS: Final = 14 * 24 * 3600  # the most SQS keeps: two weeks to look at a failed command


@dataclass(frozen=True)
class CommandQueueArgs:
    queue_name: str
    consumer_timeout_seconds: int
    """The consuming function's timeout; the visibility timeout is :data:`VISIBILITY_FACTOR` times it."""
    max_receive_count: int
    dead_letter_consumer_timeout_seconds: int | None = None
    """The timeout of the function that consumes the DLQ (the dead-letter worker's); ``None``: nobody consumes it,
    its messages wait for a person."""


class CommandQueue(pulumi.ComponentResource):
    """The queue the router writes one kind of message to, and the DLQ a message goes to after
    ``maxReceiveCount`` failed receives. Both encrypted (SQS-managed keys); the DLQ takes redrives from this
    queue only. A DLQ a function consumes has the same visibility rule as a queue: six times that function's
    timeout."""

    def __init__(self, name: str, args: CommandQueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:messaging:CommandQueue", name, None, opts)
        self.key = name
        child = pulumi.ResourceOptions(parent=self)
        consumed = args.dead_letter_consumer_timeout_seconds
        self.dead_letters = aws.sqs.Queue(
            f"{name}-dlq",
            name=f"{args.queue_name}-dlq",
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            visibility_timeout_seconds=VISIBILITY_FACTOR * consumed if consumed is not None else None,
            opts=child,
        )
        self.visibility_timeout_seconds = VISIBILITY_FACTOR * args.consumer_timeout_seconds
        self.queue = aws.sqs.Queue(
            name,
            name=args.queue_name,
            visibility_timeout_seconds=self.visibility_timeout_seconds,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dead_letters.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receive_count})
            ),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-sources",
            queue_url=self.dead_letters.url,
            redrive_allow_policy=self.queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        self.arn: pulumi.Output[str] = self.queue.arn
        self.url: pulumi.Output[str] = self.queue.url
        self.name: pulumi.Output[str] = self.queue.name
        self.dead_letters_arn: pulumi.Output[str] = self.dead_letters.arn
        self.dead_letters_name: pulumi.Output[str] = self.dead_letters.name
        self.register_outputs({"url": self.url, "arn": self.arn, "deadLettersName": self.dead_letters_name})
