"""Running ``thumbcache`` commands as a user does, and judging how a second one behaved."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thumbcache.state.store import Store
from thumbcache_control import cli

CLI = [sys.executable, "-m", "thumbcache_control.cli"]
# Issue 11 proposes 4 for "a server the command needs (database, broker) is unreachable";
# the lead adds it to thumbcache_control.cli and README.md when fixing the commands.
EXIT_UNREACHABLE = 4


def start(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start ``thumbcache ARGS`` in the background, its output captured."""
    return subprocess.Popen(
        [*CLI, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Wait for a started command (hang detection: killed and reported after ``timeout``)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"{process.args} hung for {timeout}s; stderr: {err[-2000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``thumbcache ARGS`` to its end."""
    return finish(start(*args, env=env), timeout)


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON summary a ``--json`` command ends with."""
    lines = stdout.strip().splitlines()
    assert lines, "no output on stdout"
    return dict(json.loads(lines[-1]))


def documented_exit_codes() -> dict[int, str]:
    """The exit codes ``thumbcache_control.cli`` names (its ``EXIT_*`` constants)."""
    return {v: k for k, v in vars(cli).items() if k.startswith("EXIT_") and isinstance(v, int)}


def assert_one_clear_line(stderr: str, mentions: str = "") -> str:
    """Standard error is one ``thumbcache: ...`` line (no traceback) matching ``mentions``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, f"a traceback instead of one clear line:\n{stderr[-3000:]}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-3000:]}"
    assert lines[0].startswith("thumbcache: "), lines[0]
    assert re.search(mentions, lines[0], re.IGNORECASE), (mentions, lines[0])
    return lines[0]


@dataclass(frozen=True)
class SecondCommand:
    """How a second command over a collection whose job was live ended: attached or refused."""

    attached: bool
    detail: str


def judge_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal: a documented exit code other than success, one clear line, no traceback."""
    codes = documented_exit_codes()
    assert result.returncode not in (cli.EXIT_OK, cli.EXIT_IMAGES_FAILED), result.returncode
    assert result.returncode in codes, (
        f"exit {result.returncode} is not a documented exit code {codes}; "
        f"stderr: {result.stderr[-2000:]}"
    )
    line = assert_one_clear_line(result.stderr)
    return f"refused: exit {result.returncode} ({codes[result.returncode]}): {line}"


def judge_second_run(
    result: subprocess.CompletedProcess[str], others: list[str], store: Store
) -> SecondCommand:
    """Accept exactly two behaviours of a ``run`` of a collection that other commands' jobs
    (``others``: created by anything but this run) were working on.

    Attached: it exits like a run (0, or 3 if images failed) with one of those jobs' summary.
    Refused: see :func:`judge_refusal`. A job of its own is accepted only if every other job
    that existed when it was created had ended by then (the run came too late to meet them).
    """
    if result.returncode not in (cli.EXIT_OK, cli.EXIT_IMAGES_FAILED):
        return SecondCommand(False, judge_refusal(result))
    job_id = last_json(result.stdout)["job_id"]
    if job_id in others:
        return SecondCommand(True, f"attached to job {job_id}")
    created = (store.jobs.get(job_id) or {})["created_at"]
    overlapped = {}
    for other in others:
        job = store.jobs.get(other) or {}
        finished = job.get("finished_at")
        if job.get("created_at", created) < created and (finished is None or finished > created):
            overlapped[other] = finished
    assert not overlapped, (
        f"the run started its own job {job_id} (created {created}) over the collection while "
        f"{overlapped} (job: finished at) were live"
    )
    return SecondCommand(True, f"started job {job_id} after the others ended")
