"""What the router's cold start imports: what every request needs to be acknowledged, and nothing more.

The router answers Slack within 3 s; a cold Lambda spends part of that importing. The benchmark (`nox -s bench`)
measures the time; this holds the reason it is short, without a clock: in a fresh interpreter, importing the
router loads neither boto3 (the SQS client comes with the first send), nor slack_sdk (only a user-group lookup
needs it), nor the workers' runtime, lock store or Powertools utilities.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_ON_THE_ACK_PATH = (
    "boto3",
    "botocore.client",
    "botocore.session",
    "s3transfer",
    "slack_sdk",
    "urllib3",
    "lockcore",
    "workers.adapters.runtime",
    "workers.adapters.github",
    "workers.adapters.slack",
    "workers.flows",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.parameters",
)


def imported_by(module: str) -> set[str]:
    """Every module a fresh interpreter holds after importing ``module``."""
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_importing_the_router_loads_nothing_that_only_some_requests_or_the_workers_need() -> None:
    loaded = imported_by("workers.handlers.router")
    assert "workers.handlers.router" in loaded and "workers.adapters.queues" in loaded
    assert sorted(m for m in loaded if m.startswith(NOT_ON_THE_ACK_PATH)) == []


def test_the_build_worker_still_loads_what_it_uses() -> None:
    """The other side of the same check: it does see a module that is loaded."""
    loaded = imported_by("workers.handlers.build")
    assert {"boto3", "slack_sdk", "lockcore", "workers.adapters.runtime"} <= loaded
