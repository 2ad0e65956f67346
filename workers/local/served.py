"""How ``chatops try`` finds the ``chatops serve`` running on the same machine: one small file per port.

``chatops serve`` writes ``<run dir>/serve-<port>.json`` once it is ready and removes it when it stops: its URL,
its Slack stand-in's (where ``try`` hands out ``response_url``\\s and reads what was posted) and the Slack signing
secret when it was generated for the run — never one that came from the environment. The run directory is
``$XDG_RUNTIME_DIR/chatops``, else ``~/.cache/chatops``; the directory is the user's alone (0700), the file too
(0600).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

DEFAULT_PORT: Final = 3000
DEFAULT_URL: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
"""Where ``chatops serve`` listens unless told (``--port``), and ``chatops try`` looks unless told (``--url``)."""


@dataclass(frozen=True)
class Served:
    """A running ``chatops serve``, as it describes itself."""

    url: str
    """Its HTTP front, ``http://127.0.0.1:<port>``."""
    slack_url: str | None
    """Its built-in Slack stand-in; ``None`` when replies go to a Slack of ``--slack-api-url``."""
    signing_secret: str | None
    """The Slack signing secret generated for this run; ``None`` when it came from ``SLACK_SIGNING_SECRET``."""
    pid: int


def run_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(base) / "chatops"


def card_path(url: str) -> Path:
    return run_dir() / f"serve-{urlsplit(url).port}.json"


def write(served: Served) -> Path:
    path = card_path(served.url)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as card:
        json.dump(asdict(served), card)
    os.replace(temporary, path)  # whole or not at all, for a reader that comes at the wrong moment
    return path


def read(url: str) -> Served | None:
    """What the ``chatops serve`` at ``url`` wrote; ``None`` when none did (or what it wrote cannot be read)."""
    try:
        data = json.loads(card_path(url).read_text(encoding="utf-8"))
        return Served(
            url=str(data["url"]),
            slack_url=data["slack_url"] and str(data["slack_url"]),
            signing_secret=data["signing_secret"] and str(data["signing_secret"]),
            pid=int(data["pid"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(served: Served) -> None:
    path = card_path(served.url)
    current = read(served.url)
    if current is not None and current.pid == served.pid:  # not a newer serve's on the same port
        path.unlink(missing_ok=True)
