"""`chatops serve` in a subprocess, started as a person starts it: its ready line and its description read, then
SIGTERM at the end (and what it said last kept)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(
    r"chatops serve: ready at (http://127\.0\.0\.1:\d+) — DynamoDB at AWS_ENDPOINT_URL=(http://127\.0\.0\.1:\d+)\n"
)


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    url: str
    aws_url: str
    described: str
    """The lines after the ready line, up to "Ctrl-C stops it"."""
    said_last: str = ""
    """What it printed after that, once stopped."""


def clean_environment() -> dict[str, str]:
    """This process's environment without its AWS, Slack, GitHub and chatops settings."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "SLACK_", "GITHUB_")) and name not in {"CHATOPS_CONFIG", "LOCK_TABLE_NAME"}
    }


@contextlib.contextmanager
def chatops_serve(*argv: str, env: Mapping[str, str]) -> Iterator[ServeProcess]:
    """``chatops serve --port 0 ARGV`` in :func:`clean_environment` plus ``env``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "serve", "--port", "0", *argv],
        cwd=ROOT,
        env={**clean_environment(), "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        found = READY.fullmatch(ready)
        assert found, ready
        described = []
        while (line := process.stdout.readline()) and "Ctrl-C" not in line:
            described.append(line)
        serving = ServeProcess(process, found[1], found[2], "".join(described))
        yield serving
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    serving.said_last = out
