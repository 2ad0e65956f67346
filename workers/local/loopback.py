"""HTTP on 127.0.0.1 for the local stack: how the router's front and the stand-ins take a request in.

Both are the standard library's threading server with three things changed, so that a burst of callers and a
careless one are answered rather than dropped or waited on forever:

- the listen backlog (:data:`REQUEST_QUEUE_SIZE`) holds a burst: ``socketserver``'s is 5, and the connections
  beyond it are reset while the accepting thread is busy — most of 100 simultaneous requests were;
- every read and write on a connection gives up after :data:`READ_TIMEOUT_SECONDS`, so a client that announces
  more body than it sends gets a 408, and one that sends nothing holds a thread for that long only;
- the body is read by its ``Content-Length`` alone, and what cannot be read is answered with one line and a 4xx:
  411 no length (or a chunked body), 400 a length that is not a number, 413 more than :data:`MAX_BODY_BYTES`,
  408 fewer bytes than announced. A method or HTTP version the server does not speak is a 405 or a 400, not
  the standard library's 501 or 505: the caller's mistake, not the server's.

A subclass of :class:`LoopbackHandler` says what to answer in :meth:`~LoopbackHandler.respond`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

log = logging.getLogger(__name__)

REQUEST_QUEUE_SIZE: Final = 1024
"""Connections the kernel holds while they wait to be accepted (Linux caps it at ``net.core.somaxconn``)."""
READ_TIMEOUT_SECONDS: Final = 5.0
MAX_BODY_BYTES: Final = 6 * 1024 * 1024
"""Lambda's limit on a synchronous invocation's payload, which a Function URL request must fit in."""
_DISCARD_BYTES: Final = 16 * 1024 * 1024
"""At most this much of a refused body is read and dropped, so that closing the connection does not reset it
before the client has read the refusal."""
_LENGTH = re.compile(r"[0-9]{1,15}")
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})


class LoopbackServer(ThreadingHTTPServer):
    """A thread per connection, none of which keeps the process alive; a backlog that holds a burst."""

    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", port), handler)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@dataclass(frozen=True)
class Answer:
    """What to send back: a status, headers, and the body as bytes."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


class Unreadable(Exception):
    """The request's body cannot be read: answered with ``status`` and ``why``, then the connection closes.
    ``unread``: bytes of body still on their way, read and dropped after the answer."""

    def __init__(self, status: HTTPStatus, why: str, unread: int = 0) -> None:
        super().__init__(why)
        self.status, self.why, self.unread = status, why, unread


class LoopbackHandler(BaseHTTPRequestHandler):
    """Reads the request's body as described above, then sends what :meth:`respond` answers."""

    timeout = READ_TIMEOUT_SECONDS  # StreamRequestHandler puts it on the socket: no read or write waits longer
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"
    default_request_version = "HTTP/1.0"  # so that a request line too garbled to name one is answered with a status

    def respond(self, body: bytes) -> Answer | None:
        """The answer to ``self.command`` on ``self.path`` with ``self.headers`` and ``body``; ``None``: close the
        connection without one."""
        raise NotImplementedError

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except Unreadable as refusal:
            with contextlib.suppress(OSError):  # the client may be gone already
                self.send_error(refusal.status, refusal.why)
                self._discard(refusal.unread)
            self.close_connection = True
            return
        try:
            answer = self.respond(body)
        except Exception:  # a bug of ours: one 500 and the traceback in the log, never a hung client
            log.exception("%s %s failed", self.command, self.path)
            answer = Answer(500, b"500 the local server failed; see its log\n")
        if answer is None:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:  # the client went away first (its own timeout, a reset)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _read_body(self) -> bytes:
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding"):
            raise Unreadable(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
        if not lengths:
            if self.command in _WITH_BODY:
                raise Unreadable(HTTPStatus.LENGTH_REQUIRED, f"a {self.command} needs a Content-Length")
            return b""
        if len(set(lengths)) > 1 or not _LENGTH.fullmatch(lengths[0].strip()):
            raise Unreadable(HTTPStatus.BAD_REQUEST, "the Content-Length is not one number of bytes")
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            raise Unreadable(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY_BYTES} bytes", length)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise Unreadable(
                HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {READ_TIMEOUT_SECONDS:g} s"
            ) from None
        if len(body) < length:  # the client closed its side early
            raise Unreadable(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length")
        return body

    def _discard(self, length: int) -> None:
        """Read and drop up to ``length`` bytes (at most :data:`_DISCARD_BYTES`) of a refused body."""
        remaining = min(length, _DISCARD_BYTES)
        while remaining > 0 and (chunk := self.rfile.read1(min(remaining, 65536))):
            remaining -= len(chunk)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The standard library's 501 (a method it has no do_ for) and 505 (HTTP/2 and later, in plain text) are
        # the caller's mistakes: answered as such.
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed"
        elif code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code = HTTPStatus.BAD_REQUEST
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the router logs each request, stand-ins record
        pass
