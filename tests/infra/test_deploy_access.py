"""The turnkey deploy under mocks: the stack's secrets written to SSM and nowhere else, the fencing-check policy
(exactly what ``chatops locks check`` calls), the deploy role GitHub's OIDC token may assume, and the repository
variables the example workflows read, with the commands that set them."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pulumi
import pytest
from moto import mock_aws
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from infra import github_variables
from infra.roster import SECRETS
from infra.settings import SECRET_KEYS, default_parameter_name
from lockcore.dynamodb import DynamoDBLockStore
from lockcore.machine import AcquireRequest
from tests.infra.conftest import Deploy
from tests.infra.stack import ACCOUNT_ID, Deployment, stack_config
from workers.cli.main import main as chatops

PARAMETER = "aws:ssm/parameter:Parameter"
FUNCTION = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/policy:Policy"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
SECRET_VALUES = {
    "slackSigningSecret": "8f14e45fceea167a5a36dedd4bea2543",
    "slackBotToken": "xoxb-0000-stack-secret",
    "githubToken": "github_pat_stack_secret_0000",
    "githubWebhookSecret": "c9f0f895fb98ab9159f51fd0297e236d",
}


def _everything_but_parameter_values(deployment: Deployment) -> str:
    """Every input of every resource, the outputs and the warnings, as text — the parameters' values left out."""
    inputs = [
        {key: value for key, value in r.inputs.items() if not (r.typ == PARAMETER and key == "value")}
        for r in deployment.resources
    ]
    return json.dumps([inputs, deployment.outputs, deployment.warnings], default=str)


# ------------------------------------------------------------------------------------------------- secrets
def test_stack_secrets_become_secure_strings_whose_values_stay_secret(deploy_stack: Deploy) -> None:
    deployment = deploy_stack("plt", secrets=SECRET_VALUES)
    names = stack_config("plt")["chatops:ssmParameters"]
    parameters = {p.inputs["name"]: p.inputs for p in deployment.of_type(PARAMETER)}
    assert set(parameters) == set(names.values())
    for secret in SECRETS:
        written = parameters[names[secret]]
        assert written["type"] == "SecureString" and written["overwrite"] is True
        assert "keyId" not in written  # aws/ssm: the key the functions' kms:Decrypt through SSM expects
        assert is_rpc_secret(written["value"]), f"{secret} reached the provider as plain text"
        assert unwrap_rpc_secret(written["value"]) == SECRET_VALUES[SECRET_KEYS[secret]]
    elsewhere = _everything_but_parameter_values(deployment)
    for value in SECRET_VALUES.values():
        assert value not in elsewhere
    assert deployment.outputs["ssmParameterNames"] == names


def test_a_secret_not_in_the_stack_is_a_parameter_made_by_hand(deploy_stack: Deploy, deployment: Deployment) -> None:
    one_held = deploy_stack("plt", secrets={"githubToken": SECRET_VALUES["githubToken"]})
    names = stack_config("plt")["chatops:ssmParameters"]
    assert [p.inputs["name"] for p in one_held.of_type(PARAMETER)] == [names["GITHUB_TOKEN"]]
    functions = {f.inputs["name"]: f.inputs["environment"]["variables"] for f in one_held.of_type(FUNCTION)}
    router = functions["chatops-plt-router"]
    assert router["SLACK_SIGNING_SECRET_PARAM"] == names["SLACK_SIGNING_SECRET"]  # read from the hand-made one
    assert not deployment.of_type(PARAMETER)  # no stack secret at all: every parameter is made by hand


def test_a_secret_key_set_in_plain_text_is_refused_without_repeating_it(deploy_stack: Deploy) -> None:
    refusal = r"^Pulumi stack plt: chatops:githubToken: stored in plain text"
    with pytest.raises(pulumi.RunError, match=refusal) as refused:
        deploy_stack("plt", plain={"githubToken": SECRET_VALUES["githubToken"]})
    assert SECRET_VALUES["githubToken"] not in str(refused.value)
    assert "--secret" in str(refused.value)


def test_without_parameter_names_each_secret_is_at_its_default_name(deploy_stack: Deploy) -> None:
    deployment = deploy_stack("plt", ssmParameters=None, secrets=SECRET_VALUES)
    expected = {secret: default_parameter_name("plt", secret) for secret in SECRETS}
    assert expected["GITHUB_TOKEN"] == "/chatops/plt/github-token"
    assert {p.inputs["name"] for p in deployment.of_type(PARAMETER)} == set(expected.values())
    functions = {f.inputs["name"]: f.inputs["environment"]["variables"] for f in deployment.of_type(FUNCTION)}
    assert functions["chatops-plt-build"]["GITHUB_TOKEN_PARAM"] == "/chatops/plt/github-token"
    arn = f"arn:aws:ssm:ca-central-1:{ACCOUNT_ID}:parameter/chatops/plt/github-token"
    assert arn in json.dumps([p.inputs["policy"] for p in deployment.of_type("aws:iam/rolePolicy:RolePolicy")])


