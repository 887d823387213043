"""Which rendition files the records name, and which of them the folder statistics include.

Statistics move with winning transitions. A record written by a job that is still unfinished,
for a stage that is still open, has not been applied yet: its winner will apply it, and until
then the statistics still include what it ``replaced``. (Since a stage's end writes the record
and its statistics in one transaction, only older versions leave such records.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from thumbcache.state.model import OPEN_STATES
from thumbcache.state.store import Store


@dataclass(frozen=True)
class Reference:
    """One rendition record of one image."""

    collection_id: str
    image_id: str
    stage: str
    record: Mapping[str, Any]
    in_flight: bool  # recorded by an unfinished job whose stage is still open

    @property
    def path(self) -> str:
        """The file the record names."""
        return str(self.record["path"])

    @property
    def counted(self) -> Mapping[str, Any] | None:
        """What the statistics include for this rendition: the record, or what it replaced."""
        return counted_record(self.record, in_flight=self.in_flight)

    @property
    def protected_paths(self) -> tuple[str, ...]:
        """Files cleanup must keep: the record's, and while in flight the one it replaced."""
        replaced = self.record.get("replaced")
        if self.in_flight and replaced is not None:
            return (self.path, str(replaced["path"]))
        return (self.path,)


def counted_record(record: Mapping[str, Any], *, in_flight: bool) -> Mapping[str, Any] | None:
    """The record the statistics include: itself once applied, else what it replaced."""
    if in_flight:
        replaced: Mapping[str, Any] | None = record.get("replaced")
        return replaced
    return record


class References:
    """Reads rendition records per collection, knowing which jobs are unfinished."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._unfinished = {str(job["_id"]) for job in store.jobs.find_unfinished()}

    @property
    def unfinished_jobs(self) -> set[str]:
        """Ids of the jobs that were running or stalled when this reader was made."""
        return set(self._unfinished)

    def of_collection(self, collection_id: str) -> Iterator[Reference]:
        """Every rendition record of a collection's images."""
        for image in self._store.images.iter_collection(collection_id):
            for stage, record in sorted((image.get("renditions") or {}).items()):
                if record is None:
                    continue
                yield Reference(
                    collection_id,
                    str(image["_id"]),
                    stage,
                    record,
                    self._in_flight(str(image["_id"]), stage, record),
                )

    def paths_of_collection(self, collection_id: str) -> set[str]:
        """Every file a collection's records protect from cleanup."""
        return {p for ref in self.of_collection(collection_id) for p in ref.protected_paths}

    def _in_flight(self, image_id: str, stage: str, record: Mapping[str, Any]) -> bool:
        job_id = record.get("job_id")
        if job_id not in self._unfinished:
            return False
        item = self._store.items.get(str(job_id), image_id)
        state = ((item or {}).get("stages") or {}).get(stage, {}).get("state")
        return state in OPEN_STATES
