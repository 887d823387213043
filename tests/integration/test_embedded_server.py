"""The embedded server of a data dir is shared by every process that uses it: none stops it
under another, the last user's end (however it ends) stops it, and no stranger is signalled."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from thumbcache.embedded import EmbeddedMongo

pytestmark = pytest.mark.integration

HOLD_SERVER = (
    "import sys\n"
    "from thumbcache.embedded import EmbeddedMongo\n"
    "server = EmbeddedMongo(sys.argv[1])\n"
    "print(server.start(), flush=True)\n"
    "sys.stdin.read()\n"
    "server.stop()\n"
)


def answers(url: str) -> bool:
    try:
        MongoClient(url, serverSelectionTimeoutMS=1500).admin.command("ping")
    except Exception:
        return False
    return True


def servers_of(data_dir: Path) -> list[int]:
    """PIDs of SecantusDB processes serving this data dir's storage."""
    storage = str(data_dir / "mongo")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"secantus" in argv and storage.encode() in argv:
            pids.append(int(entry.name))
    return pids


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def holder(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """Another process using the data dir's server; returns it and the URL it got."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_SERVER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.mark.parametrize("first_user_ends", ["exits", "is SIGKILLed"])
def test_the_first_user_ending_never_stops_the_server_under_another(tmp_path, first_user_ends):
    # Given a process that started the data dir's server, and this process using it too
    data = tmp_path / "data"
    first, url = holder(data)
    second = EmbeddedMongo(str(data))
    assert second.start() == url
    # When the first process ends (cleanly, or killed)
    if first_user_ends == "exits":
        first.communicate("", timeout=30)
    else:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    time.sleep(1.0)
    # Then the server still answers the second
    assert answers(url)
    assert len(servers_of(data)) == 1
    # And when the last user ends, the server ends too
    second.stop()
    wait_for(lambda: not servers_of(data), 30, "the server to stop")


def test_a_last_user_killed_leaves_no_server_behind(tmp_path):
    # Given the only user of a data dir's server
    data = tmp_path / "data"
    first, url = holder(data)
    assert answers(url)
    # When it is SIGKILLed (no clean-up of its own runs)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # Then its server stops, and the next user gets a fresh one on the same storage
    wait_for(lambda: not servers_of(data), 30, "the orphaned server to stop")
    again = EmbeddedMongo(str(data))
    assert answers(again.start())
    again.stop()


def test_a_stale_pid_file_never_gets_a_stranger_signalled(tmp_path):
    # Given an info file left by an older thumbcache naming a PID that is now a stranger
    # (an unrelated `sleep`) as its server, and this very process as its "owner"
    data = tmp_path / "data"
    data.mkdir()
    stranger = subprocess.Popen(["sleep", "300"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    (data / "mongo-server.json").write_text(
        json.dumps({"pid": stranger.pid, "port": port, "owner": os.getpid()})
    )
    try:
        # When a command starts using the data dir
        server = EmbeddedMongo(str(data))
        url = server.start()
        # Then the stranger lives, the listener on the recorded port was not trusted
        assert stranger.poll() is None
        assert f":{port}/" not in url
        assert answers(url)
        server.stop()
    finally:
        stranger.kill()
        stranger.wait()
        listener.close()
