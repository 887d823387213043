"""Decoy processes: strangers that look like thumbcache's own, whose PIDs are planted where a
careless program might take a PID from. None of them may be signalled, ever.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path

from thumbcache.state.store import Store

from tests.faults.rabbit_node import free_port

SLEEP = "import time; time.sleep(3600)"


def spawn_decoys() -> list[subprocess.Popen[bytes]]:
    """A plain ``sleep`` and two sleepers whose command lines read like a worker and a server."""
    argvs = [
        ["sleep", "3600"],
        [sys.executable, "-c", SLEEP, "-m", "thumbcache_control.cli", "worker", "thumbnail"],
        [sys.executable, "-c", SLEEP, "-m", "secantus", "--host", "127.0.0.1", "--port", "1"],
    ]
    return [
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True) for argv in argvs
    ]


def plant(decoys: list[subprocess.Popen[bytes]], data_dir: Path, store: Store) -> list[str]:
    """Write the decoys' PIDs where PIDs are read: the data dir's embedded-server file (an old
    thumbcache's, naming a dead owner) and an expired lease held under a decoy's worker name."""
    server, owner = decoys[2].pid, decoys[0].pid
    data_dir.mkdir(parents=True, exist_ok=True)
    info = {"pid": server, "port": free_port(), "owner": owner, "supervisor": owner}
    (data_dir / "mongo-server.json").write_text(json.dumps({**info, "token": "decoy"}))
    holder = f"{socket.gethostname()}:{decoys[1].pid}"
    store.leases.acquire("decoy-worker-lease", holder, -1)  # already expired
    return [f"mongo-server.json pid {server} owner {owner}", f"expired lease held by {holder}"]


def stop_decoys(decoys: list[subprocess.Popen[bytes]]) -> None:
    """End the decoys (only they are signalled, by the PIDs this process started)."""
    for decoy in decoys:
        if decoy.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                decoy.kill()
        decoy.wait()
