"""The embedded MongoDB-protocol server: SecantusDB run as a child process under the data dir.

SecantusDB is GPL-2.0, so it is only ever run as a separate program, never imported. Its life
is tied to its parent's (``PR_SET_PDEATHSIG``): a parent killed with SIGKILL takes its server
with it, so the storage lock is freed for the next run. A live server started by another
thumbcache process on the same data dir is reused instead of fighting over the lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from thumbcache.errors import ConfigError, StateUnavailable

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 30.0


class EmbeddedMongo:
    """Start (or reuse) the server whose storage lives in ``{data_dir}/mongo``."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.storage = self.data_dir / "mongo"
        self.info_file = self.data_dir / "mongo-server.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        """Return the URL of a live server for this data dir, starting one if needed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        live = self._live_server()
        if live:
            self.url = live
            return live
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error = ""
        while time.monotonic() < deadline:
            port = _free_port()
            self.process = _spawn(self.storage, port, self.data_dir / "mongo.log")
            if _wait_for_port(port, self.process, deadline):
                self.url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
                info = {"pid": self.process.pid, "port": port, "owner": os.getpid()}
                self.info_file.write_text(json.dumps(info))
                return self.url
            last_error = _tail(self.data_dir / "mongo.log")
            # A server of a parent that just died may still hold the storage lock: retry.
            live = self._live_server()
            if live:
                self.url = live
                return live
            time.sleep(0.3)
        raise StateUnavailable(f"the embedded database did not start: {last_error}")

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.info_file.unlink()
        self.process = None

    def _live_server(self) -> str:
        """The URL of a server whose owner is alive; an orphaned one is retired first."""
        try:
            info = json.loads(self.info_file.read_text())
            pid, port, owner = int(info["pid"]), int(info["port"]), int(info["owner"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return ""
        if not _pid_alive(pid):
            return ""
        if _pid_alive(owner) and _port_open(port):
            return f"mongodb://127.0.0.1:{port}/?directConnection=true"
        _retire(pid)  # its owner died: it is shutting down (death signal) or was left behind
        return ""


@contextlib.contextmanager
def embedded_mongo(data_dir: str) -> Iterator[str]:
    """A live embedded server's URL for the duration of the block."""
    server = EmbeddedMongo(data_dir)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


_KEEP: list[EmbeddedMongo] = []


def shared_embedded_url(data_dir: str) -> str:
    """A server for this data dir kept for the life of this process (workers, CLI reads)."""
    server = EmbeddedMongo(data_dir)
    url = server.start()
    _KEEP.append(server)
    return url


def _spawn(storage: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    try:
        import importlib.util

        if importlib.util.find_spec("secantus") is None:
            raise ImportError
    except ImportError:
        raise ConfigError(
            "no MongoDB URL is configured and the embedded server is not installed: "
            "pip install 'thumbcache[embedded]' or set THUMBCACHE_MONGO_URL"
        ) from None
    storage.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "ab")  # noqa: SIM115 - handed to the child, closed with it
    cmd = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
           "--storage-path", str(storage), "--log-level", "WARNING"]  # fmt: skip
    return subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_death_signal_setter(os.getpid()),  # noqa: PLW1509 - sets the death signal
    )


def _death_signal_setter(parent: int) -> Callable[[], None]:
    """A pre-exec hook: the child gets SIGKILL when ``parent`` dies, even if it already has.

    SIGKILL, not SIGTERM: the server's storage survives it, and its SIGTERM handler deadlocks
    when a second signal arrives during shutdown (seen with SecantusDB 0.7).
    """

    def set_death_signal() -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            return  # not Linux: the server outlives a killed parent; the next start retires it
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return set_death_signal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _wait_for_port(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _port_open(port):
            return True
        time.sleep(0.05)
    process.kill()
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes (its lock is gone)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _retire(pid: int, timeout_s: float = 30.0) -> None:
    """End an orphaned server (its owner is gone) and wait until its storage lock is free.

    SIGKILL is safe (the storage survives it) and avoids the server's fragile SIGTERM path.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
