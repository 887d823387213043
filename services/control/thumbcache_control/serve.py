"""``thumbcache serve``: the all-in-one service on one machine.

The embedded MongoDB-protocol server, in-process workers for every stage on Dramatiq's stub
broker, and the status service on a threaded stdlib WSGI server, so that ``POST /v1/scans``
processes a folder and the dashboard shows it. SIGTERM (or Ctrl-C) stops it cleanly: the HTTP
server stops accepting, workers finish their current message, the database server stops.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import falcon
from thumbcache.errors import CollectionBusy, ConfigError
from thumbcache.hosting import Host, hosted_stages
from thumbcache.pipeline.recovery import republish_open_work
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import prepare_collection
from thumbcache.pipeline.settle import recount_job
from thumbcache.settings import Settings
from thumbcache_status.access import UNGUARDED, Access, access_for, is_loopback
from thumbcache_status.app import create_app
from thumbcache_status.submit import Submitter, runtime_planner, runtime_submitter

from thumbcache_control.http_server import BoundedWSGIServer

__all__ = ["Embedded", "embedded_service", "is_loopback", "scan_roots", "serve"]

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """The running pieces of the all-in-one service."""

    app: falcon.App[falcon.Request, falcon.Response]
    host: Host

    @property
    def runtime(self) -> Runtime:
        """The runtime every in-process stage shares."""
        return self.host.runtime


@contextmanager
def embedded_service(
    settings: Settings,
    *,
    allowed_roots: tuple[str, ...],
    access: Access = UNGUARDED,
    start_worker: bool = True,
) -> Iterator[Embedded]:
    """Every stage hosted in this process, and the status app over its store, for the block.

    Unfinished jobs of an earlier run are recounted and their open work published again (the
    in-process broker's messages died with that run).
    """
    with hosted_stages(settings) as host:
        rt = host.runtime
        for job in rt.store.jobs.find_unfinished():
            if host.own(job["collection_id"]):  # else another process is running it
                recount_job(rt, job["_id"])
                republish_open_work(rt, rt.store.jobs.get(job["_id"]) or job)
        app = create_app(
            rt.store,
            rt.settings,
            submit_scan=owning_submitter(host, runtime_submitter(rt)),
            plan_scan=runtime_planner(rt),
            allowed_roots=allowed_roots,
            access=access,
            show_paths=rt.settings.status.show_paths,
            queue_depths=host.queue_depths,
        )
        if start_worker:
            host.start()
        yield Embedded(app, host)


def owning_submitter(host: Host, submit: Submitter) -> Submitter:
    """Submit a scan only of a collection this process can own (a job hosted here lives in
    this process); another process's collection is refused (409)."""

    def submit_owned(source: str, force: bool) -> str:
        collection = prepare_collection(host.runtime, source)
        if not host.own(collection["_id"]):
            raise CollectionBusy(
                f"another thumbcache process is running a job of {collection['root']}"
            )
        return submit(source, force)

    return submit_owned


def scan_roots(settings: Settings, given: Iterable[str] | None, cwd: str) -> tuple[str, ...]:
    """The folders scans may start under: ``--allow-root`` and ``[status] allowed_roots``
    together, else the current directory; ``/`` is refused (ConfigError), however named."""
    roots = (*(given or ()), *settings.status.allowed_roots) or (cwd,)
    roots = tuple(dict.fromkeys(os.path.realpath(r) for r in roots))
    if "/" in roots:
        defaulted = not given and not settings.status.allowed_roots
        where = "the current directory is /" if defaulted else "an allowed root is /"
        raise ConfigError(
            f"{where}: scans of the whole machine are refused; pass --allow-root FOLDER "
            "or set [status] allowed_roots"
        )
    return roots


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    api_token: str | None = None,
    allowed_roots: tuple[str, ...] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Run the all-in-one service until SIGTERM or SIGINT; return the exit status (0).

    ``api_token`` is the caller's ``THUMBCACHE_API_TOKEN``: with one, every data route needs
    it; listening beyond loopback without one is refused, and on loopback only requests for
    localhost are answered. ``allowed_roots`` (``--allow-root``) add to the settings' roots,
    which default to the current directory. ``on_ready`` gets the URL once the server listens
    (port 0 picks a free port).
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    access = access_for(settings.status, api_token, [address])
    roots = scan_roots(settings, allowed_roots, os.getcwd())
    with embedded_service(settings, allowed_roots=roots, access=access) as service:
        httpd = BoundedWSGIServer((host, port), service.app)
        stop = _install_stop_handlers(httpd)
        url = f"http://{host}:{httpd.server_port}"
        log.info("thumbcache serving on %s (scans allowed under %s)", url, ":".join(roots))
        if on_ready is not None:
            on_ready(url)
        try:
            httpd.serve_forever(poll_interval=0.2)
        finally:
            httpd.server_close()
            stop()
    return 0


def _install_stop_handlers(httpd: BoundedWSGIServer) -> Callable[[], None]:
    """SIGTERM/SIGINT shut the server down (from another thread: shutdown() waits for it)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    for signum in previous:
        signal.signal(signum, on_signal)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
