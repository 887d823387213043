"""Reconciliation: recount folder statistics from disk and job counters from items.

A folder's statistics should equal the sizes on disk of the files its records name (orphans
and temp files excluded; records still in flight counted as their winners will apply them).
A record whose file is missing, or whose file's size differs from the record, is reported;
``apply`` clears it so the next scan's skip key renders it again (a mismatched file is not
trusted: it stays uncounted until re-rendered over or cleaned up as an orphan).

Statistics are read first and corrected with a compare-and-set, so a worker that moves them
while reconcile walks wins and the folder is reported as not fixed (run again). Job counters
are recounted only for jobs that are done or stalled: a running job's workers move them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dramatiq.brokers.stub import StubBroker

from thumbcache.ops.disk import file_size, walk_renditions
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import recount_job
from thumbcache.settings import Settings
from thumbcache.state.model import JOB_RUNNING
from thumbcache.state.recount import recount
from thumbcache.state.references import Reference, References
from thumbcache.state.store import Store

MISSING = "missing"
SIZE_MISMATCH = "size_mismatch"


@dataclass(frozen=True)
class RecordIssue:
    """A record whose file is missing or not the size it records."""

    kind: str
    image_id: str
    stage: str
    path: str
    folder_id: str
    recorded_bytes: int
    disk_bytes: int | None
    cleared: bool = False


@dataclass
class FolderCheck:
    """One folder: stored statistics, what they should be, what else lies on disk."""

    folder_id: str
    path: str
    stored: tuple[int, int]
    expected: tuple[int, int] = (0, 0)
    on_disk: tuple[int, int] = (0, 0)  # every file in the rendition trees, orphans included
    temp_files: int = 0
    missing: int = 0
    size_mismatches: int = 0
    fixed: bool = False
    note: str = ""

    @property
    def drift(self) -> tuple[int, int]:
        """Stored minus expected (files, bytes): positive when the statistics count too much."""
        return self.stored[0] - self.expected[0], self.stored[1] - self.expected[1]

    def count(self, size: int) -> None:
        """Add one referenced file of ``size`` bytes to what the statistics should be."""
        self.expected = (self.expected[0] + 1, self.expected[1] + size)

    def to_json(self) -> dict[str, Any]:
        """The folder's line in the report."""
        return {
            "folder_id": self.folder_id,
            "path": self.path,
            "stored_files": self.stored[0],
            "stored_bytes": self.stored[1],
            "expected_files": self.expected[0],
            "expected_bytes": self.expected[1],
            "drift_files": self.drift[0],
            "drift_bytes": self.drift[1],
            "files_on_disk": self.on_disk[0],
            "bytes_on_disk": self.on_disk[1],
            "temp_files": self.temp_files,
            "missing_files": self.missing,
            "size_mismatches": self.size_mismatches,
            "fixed": self.fixed,
            "note": self.note,
        }


@dataclass
class JobCheck:
    """One job: counters that differ from a recount of its items ({key: [stored, recount]})."""

    job_id: str
    status: str
    drift: dict[str, list[int]]
    fixed: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The job's line in the report."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "drift": self.drift,
            "fixed": self.fixed,
            "note": self.note,
        }


@dataclass
class ReconcileReport:
    """Every folder, every job with drift, every record issue; whether all was repaired."""

    applied: bool
    folders: list[FolderCheck] = field(default_factory=list)
    jobs: list[JobCheck] = field(default_factory=list)
    issues: list[RecordIssue] = field(default_factory=list)

    @property
    def fixed(self) -> bool:
        """True when ``apply`` left nothing unrepaired (a dry run never fixes)."""
        folders_ok = all(f.fixed or f.drift == (0, 0) for f in self.folders)
        jobs_ok = all(j.fixed for j in self.jobs)
        return self.applied and folders_ok and jobs_ok and all(i.cleared for i in self.issues)

    def summary(self) -> dict[str, Any]:
        """The JSON the command prints (drift summed as absolute values over folders)."""
        return {
            "folders": [f.to_json() for f in self.folders],
            "jobs": [j.to_json() for j in self.jobs],
            "missing_files": sum(1 for i in self.issues if i.kind == MISSING),
            "size_mismatches": sum(1 for i in self.issues if i.kind == SIZE_MISMATCH),
            "drift_files": sum(abs(f.drift[0]) for f in self.folders),
            "drift_bytes": sum(abs(f.drift[1]) for f in self.folders),
            "fixed": self.fixed,
        }


