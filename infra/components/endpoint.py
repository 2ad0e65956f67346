"""The router's HTTPS endpoint: a Lambda Function URL that Slack and GitHub call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

SLACK_COMMANDS_PATH: Final = "slack/commands"
SLACK_INTERACTIONS_PATH: Final = "slack/interactions"
SLACK_EVENTS_PATH: Final = "slack/events"
GITHUB_WEBHOOK_PATH: Final = "github/webhook"


@dataclass(frozen=True)
class HttpsEndpointArgs:
    function_name: pulumi.Input[str]


class HttpsEndpoint(pulumi.ComponentResource):
    """A Function URL with no AWS authentication: Slack and GitHub cannot sign AWS requests, so the router
    authenticates every request itself (Slack's v0 signature, GitHub's ``X-Hub-Signature-256``) before it does
    anything. A Function URL passes every path to its function: the router serves ``/slack/commands``,
    ``/slack/interactions``, ``/slack/events`` and ``/github/webhook``.

    Public invocation takes two permissions on the function: ``lambda:InvokeFunctionUrl`` (auth type NONE) and,
    since October 2025, ``lambda:InvokeFunction`` limited to calls through the Function URL."""

    def __init__(self, name: str, args: HttpsEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:http:HttpsEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.function_url = aws.lambda_.FunctionUrl(
            name, function_name=args.function_name, authorization_type="NONE", opts=child
        )
        aws.lambda_.Permission(
            f"{name}-invoke-url",
            function=args.function_name,
            action="lambda:InvokeFunctionUrl",
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-invoke-via-url",
            function=args.function_name,
            action="lambda:InvokeFunction",
            principal="*",
            invoked_via_function_url=True,
            opts=child,
        )
        base = self.function_url.function_url  # ends with "/"
        self.url: pulumi.Output[str] = base
        self.slack_commands_url = pulumi.Output.concat(base, SLACK_COMMANDS_PATH)
        self.slack_interactions_url = pulumi.Output.concat(base, SLACK_INTERACTIONS_PATH)
        self.slack_events_url = pulumi.Output.concat(base, SLACK_EVENTS_PATH)
        self.github_webhook_url = pulumi.Output.concat(base, GITHUB_WEBHOOK_PATH)
        self.register_outputs(
            {
                "url": self.url,
                "slackCommandsUrl": self.slack_commands_url,
                "slackInteractionsUrl": self.slack_interactions_url,
                "slackEventsUrl": self.slack_events_url,
                "githubWebhookUrl": self.github_webhook_url,
            }
        )
