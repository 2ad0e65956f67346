"""The secrets the stack holds (``pulumi config set --secret``), written to their SSM SecureString parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.roster import Secret


@dataclass(frozen=True)
class StackSecretsArgs:
    parameters: Mapping[Secret, str]
    """Secret → the name of its parameter (``chatops:ssmParameters``, or the default)."""
    values: Mapping[Secret, pulumi.Output[str]]
    """The secrets the stack holds, as Pulumi's secret outputs; a secret not here is a parameter made by hand."""


class StackSecrets(pulumi.ComponentResource):
    """One SecureString parameter per secret the stack holds, encrypted with the account's ``aws/ssm`` key — the
    key the functions' ``kms:Decrypt`` (through SSM, for these parameters only) expects.

    The value never leaves Pulumi's secrets: it is a secret output from the stack's encrypted configuration, the
    provider keeps ``value`` secret in the state, and ``additional_secret_outputs`` says so again. ``overwrite``:
    a parameter made by hand before under the same name is taken over on the first ``pulumi up`` (and deleted with
    the stack), so moving from a hand-made parameter to a stack secret is one ``pulumi config set --secret``.
    """

    def __init__(self, name: str, args: StackSecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("chatops:secrets:StackSecrets", name, None, opts)
        self.parameters = {
            secret: aws.ssm.Parameter(
                f"{name}-{secret.lower().replace('_', '-')}",
                name=args.parameters[secret],
                type="SecureString",
                value=value,
                overwrite=True,
                description=f"{secret} for ChatOps, from the stack's encrypted configuration",
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["value"]),
            )
            for secret, value in sorted(args.values.items())
        }
        self.register_outputs({"parameters": {secret: p.name for secret, p in self.parameters.items()}})
