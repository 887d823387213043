"""``serve``'s HTTP server: wsgiref behind a gate that slow or idle clients cannot exhaust.

A connection reaches a handler thread only once its whole request head has arrived (a gate
thread watches the waiting ones, peeking without reading, and drops those silent past
``head_timeout``); at most ``max_threads`` requests are handled at once; every socket read or
write times out after ``io_timeout``; a request still running after ``request_deadline`` has
its socket shut down. So 300 half-open connections cost 300 file descriptors and no threads.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 70\r\n\r\n"
    b'{"title": "Service Unavailable", "description": "too many requests"}\r\n'
)


class QuietHandler(WSGIRequestHandler):
    """wsgiref's handler, logging at debug level (a request line is no news)."""

    def log_message(self, format: str, *args: Any) -> None:
        """One debug line per request."""
        log.debug("%s %s", self.address_string(), format % args)


class BoundedWSGIServer(WSGIServer):
    """A WSGI server with a head gate, a handler-thread cap and time limits (module doc)."""

    request_queue_size = 128  # the listen backlog: a burst of connections is not turned away

    def __init__(
        self,
        address: tuple[str, int],
        app: Any,
        *,
        max_threads: int = 16,
        max_queued: int = 64,
        max_waiting: int = 1024,
        head_timeout: float = 10.0,
        io_timeout: float = 10.0,
        request_deadline: float = 60.0,
    ) -> None:
        handler = type("Handler", (QuietHandler,), {"timeout": io_timeout})
        super().__init__(address, handler)
        self.set_app(app)
        self.max_threads, self.max_queued, self.max_waiting = max_threads, max_queued, max_waiting
        self.head_timeout, self.request_deadline = head_timeout, request_deadline
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="thumbcache-http")
        self._lock = threading.Lock()
        self._waiting: dict[socket.socket, tuple[float, Any]] = {}  # head not complete yet
        self._running: dict[socket.socket, float] = {}  # in (or queued for) a handler
        self._new: list[tuple[socket.socket, Any]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = threading.Event()
        self._gate = threading.Thread(target=self._watch, name="thumbcache-http-gate", daemon=True)
        self._gate.start()

    # -- socketserver hooks (the accept loop, in serve_forever's thread) -----------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the new connection to the gate; it reaches a thread once its head is in."""
        with self._lock:
            self._new.append((request, client_address))
        self._wake()

    def server_close(self) -> None:
        """Stop the gate, drop waiting connections, let running handlers end on their own."""
        self._closing.set()
        self._wake()
        self._gate.join(timeout=5)
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for sock in [*self._waiting, *(s for s, _ in self._new)]:
                self._drop(sock)
            self._waiting.clear()
            self._new.clear()
        self._wake_r.close()
        self._wake_w.close()

    def in_flight(self) -> tuple[int, int]:
        """(connections waiting for their head, requests running or queued)."""
        with self._lock:
            return len(self._waiting) + len(self._new), len(self._running)

    # -- the gate thread ----------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closed, or its buffer full: the gate wakes anyway
            self._wake_w.send(b"\0")

    def _watch(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        while not self._closing.is_set():
            for key, _ in selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                else:
                    self._check_head(selector, key.fileobj)  # type: ignore[arg-type]
            self._admit(selector)
            self._expire(selector)
        selector.close()

    def _admit(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            new, self._new = self._new, []
        for sock, address in new:
            if len(self._waiting) >= self.max_waiting:  # the oldest waiting one goes
                oldest = min(self._waiting, key=lambda s: self._waiting[s][0])
                self._forget(selector, oldest)
            sock.setblocking(False)
            with self._lock:
                self._waiting[sock] = (time.monotonic(), address)
            selector.register(sock, selectors.EVENT_READ)

    def _check_head(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            head = sock.recv(MAX_HEAD_BYTES, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            head = b""
        if not head or (len(head) >= MAX_HEAD_BYTES and b"\n\r\n" not in head):
            self._forget(selector, sock)  # closed, or a head larger than any we take
        elif b"\n\r\n" in head or b"\n\n" in head:
            selector.unregister(sock)
            with self._lock:
                _, address = self._waiting.pop(sock)
            self._dispatch(sock, address)

    def _dispatch(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(True)
        with self._lock:
            busy = len(self._running) >= self.max_threads + self.max_queued
            if not busy:
                self._running[sock] = time.monotonic()
        if busy:
            try:
                sock.settimeout(1.0)
                sock.recv(MAX_HEAD_BYTES)  # read what came: closing on unread data resets
                sock.sendall(BUSY)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._drop(sock)
            return
        self._pool.submit(self._handle, sock, address)

    def _handle(self, sock: socket.socket, address: Any) -> None:
        try:
            self.finish_request(sock, address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            with self._lock:
                self._running.pop(sock, None)
            self.shutdown_request(sock)

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        with self._lock:
            silent = [s for s, (t, _) in self._waiting.items() if now - t > self.head_timeout]
            overdue = [s for s, t in self._running.items() if now - t > self.request_deadline]
        for sock in silent:
            self._forget(selector, sock)
        for sock in overdue:  # its handler's next read or write fails, and its thread is free
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _forget(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        with self._lock:
            self._waiting.pop(sock, None)
        with contextlib.suppress(OSError):  # read what came: closing on unread data resets
            sock.recv(MAX_HEAD_BYTES)
        self._drop(sock)

    @staticmethod
    def _drop(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()
