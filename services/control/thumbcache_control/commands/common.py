"""What the operations commands share: a runtime on the configured store and broker, output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from thumbcache.broker import make_broker
from thumbcache.database import open_store
from thumbcache.pipeline.runtime import Runtime
from thumbcache.reports import job_summary
from thumbcache.settings import Settings

from thumbcache_control.embedded_run import progress_stream, run_with


@contextmanager
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on the configured MongoDB (or the embedded store) and the configured broker."""
    with open_store(settings) as store:
        yield Runtime(settings, store, make_broker(settings))


def embedded(settings: Settings) -> bool:
    """True when work has to be processed in this process (no broker is configured)."""
    return settings.broker_url.startswith("memory://")


def submit_or_run(
    settings: Settings, starter: Callable[[Runtime], dict[str, Any]], *, as_json: bool
) -> int:
    """Start a job: on the configured broker (print its id), or here, to its end (embedded)."""
    if embedded(settings):
        job = run_with(settings, starter, progress=progress_stream())
        emit(job_summary(job), as_json=as_json)
        return 0
    with runtime(settings) as rt:
        job = starter(rt)
    emit({"job_id": job["_id"]} if as_json else job["_id"], as_json=as_json)
    return 0


def emit(value: Any, *, as_json: bool) -> None:
    """Print a result as one JSON line, or readably."""
    if as_json:
        print(json.dumps(value, default=str))
    elif isinstance(value, dict):
        for key, item in value.items():
            print(f"{key}: {item}")
    else:
        print(value)


def add_common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """``--data-dir`` (embedded store) and ``--json`` on an operations command."""
    parser.add_argument("--data-dir", help="the embedded store's folder (default ./.thumbcache)")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
