"""GitHub on loopback: the stand-in the local stack dispatches to when no ``--github-api-url`` is given.

It answers the REST calls :mod:`workers.adapters.github` makes, from repositories, branches and workflow runs it
keeps in
memory, the way GitHub does:

- ``GET /repos/{o}/{r}`` (``default_branch``), ``GET /repos/{o}/{r}/commits/{ref}`` (``sha``; 422 when the ref
  does not exist);
- ``POST …/actions/workflows/{wf}/dispatches``: a new run, named as the workflow's ``run-name`` would name it
  (:data:`workers.adapters.github.RUN_NAME_EXPRESSION` with the dispatch inputs substituted); answered 200 with
  ``workflow_run_id``/``run_url``/``html_url`` when asked for ``return_run_details``, or 204 — and, depending on
  :class:`RunDetails`, 204 always (an older server) or 422 for the unknown option;
- ``GET …/actions/workflows/{wf}/runs`` (filters ``event``, ``status``, ``branch``, ``created``; paged),
  ``GET …/actions/runs/{id}``, ``POST …/actions/runs/{id}/cancel`` (202, or 409 once completed);
- 401 without the configured token, 404 for unknown repositories, workflows, runs and paths.

Runs move when told (:meth:`GitHubStandIn.start_run`, :meth:`GitHubStandIn.complete_run`) or by themselves
after ``complete_after`` seconds, and each move is reported to the listeners — :func:`webhook_sender` turns that
into signed ``workflow_run`` webhooks, as GitHub sends them. Faults (5xx, 401, hangs…) come from
:class:`~workers.local.standin.StandInServer`.

Why here and not under ``tests/``: ``chatops serve`` and ``chatops demo`` run it as the product's GitHub when
there is none; the tests use the very same stand-in, so what the demo shows is what the tests prove.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import unquote

import urllib3

from workers.adapters.github import MAX_INPUTS
from workers.local.standin import RecordedRequest, Reply, StandInServer
from workers.protocol.workflow import RUN_NAME_EXPRESSION

log = logging.getLogger(__name__)

WorkflowRunListener = Callable[[str, Mapping[str, Any]], None]
"""Called with the ``workflow_run`` action (``requested``, ``in_progress``, ``completed``) and the run's JSON."""

_EXPRESSION = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")
_FIRST_RUN_ID = 7_000_001


class RunDetails(Enum):
    """How the stand-in treats ``return_run_details`` on a dispatch."""

    RETURNED = "returned"
    """As github.com since 2026: 200 with the run's id and URLs when asked, else 204."""
    IGNORED = "ignored"
    """As a server that does not know the option: 204 always."""
    REFUSED = "refused"
    """As a server that validates the body strictly: 422 naming the option."""


@dataclass
class Repository:
    """A repository the stand-in knows: its branches (name → commit SHA) and workflow files."""

    full_name: str
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)
    workflows: tuple[str, ...] = ("build.yml", "deploy.yml")

    def __post_init__(self) -> None:
        self.branches.setdefault(self.default_branch, fake_sha(self.full_name, self.default_branch))

    def commit_of(self, ref: str) -> str | None:
        """The SHA a branch name (or ``refs/heads/…``) or a full SHA of a branch head points to."""
        name = ref.removeprefix("refs/heads/")
        if name in self.branches:
            return self.branches[name]
        return ref if ref in self.branches.values() else None


@dataclass
class WorkflowRun:
    id: int
    repository: str
    workflow: str
    name: str
    head_branch: str
    head_sha: str
    inputs: dict[str, Any]
    created_at: str
    updated_at: str
    html_url: str
    url: str
    status: str = "queued"
    conclusion: str | None = None
    event: str = "workflow_dispatch"

    def to_json(self) -> dict[str, Any]:
        """The run as GitHub's REST API and ``workflow_run`` webhooks show it (the fields we use, and a few)."""
        return {
            "id": self.id,
            "name": self.name,
            "display_title": self.name,
            "path": f".github/workflows/{self.workflow}",
            "workflow_id": workflow_id(self.repository, self.workflow),
            "head_branch": self.head_branch,
            "head_sha": self.head_sha,
            "event": self.event,
            "status": self.status,
            "conclusion": self.conclusion,
            "html_url": self.html_url,
            "url": self.url,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "run_started_at": self.created_at,
            "repository": {"full_name": self.repository},
            "head_repository": {"full_name": self.repository},
        }


