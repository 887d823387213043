"""``serve``'s HTTP server over real sockets: slow clients hold no threads, handlers are capped,
and every phase of a request has a time limit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon.testing
from thumbcache.settings import Settings
from thumbcache.state.store import Store
from thumbcache_control.http_server import BoundedWSGIServer
from thumbcache_status.app import create_app

HALF_OPEN = 300


@contextmanager
def running(app: Any, **limits: Any) -> Iterator[BoundedWSGIServer]:
    """The server on a free loopback port, serving from a thread, for the block."""
    httpd = BoundedWSGIServer(("127.0.0.1", 0), app, **limits)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def get(port: int, path: str, timeout: float = 5.0) -> bytes:
    """One whole request; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def half_open(port: int, count: int) -> list[socket.socket]:
    """Connections that send part of a request head and then nothing (slow loris)."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    return socks


def test_300_half_open_connections_hold_no_thread_and_a_request_is_still_served(
    fresh: tuple[Store, Settings],
) -> None:
    store, settings = fresh
    before = threading.active_count()
    with running(create_app(store, settings), max_threads=8) as httpd:
        socks = half_open(httpd.server_port, HALF_OPEN)
        try:
            deadline = time.monotonic() + 10
            while httpd.in_flight() != (HALF_OPEN, 0):  # the gate takes them all
                assert time.monotonic() < deadline, httpd.in_flight()
                time.sleep(0.05)
            started = time.monotonic()
            answer = get(httpd.server_port, "/v1/jobs")
            took = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.0 200"), answer[:80]
            assert took < 2.0
            # Only the server's own threads: serve_forever, the gate, at most 8 handlers.
            assert threading.active_count() - before <= 2 + 8
        finally:
            for s in socks:
                s.close()


def test_a_connection_silent_past_the_head_timeout_is_closed(
    fresh: tuple[Store, Settings],
) -> None:
    store, settings = fresh
    with running(create_app(store, settings), head_timeout=0.5) as httpd:
        (sock,) = half_open(httpd.server_port, 1)
        with sock:
            started = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server
            assert time.monotonic() - started < 3.0
        assert httpd.in_flight() == (0, 0)


class Slow:
    """A WSGI app that takes its time and records how many requests it served at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now, self.peak = seconds, 0, 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def test_handlers_are_capped_and_the_overflow_is_refused_at_once() -> None:
    app = Slow(0.3)
    with running(app, max_threads=3, max_queued=3) as httpd:
        answers: list[bytes] = []

        def one() -> None:
            answers.append(get(httpd.server_port, "/"))

        clients = [threading.Thread(target=one) for _ in range(12)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(10)
    assert app.peak == 3
    ok = [a for a in answers if a.startswith(b"HTTP/1.0 200")]
    busy = [a for a in answers if a.startswith(b"HTTP/1.0 503")]
    assert len(ok) + len(busy) == 12 and len(ok) >= 6
    assert all(b'"too many requests"' in a for a in busy)


def test_a_body_that_stops_coming_frees_its_thread(fresh: tuple[Store, Settings]) -> None:
    store, settings = fresh
    with running(create_app(store, settings), io_timeout=0.5, max_threads=1) as httpd:
        with socket.create_connection(("127.0.0.1", httpd.server_port), timeout=5) as s:
            s.sendall(
                b"POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                b'\r\nContent-Length: 1000\r\n\r\n{"source": '
            )
            time.sleep(1.5)  # the handler's read times out
            assert httpd.in_flight() == (0, 0)
        assert get(httpd.server_port, "/healthz").startswith(b"HTTP/1.0 200")


def test_falcon_client_and_socket_answers_agree(fresh: tuple[Store, Settings]) -> None:
    store, settings = fresh
    app = create_app(store, settings)
    expected = falcon.testing.TestClient(app).simulate_get("/healthz").json
    with running(app) as httpd:
        assert get(httpd.server_port, "/healthz").endswith(b'{"status": "ok"}')
    assert expected == {"status": "ok"}
