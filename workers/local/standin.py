"""A stand-in for a remote HTTP service: a real server on loopback that records what it receives and can fail.

The GitHub and Slack stand-ins (:mod:`workers.local.github`, :mod:`workers.local.slack`) are built on
it. They serve the local stack (``chatops serve`` / ``chatops demo``) and the tests alike: the clients under test
speak real HTTP to them, as they would to the real services, so nothing of ours is ever mocked.

Each stand-in runs a :class:`~workers.local.loopback.LoopbackServer` on ``127.0.0.1`` (port 0 by default: the OS
picks a free one) in a daemon thread. Every request is recorded (method, path, query, headers, body parsed as JSON
or form) before it is answered. ``fail_next`` queues faults that the next matching requests get instead of their
answer: an HTTP status with a body, or a hang (no answer for a while, then the connection closes) to run a client
into its timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from workers.local.loopback import Answer, LoopbackHandler, LoopbackServer


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    """Without the query string."""
    query: Mapping[str, str]
    """The last value of each query parameter."""
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: Any
    """The JSON body parsed; a form body as a dict of last values; otherwise the text (``""`` when empty)."""
    raw: bytes = b""
    """The body as received (to check a signature over it)."""
    received_at: float = field(default_factory=time.monotonic)
    """When it was received (``time.monotonic()``): how long a reply took to arrive, for the benchmark."""


@dataclass(frozen=True)
class Reply:
    """An answer: a status and a JSON body (``None``: empty; ``str``: sent as plain text)."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """What the next ``count`` matching requests get instead of their answer."""

    count: int
    reply: Reply | None
    """``None``: hang for ``hang_seconds``, then close without answering."""
    hang_seconds: float = 0.0
    method: str | None = None
    path_contains: str | None = None
    performed: bool = False
    """The request is carried out all the same, and only its answer replaced (an answer lost on the way back)."""

    def matches(self, request: RecordedRequest) -> bool:
        return (self.method is None or request.method == self.method) and (
            self.path_contains is None or self.path_contains in request.path
        )


class StandInServer:
    """The HTTP plumbing, recording and faults; a subclass decides the answers in :meth:`answer`."""

    name = "stand-in"

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._server = LoopbackServer(port, _handler_for(self))
        # A short poll interval: `stop` (the server's shutdown) waits for it, in every test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )

    # ------------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        return self._server.url

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path_contains: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def clear(self) -> None:
        """Forget the recorded requests (not the state, not the faults)."""
        with self._lock:
            self._requests.clear()

    # -------------------------------------------------------------------------------------------- faults
    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        performed: bool = False,
    ) -> None:
        """Answer the next ``count`` requests (of ``method``, to a path containing ``path_contains``) with
        ``status`` and ``body`` (default: ``{"message": "<status> from the stand-in"}``). ``performed``: each is
        carried out first, as a server that did the work and then failed to say so."""
        reply = Reply(
            status, body if body is not None else {"message": f"{status} from the {self.name}"}, headers or {}
        )
        with self._lock:
            self._faults.append(Fault(count, reply, method=method, path_contains=path_contains, performed=performed))

    def hang_next(
        self, count: int = 1, *, seconds: float = 5.0, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Leave the next ``count`` matching requests unanswered for ``seconds``, then drop the connection."""
        with self._lock:
            self._faults.append(Fault(count, None, seconds, method=method, path_contains=path_contains))

    # ---------------------------------------------------------------------------------------------- answers
    def answer(self, request: RecordedRequest) -> Reply:
        """The stand-in's behaviour. Called from the server's threads: hold ``self._lock`` around shared state."""
        raise NotImplementedError

    def _serve(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            self._requests.append(request)
            fault = next((f for f in self._faults if f.count > 0 and f.matches(request)), None)
            if fault is not None:
                fault.count -= 1
                self._faults = [f for f in self._faults if f.count > 0]
        if fault is None:
            return self.answer(request)
        if fault.reply is None:
            self._stopping.wait(fault.hang_seconds)
            return None
        if fault.performed:
            self.answer(request)
        return fault.reply


def _parse_body(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        return {name: values[-1] for name, values in parse_qs(text, keep_blank_values=True).items()}
    return text


def _handler_for(stand_in: StandInServer) -> type[LoopbackHandler]:
    class Handler(LoopbackHandler):
        server_version = stand_in.name

        def respond(self, body: bytes) -> Answer | None:
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query={name: values[-1] for name, values in parse_qs(parts.query).items()},
                headers={name.lower(): value for name, value in self.headers.items()},
                body=_parse_body(body, self.headers.get("Content-Type", "")),
                raw=body,
            )
            try:
                reply = stand_in._serve(request)
            except Exception as error:  # a bug in a stand-in must show as a 500, not as a hung client
                reply = Reply(500, {"message": f"{stand_in.name} failed: {error!r}"})
            if reply is None:
                return None
            headers = dict(reply.headers)
            if reply.body is not None:
                kind = "text/plain" if isinstance(reply.body, str) else "application/json"
                headers["Content-Type"] = f"{kind}; charset=utf-8"
            return Answer(reply.status, b"" if reply.body is None else _encode(reply.body), headers)

    return Handler


def _encode(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()
