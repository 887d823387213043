"""The ``thumbcache`` command."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from thumbcache.contracts import (
    RENDER_WORKER_MODULE,
    SCAN_QUEUE,
    SCANNER_WORKER_MODULE,
    lanes_of,
    render_queues,
)
from thumbcache.errors import ConfigError, StateUnavailable, ThumbcacheError
from thumbcache.logs import setup_logging
from thumbcache.reports import human_status, image_line, job_summary
from thumbcache.settings import Settings, load_settings
from thumbcache.state.model import JOB_FAILED, job_has_ended

log = logging.getLogger("thumbcache")
# Exit codes (documented in README.md): a script can tell a clean run from one with failures.
EXIT_OK = 0  # done, and no image failed
EXIT_JOB_COULD_NOT_RUN = 1  # the job could not start, or ended failed (its reason is shown)
EXIT_USAGE = 2  # bad command line or configuration
EXIT_IMAGES_FAILED = 3  # the job is done, but some images failed (`thumbcache status JOB`)
EXIT_UNREACHABLE = 4  # the database or the broker does not answer (one line says which)
EXIT_INTERRUPTED = 130
RUN_LOG = "thumbcache.log"  # under the data dir: what `run` logs, off its progress bar
# Operations commands, one module each under thumbcache_control/commands, each with
# ``register(subparsers)`` adding its parser and handler ``(args, settings) -> exit code``.
COMMAND_MODULES: tuple[str, ...] = (
    "recover",
    "stale",
    "retry",
    "regenerate",
    "alerts",
    "dead_letters",
    "cleanup",
    "reconcile",
    "rebalance",
    "folders",
)
SCANNER = "scanner"  # `thumbcache worker scanner`; any other name is a rendition's worker


def entry() -> NoReturn:
    """The console script: :func:`main`, then an exit that skips the interpreter's teardown."""
    exit_without_teardown(main())


