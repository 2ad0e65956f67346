"""GitHub REST, the four calls a build needs: resolve a ref, dispatch a workflow, find and follow its run, cancel.

The client speaks to ``api.github.com`` or a GitHub Enterprise server (``https://ghe.example.com/api/v3``): the
base URL is the constructor's ``api_url``, else ``GITHUB_API_URL`` from the environment, else the public API.

Failures are one exception family, :class:`GitHubError`, whose message is one line a person can act on (never
the token). A subclass per thing the caller may handle differently: the token was refused, something was not
found, GitHub rejected the request, GitHub failed, GitHub could not be reached.

Retries (urllib3 ``Retry``) cover transient failures of requests that can be repeated: a GET answered with a 5xx,
and a connection that could not be opened (the request never left). A dispatch is never repeated after it may
have reached GitHub — see :meth:`GitHubClient.dispatch_workflow`.

The run name that carries lock key and correlation id is :mod:`workers.protocol.workflow`'s.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode

import urllib3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import MaxRetryError, NewConnectionError, TimeoutError
from urllib3.util import Retry, Timeout

from workers.protocol.inbound import read_json
from workers.protocol.runs import RunFacts, not_a_dispatch_of
from workers.protocol.workflow import CREATED_AFTER_SLACK, DispatchResult, Run

API_URL_ENV: Final = "GITHUB_API_URL"
DEFAULT_API_URL: Final = "https://api.github.com"
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
MAX_INPUTS: Final = 25
"""GitHub accepts at most 25 ``workflow_dispatch`` inputs."""

_OWNER_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_RETRIED_STATUSES = frozenset({500, 502, 503, 504})
_USER_AGENT = "chatops-locks"


class GitHubError(Exception):
    """GitHub did not do what was asked. ``str(error)`` is one line for a person; ``status`` the HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubAuthError(GitHubError):
    """401/403: the token is missing, wrong, expired, or may not do this."""


class GitHubNotFound(GitHubError):
    """404: no such repository, workflow or run — or the token cannot see it."""


class GitHubRejected(GitHubError):
    """422 (or 409): GitHub understood the request and refused it — bad ref, bad inputs, run already over."""


class GitHubServerError(GitHubError):
    """5xx (after the retries allowed), 429, or an answer we cannot read."""


