"""IAM, as CrossGuard would check it if it ran without the CLI: every policy document of the stack is walked (the
functions' role policies and the managed fencing-check policy).

Fails on a wildcard account, a wildcard action, or a resource that is not the project's own (one of the
stack's resources — the lock table's stream among them —, one of its configured SSM parameters, or — for
``kms:Decrypt`` through SSM only — the account's keys in the region). The one ``*``: ``dynamodb:ListStreams``
alone, which IAM knows on no resource but ``*``, for the stream's reader only. Then each role is held to exactly
what its roster row says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.roster import IDEMPOTENCY_ACTIONS, STREAM_ACTIONS, WORKERS, Worker
from tests.infra.stack import ACCOUNT_ID, Deployment, Resource, stack_config

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
ROLE = "aws:iam/role:Role"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(deployment: Deployment) -> Iterator[tuple[str, dict[str, Any]]]:
    """(the role, or the managed policy's name; a statement) for every statement of the stack."""
    for policy in [*deployment.of_type(ROLE_POLICY), *deployment.of_type(MANAGED_POLICY)]:
        document = json.loads(policy.inputs["policy"])
        assert document["Version"] == "2012-10-17"
        for statement in document["Statement"]:
            yield policy.inputs.get("role", policy.inputs["name"]), statement


def _function_roles(deployment: Deployment) -> list[Resource]:
    functions = {f.inputs["role"] for f in deployment.of_type("aws:lambda/function:Function")}
    return [role for role in deployment.of_type(ROLE) if role["arn"] in functions]


def _parameter_arns(deployment: Deployment) -> set[str]:
    config = stack_config(deployment.stack)
    region = config["aws:region"]
    return {
        f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter/{name.lstrip('/')}"
        for name in config["chatops:ssmParameters"].values()
    }


def _role_actions(deployment: Deployment, role: str) -> dict[str, set[str]]:
    """Action → the resources it is allowed on, for one role."""
    allowed: dict[str, set[str]] = {}
    for owner, statement in _statements(deployment):
        if owner == role:
            for action in _listed(statement["Action"]):
                allowed.setdefault(action, set()).update(_listed(statement["Resource"]))
    return allowed


# ------------------------------------------------------------------------------------------- every document
def test_every_statement_allows_named_actions_only(deployment: Deployment) -> None:
    statements = list(_statements(deployment))
    assert len(statements) >= len(WORKERS) * 2
    for role, statement in statements:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, role  # no NotAction…
        for action in _listed(statement["Action"]):
            service, _, name = action.partition(":")
            assert service and name, (role, action)
            assert "*" not in action and "?" not in action, (role, action)


def test_every_resource_is_the_projects_own_in_this_account_and_region(deployment: Deployment) -> None:
    region = stack_config(deployment.stack)["aws:region"]
    own = deployment.arns()
    parameters = _parameter_arns(deployment)
    for role, statement in _statements(deployment):
        for resource in _listed(statement["Resource"]):
            if resource == "*":
                assert _listed(statement["Action"]) == ["dynamodb:ListStreams"], role
                assert any(worker.lock_stream and role.endswith(f"-{worker.name}") for worker in WORKERS), role
                continue
            partition, service, resource_region, account = resource.split(":")[1:5]
            assert (partition, resource_region, account) == ("aws", region, ACCOUNT_ID), (role, resource)
            if service == "ssm":
                assert resource in parameters, (role, resource)
            elif service == "kms":
                assert resource == f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/*", (role, resource)
                condition = statement["Condition"]["StringEquals"]
                assert condition["kms:ViaService"] == f"ssm.{region}.amazonaws.com"
                assert set(_listed(condition["kms:EncryptionContext:PARAMETER_ARN"])) <= parameters
                assert _listed(statement["Action"]) == ["kms:Decrypt"]
            elif service == "logs":
                group = resource.removesuffix(":log-stream:*")
                assert group in own and group.endswith(f"log-group:/aws/lambda/{role}"), (role, resource)
            else:
                assert resource in own, (role, resource)
                assert "*" not in resource, (role, resource)


def test_every_functions_role_is_assumed_by_lambda_only(deployment: Deployment) -> None:
    roles = _function_roles(deployment)
    assert len(roles) == len(WORKERS)
    others = [role.inputs["name"] for role in deployment.of_type(ROLE) if role not in roles]
    assert others in ([], [f"chatops-{deployment.stack}-deploy"])  # GitHub's: tests/infra/test_deploy_access.py
    for role in roles:
        document = json.loads(role.inputs["assumeRolePolicy"])
        assert document["Statement"] == [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
        assert "inlinePolicies" not in role.inputs and "managedPolicyArns" not in role.inputs  # deprecated in v7


def test_one_role_and_one_role_policy_per_function(deployment: Deployment) -> None:
    functions = {f.inputs["name"]: f.inputs["role"] for f in deployment.of_type("aws:lambda/function:Function")}
    roles = {r.inputs["name"]: r["arn"] for r in _function_roles(deployment)}
    assert {functions[name] for name in functions} == {roles[name] for name in functions}
    assert sorted(p.inputs["role"] for p in deployment.of_type(ROLE_POLICY)) == sorted(roles)


# ------------------------------------------------------------------------------------------- role by role
@pytest.mark.parametrize("worker", WORKERS, ids=lambda worker: worker.name)
def test_each_role_allows_exactly_what_its_row_says(deployment: Deployment, worker: Worker) -> None:
    prefix = f"chatops-{deployment.stack}"
    config = stack_config(deployment.stack)
    region = config["aws:region"]
    allowed = _role_actions(deployment, f"{prefix}-{worker.name}")

    def arn(service: str, name: str) -> str:
        return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}"

    expected: dict[str, set[str]] = {
        "logs:CreateLogStream": {arn("logs", f"log-group:/aws/lambda/{prefix}-{worker.name}:log-stream:*")},
        "logs:PutLogEvents": {arn("logs", f"log-group:/aws/lambda/{prefix}-{worker.name}:log-stream:*")},
    }
    consumed = {arn("sqs", f"{prefix}-{queue}") for queue in worker.consumes}
    consumed |= {arn("sqs", f"{prefix}-{queue}-dlq") for queue in worker.consumes_dead_letters}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes") if consumed else ():
        expected[action] = consumed
    if worker.sends_to:
        expected["sqs:SendMessage"] = {arn("sqs", f"{prefix}-{queue}") for queue in worker.sends_to}
    lock_table = arn("dynamodb", f"table/{config['chatops:lockTableName']}")
    idempotency_table = arn("dynamodb", f"table/{prefix}-idempotency")
    for action in worker.lock_table:
        expected.setdefault(action, set()).add(lock_table)
    for action in IDEMPOTENCY_ACTIONS if worker.idempotency else ():
        expected.setdefault(action, set()).add(idempotency_table)
    for action in worker.history_table:
        expected.setdefault(action, set()).add(arn("dynamodb", f"table/{prefix}-history"))
    for action in STREAM_ACTIONS if worker.lock_stream else ():
        expected.setdefault(action, set()).add(f"{lock_table}/stream/2026-01-01T00:00:00.000")
    if worker.lock_stream:
        expected["dynamodb:ListStreams"] = {"*"}
    if worker.secrets:
        names = config["chatops:ssmParameters"]
        expected["ssm:GetParameter"] = {arn("ssm", f"parameter{names[secret]}") for secret in worker.secrets}
        expected["kms:Decrypt"] = {arn("kms", "key/*")}
    assert allowed == expected


def test_the_router_only_enqueues_and_reads_its_secrets(deployment: Deployment) -> None:
    allowed = _role_actions(deployment, f"chatops-{deployment.stack}-router")
    assert {action.split(":")[0] for action in allowed} == {"sqs", "ssm", "kms", "logs"}
    assert {action for action in allowed if action.startswith("sqs:")} == {"sqs:SendMessage"}
    assert not any(action.startswith("dynamodb:") for action in allowed)


def test_the_history_writer_reads_the_stream_and_puts_history_and_touches_no_lock(deployment: Deployment) -> None:
    """And asks the status worker for an App Home refresh when none is pending: SendMessage on the status queue
    only, and the pending-refresh mark in the idempotency table."""
    allowed = _role_actions(deployment, f"chatops-{deployment.stack}-history")
    dynamodb = {action for action in allowed if action.startswith("dynamodb:")}
    assert dynamodb == {*STREAM_ACTIONS, "dynamodb:ListStreams", *IDEMPOTENCY_ACTIONS}
    assert all("/stream/" in resource for action in STREAM_ACTIONS for resource in allowed[action])
    assert {action.split(":")[0] for action in allowed} == {"dynamodb", "sqs", "logs"}
    assert {action for action in allowed if action.startswith("sqs:")} == {"sqs:SendMessage"}
    (queue,) = allowed["sqs:SendMessage"]
    assert queue.endswith("-status")


def test_the_dead_letter_worker_reads_one_lock_and_its_dlqs_and_nothing_else(deployment: Deployment) -> None:
    """It tells requesters: one GetItem on the lock table, the command queues' DLQs (never a queue, so it can never
    take a live request), the bot token."""
    allowed = _role_actions(deployment, f"chatops-{deployment.stack}-deadletter")
    assert {action for action in allowed if action.startswith("dynamodb:")} == {"dynamodb:GetItem"}
    assert {action.split(":")[0] for action in allowed} == {"dynamodb", "sqs", "ssm", "kms", "logs"}
    assert "sqs:SendMessage" not in allowed
    assert all(resource.endswith("-dlq") for resource in allowed["sqs:ReceiveMessage"])
    assert {resource.rsplit(":", 1)[1] for resource in allowed["sqs:DeleteMessage"]} == {
        f"chatops-{deployment.stack}-{queue}-dlq" for queue in ("build", "deploy", "status", "echo")
    }
    assert {resource.rsplit("/", 1)[1] for resource in allowed["ssm:GetParameter"]} == {"bot-token"}


def test_ssm_arns_spell_out_the_account_id(deployment: Deployment) -> None:
    for _, statement in _statements(deployment):
        for resource in _listed(statement["Resource"]):
            if resource.startswith("arn:aws:ssm:"):
                assert resource.split(":")[4] == ACCOUNT_ID
                assert "*" not in resource