def exit_without_teardown(code: int) -> NoReturn:
    """Exit with ``code`` as a normal exit would, less the teardown of every module.

    Tearing down the ~570 modules a command imports cost 70-110 ms of CPU after its work was
    done, on every command (docs/BENCHMARKS.md, "The end of a command; a render process's
    start"). What a normal exit does that a user can see still happens: other non-daemon
    threads are waited for, the exit handlers run (logging's closes the log) and the standard
    streams are flushed.
    """
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`), or closed
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``thumbcache`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    settings: Settings | None = None
    try:
        settings = _settings(args)
        _setup_logging(args.command, settings)
        return int(args.handler(args, settings))
    except unreachable_errors() as exc:
        print(f"thumbcache: {unreachable_line(exc, settings)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConfigError as exc:
        print(f"thumbcache: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("\nthumbcache: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ThumbcacheError, OSError, LookupError) as exc:
        print(f"thumbcache: {exc}", file=sys.stderr)
        return EXIT_JOB_COULD_NOT_RUN


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """What a command raises when the database or the broker does not answer."""
    import dramatiq.errors
    import pika.exceptions
    from thumbcache.state.store import DatabaseUnreachable

    return (
        DatabaseUnreachable,
        StateUnavailable,
        dramatiq.errors.BrokerConnectionError,
        pika.exceptions.AMQPConnectionError,
    )


def unreachable_line(exc: BaseException, settings: Settings | None) -> str:
    """One line saying which server does not answer and what to do (no traceback)."""
    from thumbcache.state.store import DatabaseUnreachable

    reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if isinstance(exc, DatabaseUnreachable | StateUnavailable):
        where = "the embedded database"
        if settings is not None and not settings.embedded:
            where = f"the database at {_redacted(settings.mongo_url)}"
        return f"{where} is not answering ({reason}); start it, or check THUMBCACHE_MONGO_URL"
    where = "the broker"
    if settings is not None:
        where = f"the broker at {_redacted(settings.broker_url)}"
    return f"{where} is not answering ({reason}); start it, or check THUMBCACHE_BROKER_URL"


def _redacted(url: str) -> str:
    """A server URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _setup_logging(command: str, settings: Settings) -> None:
    if command == "run":  # the terminal shows progress and the summary; details go to the log
        setup_logging("INFO", log_file=run_log_path(settings))
    elif command in ("worker", "serve"):
        setup_logging("INFO")
    else:  # a one-shot command: an unreachable broker is one line of its own, not pika's
        setup_logging("WARNING")
        logging.getLogger("pika").setLevel(logging.CRITICAL)


def run_log_path(settings: Settings) -> Path:
    """Where ``thumbcache run`` writes its log."""
    return Path(settings.data_dir).expanduser() / RUN_LOG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thumbcache", description="Thumbnails and cache images for image collections."
    )
    parser.add_argument("--config", action="append", help="a TOML config file (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process a folder in one process (the embedded default)")
    run.add_argument("source", help="the collection root: a folder of images and ZIP/CBZ files")
    _data_dir(run)
    run.add_argument("--force", action="store_true", help="render even what is current")
    run.add_argument("--json", action="store_true", help="end with a JSON summary line")
    run.set_defaults(handler=_cmd_run)

    images = sub.add_parser("images", help="list a collection's images and renditions")
    images.add_argument("collection_id")
    _data_dir(images)
    images.add_argument("--json", action="store_true", help="one JSON object per line")
    images.set_defaults(handler=_cmd_images)

    scan = sub.add_parser("scan", help="submit a scan to the configured broker")
    scan.add_argument("source")
    _data_dir(scan)
    scan.add_argument("--force", action="store_true")
    scan.add_argument("--wait", action="store_true", help="wait for the job to finish")
    scan.add_argument("--json", action="store_true")
    scan.set_defaults(handler=_cmd_scan)

    status = sub.add_parser("status", help="show a job (or the recent jobs)")
    status.add_argument("job_id", nargs="?")
    _data_dir(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_cmd_status)

    serve = sub.add_parser(
        "serve", help="all-in-one: embedded database, workers, status API and dashboard"
    )
    _data_dir(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--allow-root",
        action="append",
        help="a folder POST /v1/scans may scan (repeatable; adds to [status] allowed_roots; "
        "default: the current directory; never /)",
    )
    serve.set_defaults(handler=_cmd_serve)

    for module in COMMAND_MODULES:
        importlib.import_module(f"thumbcache_control.commands.{module}").register(sub)

    worker = sub.add_parser("worker", help="run one stage's Dramatiq worker (container entry)")
    worker.add_argument("stage", help="'scanner', or the name of a rendition (thumbnail, cache...)")
    worker.add_argument("--threads", type=int, help="worker threads (default: settings)")
    worker.set_defaults(handler=_cmd_worker)
    return parser


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="where the embedded store and cache live (default ./.thumbcache)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return load_settings(files=args.config, overrides=overrides)


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    if not os.path.isdir(args.source):
        print(f"thumbcache: {args.source} is not a directory", file=sys.stderr)
        return EXIT_JOB_COULD_NOT_RUN
    from thumbcache.sandbox.pool import start_render_processes, worker_pool

    # The render processes load their libraries (~0.25 s) while this process imports the
    # stages and creates the job, not after (docs/BENCHMARKS.md, "Start and end of a run").
    start_render_processes(worker_pool(settings.worker), settings.worker)
    from thumbcache_control.embedded_run import progress_stream, run_job

    job = run_job(settings, args.source, force=args.force, progress=progress_stream())
    _print_summary(job, as_json=args.json)
    code = exit_code_of(job)
    if code == EXIT_IMAGES_FAILED and not args.json:
        print(f"details: {run_log_path(settings)}")
    return code


def exit_code_of(job: dict[str, Any]) -> int:
    """What a command that waited for ``job`` exits with: 0, 1 (job failed) or 3 (images)."""
    if job["status"] == JOB_FAILED:
        return EXIT_JOB_COULD_NOT_RUN
    return EXIT_IMAGES_FAILED if job_summary(job)["failed"] else EXIT_OK


def _print_summary(job: dict[str, Any], *, as_json: bool) -> None:
    summary = job_summary(job)
    if job["status"] == JOB_FAILED:  # on stderr in both forms: stdout ends with the summary
        error = job.get("error") or {}
        print(
            f"thumbcache: job {summary['job_id']} failed: {error.get('class')}: "
            f"{error.get('message')}",
            file=sys.stderr,
        )
    if as_json:
        print(json.dumps(summary))
        return
    print(
        f"job {summary['job_id']} {summary['status']}: {summary['total']} images, "
        f"{summary['completed']} rendered, {summary['skipped']} already current, "
        f"{summary['failed']} failed (collection {summary['collection_id']})"
    )
    if summary["failed"]:
        print(f"see the reasons: thumbcache status {summary['job_id']}")


def _cmd_images(args: argparse.Namespace, settings: Settings) -> int:
    from thumbcache.database import open_store

    with open_store(settings) as store:
        if store.collections.get(args.collection_id) is None:
            print(f"thumbcache: unknown collection {args.collection_id}", file=sys.stderr)
            return EXIT_JOB_COULD_NOT_RUN
        for image in store.images.iter_collection(args.collection_id):
            line = image_line(image, settings.rendition_names)
            if args.json:
                print(json.dumps(line))
            else:
                sizes = " ".join(
                    f"{k}={v['width']}x{v['height']}"
                    for k in settings.rendition_names
                    if (v := line[k])
                )
                print(f"{line['source']}  {line['error'] or sizes}")
    return EXIT_OK


def _cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    from thumbcache.broker import make_broker
    from thumbcache.database import open_store
    from thumbcache.pipeline.runtime import Runtime
    from thumbcache.pipeline.scan import start_scan

    if settings.in_process_broker:
        raise ConfigError(
            "scan submits to a broker: set THUMBCACHE_BROKER_URL (or use `thumbcache run`)"
        )
    with open_store(settings) as store:
        rt = Runtime(settings, store, make_broker(settings))
        job = start_scan(rt, args.source, force=args.force)
        if not args.wait:
            print(json.dumps({"job_id": job["_id"]}) if args.json else job["_id"])
            return EXIT_OK
        ended = _wait_for_job(store, job["_id"])
        _print_summary(ended, as_json=args.json)
    return exit_code_of(ended)


def _wait_for_job(store: Any, job_id: str) -> dict[str, Any]:
    """Poll until the job ends (done or failed); a database outage is waited out, not fatal
    (the job goes on)."""
    from thumbcache.state.store import DatabaseUnreachable

    while True:
        try:
            current = store.jobs.get(job_id)
        except DatabaseUnreachable as exc:
            log.warning(
                "waiting for job %s: the database is unreachable (%s); retrying", job_id, exc
            )
            current = None
        if current is not None and job_has_ended(current):
            return dict(current)
        time.sleep(0.5)


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from thumbcache.database import open_store

    with open_store(settings) as store:
        if args.job_id is None:
            for recent in store.jobs.recent(limit=20):
                print(json.dumps(job_summary(recent)) if args.json else human_status(recent))
            return EXIT_OK
        job = store.jobs.get(args.job_id)
        if job is None:
            print(f"thumbcache: unknown job {args.job_id}", file=sys.stderr)
            return EXIT_JOB_COULD_NOT_RUN
        failures = [
            {"source": i["source"], "error": i.get("error") or _stage_errors(i)}
            for i in store.items.failures(args.job_id)
        ]
        if args.json:
            print(
                json.dumps(
                    {
                        **job_summary(job),
                        "error": job.get("error"),
                        "stages": job.get("stages"),
                        "failures": failures,
                    }
                )
            )
        else:
            print(human_status(job))
            for failure in failures[:50]:
                print(f"  failed {failure['source']}: {failure['error']}")
    return EXIT_OK


def _stage_errors(item: dict[str, Any]) -> dict[str, Any]:
    return {s: v["error"] for s, v in item.get("stages", {}).items() if v.get("error")}


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from thumbcache_control.serve import serve

    return serve(
        settings,
        args.host,
        args.port,
        api_token=os.environ.get("THUMBCACHE_API_TOKEN") or None,
        allowed_roots=tuple(args.allow_root) if args.allow_root else None,
    )


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Replace this process with Dramatiq's worker for one stage (so it gets SIGTERM first)."""
    module, queues, env = worker_command(settings, args.stage)
    # Only this stage's queues (and their delay queues): publishing declares other stages'
    # queues on the scanner's broker, and Dramatiq would otherwise consume those too.
    argv = [
        sys.executable, "-m", "dramatiq", module, "--queues", *queues,
        "--processes", "1", "--threads", str(args.threads or settings.worker.threads),
        "--worker-shutdown-timeout", str(settings.worker.shutdown_timeout_seconds * 1000),
    ]  # fmt: skip
    if settings.worker.prometheus:
        # prometheus_client picks in-process or shared-file values when it is first imported,
        # and the worker imports it (thumbcache.ops.alerts) before Dramatiq's exporter sets
        # this variable: without it here, the exporter serves an empty page.
        from dramatiq.middleware.prometheus import DB_PATH

        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DB_PATH)
    sys.stdout.flush()
    os.execve(sys.executable, argv, {**os.environ, **env})
    return EXIT_OK  # pragma: no cover - execve does not return


def worker_command(settings: Settings, stage: str) -> tuple[str, tuple[str, ...], dict[str, str]]:
    """(Dramatiq module, queues, environment) of the worker for ``scanner`` or a rendition."""
    if stage == SCANNER:
        return SCANNER_WORKER_MODULE, (SCAN_QUEUE,), {}
    try:
        rendition = settings.rendition(stage)
    except LookupError:
        raise ConfigError(
            f"no stage {stage!r}: give 'scanner' or a rendition "
            f"({', '.join(settings.rendition_names)})"
        ) from None
    queues = render_queues([rendition], lanes_of(settings.worker.lane))
    return RENDER_WORKER_MODULE, queues, {"THUMBCACHE_WORKER__RENDITIONS": stage}


if __name__ == "__main__":
    entry()
