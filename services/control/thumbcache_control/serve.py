"""``thumbcache serve``: the all-in-one service on one machine.

The embedded MongoDB-protocol server, in-process workers for every stage on Dramatiq's stub
broker, and the status service on a threaded stdlib WSGI server, so that ``POST /v1/scans``
processes a folder and the dashboard shows it. SIGTERM (or Ctrl-C) stops it cleanly: the HTTP
server stops accepting, workers finish their current message, the database server stops.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon
from thumbcache.errors import CollectionBusy, ConfigError
from thumbcache.hosting import Host, hosted_stages
from thumbcache.pipeline.recovery import republish_open_work
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import prepare_collection
from thumbcache.pipeline.settle import recount_job
from thumbcache.settings import Settings
from thumbcache_status.app import create_app
from thumbcache_status.submit import Submitter, runtime_planner, runtime_submitter

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
    api_token: str | None = None,
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
            api_token=api_token,
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


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

    ``api_token`` is the caller's ``THUMBCACHE_API_TOKEN``; listening beyond loopback without
    one is refused. ``allowed_roots`` defaults to the current directory. ``on_ready`` gets the
    URL once the server listens (port 0 picks a free port).
    """
    if not is_loopback(host) and not api_token:
        raise ConfigError(f"serving on {host} needs THUMBCACHE_API_TOKEN (or use 127.0.0.1)")
    roots = allowed_roots if allowed_roots is not None else (os.getcwd(),)
    with embedded_service(settings, allowed_roots=roots, api_token=api_token) as service:
        httpd = make_server(
            host, port, service.app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
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


def _install_stop_handlers(httpd: WSGIServer) -> Callable[[], None]:
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
