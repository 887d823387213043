"""Real servers a concurrency test starts and stops itself: ports, SecantusDB, HTTP probes."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from thumbcache.embedded_supervisor import server_command

from tests.faults.rabbit_node import free_port, port_open

# A port taken free a moment ago: nothing listens there (a database or broker that is down).
closed_port = free_port


def mongo_url_at(port: int) -> str:
    """The URL of a MongoDB-protocol server on a loopback port."""
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


class DatabaseServer:
    """A SecantusDB process on a fixed port (started late, to bring a database back)."""

    def __init__(self, storage: Path, port: int) -> None:
        self.storage = storage
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Start it and wait until it accepts connections."""
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.storage.parent / f"secantus-{self.port}.log", "ab")  # noqa: SIM115
        with log:
            self.process = subprocess.Popen(
                server_command(self.storage, self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            assert self.process.poll() is None, f"SecantusDB exited on port {self.port}"
            assert time.monotonic() < deadline, f"SecantusDB did not listen on {self.port}"
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (once: a second one can deadlock it), SIGKILL after a grace."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def http_status(url: str, timeout: float = 5) -> int | None:
    """The HTTP status a GET of ``url`` answers, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM a process and wait; SIGKILL it if it does not end. Returns its exit status."""
    process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        raise AssertionError(f"{process.args} did not stop on SIGTERM within {timeout}s") from None
