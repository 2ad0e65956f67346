"""A GitHub Actions run, as the workers know it: the dispatch inputs that name it, the name that carries them back,
and what is read of a run.

``workflow_dispatch`` runs do not show their inputs anywhere the rest of the system can see them later (the
``workflow_run`` webhook has no inputs), so the lock key and the correlation id travel in the run's *name*,
which each workflow sets from its inputs::

    run-name: "${{ inputs.lock_key }} · cid=${{ inputs.correlation_id }}"

giving e.g. ``build-router-plt · cid=13345224609.738474920``. :func:`run_name` writes it (and is what the local
GitHub stand-in renders), :func:`parse_run_name` reads it back from a run or a webhook payload — which is how a
redelivered dispatch finds the run it already started, and how the completion webhook finds its lock without a
table scan. :data:`RUN_NAME_EXPRESSION` is the line to put in a workflow file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

LOCK_KEY_INPUT: Final = "lock_key"
CORRELATION_ID_INPUT: Final = "correlation_id"
"""The dispatch inputs the run name is made of; a workflow must declare both."""

RUN_NAME_SEPARATOR: Final = " · cid="
RUN_NAME_EXPRESSION: Final = "${{ inputs.lock_key }} · cid=${{ inputs.correlation_id }}"
"""The workflow's ``run-name:`` value, in GitHub's expression syntax."""

CREATED_AFTER_SLACK: Final = timedelta(minutes=2)
"""How far before ``created_after`` :meth:`GitHubClient.find_run` still looks, for clock skew between us and
GitHub. Free: the match is on the correlation id, never on the time."""

_NAME_PART = r"[A-Za-z0-9._:/@+-]+"  # lock keys (build-router-plt) and Slack trigger ids (123.456.abc)
_RUN_NAME = re.compile(rf"(?P<key>{_NAME_PART}){re.escape(RUN_NAME_SEPARATOR)}(?P<cid>{_NAME_PART})\s*$")


# --------------------------------------------------------------------------------------------------- run names
def run_name(lock_key: str, correlation_id: str) -> str:
    """The run name a workflow renders from its inputs: ``build-router-plt · cid=abc123``.

    Both parts are single words of letters, digits and ``. _ : / @ + -`` so that the name parses back; anything
    else is a programming error (``ValueError``).
    """
    for what, part in (("lock key", lock_key), ("correlation id", correlation_id)):
        if not re.fullmatch(_NAME_PART, part):
            raise ValueError(f"{what} {part!r} cannot go in a run name: use letters, digits and . _ : / @ + -")
    return f"{lock_key}{RUN_NAME_SEPARATOR}{correlation_id}"


def parse_run_name(name: str | None) -> tuple[str, str] | None:
    """``(lock_key, correlation_id)`` from a run's ``name`` / ``display_title``; ``None`` for any other run.

    The convention may follow other words (``Deploy build-api-prod · cid=abc``): only the end of the name counts.
    """
    match = _RUN_NAME.search(name or "")
    return (match["key"], match["cid"]) if match else None


# ------------------------------------------------------------------------------------------------------ errors


# ------------------------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class Run:
    """A workflow run, as much of it as the workers use."""

    id: int
    name: str
    """The run name (the workflow's ``run-name``), which carries lock key and correlation id."""
    status: str
    """``queued``, ``in_progress``, ``completed`` (also ``waiting``, ``pending``, ``requested``)."""
    conclusion: str | None
    """When completed: ``success``, ``failure``, ``cancelled``, ``timed_out``, … otherwise ``None``."""
    html_url: str
    created_at: str
    updated_at: str
    head_sha: str = ""
    head_branch: str = ""
    event: str = ""
    """What started it: ``workflow_dispatch`` for ours; ``push``, ``pull_request``… for runs GitHub started."""
    display_title: str = ""
    path: str = ""
    """The workflow file: ``.github/workflows/build.yml``."""
    workflow_id: int | None = None
    repository: str = ""
    """owner/name."""
    run_attempt: int = 1
    """1 for the first attempt; a re-run of the same run id counts up."""

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def lock_key(self) -> str | None:
        parsed = parse_run_name(self.name)
        return parsed[0] if parsed else None

    @property
    def correlation_id(self) -> str | None:
        parsed = parse_run_name(self.name)
        return parsed[1] if parsed else None

    @classmethod
    def from_json(cls, run: Mapping[str, Any]) -> Run:
        """From GitHub's run object (REST answers and the ``workflow_run`` webhook payload alike)."""
        return cls(
            id=int(run["id"]),
            name=str(run.get("name") or run.get("display_title") or ""),
            status=str(run.get("status") or ""),
            conclusion=run.get("conclusion") or None,
            html_url=str(run.get("html_url") or ""),
            created_at=str(run.get("created_at") or ""),
            updated_at=str(run.get("updated_at") or ""),
            head_sha=str(run.get("head_sha") or ""),
            head_branch=str(run.get("head_branch") or ""),
            event=str(run.get("event") or ""),
            display_title=str(run.get("display_title") or ""),
            path=str(run.get("path") or ""),
            workflow_id=_whole_number(run.get("workflow_id")),
            repository=str(_object(run.get("repository")).get("full_name") or ""),
            run_attempt=_whole_number(run.get("run_attempt")) or 1,
        )


def _whole_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class DispatchResult:
    """What a dispatch answered. Without ``run_id`` (a server that answers 204), find the run by correlation id
    with :meth:`GitHubClient.find_run` / :meth:`GitHubClient.await_run`."""

    run_id: int | None = None
    html_url: str | None = None
    """The run's page, for people."""
    api_url: str | None = None

    @property
    def has_run(self) -> bool:
        return self.run_id is not None
