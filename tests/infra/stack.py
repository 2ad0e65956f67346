"""The Pulumi program run under Pulumi's mocks: no CLI, no provider plugin, no cloud.

:func:`deploy` loads a stack's configuration into ``pulumi.runtime.set_all_config`` (as the CLI would pass it:
strings, objects as JSON), runs ``infra/__main__.py`` afresh inside a stack, and hands back every resource the
program registered (type, logical name, inputs with their camelCase wire names, and the state the mocks
answered) and the stack's outputs, resolved.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
REGION = "ca-central-1"
PROJECT = "chatops"


@dataclass(frozen=True)
class Resource:
    typ: str
    name: str
    inputs: Mapping[str, Any]
    state: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.state[key]


@dataclass
class Deployment:
    stack: str
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Resource]:
        return [resource for resource in self.resources if resource.typ == typ]

    def one(self, typ: str, name: str) -> Resource:
        (found,) = (r for r in self.resources if r.typ == typ and r.name == name)
        return found

    def arns(self) -> set[str]:
        return {str(r.state[key]) for r in self.resources for key in ("arn", "streamArn") if key in r.state}


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers each new resource with its inputs plus the ids, ARNs and URLs AWS would give it."""

    def __init__(self, deployment: Deployment, region: str = REGION, account_id: str = ACCOUNT_ID) -> None:
        self.deployment = deployment
        self.region = region
        self.account_id = account_id

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        physical = str(state.get("name") or args.name)
        account, region = self.account_id, self.region
        arn = {
            "aws:dynamodb/table:Table": f"arn:aws:dynamodb:{region}:{account}:table/{physical}",
            "aws:sqs/queue:Queue": f"arn:aws:sqs:{region}:{account}:{physical}",
            "aws:cloudwatch/logGroup:LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{physical}",
            "aws:iam/role:Role": f"arn:aws:iam::{account}:role/{physical}",
            "aws:lambda/function:Function": f"arn:aws:lambda:{region}:{account}:function:{physical}",
            "aws:sns/topic:Topic": f"arn:aws:sns:{region}:{account}:{physical}",
            "aws:cloudwatch/eventRule:EventRule": f"arn:aws:events:{region}:{account}:rule/{physical}",
            "aws:iam/policy:Policy": f"arn:aws:iam::{account}:policy/{physical}",
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": (
                f"arn:aws:iam::{account}:oidc-provider/{str(state.get('url', '')).removeprefix('https://')}"
            ),
            "aws:ssm/parameter:Parameter": f"arn:aws:ssm:{region}:{account}:parameter/{physical.lstrip('/')}",
        }.get(args.typ)
        identifier = f"{physical}-id"
        if arn:
            state["arn"] = arn
        if args.typ == "aws:dynamodb/table:Table" and state.get("streamEnabled"):
            state["streamArn"] = f"{arn}/stream/2026-01-01T00:00:00.000"
        if args.typ == "aws:sqs/queue:Queue":
            identifier = state["url"] = f"https://sqs.{region}.amazonaws.com/{account}/{physical}"
        if args.typ == "aws:iam/role:Role":
            identifier = physical
        if args.typ == "aws:lambda/function:Function":
            identifier = physical
        if args.typ == "aws:lambda/functionUrl:FunctionUrl":
            state["functionUrl"] = f"https://abcdefghijklmnop.lambda-url.{region}.on.aws/"
        self.deployment.resources.append(Resource(args.typ, args.name, dict(args.inputs), state))
        return identifier, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account_id,
                "arn": f"arn:aws:iam::{self.account_id}:user/deployer",
                "id": self.account_id,
                "userId": "AIDEXAMPLE",
            }, []
        if args.token == "aws:index/getRegion:getRegion":
            return {
                "region": self.region,
                "name": self.region,
                "id": self.region,
                "description": "Canada (Central)",
                "endpoint": f"ec2.{self.region}.amazonaws.com",
            }, []
        raise NotImplementedError(f"no mock for the invoke {args.token}")


def stack_files() -> dict[str, Path]:
    """Every ``Pulumi.<stack>.yaml`` of the repository, by stack name."""
    return {path.name.split(".")[1]: path for path in sorted(ROOT.glob("Pulumi.*.yaml"))}


def stack_config(stack: str) -> dict[str, Any]:
    """A stack file's ``config``, keys as written (``chatops:components``, ``aws:region``)."""
    document = yaml.safe_load(stack_files()[stack].read_text(encoding="utf-8"))
    return dict(document["config"])


def deploy(stack: str, config: Mapping[str, Any], secret_keys: Collection[str] = ()) -> Deployment:
    """Run the program for ``stack`` with ``config`` (a stack file's ``config`` mapping) under the mocks;
    ``secret_keys``: the keys the CLI would pass as secrets (set with ``pulumi config set --secret``)."""
    deployment = Deployment(stack)
    region = str(config.get("aws:region", REGION))
    # A fresh root stack each run (set_mocks keeps the last one): outputs of an earlier deployment never linger.
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(RecordingMocks(deployment, region=region), project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(
        {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()},
        list(secret_keys),
    )
    original_warn = pulumi.log.warn

    def warn(message: str, *args: Any, **kwargs: Any) -> None:
        deployment.warnings.append(message)

    pulumi.log.warn = warn  # type: ignore[assignment]
    try:
        sys.modules.pop("infra.__main__", None)
        _sync_await(pulumi.runtime.stack.run_pulumi_func(lambda: importlib.import_module("infra.__main__") and None))
    finally:
        pulumi.log.warn = original_warn
    root = pulumi.runtime.settings.get_root_resource()
    assert isinstance(root, pulumi.runtime.stack.Stack)
    for name, value in root.outputs.items():
        deployment.outputs[name] = _sync_await(pulumi.Output.from_input(value).future())
    return deployment
