"""Secrets: the plain variable first, else the SSM SecureString it names (moto in-process), never a value logged."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from workers.adapters.secrets import SECRET_NAMES, SecretUnavailable, get_secret
from workers.local.motoserver import LOCAL_CREDENTIALS


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", *SECRET_NAMES, *(f"{n}_PARAM" for n in SECRET_NAMES)):
        monkeypatch.delenv(name, raising=False)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with mock_aws():
        yield
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def test_the_plain_variable_wins(ssm: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-plain")
    monkeypatch.setenv("SLACK_BOT_TOKEN_PARAM", "/chatops/absent")
    assert get_secret("SLACK_BOT_TOKEN") == "xoxb-plain"


def test_a_securestring_parameter_is_read_decrypted_and_cached(
    ssm: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("ssm")
    client.put_parameter(Name="/chatops/signing", Value="s3cret-value", Type="SecureString")
    monkeypatch.setenv("SLACK_SIGNING_SECRET_PARAM", "/chatops/signing")
    assert get_secret("SLACK_SIGNING_SECRET") == "s3cret-value"
    client.put_parameter(Name="/chatops/signing", Value="rotated", Type="SecureString", Overwrite=True)
    assert get_secret("SLACK_SIGNING_SECRET") == "s3cret-value"  # cached for five minutes
    assert "s3cret-value" not in capsys.readouterr().out


def test_an_empty_plain_variable_does_not_count(ssm: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "")
    with pytest.raises(SecretUnavailable, match=r"secret GITHUB_TOKEN: set \$GITHUB_TOKEN or \$GITHUB_TOKEN_PARAM"):
        get_secret("GITHUB_TOKEN")


def test_a_missing_parameter_is_one_named_error(ssm: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET_PARAM", "/chatops/nowhere")
    with pytest.raises(SecretUnavailable) as raised:
        get_secret("GITHUB_WEBHOOK_SECRET")
    message = str(raised.value)
    assert message.startswith("secret GITHUB_WEBHOOK_SECRET: cannot read SSM parameter /chatops/nowhere")
    assert "\n" not in message


def test_no_region_is_one_named_error_too(ssm: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Powertools makes its SSM client before its own error handling: a missing region must still be named."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("SLACK_BOT_TOKEN_PARAM", "/chatops/bot")
    with pytest.raises(SecretUnavailable, match=r"cannot read SSM parameter /chatops/bot: .*region") as raised:
        get_secret("SLACK_BOT_TOKEN")
    assert "\n" not in str(raised.value)
