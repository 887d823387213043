"""Print the real-world corpus figures: ``python -m tests.realworld.report [--all] [--keep DIR]``.

Files in the corpus, reference-decodable, recorded, dropped, wrongly failed, failures by class,
and how the run went. ``--all`` lists every dropped and wrongly failed file (else the first
few per kind); ``--keep DIR`` leaves the run's data dir there to inspect.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from tests.realworld.survey import Survey, survey
from tests.realworld.verdict import (
    DROPPED,
    EXPECTED_FAILURE,
    FAILED,
    NO_OUTCOME,
    RENDERED,
    WRONGLY_FAILED,
    Judged,
    by_kind,
)

SHOWN_PER_KIND = 8


def print_report(found: Survey, out: TextIO, *, show_all: bool = False) -> None:
    """The figures, then the offending files grouped by format or class."""
    f, run = found.figures, found.run
    w = out.write
    w(f"corpus:                {found.root}\n")
    w(f"download:              {found.download_bytes / 1e6:.1f} MB (pinned sdists, sha256)\n")
    ended = f"exit {run.returncode}" if run.ended else "DID NOT END (stopped)"
    status = (run.job or {}).get("status")
    w(f"run:                   {ended}, job {status}, {run.seconds:.1f} s, ")
    w(f"{len(run.stderr)} stderr lines, {len(run.raw_stderr)} of them not log records\n")
    entries = sum(1 for j in f.judged if "#" in j.path)
    w(f"files in the corpus:   {f.files} ({f.files - entries} files, {entries} archive entries)\n")
    w(f"reference opens:       {f.reference_opens}\n")
    w(f"reference-decodable:   {f.reference_decodable}\n")
    w(f"must appear:           {f.must_appear}\n")
    w(f"recorded:              {f.recorded}\n")
    w(f"rendered:              {f.count(RENDERED)}\n")
    w(f"dropped:               {f.count(DROPPED)}\n")
    w(f"wrongly failed:        {f.count(WRONGLY_FAILED)}\n")
    w(f"failed as expected:    {f.count(EXPECTED_FAILURE)}\n")
    w(f"failed (undecodable):  {f.count(FAILED)}\n")
    w(f"no outcome:            {f.count(NO_OUTCOME)}\n")
    w(f"failures by class:     {_counts(f.failures_by_class)}\n")
    w(f"failures w/o reason:   {len(f.unreasoned)}\n")
    w(f"bad renditions:        {len(found.rendition_problems)}\n")
    w(f"misoriented:           {len(f.misoriented)}\n")
    w(f"looks different:       {len(found.looks_different)}\n")
    w(f"dropped, decodable:    {sum(j.reference.loads for j in f.having(DROPPED))}\n")
    limit = None if show_all else SHOWN_PER_KIND
    _section(out, "dropped, by format", f.having(DROPPED), limit)
    _section(out, "wrongly failed, by format", f.having(WRONGLY_FAILED), limit)
    _section(out, "no outcome, by format", f.having(NO_OUTCOME), limit)
    for title, lines in (
        ("failures without a reason", f.unreasoned),
        ("library noise on standard error (not log records)", sorted(set(run.raw_stderr))),
        ("bad renditions", found.rendition_problems),
        ("misoriented (portrait/landscape unlike the reference)", f.misoriented),
        ("thumbnails unlike the reference's picture", found.looks_different),
        ("recorded sources that are not corpus files", f.unknown_sources),
        ("expectations that matched no failure", [e.pattern for e in found.unused_expectations]),
    ):
        if lines:
            w(f"\n{title} ({len(lines)}):\n")
            for line in lines[:limit]:
                w(f"  {line}\n")


def _section(out: TextIO, title: str, judged: list[Judged], limit: int | None) -> None:
    if not judged:
        return
    out.write(f"\n{title}: {_counts(by_kind(judged))}\n")
    for j in judged[:limit]:
        why = j.error or j.reference.error or ""
        out.write(f"  {j.path}  [{j.reference.format or '-'}] {why}\n")
    if limit is not None and len(judged) > limit:
        out.write(f"  ... {len(judged) - limit} more (--all lists them)\n")


def _counts(counter: Counter[str] | Iterable[tuple[str, int]]) -> str:
    items = counter.most_common() if isinstance(counter, Counter) else list(counter)
    return ", ".join(f"{k} {v}" for k, v in items) or "none"


def main(argv: list[str] | None = None) -> int:
    """Survey the corpus and print the report; exit 1 when anything is dropped or wrong."""
    parser = argparse.ArgumentParser(prog="python -m tests.realworld.report")
    parser.add_argument("--all", action="store_true", help="list every offending file")
    parser.add_argument("--keep", type=Path, help="run into this data dir and keep it")
    args = parser.parse_args(argv)
    if args.keep is not None:
        found = survey(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="thumbcache-corpus-") as tmp:
            found = survey(Path(tmp) / "data")
    print_report(found, sys.stdout, show_all=args.all)
    f = found.figures
    clean = not (f.having(DROPPED) or f.having(WRONGLY_FAILED) or f.having(NO_OUTCOME))
    sound = not (found.rendition_problems or found.looks_different or f.misoriented)
    return 0 if clean and sound and found.run.ended else 1


if __name__ == "__main__":
    sys.exit(main())