def workflow_id(repository: str, workflow: str) -> int:
    """A stable numeric id for a repository's workflow file, as GitHub gives each workflow one."""
    return int(hashlib.sha1(f"{repository}:{workflow}".encode(), usedforsecurity=False).hexdigest()[:8], 16)


def fake_sha(*parts: str) -> str:
    """A stable 40-hex commit SHA for a repository's branch."""
    return hashlib.sha1(":".join(parts).encode(), usedforsecurity=False).hexdigest()


def render_run_name(template: str, inputs: Mapping[str, Any], workflow: str) -> str:
    """What GitHub shows as the run's name: the ``run-name`` with inputs substituted (missing ones empty),
    or the workflow's name when that leaves nothing."""
    rendered = _EXPRESSION.sub(lambda match: str(inputs.get(match[1], "")), template).strip()
    return rendered or workflow.rsplit(".", 1)[0]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(status: int, message: str) -> Reply:
    return Reply(status, {"message": message, "documentation_url": "https://docs.github.com/rest"})


_NOT_FOUND = _message(404, "Not Found")


class GitHubStandIn(StandInServer):
    """GitHub's REST API for dispatching and following workflow runs, in memory, on ``127.0.0.1``.

    ``token``: when set, requests must carry it (``Authorization: Bearer …``), else 401 "Bad credentials".
    ``path_prefix``: ``"/api/v3"`` to look like GitHub Enterprise. ``complete_after``: seconds after which a
    dispatched run completes with ``conclusion`` by itself (``None``: only when told).
    """

    name = "GitHub stand-in"

    def __init__(
        self,
        repositories: Iterable[Repository] = (),
        *,
        token: str | None = None,
        run_details: RunDetails = RunDetails.RETURNED,
        run_name_template: str = RUN_NAME_EXPRESSION,
        path_prefix: str = "",
        complete_after: float | None = None,
        conclusion: str = "success",
        port: int = 0,
    ) -> None:
        super().__init__(port)
        self.repositories = {repo.full_name: repo for repo in repositories}
        self.token = token
        self.run_details = run_details
        self.run_name_template = run_name_template
        self.path_prefix = path_prefix.rstrip("/")
        self.complete_after = complete_after
        self.conclusion = conclusion
        self._runs: dict[int, WorkflowRun] = {}
        self._next_id = _FIRST_RUN_ID
        self._listeners: list[WorkflowRunListener] = []
        # Events are delivered in order, one at a time, by one thread — as GitHub's webhooks arrive after the
        # request that caused them, not inside it. `None` stops the thread.
        self._events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._delivery = threading.Thread(target=self._deliver, name=f"{self.name} events", daemon=True)
        self._delivery.start()

    @property
    def api_url(self) -> str:
        """The base URL to give :class:`workers.adapters.github.GitHubClient`."""
        return f"{self.url}{self.path_prefix}"

    def add_repository(self, full_name: str, **options: Any) -> Repository:
        repo = Repository(full_name, **options)
        with self._lock:
            self.repositories[full_name] = repo
        return repo

    def stop(self) -> None:
        super().stop()  # also ends the runs' lifecycles, which wait on the same stop event
        self._events.put(None)
        self._delivery.join()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every run event so far has been delivered; ``False`` if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._events.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # ------------------------------------------------------------------------------------------------ runs
    @property
    def runs(self) -> list[WorkflowRun]:
        """Every run dispatched so far, oldest first (snapshots)."""
        with self._lock:
            return [WorkflowRun(**vars(run)) for run in self._runs.values()]

    def run(self, run_id: int) -> WorkflowRun:
        with self._lock:
            return WorkflowRun(**vars(self._runs[run_id]))

    def on_workflow_run(self, listener: WorkflowRunListener) -> None:
        """Call ``listener(action, run_json)`` on every run event, in order, from the stand-in's delivery thread."""
        with self._lock:
            self._listeners.append(listener)

    def trigger_run(self, full_name: str, workflow: str, event: str, title: str, branch: str | None = None) -> int:
        """A run GitHub starts on its own for ``event`` (``push``, ``pull_request``…), not dispatched: it has no
        inputs, and ``title`` (a commit message, a pull request's title — chosen by whoever wrote it) is its name."""
        with self._lock:
            repo = self.repositories[full_name]
            head = branch or repo.default_branch
            run_id, self._next_id = self._next_id, self._next_id + 1
            now = _now()
            run = WorkflowRun(
                id=run_id,
                repository=full_name,
                workflow=workflow,
                name=title,
                head_branch=head,
                head_sha=repo.branches.get(head, fake_sha(full_name, head)),
                inputs={},
                created_at=now,
                updated_at=now,
                html_url=f"{self.url}/{full_name}/actions/runs/{run_id}",
                url=f"{self.api_url}/repos/{full_name}/actions/runs/{run_id}",
                event=event,
            )
            self._runs[run_id] = run
            self._events.put(("requested", run.to_json()))
        return run_id

    def start_run(self, run_id: int) -> None:
        """The run leaves the queue: ``in_progress``."""
        self._move(run_id, "in_progress", None)

    def complete_run(self, run_id: int, conclusion: str = "success") -> None:
        """The run ends with ``conclusion`` (``success``, ``failure``, ``cancelled``, ``timed_out``, …)."""
        self._move(run_id, "completed", conclusion)

    def _move(self, run_id: int, status: str, conclusion: str | None) -> None:
        with self._lock:
            run = self._runs[run_id]
            if run.status in {"completed", status}:
                return
            run.status, run.conclusion, run.updated_at = status, conclusion, _now()
            self._events.put((status, run.to_json()))  # inside the lock: events queue in the order of the moves

    def _deliver(self) -> None:
        while (event := self._events.get()) is not None:
            action, run = event
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    listener(action, run)
                except Exception:  # a listener's failure is its own; the run still moved
                    log.exception("workflow_run listener failed on %s of run %s", action, run.get("id"))
            self._events.task_done()
        self._events.task_done()

    def _live(self, run_id: int, after: float, conclusion: str) -> None:
        """A run on its own: in progress at once, completed ``after`` seconds later (unless stopped first)."""
        self.start_run(run_id)
        if not self._stopping.wait(after):
            self.complete_run(run_id, conclusion)

    # --------------------------------------------------------------------------------------------- answers
    def answer(self, request: RecordedRequest) -> Reply:
        if self.token is not None:
            given = request.headers.get("authorization", "")
            if given not in (f"Bearer {self.token}", f"token {self.token}"):
                return _message(401, "Bad credentials")
        path = request.path
        if self.path_prefix:
            if not path.startswith(self.path_prefix + "/"):
                return _NOT_FOUND
            path = path[len(self.path_prefix) :]
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if len(parts) < 3 or parts[0] != "repos":
            return _NOT_FOUND
        with self._lock:
            repo = self.repositories.get(f"{parts[1]}/{parts[2]}")
        if repo is None:
            return _NOT_FOUND
        rest = parts[3:]
        match request.method, rest:
            case "GET", []:
                return Reply(200, {"full_name": repo.full_name, "default_branch": repo.default_branch})
            case "GET", ["commits", *ref] if ref:
                return self._commit(repo, "/".join(ref))
            case "POST", ["actions", "workflows", workflow, "dispatches"]:
                return self._dispatch(repo, workflow, request.body)
            case "GET", ["actions", "workflows", workflow, "runs"]:
                return self._list_runs(repo, workflow, request.query)
            case "GET", ["actions", "runs", run_id] if run_id.isdigit():
                return self._get_run(repo, int(run_id))
            case "POST", ["actions", "runs", run_id, "cancel"] if run_id.isdigit():
                return self._cancel(repo, int(run_id))
        return _NOT_FOUND

    def _commit(self, repo: Repository, ref: str) -> Reply:
        sha = repo.commit_of(ref)
        if sha is None:
            return _message(422, f"No commit found for SHA: {ref}")
        return Reply(200, {"sha": sha, "html_url": f"{self.url}/{repo.full_name}/commit/{sha}"})

    def _dispatch(self, repo: Repository, workflow: str, body: Any) -> Reply:
        if workflow not in repo.workflows:
            return _NOT_FOUND
        if not isinstance(body, Mapping) or not isinstance(body.get("ref"), str):
            return _message(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        wants_details = bool(body.get("return_run_details"))
        if wants_details and self.run_details is RunDetails.REFUSED:
            return _message(422, 'Invalid request.\n\n"return_run_details" is not a permitted key.')
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, Mapping):
            return _message(422, "Invalid request.\n\nFor 'properties/inputs', is not an object.")
        if len(inputs) > MAX_INPUTS:
            return _message(422, f"you may only define up to {MAX_INPUTS} `inputs` for a `workflow_dispatch` event")
        ref = body["ref"].removeprefix("refs/heads/")
        if ref not in repo.branches:
            return _message(422, f"No ref found for: {body['ref']}")
        now = _now()
        with self._lock:
            run_id, self._next_id = self._next_id, self._next_id + 1
            run = WorkflowRun(
                id=run_id,
                repository=repo.full_name,
                workflow=workflow,
                name=render_run_name(self.run_name_template, inputs, workflow),
                head_branch=ref,
                head_sha=repo.branches[ref],
                inputs=dict(inputs),
                created_at=now,
                updated_at=now,
                html_url=f"{self.url}/{repo.full_name}/actions/runs/{run_id}",
                url=f"{self.api_url}/repos/{repo.full_name}/actions/runs/{run_id}",
            )
            self._runs[run_id] = run
            self._events.put(("requested", run.to_json()))
        if self.complete_after is not None:
            args = (run_id, self.complete_after, self.conclusion)
            threading.Thread(target=self._live, args=args, name=f"run {run_id}", daemon=True).start()
        if wants_details and self.run_details is RunDetails.RETURNED:
            return Reply(200, {"workflow_run_id": run_id, "run_url": run.url, "html_url": run.html_url})
        return Reply(204)

    def _list_runs(self, repo: Repository, workflow: str, query: Mapping[str, str]) -> Reply:
        if workflow not in repo.workflows:
            return _NOT_FOUND
        with self._lock:
            runs = [
                r.to_json() for r in self._runs.values() if r.repository == repo.full_name and r.workflow == workflow
            ]
        for name in ("event", "status", "head_branch"):
            wanted = query.get("branch" if name == "head_branch" else name)
            if wanted:
                runs = [r for r in runs if r[name] == wanted or (name == "status" and r["conclusion"] == wanted)]
        created = query.get("created", "")
        if created:
            runs = [r for r in runs if _created_matches(r["created_at"], created)]
        runs.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
        per_page = min(int(query.get("per_page", "30")), 100)
        page = max(int(query.get("page", "1")), 1)
        return Reply(200, {"total_count": len(runs), "workflow_runs": runs[(page - 1) * per_page : page * per_page]})

    def _get_run(self, repo: Repository, run_id: int) -> Reply:
        with self._lock:
            run = self._runs.get(run_id)
            found = run.to_json() if run is not None and run.repository == repo.full_name else None
        return Reply(200, found) if found else _NOT_FOUND

    def _cancel(self, repo: Repository, run_id: int) -> Reply:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.repository != repo.full_name:
                return _NOT_FOUND
            if run.status == "completed":
                return _message(409, "Cannot cancel a workflow run that is completed.")
        self.complete_run(run_id, "cancelled")
        return Reply(202, {})


