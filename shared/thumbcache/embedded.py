"""The embedded MongoDB-protocol server of a data dir, shared by every process that uses it.

Each user (a ``run``, a ``status``, a worker, the test fixtures) holds ``mongo-users.lock``
shared for as long as it uses the server; the server itself is run by a supervisor process
(:mod:`thumbcache.embedded_supervisor`) that stops it when the last user is gone, however that
user ended. So two commands on one data dir share one server, and neither stops it under the
other. No PID from a file is ever signalled on trust: a live server is recognised by the
supervisor's lock (held by the kernel for a live process only) and a token read back from the
server itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from thumbcache.embedded_supervisor import (
    START_TIMEOUT_S,
    ServerFiles,
    open_lock,
    port_open,
    server_command,
    try_flock,
)
from thumbcache.errors import ConfigError, StateUnavailable
from thumbcache.state.instance import read_token


class EmbeddedMongo:
    """A use of the server whose storage lives in ``{data_dir}/mongo`` (started if needed)."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.files = ServerFiles(self.data_dir)
        self.url = ""
        self._users_fd: int | None = None

    def start(self) -> str:
        """Become a user of this data dir's server and return its URL, starting it if needed."""
        _check_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._users_fd is None:
            fd = open_lock(self.files.users_lock)
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a supervisor is stopping its server
            self._users_fd = fd
        try:
            self.url = self._live_or_new()
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Stop using the server; the supervisor stops it once nobody else uses it."""
        if self._users_fd is not None:
            os.close(self._users_fd)
            self._users_fd = None

    def _live_or_new(self) -> str:
        start_fd = open_lock(self.files.start_lock)
        try:
            fcntl.flock(start_fd, fcntl.LOCK_EX)  # one process at a time decides and starts
            url = self._live_server()
            if url:
                return url
            _retire_old_server(self.files)
            return self._spawn_supervisor()
        finally:
            os.close(start_fd)

    def _live_server(self) -> str:
        """The URL of the live server of this data dir, verified, or ''."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:  # a supervisor may still be starting its server
            if not self._supervisor_alive():
                return ""
            info = _read_info(self.files.info)
            if info is not None and port_open(info[0]):
                url = _url(info[0])
                if read_token(url) == info[1]:
                    return url
            time.sleep(0.1)
        raise StateUnavailable(f"the embedded database of {self.data_dir} does not answer")

    def _supervisor_alive(self) -> bool:
        """True while a supervisor holds the server lock (the kernel drops it when it ends)."""
        probe = open_lock(self.files.server_lock)
        try:
            return not try_flock(probe, fcntl.LOCK_SH)
        finally:
            os.close(probe)

    def _spawn_supervisor(self) -> str:
        with open(self.files.log, "ab") as log:
            command = [sys.executable, "-m", "thumbcache.embedded_supervisor", "--data-dir"]
            supervisor = subprocess.Popen(
                [*command, str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # no terminal signal reaches it: it outlives its starter
            )
        assert supervisor.stdout is not None
        line = _read_line(supervisor.stdout.fileno(), time.monotonic() + START_TIMEOUT_S + 5)
        supervisor.stdout.close()
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ready":
            return _url(int(parts[1]))
        with contextlib.suppress(subprocess.TimeoutExpired):
            supervisor.wait(timeout=1)
        raise StateUnavailable(f"the embedded database did not start: {_tail(self.files.log)}")


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
    """A server for this data dir, used for the life of this process (workers, CLI reads)."""
    server = EmbeddedMongo(data_dir)
    url = server.start()
    _KEEP.append(server)
    return url


def _check_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("secantus") is None:
        raise ConfigError(
            "no MongoDB URL is configured and the embedded server is not installed: "
            "pip install 'thumbcache[embedded]' or set THUMBCACHE_MONGO_URL"
        )


def _url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def _read_info(path: Path) -> tuple[int, str] | None:
    """The (port, token) a supervisor published, or None."""
    try:
        info = json.loads(path.read_text())
        return int(info["port"]), str(info["token"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _read_line(fd: int, deadline: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _retire_old_server(files: ServerFiles) -> None:
    """Stop a server that an earlier thumbcache (before supervisors) left on this storage.

    Its PID comes from a file, so it is signalled only if its command line is exactly the
    server command for this storage: never a stranger that reused the PID.
    """
    try:
        info = json.loads(files.info.read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        argv = []
    if argv[1:] == server_command(files.storage, port)[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        files.info.unlink()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
