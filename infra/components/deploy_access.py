"""What a deploy workflow needs from AWS for its fencing check: a managed policy, and optionally the role."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import policies
from infra.settings import GITHUB_OIDC_HOST, DeployRole

GITHUB_OIDC_URL: Final = f"https://{GITHUB_OIDC_HOST}"


@dataclass(frozen=True)
class DeployAccessArgs:
    prefix: str
    lock_table_arn: pulumi.Input[str]
    repositories: Sequence[str]
    """``owner/name`` of every repository whose workflows the role trusts."""
    role: DeployRole | None = None
    """``None``: only the policy; adopters attach it to a role of their own."""


class DeployAccess(pulumi.ComponentResource):
    """The managed policy ``<prefix>-fencing-check`` — ``dynamodb:GetItem`` on the lock table, nothing else — that
    the role a deploy workflow assumes needs for ``chatops locks check``.

    With ``chatops:deployRole.create``, also the role ``<prefix>-deploy`` with that policy attached, assumable only
    through GitHub's OIDC provider, only with a token for STS, only by the configured repositories' workflows
    whose ``sub`` matches one of the configured subjects (``repo:<owner>/<name>:environment:<env>`` by default: the
    example's deploy job names its environment). The provider is the account's existing one when its ARN is given
    (IAM allows one per URL and account); otherwise this stack makes it. Attach what the deploy itself needs to the
    role yourself (``aws iam attach-role-policy``): this stack owns only the fencing check.
    """

    def __init__(self, name: str, args: DeployAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:iam:DeployAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.policy = aws.iam.Policy(
            f"{name}-fencing-check",
            name=f"{args.prefix}-fencing-check",
            description="ChatOps fencing check (chatops locks check): read the lock table, nothing else",
            policy=policies.document([policies.fencing_check(args.lock_table_arn)]),
            opts=child,
        )
        self.policy_arn: pulumi.Output[str] = self.policy.arn
        self.role_arn: pulumi.Output[str] | None = None
        self.provider_arn: pulumi.Input[str] | None = None
        if args.role is not None:
            self.provider_arn = args.role.oidc_provider_arn or self._make_github_provider(name)
            subjects = [f"repo:{repo}:{subject}" for repo in args.repositories for subject in args.role.subjects]
            role = aws.iam.Role(
                f"{name}-role",
                name=f"{args.prefix}-deploy",
                description=f"Assumed by the deploy workflows of {', '.join(args.repositories)} (GitHub OIDC)",
                assume_role_policy=policies.github_oidc_trust(self.provider_arn, subjects),
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-role-fencing-check", role=role.name, policy_arn=self.policy.arn, opts=child
            )
            self.role_arn = role.arn
        self.register_outputs({"policyArn": self.policy_arn, "roleArn": self.role_arn})

    def _make_github_provider(self, name: str) -> pulumi.Output[str]:
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-github",
            url=GITHUB_OIDC_URL,
            client_id_lists=[policies.GITHUB_OIDC_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return provider.arn
