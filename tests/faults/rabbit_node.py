"""A private RabbitMQ node for fault tests: its own name, ports, storage, cookie and config.

The shared broker on 127.0.0.1:5672 is never touched. The node runs as a child of the test
process (``rabbitmq-server`` in the foreground, in its own session), so the test always knows
its pids and stops it by id. Its storage folder outlives a restart: durable queues and
persistent messages come back, as with a real broker restart.

Found on this machine (RabbitMQ 3.10.8, Erlang 26): ``/usr/sbin/rabbitmq-server`` switches to
the ``rabbitmq`` user when run as root, so the scripts in ``/usr/lib/rabbitmq/bin`` are run
directly with ``HOME`` pointing at the node's folder, where Erlang creates a private cookie.
The shared epmd is reused. A fresh node starts in about 2 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def _script(name: str) -> str:
    direct = SCRIPTS / name
    if direct.exists():
        return str(direct)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class RabbitNode:
    """One private RabbitMQ node; ``consumer_timeout_ms`` and the channel tick are optional.

    RabbitMQ checks a channel's consumer timeout on the channel tick (``channel_tick_interval``,
    60 s by default); ``tick_ms`` lowers it through ``advanced.config`` so a short timeout fires
    within about a second of expiring.
    """

    def __init__(
        self,
        base: Path,
        *,
        consumer_timeout_ms: int | None = None,
        tick_ms: int | None = None,
    ) -> None:
        self.base = base
        self.name = f"tc-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.consumer_timeout_ms = consumer_timeout_ms
        self.tick_ms = tick_ms
        self.process: subprocess.Popen[bytes] | None = None
        self.beam_pid: int | None = None
        self.log_path = base / "server.out"
        self._write_config()

    # -- configuration ------------------------------------------------------------------------

    def _write_config(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        conf = [f"listeners.tcp.default = {self.port}"]
        if self.consumer_timeout_ms is not None:
            conf.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        (self.base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        rabbit_env = [] if self.tick_ms is None else [f"{{channel_tick_interval, {self.tick_ms}}}"]
        (self.base / "advanced.config").write_text(f"[{{rabbit, [{', '.join(rabbit_env)}]}}].\n")
        (self.base / "enabled_plugins").write_text("[].\n")

    def env(self) -> dict[str, str]:
        """The environment every ``rabbitmq-*`` command for this node runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=str(self.base / "home"),  # the node's own Erlang cookie lives here
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
        )
        return env

    def url(self, vhost: str = "") -> str:
        """The AMQP URL of a vhost on this node (the default vhost when empty)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    # -- control ------------------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """Run ``rabbitmqctl -n NODE ARGS`` and return its output."""
        result = subprocess.run(
            [_script("rabbitmqctl"), "-n", self.name, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def add_vhost(self, vhost: str) -> str:
        """Create a vhost with full rights for guest; return its URL."""
        self.ctl("-q", "add_vhost", vhost)
        self.ctl("-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.url(vhost)

    def start(self, timeout: float = 90) -> float:
        """Start the node and wait until it accepts AMQP connections; return the seconds taken."""
        started = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [_script("rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in pytest must not reach the broker first
        )
        log.close()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self._tail()}")
            if port_open(self.port):
                self.ctl("await_startup", "--timeout", "60")
                self.beam_pid = int(self.ctl("eval", "list_to_integer(os:getpid()).").strip())
                return time.monotonic() - started
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"rabbitmq-server did not listen within {timeout}s: {self._tail()}")

    def stop(self, timeout: float = 60) -> float:
        """Stop the node cleanly (``rabbitmqctl stop``); return the seconds taken."""
        started = time.monotonic()
        if self.process is None:
            return 0.0
        try:
            self.ctl("stop", timeout=timeout, check=False)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_beam_gone(timeout)
        self.process = None
        return time.monotonic() - started

    def kill(self) -> None:
        """The last resort: SIGKILL the node's own processes, by id."""
        for pid in (self.beam_pid, self.process.pid if self.process else None):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self._wait_beam_gone(10)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> dict[str, float]:
        """Stop the node, stay down ``down_seconds``, start it again: the timings."""
        stopped_at = time.monotonic()
        stop_s = self.stop()
        time.sleep(down_seconds)
        start_s = self.start()
        return {"stop_s": stop_s, "start_s": start_s, "outage_s": time.monotonic() - stopped_at}

    def queue_counts(self, vhost: str) -> dict[str, tuple[int, int]]:
        """{queue: (ready, unacknowledged)} in a vhost."""
        out = self.ctl(
            "-q", "list_queues", "-p", vhost, "--no-table-headers",
            "name", "messages_ready", "messages_unacknowledged",
        )  # fmt: skip
        counts = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:
                counts[parts[0]] = (int(parts[1]), int(parts[2]))
        return counts

    def _wait_beam_gone(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.beam_pid is not None and time.monotonic() < deadline:
            try:
                os.kill(self.beam_pid, 0)
            except ProcessLookupError:
                self.beam_pid = None
                return
            time.sleep(0.1)
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -- the cluster around a private node: real worker processes, a waiting `thumbcache scan` ----

STAGE_WORKERS = ("scanner", "thumbnail", "cache")


def start_worker(stage: str, env: dict[str, str], log_path: Path, threads: int = 2) -> Popen[bytes]:
    """One ``thumbcache worker STAGE`` process, exactly as a container starts it."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "thumbcache_control.cli", "worker", stage,
             "--threads", str(threads)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        log.close()


def stop_workers(procs: dict[str, Popen[bytes]], timeout: float = 30) -> dict[str, int]:
    """SIGTERM every worker, wait, SIGKILL one that hangs; return each exit code."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
    return codes


def submit_scan(env: dict[str, str], source: Path, log_path: Path) -> Popen[str]:
    """``thumbcache scan SOURCE --wait --json`` in the background (it polls MongoDB only)."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "thumbcache_control.cli", "scan", str(source), "--wait",
             "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
    finally:
        log.close()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until ``predicate()`` is truthy; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def log_lines(path: Path, *needles: str) -> list[str]:
    """The lines of a log file that contain every needle."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def tree(root: Path) -> dict[str, int]:
    """{relative path: size} of every file under ``root``."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            out[str(full.relative_to(root))] = full.stat().st_size
    return out


def wait_until_booted(logs: Path, stages: tuple[str, ...], timeout: float = 60) -> None:
    """Wait until each worker's Dramatiq process is ready and its startup recovery has run.

    A job submitted while a worker boots is "recovered" by it (its scan message is in flight,
    so every queue looks empty) and scanned twice; tests that count attempts avoid that race.
    """
    wait_for(
        lambda: all(log_lines(logs / f"{s}.log", "ready for action") for s in stages),
        timeout,
        "the workers to boot",
    )
    time.sleep(1.0)
