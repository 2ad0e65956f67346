"""A moto server on loopback whose DynamoDB requests run one at a time.

DynamoDB performs each single-item write atomically; moto's threaded server does not (its FAQ: it is not built
for concurrent access), so two racing conditional writes on one key can both succeed there. Serialising the
DynamoDB requests restores the property our lock relies on, so that races on the local stack are decided by the
store's atomicity, as in AWS, and never by luck. Other services (SQS long polls) are not serialised.

Run as a program (``python -m workers.local.motoserver``) it prints ``READY <url>`` and serves until
stopped; tests start it in a subprocess so that its state is never shared with an in-process ``mock_aws``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LOCAL_CREDENTIALS = {
    # moto accepts any credentials; these keep boto3 from looking for real ones.
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "ca-central-1",
}


class SerialisedDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, the whole response produced inside the lock."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._mutex = threading.Lock()
        self.dynamodb_requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._mutex:
            self.dynamodb_requests += 1
            return list(self._app(environ, start_response))


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *_: Any, **__: Any) -> None:
        pass


class LocalAWS:
    """moto on 127.0.0.1 in a background thread of this process."""

    def __init__(self, port: int = 0, *, middleware: Callable[[WSGIApp], WSGIApp] | None = None) -> None:
        """``middleware`` wraps the app as served: a fault injected at the wire (tests)."""
        self.app = SerialisedDynamoDB(DomainDispatcherApplication(create_backend_app))
        served = middleware(self.app) if middleware is not None else self.app
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, served, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalAWS:
        self._thread.start()
        return self

    def stop(self) -> None:
        # moto keeps its state per process, shared with any other moto in it (an in-process mock_aws, another
        # LocalAWS): what this stack made must not outlive it.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=5)  # noqa: S310 - our own loopback server
        self._server.shutdown()
        self._thread.join()

    def __enter__(self) -> LocalAWS:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def use_local_credentials() -> None:
    """Dummy credentials and a region for talking to the local stack, unless the environment has them."""
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = LocalAWS(args.port).start()
    print(f"READY {server.url}", flush=True)
    try:
        sys.stdin.read()  # serve until our parent closes our stdin (or we are killed)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
