"""``thumbcache failures JOB`` (grouped by error class) and ``thumbcache retry JOB``."""

from __future__ import annotations

import argparse
from typing import Any

from thumbcache.ops.retry import failure_groups, retry_failures
from thumbcache.pipeline.runtime import Runtime
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common, emit, runtime, submit_or_run


def register(sub: Any) -> None:
    """Add ``failures`` and ``retry``."""
    failures = sub.add_parser("failures", help="a job's failed images grouped by error class")
    failures.add_argument("job_id")
    add_common(failures)
    failures.set_defaults(handler=_failures)

    retry = sub.add_parser("retry", help="requeue a job's failed renditions (backfill lane)")
    retry.add_argument("job_id")
    retry.add_argument("--reason", help="only failures of this error class (e.g. StorageError)")
    add_common(retry)
    retry.set_defaults(handler=_retry)


def _failures(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        if rt.store.jobs.get(args.job_id) is None:
            raise LookupError(f"unknown job {args.job_id}")
        emit(failure_groups(rt.store, args.job_id), as_json=args.json)
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    def starter(rt: Runtime) -> dict[str, Any]:
        report = retry_failures(rt, args.job_id, args.reason)
        if not args.json:
            print(f"retrying {report.requeued_images} images ({report.requeued_renditions} "
                  f"renditions); not retryable: {report.not_retryable or 'none'}")  # fmt: skip
        job = rt.store.jobs.get(args.job_id)
        assert job is not None
        return job

    return submit_or_run(settings, starter, as_json=args.json)