def classify(recorded_bytes: int, disk_bytes: int | None) -> str | None:
    """What is wrong with a record given its file's size on disk (None: nothing)."""
    if disk_bytes is None:
        return MISSING
    if disk_bytes != recorded_bytes:
        return SIZE_MISMATCH
    return None


def counter_drift(stored: Mapping[str, int], recount: Mapping[str, int]) -> dict[str, list[int]]:
    """Counters whose stored value differs from the recount: {key: [stored, recount]}."""
    return {k: [stored.get(k, 0), v] for k, v in recount.items() if stored.get(k, 0) != v}


def reconcile(store: Store, settings: Settings, *, apply: bool) -> ReconcileReport:
    """Check every folder and job; with ``apply`` clear bad records and correct statistics."""
    report = ReconcileReport(apply)
    checks = {
        str(f["_id"]): FolderCheck(
            str(f["_id"]),
            str(f["path"]),
            (int(f.get("total_files", 0)), int(f.get("current_size_bytes", 0))),
        )
        for f in store.folders.all()
    }  # statistics are read before anything else: the compare-and-set relies on it
    report.folders = list(checks.values())
    refs = References(store)
    for collection_id in _placed_collections(store, checks):
        for ref in refs.of_collection(collection_id):
            _check_reference(store, ref, checks, report, apply=apply)
    for check in report.folders:
        _walk(check)
        if apply:
            _correct(store, check)
    report.jobs = _check_jobs(store, settings, apply=apply)
    return report


def _placed_collections(store: Store, checks: Mapping[str, FolderCheck]) -> list[str]:
    ids = {str(c["_id"]) for fid in checks for c in store.collections.in_folder(fid)}
    return sorted(ids)


def _check_reference(
    store: Store,
    ref: Reference,
    checks: Mapping[str, FolderCheck],
    report: ReconcileReport,
    *,
    apply: bool,
) -> None:
    if ref.in_flight:  # not applied yet: counted as what it replaced, not checked on disk
        counted = ref.counted
        if counted is not None and str(counted.get("folder_id")) in checks:
            checks[str(counted["folder_id"])].count(int(counted["bytes"]))
        return
    record = ref.record
    folder_id = str(record.get("folder_id"))
    disk_bytes = file_size(ref.path)
    kind = classify(int(record["bytes"]), disk_bytes)
    check = checks.get(folder_id)
    if kind is None:
        if check is not None:
            check.count(int(disk_bytes or 0))
        return
    cleared = apply and store.images.clear_rendition_if(
        ref.image_id, ref.stage, path=ref.path, job_id=str(record.get("job_id"))
    )
    report.issues.append(
        RecordIssue(
            kind,
            ref.image_id,
            ref.stage,
            ref.path,
            folder_id,
            int(record["bytes"]),
            disk_bytes,
            cleared,
        )
    )
    if check is not None:
        if kind == MISSING:
            check.missing += 1
        else:
            check.size_mismatches += 1


def _walk(check: FolderCheck) -> None:
    files = size = 0
    for file in walk_renditions(check.path):
        if file.temp:
            check.temp_files += 1
        files += 1
        size += file.size
    check.on_disk = (files, size)


def _correct(store: Store, check: FolderCheck) -> None:
    if check.drift == (0, 0):
        return
    check.fixed = store.folders.replace_stats(check.folder_id, check.stored, check.expected)
    if not check.fixed:
        check.note = "statistics moved while reconciling (a worker finished work): run again"


def _check_jobs(store: Store, settings: Settings, *, apply: bool) -> list[JobCheck]:
    rt = Runtime(settings, store, StubBroker())  # recount_job needs a runtime; it publishes nothing
    checks = []
    for job_id in store.jobs.ids():
        job = store.jobs.get(job_id)
        if job is None:
            continue
        recounted = recount(job, store.items.iter_job(job_id))
        drift = counter_drift(_stored_counters(job, recounted), recounted)
        if not drift:
            continue
        check = JobCheck(job_id, str(job["status"]), drift)
        if job["status"] == JOB_RUNNING:
            check.note = "running: its workers move these counters; recounted once done or stalled"
        elif apply:
            recount_job(rt, job_id)
            check.fixed = True
        checks.append(check)
    return checks


def _stored_counters(job: Mapping[str, Any], keys: Iterable[str]) -> dict[str, int]:
    stored = {}
    for key in keys:
        node: Any = job
        for part in key.split("."):
            node = node.get(part, 0) if isinstance(node, Mapping) else 0
        stored[key] = int(node or 0)
    return stored