def _created_matches(created_at: str, condition: str) -> bool:
    """GitHub's ``created`` qualifier on ISO timestamps: ``>=T``, ``>T``, ``<=T``, ``<T``, ``A..B`` or a prefix."""
    for operator, holds in ((">=", str.__ge__), ("<=", str.__le__), (">", str.__gt__), ("<", str.__lt__)):
        if condition.startswith(operator):
            return bool(holds(created_at, _normal(condition[len(operator) :])))
    if ".." in condition:
        low, high = condition.split("..", 1)
        return _normal(low) <= created_at <= _normal(high) or created_at.startswith(high)
    return created_at.startswith(condition)


def _normal(moment: str) -> str:
    """``2026-11-27T09:00:00+00:00`` and ``…Z`` compare as the stored ``…Z`` strings do."""
    return moment.replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------------- webhooks
def webhook_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_sender(url: str, secret: str, *, timeout: float = 5.0) -> WorkflowRunListener:
    """A listener that POSTs each run event to ``url`` as GitHub's signed ``workflow_run`` webhook."""
    http = urllib3.PoolManager()

    def send(action: str, run: Mapping[str, Any]) -> None:
        body = json.dumps(
            {
                "action": action,
                "workflow_run": dict(run),
                "workflow": {"path": run.get("path", "")},
                "repository": run.get("repository", {}),
            }
        ).encode()
        response = http.request(
            "POST",
            url,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/stand-in",
                "X-GitHub-Event": "workflow_run",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": webhook_signature(secret, body),
            },
            timeout=timeout,
            retries=False,
        )
        if response.status >= 300:
            log.warning("webhook %s of run %s: %s answered %s", action, run.get("id"), url, response.status)

    return send
