"""A Lambda function with everything that is only its own: log group, role and policy, event source mappings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import policies
from infra.components.queues import CommandQueue
from infra.roster import Worker

RUNTIME: Final = "python3.12"
ARCHITECTURE: Final = "x86_64"  # the Powertools layer named in the config is the x86_64 build
BATCH_SIZE: Final = 10
STREAM_BATCH_SIZE: Final = 100


@dataclass(frozen=True)
class WorkerFunctionArgs:
    worker: Worker
    function_name: str
    code: pulumi.Archive
    environment: Mapping[str, pulumi.Input[str]]
    statements: Sequence[policies.Statement]
    """What it may do besides writing its own logs and consuming its own queues."""
    log_retention_days: int
    queues: Sequence[CommandQueue] = ()
    """The queues it consumes (an event source mapping each)."""
    dead_letters_of: Sequence[CommandQueue] = ()
    """The queues whose DLQ it consumes (an event source mapping each, on the DLQ)."""
    stream_arn: pulumi.Input[str] | None = None
    """A DynamoDB stream that feeds it (the lock table's, for the history writer)."""
    layers: Sequence[str] = field(default_factory=tuple)


class WorkerFunction(pulumi.ComponentResource):
    """The function, its log group (made first, with retention, so Lambda never makes one that keeps logs
    forever), one IAM role with one ``RolePolicy``, and an SQS event source mapping per queue with
    ``ReportBatchItemFailures`` (a failed record returns to the queue alone; its neighbours are deleted)."""

    def __init__(self, name: str, args: WorkerFunctionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:compute:WorkerFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        worker = args.worker
        self.log_group = aws.cloudwatch.LogGroup(
            name,
            name=f"/aws/lambda/{args.function_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        self.role = aws.iam.Role(
            name,
            name=args.function_name,
            description=f"The {worker.name} function of {args.function_name.rpartition('-')[0]}",
            assume_role_policy=policies.assume_role_document(),
            opts=child,
        )
        statements = [policies.write_logs(self.log_group.arn)]
        consumed = [(queue.key, queue.arn) for queue in args.queues]
        consumed += [(f"{queue.key}-dlq", queue.dead_letters_arn) for queue in args.dead_letters_of]
        if consumed:
            statements.append(policies.consume([arn for _, arn in consumed]))
        statements.extend(args.statements)
        self.policy = aws.iam.RolePolicy(
            name,
            name=f"{args.function_name}-least-privilege",
            role=self.role.id,
            policy=policies.document(statements),
            opts=child,
        )
        self.function = aws.lambda_.Function(
            name,
            name=args.function_name,
            runtime=RUNTIME,
            architectures=[ARCHITECTURE],
            handler=worker.handler,
            code=args.code,
            role=self.role.arn,
            timeout=worker.timeout,
            memory_size=worker.memory,
            layers=list(args.layers),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group, self.policy]),
        )
        self.mappings = [
            aws.lambda_.EventSourceMapping(
                f"{name}-{key}",
                event_source_arn=arn,
                function_name=self.function.arn,
                batch_size=BATCH_SIZE,
                function_response_types=["ReportBatchItemFailures"],
                # The role must be able to read the queue before Lambda accepts the mapping.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy]),
            )
            for key, arn in consumed
        ]
        if args.stream_arn is not None:
            # From the oldest record the stream keeps (24 h), so nothing written before the mapping is lost; a
            # failed batch is split to find the bad record and retried — the writer's puts are idempotent.
            self.mappings.append(
                aws.lambda_.EventSourceMapping(
                    f"{name}-stream",
                    event_source_arn=args.stream_arn,
                    function_name=self.function.arn,
                    starting_position="TRIM_HORIZON",
                    batch_size=STREAM_BATCH_SIZE,
                    bisect_batch_on_function_error=True,
                    maximum_retry_attempts=10,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy]),
                )
            )
        self.name: pulumi.Output[str] = self.function.name
        self.arn: pulumi.Output[str] = self.function.arn
        self.register_outputs({"name": self.name, "arn": self.arn, "roleArn": self.role.arn})