class GitHubUnreachable(GitHubError):
    """No answer in time, or no connection at all."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any


# ------------------------------------------------------------------------------------------------------ client
class GitHubClient:
    """A GitHub REST client for one token. Thread-safe (urllib3's pool is); reuse one per process.

    ``timeout`` bounds each attempt (connect and read alike); ``retries`` is how many more times an idempotent
    request is tried after a 5xx or a failed connection, ``backoff`` the urllib3 backoff factor between them.
    ``http`` is for a proxy (``urllib3.ProxyManager``) or custom TLS; by default a plain ``PoolManager``.
    """

    def __init__(
        self,
        token: str,
        *,
        api_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int = 2,
        backoff: float = 0.5,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.api_url = (api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        self._token = token
        self.timeout = timeout
        self._http = http or urllib3.PoolManager()
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": _USER_AGENT,
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # Reads: retry a 5xx and a connection that never opened. Not a read timeout — a GitHub that hangs is not
        # given a second chance to hang, so a call takes at most about `timeout` plus short backoffs.
        self._read_retries = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            other=0,
            redirect=3,
            status_forcelist=_RETRIED_STATUSES,
            allowed_methods=frozenset({"GET"}),
            backoff_factor=backoff,
            raise_on_status=False,
            respect_retry_after_header=False,  # a Retry-After of minutes must not stall a Lambda; it becomes an error
        )
        # The dispatch POST creates a run each time it reaches GitHub, so it is repeated only when the connection
        # could not even be opened (urllib3 counts that as `connect`: nothing was sent). Not after a 5xx or a
        # timeout: GitHub may have created the run before failing to answer, and a blind retry would start a
        # second build under one lock. The caller resolves that doubt by looking the run up by correlation id.
        self._send_once = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=0,
            other=0,
            redirect=3,
            allowed_methods=frozenset({"GET"}),  # so a POST is never retried after a read error either
            backoff_factor=backoff,
            raise_on_status=False,
        )
        # Cancelling a run twice is harmless (the second is refused with 409), so cancel retries like a read.
        self._repeatable_post = self._read_retries.new(allowed_methods=frozenset({"GET", "POST"}))

    def __repr__(self) -> str:  # never the token
        return f"GitHubClient(api_url={self.api_url!r})"

    # -------------------------------------------------------------------------------------------- operations
    def resolve_ref(self, owner_repo: str, ref: str | None = None) -> tuple[str, str]:
        """``(ref, sha)``: ``ref`` (a branch, tag or SHA) or the default branch when ``None``, and its commit."""
        repo = _repo_path(owner_repo)
        if not ref:
            answer = self._request("GET", repo, subject=f"repository {owner_repo}")
            ref = str(_field(answer.body, "default_branch", "the repository"))
        answer = self._request("GET", f"{repo}/commits/{quote(ref, safe='')}", subject=f"ref {ref!r} in {owner_repo}")
        return ref, str(_field(answer.body, "sha", "the commit"))

    def dispatch_workflow(self, owner_repo: str, workflow: str, ref: str, inputs: Mapping[str, str]) -> DispatchResult:
        """Start ``workflow`` (file name like ``build.yml``, or id) on branch or tag ``ref`` with ``inputs``.

        Asks for ``return_run_details``: GitHub answers 200 with the run's id and URLs. A server that does not
        know the option answers 204 (the result has no ``run_id``); one that refuses it (422 naming the option)
        is asked again without it, which is safe because a 422 started nothing.

        Sent at most once after it may have reached GitHub (see ``_send_once``). So a :class:`GitHubServerError`
        or :class:`GitHubUnreachable` from here means "unknown": the run may exist — look for it by correlation
        id before calling the dispatch failed or trying again.
        """
        if len(inputs) > MAX_INPUTS:
            raise ValueError(f"GitHub accepts at most {MAX_INPUTS} workflow inputs, not {len(inputs)}")
        if not all(isinstance(value, str) for value in inputs.values()):
            raise ValueError("workflow inputs must all be strings")
        path = f"{_repo_path(owner_repo)}/actions/workflows/{quote(workflow, safe='')}/dispatches"
        subject = f"workflow {workflow} in {owner_repo}"
        body: dict[str, Any] = {"ref": ref, "inputs": dict(inputs), "return_run_details": True}
        try:
            answer = self._request("POST", path, body=body, retries=self._send_once, subject=subject)
        except GitHubRejected as error:
            if "return_run_details" not in str(error):
                raise
            del body["return_run_details"]
            answer = self._request("POST", path, body=body, retries=self._send_once, subject=subject)
        if answer.status == 204 or not isinstance(answer.body, Mapping) or "workflow_run_id" not in answer.body:
            return DispatchResult()
        return DispatchResult(
            run_id=int(answer.body["workflow_run_id"]),
            html_url=answer.body.get("html_url"),
            api_url=answer.body.get("run_url"),
        )

    def find_run(self, owner_repo: str, workflow: str, correlation_id: str, created_after: datetime) -> Run | None:
        """The ``workflow_dispatch`` run of ``workflow`` whose name carries ``correlation_id``, if GitHub lists one.

        The listing asks GitHub for dispatched runs of the workflow, and each run found is checked again all the
        same (:func:`workers.protocol.runs.not_a_dispatch_of`): a name alone is no proof.

        ``created_after`` is a time shortly before the dispatch (aware, or naive UTC). A run can take a few
        seconds to be listed after its dispatch: ``None`` right after dispatching is not proof; see
        :meth:`await_run`.
        """
        since = _as_utc(created_after) - CREATED_AFTER_SLACK
        query = {
            "event": "workflow_dispatch",
            "created": f">={since.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "per_page": "100",
        }
        path = f"{_repo_path(owner_repo)}/actions/workflows/{quote(workflow, safe='')}/runs"
        for page in range(1, 4):  # 300 dispatches of one workflow in a few minutes would be a different problem
            answer = self._request(
                "GET", path, query={**query, "page": str(page)}, subject=f"workflow {workflow} in {owner_repo}"
            )
            runs = _field(answer.body, "workflow_runs", "the run list")
            if not isinstance(runs, list):
                raise GitHubServerError(f"GitHub at {self.api_url} answered a run list we cannot read")
            for listed in runs:
                if not isinstance(listed, Mapping) or not isinstance(listed.get("id"), int):
                    continue
                run = Run.from_json(listed)
                facts = RunFacts.of_run(run)
                if facts.correlation_id == correlation_id and not_a_dispatch_of(facts, workflow, owner_repo) is None:
                    return run
            if len(runs) < 100:
                return None
        return None

    def await_run(
        self,
        owner_repo: str,
        workflow: str,
        correlation_id: str,
        created_after: datetime,
        *,
        within: float = 10.0,
        every: float = 1.0,
    ) -> Run | None:
        """:meth:`find_run` until it finds the run or ``within`` seconds have passed (for the 204 fallback)."""
        deadline = time.monotonic() + within
        while True:
            run = self.find_run(owner_repo, workflow, correlation_id, created_after)
            if run is not None or time.monotonic() + every > deadline:
                return run
            time.sleep(every)

    def get_run(self, owner_repo: str, run_id: int) -> Run:
        """The run as it stands now."""
        answer = self._request(
            "GET", f"{_repo_path(owner_repo)}/actions/runs/{int(run_id)}", subject=f"run {run_id} in {owner_repo}"
        )
        if not isinstance(answer.body, Mapping):
            raise GitHubServerError(f"GitHub at {self.api_url} answered run {run_id} with something we cannot read")
        return Run.from_json(answer.body)

    def cancel_run(self, owner_repo: str, run_id: int) -> bool:
        """Ask GitHub to cancel the run: ``True`` when accepted, ``False`` when the run had already finished (409).

        Cancelling is asynchronous: the run reports ``completed``/``cancelled`` a little later.
        """
        try:
            self._request(
                "POST",
                f"{_repo_path(owner_repo)}/actions/runs/{int(run_id)}/cancel",
                retries=self._repeatable_post,
                subject=f"run {run_id} in {owner_repo}",
            )
        except GitHubRejected as error:
            if error.status == 409:
                return False
            raise
        return True

    # --------------------------------------------------------------------------------------------- transport
    def _request(
        self,
        method: str,
        path: str,
        *,
        subject: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        retries: Retry | None = None,
    ) -> _Answer:
        url = f"{self.api_url}{path}" + (f"?{urlencode(query)}" if query else "")
        headers = dict(self._headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method,
                url,
                body=payload,
                headers=headers,
                retries=retries or self._read_retries,
                timeout=Timeout(connect=self.timeout, read=self.timeout),
            )
        except TransportError as error:  # MaxRetryError, timeouts, refused connections, dropped answers
            raise GitHubUnreachable(self._unreachable(error)) from None
        data = response.data
        try:
            parsed: Any = read_json(data) if data else None
        except ValueError:
            parsed = None
        if response.status < 300:
            return _Answer(response.status, parsed)
        raise self._failure(response.status, parsed, response.headers, subject)

    def _unreachable(self, error: Exception) -> str:
        reason = error.reason if isinstance(error, MaxRetryError) and error.reason else error
        if isinstance(reason, NewConnectionError):  # before TimeoutError: urllib3 makes it a ConnectTimeoutError
            return f"GitHub at {self.api_url} could not be reached (connection refused or no route)"
        if isinstance(reason, TimeoutError):
            return f"GitHub at {self.api_url} did not answer in {self.timeout:g} s"
        return self._redact(f"GitHub at {self.api_url} could not be reached ({type(reason).__name__})")

    def _failure(self, status: int, body: Any, headers: Mapping[str, str], subject: str) -> GitHubError:
        said = self._redact(_message(body))
        quoted = f": {said}" if said else ""
        if status == 401:
            return GitHubAuthError(f"GitHub at {self.api_url} refused the token (401{quoted})", status)
        if status in {403, 429} and (headers.get("x-ratelimit-remaining") == "0" or status == 429):
            resets = headers.get("x-ratelimit-reset", "")
            when = f", resets at {datetime.fromtimestamp(int(resets), UTC):%H:%M:%S}Z" if resets.isdigit() else ""
            return GitHubServerError(f"GitHub at {self.api_url} rate limit reached ({status}{when})", status)
        if status == 403:
            return GitHubAuthError(f"the GitHub token may not act on {subject} (403{quoted})", status)
        if status == 404:
            return GitHubNotFound(f"GitHub has no {subject}, or the token cannot see it (404)", status)
        if status in {409, 422}:
            return GitHubRejected(f"GitHub refused the request on {subject} ({status}{quoted})", status)
        if status >= 500:
            return GitHubServerError(f"GitHub at {self.api_url} failed ({status}{quoted})", status)
        return GitHubError(f"GitHub answered {status} on {subject}{quoted}", status)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


# ------------------------------------------------------------------------------------------------------ pieces
def _repo_path(owner_repo: str) -> str:
    if not _OWNER_REPO.match(owner_repo):
        raise ValueError(f"not an owner/name repository: {owner_repo!r}")
    return f"/repos/{owner_repo}"


def _field(body: Any, name: str, what: str) -> Any:
    if not isinstance(body, Mapping) or name not in body:
        raise GitHubServerError(f"GitHub answered {what} without {name!r}")
    return body[name]


def _message(body: Any) -> str:
    """GitHub's own words: ``message`` plus the ``errors`` details of a 422, on one line."""
    if not isinstance(body, Mapping):
        return ""
    parts = [str(body.get("message") or "")]
    for error in body.get("errors") or []:
        detail = error.get("message") or error.get("code") if isinstance(error, Mapping) else error
        if detail:
            parts.append(str(detail))
    return " — ".join(part for part in parts if part).replace("\n", " ")[:300]


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
