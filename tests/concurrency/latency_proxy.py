"""A TCP proxy that delays what it forwards by seeded random amounts: database latency for
real worker processes, without touching the server or the client.

Each forwarded chunk waits before it is sent on, in order per direction, so a request and its
reply each pay a delay. Delays are drawn from one ``random.Random`` per connection and
direction, seeded from the scenario's seed and the connection's number: the same seed gives
the same delay sequence to the n-th connection. A spike (set by the scheduler) adds latency to
every chunk while it lasts.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LatencyProfile:
    """How long a chunk waits: usually ``base_ms`` plus up to ``jitter_ms``; with probability
    ``stall_chance`` a stall of up to ``stall_ms``."""

    base_ms: float = 0.5
    jitter_ms: float = 4.0
    stall_chance: float = 0.01
    stall_ms: float = 250.0

    def draw(self, rng: random.Random) -> float:
        """One delay in seconds."""
        delay = self.base_ms + rng.uniform(0, self.jitter_ms)
        if rng.random() < self.stall_chance:
            delay += rng.uniform(0, self.stall_ms)
        return delay / 1000


@dataclass
class ProxyStats:
    """What the proxy did, for the scenario's report."""

    connections: int = 0
    chunks: int = 0
    delayed_s: float = 0.0
    longest_ms: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, delay: float) -> None:
        """Count one forwarded chunk and its delay."""
        with self.lock:
            self.chunks += 1
            self.delayed_s += delay
            self.longest_ms = max(self.longest_ms, delay * 1000)

    def line(self) -> str:
        """One readable line."""
        return (
            f"{self.connections} connections, {self.chunks} chunks delayed "
            f"{self.delayed_s:.1f}s in all, longest {self.longest_ms:.0f}ms"
        )


class LatencyProxy:
    """Listens on a loopback port and forwards every connection to ``target`` with delays."""

    def __init__(self, target: tuple[str, int], seed: int, profile: LatencyProfile) -> None:
        self.target = target
        self.seed = seed
        self.profile = profile
        self.stats = ProxyStats()
        self.spike_s = 0.0  # extra delay per chunk while a spike lasts (set by the scheduler)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._accepting = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self) -> str:
        """A MongoDB URL through this proxy."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self) -> None:
        number = 0
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            number += 1
            self.stats.connections += 1
            with self._lock:
                self._sockets.extend((client, server))
            for direction, (src, dst) in enumerate(((client, server), (server, client))):
                rng = random.Random(f"{self.seed}:{number}:{direction}")
                threading.Thread(
                    target=self._pump, args=(src, dst, rng), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rng: random.Random) -> None:
        try:
            while chunk := src.recv(65536):
                delay = self.profile.draw(rng) + self.spike_s
                time.sleep(delay)
                self.stats.add(delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:  # one side ended: end the other, as a real network path would
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