# ------------------------------------------------------------------------------------------ fencing check
def _fencing_policy(deployment: Deployment) -> dict[str, Any]:
    [policy] = deployment.of_type(POLICY)
    assert policy.inputs["name"] == f"chatops-{deployment.stack}-fencing-check"
    document: dict[str, Any] = json.loads(policy.inputs["policy"])
    return document


def test_the_fencing_policy_reads_the_lock_table_and_nothing_else(deployment: Deployment) -> None:
    [statement] = _fencing_policy(deployment)["Statement"]
    locks = next(t for t in deployment.of_type("aws:dynamodb/table:Table") if t.name == "locks")
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == (
        "Allow",
        ["dynamodb:GetItem"],
        [locks["arn"]],
    )
    assert deployment.outputs["fencingCheckPolicyArn"] == f"arn:aws:iam::{ACCOUNT_ID}:policy/chatops-plt-fencing-check"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The AWS operations made while the test runs (recorded at botocore's edge, answered by moto)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "ca-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    made: list[str] = []
    original: Callable[..., Any] = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private

    def recording(client: Any, operation: str, params: Any) -> Any:
        made.append(f"{client.meta.service_model.endpoint_prefix}:{operation}")
        return original(client, operation, params)

    with mock_aws():
        monkeypatch.setattr("botocore.client.BaseClient._make_api_call", recording)
        yield made


def test_the_fencing_policy_allows_exactly_what_chatops_locks_check_calls(
    deployment: Deployment, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = stack_config(deployment.stack)["chatops:lockTableName"]
    store = DynamoDBLockStore(table, client=boto3.client("dynamodb"))
    store.create_table()
    store.acquire(AcquireRequest("deploy-api-prod", "req-1", 600, "U0ALICE", "alice", "api", "prod"))
    monkeypatch.setenv("LOCK_TABLE_NAME", table)
    calls.clear()
    assert chatops(["locks", "check", "deploy-api-prod", "--token", "1"]) == 0
    assert chatops(["locks", "check", "deploy-api-prod", "--token", "2"]) == 4
    [statement] = _fencing_policy(deployment)["Statement"]
    assert set(calls) == set(statement["Action"])


# --------------------------------------------------------------------------------------------- deploy role
def _trust(role: Any) -> dict[str, Any]:
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert isinstance(statement, dict)
    return statement


def test_the_deploy_role_trusts_only_the_repositorys_jobs_in_the_configured_environments(
    deployment: Deployment,
) -> None:
    config = stack_config(deployment.stack)
    [role] = [r for r in deployment.of_type(ROLE) if r.inputs["name"] == "chatops-plt-deploy"]
    [provider] = deployment.of_type(PROVIDER)
    assert provider.inputs == {
        "url": "https://token.actions.githubusercontent.com",
        "clientIdLists": ["sts.amazonaws.com"],
    }
    trust = _trust(role)
    assert trust["Principal"] == {"Federated": provider["arn"]}
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"]["StringEquals"] == {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
    repository = config["chatops:github"]["repository"]
    assert trust["Condition"]["StringLike"] == {
        "token.actions.githubusercontent.com:sub": [
            f"repo:{repository}:environment:{environment}" for environment in config["chatops:environments"]
        ]
    }
    [attached] = deployment.of_type(ATTACHMENT)
    assert attached.inputs == {"role": "chatops-plt-deploy", "policyArn": deployment.outputs["fencingCheckPolicyArn"]}
    assert deployment.outputs["deployRoleArn"] == role["arn"]


def test_an_existing_oidc_provider_is_used_and_none_is_made(deploy_stack: Deploy) -> None:
    existing = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"
    deployment = deploy_stack(
        "plt", deployRole={"create": True, "oidcProviderArn": existing, "subjects": ["ref:refs/heads/main"]}
    )
    assert not deployment.of_type(PROVIDER)
    [role] = [r for r in deployment.of_type(ROLE) if r.inputs["name"] == "chatops-plt-deploy"]
    trust = _trust(role)
    assert trust["Principal"] == {"Federated": existing}
    assert trust["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"] == [
        "repo:example-org/platform:ref:refs/heads/main"
    ]


def test_without_the_switch_there_is_the_policy_and_no_role(deploy_stack: Deploy) -> None:
    deployment = deploy_stack("plt", deployRole=None)
    assert not deployment.of_type(PROVIDER) and not deployment.of_type(ATTACHMENT)
    assert "chatops-plt-deploy" not in {r.inputs["name"] for r in deployment.of_type(ROLE)}
    assert deployment.of_type(POLICY) and "deployRoleArn" not in deployment.outputs
    assert "DEPLOY_ROLE_ARN" not in deployment.outputs["githubVariables"]
    [warning] = deployment.warnings
    assert warning.startswith("githubVariables lacks DEPLOY_ROLE_ARN (set chatops:deployRole.create: true")


@pytest.mark.parametrize(
    ("role", "refused"),
    [
        ({"create": True, "oidcProviderArn": "arn:aws:iam::123:oidc-provider/x"}, r"deployRole\.oidcProviderArn"),
        ({"create": True, "subjects": ["repo:someone-else/repo:*"]}, r"deployRole\.subjects"),
        ({"create": True, "trust": "everyone"}, r"deployRole\.trust: unknown key"),
        ({"create": False, "subjects": ["environment:prod"]}, r"need create: true"),
        ({"create": "yes"}, r"deployRole\.create: expected true or false"),
    ],
)
def test_a_deploy_role_that_would_trust_the_wrong_thing_is_refused_by_key(
    deploy_stack: Deploy, role: dict[str, Any], refused: str
) -> None:
    with pytest.raises(pulumi.RunError, match=rf"^Pulumi stack plt: chatops:.*{refused}"):
        deploy_stack("plt", deployRole=role)


# ---------------------------------------------------------------------------------- repository variables
def _variables_the_examples_read() -> set[str]:
    return {name for path in EXAMPLES.glob("*.yml") for name in re.findall(r"vars\.([A-Z_]+)", path.read_text("utf-8"))}


def test_the_outputs_are_every_variable_the_example_workflows_read(deployment: Deployment) -> None:
    assert set(github_variables.NAMES) == _variables_the_examples_read()
    config = stack_config(deployment.stack)
    assert deployment.outputs["githubVariables"] == {
        "DEPLOY_ROLE_ARN": f"arn:aws:iam::{ACCOUNT_ID}:role/chatops-{deployment.stack}-deploy",
        "CHATOPS_REPOSITORY": config["chatops:cli"]["repository"],
        "CHATOPS_VERSION": config["chatops:cli"]["version"],
        "AWS_REGION": config["aws:region"],
        "LOCK_TABLE_NAME": config["chatops:lockTableName"],
    }
    assert not deployment.warnings


def _run_with_a_recording_gh(script: str, tmp_path: Path) -> list[list[str]]:
    """Run ``script`` with sh, a ``gh`` on the PATH that records its arguments (one JSON list per call)."""
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(
        '#!/usr/bin/env python3\nimport json, sys\nwith open(sys.argv[0] + ".log", "a") as f:\n'
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n",
        encoding="utf-8",
    )
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    environment = {**os.environ, "PATH": f"{gh.parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", "-eu"], input=script, text=True, check=True, env=environment)
    return [json.loads(line) for line in gh.with_name("gh.log").read_text(encoding="utf-8").splitlines()]


def test_the_printed_commands_set_each_variable_in_each_repository(deploy_stack: Deploy, tmp_path: Path) -> None:
    # A value with a space and a quote: the commands must survive the shell exactly.
    deployment = deploy_stack("plt", cli={"repository": "example-org/chatops-locks", "version": "v0.1.0 it's"})
    script = deployment.outputs["githubVariableCommands"]
    calls = _run_with_a_recording_gh(script, tmp_path)
    set_to = {}
    for call in calls:
        assert call[:2] == ["variable", "set"] and call[3:5] == ["--repo", "example-org/platform"], call
        assert call[5] == "--body"
        set_to[call[2]] = call[6]
    assert set_to == deployment.outputs["githubVariables"]
    assert set_to["CHATOPS_VERSION"] == "v0.1.0 it's"


def test_a_components_own_repository_is_trusted_by_the_role_and_given_the_variables(
    deploy_stack: Deploy, tmp_path: Path
) -> None:
    config = stack_config("plt")
    github = {**config["chatops:github"], "components": {"api": {"repository": "example-org/api"}}}
    deployment = deploy_stack("plt", github=github)
    repositories = ("example-org/api", "example-org/platform")
    [role] = [r for r in deployment.of_type(ROLE) if r.inputs["name"] == "chatops-plt-deploy"]
    assert _trust(role)["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"] == [
        f"repo:{repository}:environment:{environment}"
        for repository in repositories
        for environment in config["chatops:environments"]
    ]
    calls = _run_with_a_recording_gh(deployment.outputs["githubVariableCommands"], tmp_path)
    for repository in repositories:
        assert {call[2] for call in calls if call[4] == repository} == set(deployment.outputs["githubVariables"])
