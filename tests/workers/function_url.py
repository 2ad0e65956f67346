"""Real-shaped Lambda Function URL (payload 2.0) events, signed the way Slack and GitHub sign theirs.

The signatures are computed here from the published specs (Slack v0: HMAC-SHA256 over
``v0:<timestamp>:<body>``; GitHub: HMAC-SHA256 over the body), not with the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
WEBHOOK_SECRET = "github-webhook-test-secret"
RESPONSE_URL = "https://hooks.slack.com/commands/T0TEAM/1234/abcd"


def slack_signature(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slack_headers(body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": str(at),
        "x-slack-signature": slack_signature(body, at, secret),
        "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


def github_headers(
    body: bytes, *, event: str = "workflow_run", delivery: str = "d-1", secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "user-agent": "GitHub-Hookshot/abc",
    }


def slash_form(text: str = "router plt", command: str = "/build", **fields: str) -> str:
    """A slash-command body as Slack posts it."""
    form = {
        "token": "deprecated-verification-token",
        "team_id": "T0TEAM",
        "team_domain": "example",
        "channel_id": "C0CHAN",
        "channel_name": "builds",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": command,
        "text": text,
        "api_app_id": "A0APP",
        "is_enterprise_install": "false",
        "response_url": RESPONSE_URL,
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    }
    form.update(fields)
    return urlencode(form)


def interaction_form(action_id: str = "unlock.confirm", value: str = "build-router-plt:3", **fields: Any) -> str:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0ADMIN", "username": "admin", "name": "admin", "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "deprecated",
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0CHAN", "is_ephemeral": True},
        "trigger_id": "555.666.abcdef",
        "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": "C0CHAN", "name": "builds"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/xyz",
        "actions": [
            {"action_id": action_id, "block_id": "unlock", "type": "button", "value": value, "action_ts": "1.3"}
        ],
    }
    payload.update(fields)
    return urlencode({"payload": json.dumps(payload)})


def event(
    path: str,
    body: str | bytes,
    headers: dict[str, str],
    *,
    method: str = "POST",
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """A Function URL invocation event (payload format 2.0)."""
    raw = body.encode() if isinstance(body, str) else body
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.ca-central-1.on.aws", **headers},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.ca-central-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "3.3.3.3",
                "userAgent": headers.get("user-agent", "test"),
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:10:00:00 +0000",
            "timeEpoch": 1767261600000,
        },
        "body": base64.b64encode(raw).decode() if base64_encoded else raw.decode("utf-8", "surrogateescape"),
        "isBase64Encoded": base64_encoded,
    }
