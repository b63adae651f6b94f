"""What the fake servers in ``tests/support`` share: an HTTP server on a free local port, on a thread of its own."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps connections alive and logs nothing (tests read the fakes' records instead)."""

    protocol_version = "HTTP/1.1"  # keep-alive, so the clients' connection pools are exercised

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


class LocalServer:
    """The base of a fake: :meth:`serve` starts it on 127.0.0.1, :meth:`stop` ends it and wakes delayed answers."""

    def __init__(self) -> None:
        self._closing = threading.Event()  # set at stop: answers a test delayed return at once
        self._server: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                         daemon=True).start()

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections when a pool of senders connects at once.
    request_queue_size = 256
    daemon_threads = True
    block_on_close = False
