"""The IAM statements of the functions' roles: each names its actions and resources exactly.

No action has a wildcard; no resource has a wildcard account. A resource is one of this stack's own — its
tables, its queues, a function's own log group — or one of the SSM parameters configured for the stack, spelled
with the region and the account id (the reference design's security fix: never ``arn:aws:ssm:REGION:*:…``).
``kms:Decrypt`` is allowed only when SSM asks for it (``kms:ViaService``) and only for those parameters
(``kms:EncryptionContext:PARAMETER_ARN``): a SecureString can be read, nothing else can be decrypted.

The resources are ``pulumi.Input`` values (ARNs are outputs of the resources they name);
:func:`document` turns the statements into the JSON a ``RolePolicy`` takes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import pulumi

from infra.roster import IDEMPOTENCY_ACTIONS, STREAM_ACTIONS, HistoryAction, LockAction
from infra.settings import GITHUB_OIDC_HOST

Statement = dict[str, Any]

LAMBDA_PRINCIPAL: Final = "lambda.amazonaws.com"
FENCING_CHECK_ACTIONS: Final = ("dynamodb:GetItem",)
"""What ``chatops locks check`` calls: one strongly consistent read of the lock
(:meth:`lockcore.store.LockStore.check`)."""
GITHUB_OIDC_AUDIENCE: Final = "sts.amazonaws.com"
"""The audience ``aws-actions/configure-aws-credentials`` asks GitHub's token for."""
CONSUME_ACTIONS: Final = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
SEND_ACTIONS: Final = ("sqs:SendMessage",)
LOG_ACTIONS: Final = ("logs:CreateLogStream", "logs:PutLogEvents")


def assume_role_document() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": LAMBDA_PRINCIPAL}, "Action": "sts:AssumeRole"}],
        }
    )


def document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(sid: str, actions: Sequence[str], resources: Sequence[pulumi.Input[str]]) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}


def write_logs(log_group_arn: pulumi.Input[str]) -> Statement:
    """The function's own log group's streams (the group itself is made by the program, not the function)."""
    return _allow("WriteOwnLogs", LOG_ACTIONS, [pulumi.Output.concat(log_group_arn, ":log-stream:*")])


def consume(queue_arns: Sequence[pulumi.Input[str]]) -> Statement:
    """What Lambda's SQS event source mapping needs, on the function's own queues."""
    return _allow("ConsumeOwnQueues", CONSUME_ACTIONS, queue_arns)


def send(queue_arns: Sequence[pulumi.Input[str]]) -> Statement:
    return _allow("SendToCommandQueues", SEND_ACTIONS, queue_arns)


def lock_table(table_arn: pulumi.Input[str], actions: Sequence[LockAction]) -> Statement:
    return _allow("LockTable", actions, [table_arn])


def idempotency_table(table_arn: pulumi.Input[str]) -> Statement:
    return _allow("IdempotencyRecords", IDEMPOTENCY_ACTIONS, [table_arn])


def history_table(table_arn: pulumi.Input[str], actions: Sequence[HistoryAction]) -> Statement:
    return _allow("HistoryTable", actions, [table_arn])


def read_lock_stream(stream_arn: pulumi.Input[str]) -> list[Statement]:
    """The event source mapping's reads, on the lock table's stream only; and ``dynamodb:ListStreams``, which IAM
    knows on no resource but ``*`` (it lists stream ARNs, no data) and which Lambda checks the role for."""
    return [
        _allow("ReadLockStream", STREAM_ACTIONS, [stream_arn]),
        _allow("ListStreams", ("dynamodb:ListStreams",), ["*"]),
    ]


def fencing_check(table_arn: pulumi.Input[str]) -> Statement:
    """The deploy workflow's fencing check, on the lock table only: the managed policy adopters attach."""
    return _allow("FencingCheck", FENCING_CHECK_ACTIONS, [table_arn])


def github_oidc_trust(provider_arn: pulumi.Input[str], subjects: Sequence[str]) -> pulumi.Output[str]:
    """A role only GitHub Actions can assume, with a token for STS whose ``sub`` is one of ``subjects``
    (``repo:<owner>/<name>:environment:prod``, …): other repositories' workflows are refused."""
    host = GITHUB_OIDC_HOST
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {f"{host}:aud": GITHUB_OIDC_AUDIENCE},
                        "StringLike": {f"{host}:sub": list(subjects)},
                    },
                }
            ],
        }
    )


def parameter_arn(region: str, account_id: str, name: str) -> str:
    """``arn:aws:ssm:ca-central-1:123456789012:parameter/chatops/plt/slack/bot-token`` — account spelled out."""
    if not account_id.isdigit() or len(account_id) != 12:
        raise ValueError(f"an SSM parameter ARN needs the 12-digit account id, not {account_id!r}")
    return f"arn:aws:ssm:{region}:{account_id}:parameter/{name.lstrip('/')}"


def read_parameters(parameter_arns: Sequence[str]) -> Statement:
    return _allow("ReadOwnSecrets", ("ssm:GetParameter",), parameter_arns)


def decrypt_parameters(region: str, account_id: str, parameter_arns: Sequence[str]) -> Statement:
    """``kms:Decrypt`` through SSM only, for these parameters only. The key is whichever of the account's keys
    encrypted them (``aws/ssm`` by default), so the resource is the account's keys in the region."""
    statement = _allow("DecryptOwnSecretsViaSsm", ("kms:Decrypt",), [f"arn:aws:kms:{region}:{account_id}:key/*"])
    statement["Condition"] = {
        "StringEquals": {
            "kms:ViaService": f"ssm.{region}.amazonaws.com",
            "kms:EncryptionContext:PARAMETER_ARN": list(parameter_arns),
        }
    }
    return statement
