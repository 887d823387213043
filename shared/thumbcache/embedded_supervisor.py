"""The supervisor of a data dir's embedded MongoDB-protocol server (SecantusDB).

Started by the first thumbcache process that needs the server
(``python -m thumbcache.embedded_supervisor --data-dir DIR``), in its own session so that no
terminal signal and no single user's exit takes it down. It

- holds ``server.lock`` exclusively for its whole life: the kernel's proof, for everyone else,
  that a server of this data dir is alive (no PID is ever trusted);
- runs SecantusDB as its child (tied to it by a death signal) on a free loopback port, writes a
  random token into it and publishes ``{port, token}`` in ``mongo-server.json``;
- counts users by ``users.lock``: every process that uses the server holds it shared, and the
  kernel releases that when the process ends, even by SIGKILL. When the supervisor can take it
  exclusively, nobody uses the server any more: it stops the server (SIGTERM, then SIGKILL after
  a grace), removes the info file, and exits. Only its own child is ever signalled.

SecantusDB is GPL-2.0: it is only ever run as a separate program, never imported.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from thumbcache.state.instance import write_token

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 20.0
POLL_S = 0.2
EXIT_ANOTHER_SUPERVISOR = 3


class ServerFiles:
    """The files of a data dir's embedded server, named once for both sides."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.storage = data_dir / "mongo"
        self.log = data_dir / "mongo.log"
        self.info = data_dir / "mongo-server.json"
        self.server_lock = data_dir / "mongo-server.lock"
        self.users_lock = data_dir / "mongo-users.lock"
        self.start_lock = data_dir / "mongo-start.lock"


def open_lock(path: Path) -> int:
    """A descriptor for ``flock`` on ``path`` (created; never inherited by children)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def try_flock(fd: int, operation: int) -> bool:
    """``flock`` without waiting; False when another process holds a conflicting lock."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def server_command(storage: Path, port: int) -> list[str]:
    """How the server is started (also how an old server of this storage is recognised)."""
    return [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", str(storage), "--log-level", "WARNING"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Start the server, announce it on stdout, and stop it when its last user is gone."""
    parser = argparse.ArgumentParser(prog="thumbcache.embedded_supervisor")
    parser.add_argument("--data-dir", required=True)
    files = ServerFiles(Path(parser.parse_args(argv).data_dir))
    server_fd = open_lock(files.server_lock)
    if not try_flock(server_fd, fcntl.LOCK_EX):
        return EXIT_ANOTHER_SUPERVISOR
    users_fd = open_lock(files.users_lock)
    server, port = _start_server(files)
    if server is None:
        print("failed", flush=True)
        return 1
    token = secrets.token_hex(16)
    try:
        write_token(f"mongodb://127.0.0.1:{port}/?directConnection=true", token)
    except Exception as exc:
        server.kill()
        print(f"failed {exc}", flush=True)
        return 1
    files.info.write_text(json.dumps({"port": port, "token": token, "supervisor": os.getpid()}))
    print(f"ready {port} {token}", flush=True)
    sys.stdout.close()
    with contextlib.suppress(OSError):
        os.close(1)  # the starter stops reading: nothing more is said
    while server.poll() is None:
        if try_flock(users_fd, fcntl.LOCK_EX):  # no process uses the server any more
            _stop(server)
            break
        time.sleep(POLL_S)
    with contextlib.suppress(FileNotFoundError):
        files.info.unlink()
    os.close(server_fd)  # "no server" first, then let waiting users in (they start a new one)
    os.close(users_fd)
    return 0


def _start_server(files: ServerFiles) -> tuple[subprocess.Popen[bytes] | None, int]:
    files.storage.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        port = _free_port()
        with open(files.log, "ab") as log:
            server = subprocess.Popen(
                server_command(files.storage, port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 - sets the death signal
            )
        if _wait_for_port(port, server, deadline):
            return server, port
        time.sleep(0.3)  # the port was taken meanwhile, or the storage is still locked
    return None, 0


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM once (a second one can deadlock SecantusDB's handler), then SIGKILL."""
    server.terminate()
    try:
        server.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        server.kill()  # its storage survives a SIGKILL
        server.wait()


def _die_with(parent: int):  # type: ignore[no-untyped-def]
    def set_death_signal() -> None:
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return set_death_signal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts connections on a loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _wait_for_port(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if port_open(port):
            return True
        time.sleep(0.05)
    process.kill()
    process.wait()
    return False


if __name__ == "__main__":
    sys.exit(main())
