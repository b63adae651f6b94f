"""A TCP proxy a test puts in front of PostgreSQL or RabbitMQ, then cuts and restores, as a network fault would.

Point wch at :attr:`FaultProxy.url` (or :meth:`FaultProxy.address`) instead of
the real server. :meth:`cut` resets every open connection and refuses new ones
(``reset``), or keeps accepting and forwards nothing (``blackhole``: clients
hang until their own timeouts, as behind a dead link). :meth:`restore` lets
traffic through again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

BUFFER = 64 * 1024


class FaultProxy:
    """Forwards connections from a free local port to ``host:port``.

    Parameters:
      host, port: the real server.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode = "open"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._blackholed: set[socket.socket] = set()  # connections that lost data: never resumed
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"fault-proxy-{self.port}", daemon=True)

    @classmethod
    def for_url(cls, url: str, *, default_port: int) -> FaultProxy:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or default_port)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- faults -------------------------------------------------------------

    def cut(self, *, mode: str = "reset") -> None:
        """Break the link: ``reset`` open connections and refuse new ones, or ``blackhole`` them."""
        if mode not in ("reset", "blackhole"):
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self._mode = mode
            doomed = list(self._sockets)
        if mode == "reset":
            for sock in doomed:
                _reset(sock)

    def restore(self) -> None:
        """Let traffic through again; connections cut meanwhile stay closed, as after a real outage."""
        with self._lock:
            self._mode = "open"
            doomed = list(self._blackholed)
        for sock in doomed:
            _reset(sock)

    @property
    def connections(self) -> int:
        """Client connections open through the proxy right now."""
        with self._lock:
            return len(self._sockets) // 2

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            doomed = list(self._sockets)
        for sock in doomed:
            _reset(sock)

    # -- forwarding ---------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "reset":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
                if mode == "blackhole":
                    self._blackholed.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(BUFFER)
                if not data:
                    break
                with self._lock:
                    if self._mode == "blackhole":
                        self._blackholed.update((source, sink))
                    swallowed = source in self._blackholed
                if swallowed:
                    continue  # as by a dead link
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _reset(sock)
            with self._lock:
                self._sockets.difference_update((source, sink))
                self._blackholed.difference_update((source, sink))


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, so the other side learns at once that the connection is gone."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # close() alone does nothing to the connection while a pump thread is
    # blocked in recv() on it (the kernel keeps the socket until recv returns),
    # so an idle connection would survive the cut; shutdown() ends it at once.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
