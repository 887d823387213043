"""A rendition's work for one message: claim, re-check, render, write, then end the stage.

Assume every message arrives twice: output paths are deterministic, writes are atomic, and the
stage's end (item transition, rendition record, folder statistics, job counters, the image's
outcome) is one transaction that exactly one call wins (:mod:`thumbcache.state.completion`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware import TimeLimitExceeded

from thumbcache.broker import publish_batch
from thumbcache.contracts import RenderBatch, RenderRequest, render_batch_message
from thumbcache.errors import PermanentError, StorageError, WorkerCrashed
from thumbcache.faults import fault_point
from thumbcache.imaging import ENGINE_VERSION
from thumbcache.pipeline.derivation import bases_of, released_messages
from thumbcache.pipeline.isolation import render_slot
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import finish_job_if_complete, settle_left_over
from thumbcache.renditions import RenditionSettings
from thumbcache.sandbox.protocol import RenderResult, RenderTask
from thumbcache.settings import WorkerSettings
from thumbcache.state.completion import Claim, Ended, StageEnd
from thumbcache.state.model import (
    DONE,
    FAILED,
    OPEN_STATES,
    SKIPPED,
    awaits_base,
    error_doc,
    recipe_hash,
    rendition_is_current,
    waiting_on,
)
from thumbcache.storage.layout import rendition_path

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one render produced: the terminal state, its facts, and the record to write."""

    state: str
    details: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # a new rendition (written when the stage ends)


# A batch hands the images it has not started on to a new message once it has run this share
# of a render message's time limit (see render_batch_step).
BATCH_SLICE = 0.5


@dataclass(frozen=True)
class Rendered:
    """An image whose renditions are written, its stages still to end (the message's stage
    first, then the companions it claimed under ``holder``)."""

    request: RenderRequest
    stages: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    unannounced: frozenset[str] = frozenset()  # companions no message of theirs will come for
    holder: str = ""


def render_step(
    rt: Runtime, stage: str, request: RenderRequest, *, last_try: bool, redelivered: bool = False
) -> str:
    """Handle one render message; return what happened (for logs and tests).

    A permanent error fails the item now. A transient error is re-raised for Dramatiq to retry,
    unless this is the last try, in which case the item fails with that error as its reason.
    A redelivered message (it survived a crash) is claimed and rendered alone in this process.
    """
    shares = rt.shares_decodes
    turn = rt.image_turns.turn(request.job_id, request.image_id) if shares else nullcontext()
    with turn, render_slot(redelivered):  # the turn first: a turn never waits on a slot holder
        return _render_claimed(rt, stage, request, last_try=last_try)


def render_batch_step(
    rt: Runtime,
    stage: str,
    requests: Sequence[RenderRequest],
    *,
    last_try: bool,
    redelivered: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Handle a batch message: each image as its own message would be (:func:`render_step`),
    one after another; what happened to each ("handed on": left to the batch's continuation).

    The images it can take now (their turns free) are claimed together, in one transaction,
    and the images rendered end together, in another, once the batch has rendered them
    (a transaction per image cost the embedded run 1.1-1.35 ms of CPU for an end and about
    1 ms for a claim, most of it paid again for each image). A crash mid-batch therefore
    charges each claimed image an attempt (they are retried one by one: see a redelivered
    batch below); an image the batch hands on or is interrupted before gets its claim back
    uncharged; if the claim fails, each image claims alone. Until the ends, the batch's turns
    are held, so their companions' own messages wait for those ends rather than claim them
    again. An image whose turn another thread holds (its companion's batch) is put off to the
    end, after the turns are passed on, so the two threads of an image's two batches take
    turns rendering instead of one waiting on the other. An image to be retried (a transient
    error, its attempt released) does not stop the others: its error is raised once they are
    handled, Dramatiq retries the message, and in the retry the images that ended are
    duplicates. A redelivered batch (a crash survivor) claims, renders and ends each image
    alone, holding the process's renders.

    A batch that has run half of a render message's time limit hands the images it has not
    started on to a new message of its own (as the scan hands on its slices), so a message
    never runs longer than one render's: the time limits and RabbitMQ's consumer timeout
    stay as they are for one image (docs/DEPLOYMENT.md).
    """
    results: dict[int, str] = {}
    retry: Exception | None = None
    deadline = clock() + rt.settings.worker.render_actor_time_limit_seconds * BATCH_SLICE

    def handle(position: int, ending: list[Rendered] | None, claimed: _Claimed | None) -> None:
        nonlocal retry
        try:
            with render_slot(redelivered):
                results[position] = _render_claimed(
                    rt, stage, requests[position], last_try=last_try, ending=ending,
                    claimed=claimed,
                )  # fmt: skip
        except Exception as exc:  # a time limit (BaseException) ends the whole message
            retry = retry or exc
            results[position] = "retry"

    put_off: list[int] = []
    ending: list[Rendered] = []
    claimed: dict[int, _Claimed] = {}
    alone = redelivered or not batch_may_share_crashes(rt.settings.worker)
    with contextlib.ExitStack() as turns:
        try:
            now = _take_turns(rt, stage, requests, turns, results, put_off)
            if not alone:  # else each image claims alone, as it renders (see the docstring)
                claimed = _claim_ahead(rt, stage, requests, now)
            for position in now:
                if results and clock() >= deadline:
                    break
                handle(position, None if alone else ending, claimed.pop(position, None))
            end_rendered(rt, ending)  # before the turns are passed on
        except BaseException as exc:  # interrupted: the images rendered give their claims back
            _give_back_rendered(rt, ending, exc)
            raise
        finally:  # claimed, never started (handed on, or interrupted): uncharged
            for position, unstarted in claimed.items():
                _give_back_unstarted(rt, stage, requests[position], unstarted)
    for position in put_off:
        if results and clock() >= deadline:
            break
        request = requests[position]
        with rt.image_turns.turn(request.job_id, request.image_id):
            handle(position, None, None)
    rest = [r for position, r in enumerate(requests) if position not in results]
    if rest:
        publish_batch(rt.broker, [_continuation(rt, stage, rest)])
    if retry is not None:
        raise retry
    return [results.get(i, "handed on") for i in range(len(requests))]


def batch_may_share_crashes(worker: WorkerSettings) -> bool:
    """True when a batch may claim and end its images together: a crash then charges each of
    them an attempt, which takes a second attempt to tell an innocent image from the one that
    crashed (with ``max_attempts`` 1, each image is claimed and ended alone)."""
    return worker.max_attempts >= 2


def _take_turns(
    rt: Runtime,
    stage: str,
    requests: Sequence[RenderRequest],
    turns: contextlib.ExitStack,
    results: dict[int, str],
    put_off: list[int],
) -> list[int]:
    """The positions of the images a batch renders now: their turns taken (held by ``turns``)
    where the process shares decodes. An image whose turn another thread holds is added to
    ``put_off``; one this process ended with its companion's message is a duplicate."""
    now = []
    for position, request in enumerate(requests):
        if rt.shares_decodes:
            turn = rt.image_turns.turn_if_free(request.job_id, request.image_id)
            if not turns.enter_context(turn):
                put_off.append(position)
                continue
        if rt.image_turns.ended_here(request.job_id, request.image_id, stage):
            results[position] = "duplicate"
        else:
            now.append(position)
    return now


def _continuation(
    rt: Runtime, stage: str, requests: Sequence[RenderRequest]
) -> dramatiq.Message[Any]:
    """The message that renders the images a batch handed on (a batch again, or one image)."""
    rendition = rt.settings.rendition(stage)
    return render_batch_message(rendition, RenderBatch.of(requests))


def _give_back_rendered(rt: Runtime, images: Sequence[Rendered], exc: BaseException) -> None:
    """Images rendered whose stages did not end: their claims go back, uncounted as crashes
    (their files are written; the retry writes them again, at the same paths)."""
    error = error_doc(type(exc).__name__, f"interrupted before the stages ended: {exc}")
    for rendered in images:
        stage, *companions = rendered.stages
        _give_back(rt, companions, rendered.holder, rendered.request)
        _release_quietly(rt, stage, rendered.request, error)


def _claim_ahead(
    rt: Runtime, stage: str, requests: Sequence[RenderRequest], positions: Sequence[int]
) -> dict[int, _Claimed]:
    """The claims of the images at ``positions``, made in one transaction, by position; none
    if that failed (each image then claims alone, its error its own)."""
    try:
        taken = _claim_all(rt, stage, [requests[p] for p in positions])
    except Exception:
        log.warning("a batch's claims failed; claiming its images one by one", exc_info=True)
        return {}
    return dict(zip(positions, taken, strict=True))


def _give_back_unstarted(rt: Runtime, stage: str, request: RenderRequest, claim: _Claimed) -> None:
    """A batch's claim on an image it did not start goes back, its attempt undone."""
    image, companions, holder = claim
    _give_back(rt, companions, holder, request)
    if image is None:  # its stage was not claimed
        return
    try:
        rt.store.items.give_back(request.job_id, request.image_id, stage, rt.worker_name)
    except Exception:  # at worst its next message finds it running and claims it again
        log.debug("could not give back %s of %s", stage, request.image_id, exc_info=True)


def _render_claimed(
    rt: Runtime,
    stage: str,
    request: RenderRequest,
    *,
    last_try: bool,
    ending: list[Rendered] | None = None,
    claimed: _Claimed | None = None,
) -> str:
    """Claim (unless ``claimed`` already), render and end one image's stage (and its
    companions). With ``ending``, a rendered image is added to it instead, to end with the
    batch's others."""
    if claimed is None:
        if rt.image_turns.ended_here(request.job_id, request.image_id, stage):
            return "duplicate"  # ended here with the stage whose message came first
        claimed = _claim_all(rt, stage, [request])[0]
    image, companions, holder = claimed
    if image is None:
        _give_back(rt, companions, holder, request)
        return _unclaimed(rt, stage, request)
    stages = (stage, *companions)
    fault_point("before_render", request.source)
    try:
        outcomes = produce_all(rt, stages, request, image)
    except PermanentError as exc:  # the source itself: every rendition of it fails alike
        log.warning("%s %s failed: %s: %s", stage, request.source, exc.error_class, exc)
        complete_all(rt, stages, request, [Outcome(FAILED)] * len(stages), exc)
        return FAILED
    except TimeLimitExceeded:
        # Dramatiq's backstop (the database hung, not the render): give the attempt back.
        _give_back(rt, companions, holder, request)
        _release_quietly(rt, stage, request, error_doc("TimeLimitExceeded", "message too slow"))
        raise
    except Exception as exc:
        _give_back(rt, companions, holder, request)  # their own messages try them alone
        error = error_doc(getattr(exc, "error_class", type(exc).__name__), str(exc))
        if last_try:
            log.error("%s %s failed after retries: %s", stage, request.source, exc)
            complete(rt, stage, request, Outcome(FAILED), error)
            return FAILED
        log.warning("%s %s will be retried: %s", stage, request.source, exc)
        _release_quietly(rt, stage, request, error)
        raise
    kept = [(s, o) for s, o in zip(stages, outcomes, strict=True) if o is not None]
    unwritten = [s for s, o in zip(stages, outcomes, strict=True) if o is None]
    _give_back(rt, unwritten, holder, request)
    unannounced = _without_messages(rt, stage, companions, image)
    rendered = Rendered(request, tuple(s for s, _ in kept), tuple(o for _, o in kept),
                        unannounced, holder)  # fmt: skip
    if ending is not None:
        ending.append(rendered)
    else:
        end_rendered(rt, [rendered])
    return rendered.outcomes[0].state


def _without_messages(
    rt: Runtime, stage: str, companions: Sequence[str], image: dict[str, Any]
) -> frozenset[str]:
    """The companions derived from ``stage``: the scan held their messages back until it ends
    (ended with it, they never get one)."""
    renditions = rt.settings.renditions
    bases = bases_of(renditions, (stage, *companions), image.get("width"), image.get("height"))
    return frozenset(c for c in companions if bases.get(c) == stage)


def _give_back(rt: Runtime, companions: Sequence[str], holder: str, request: RenderRequest) -> None:
    """Companions this message could not finish go back to pending, untouched by its failure:
    their own messages render them (and count their own errors). Guarded by this claim's own
    holder name, so a companion that its own message has claimed since is left to it."""
    for companion in companions:
        try:
            rt.store.items.give_back(request.job_id, request.image_id, companion, holder)
        except Exception:  # its own message still comes: at worst it finds the stage running
            log.debug("could not give back %s of %s", companion, request.image_id, exc_info=True)


# An image's claim: its document (None: the stage was not claimed), the companions won, and
# the holder name their claims carry.
_Claimed = tuple[dict[str, Any] | None, list[str], str]


def _claim_all(rt: Runtime, stage: str, requests: Sequence[RenderRequest]) -> list[_Claimed]:
    """Claim the message's stage of each image and, in the same transaction, the image's other
    renditions this process serves whose stages are still pending (none running elsewhere), so
    that one decode renders them all; their own messages then find them ended (duplicates).
    Each image's companions carry a holder name of their own (the worker's plus a token of
    this claim), to give them back by."""
    worker = rt.settings.worker
    others = [o for o in rt.hosted_renditions if o != stage] if rt.shares_decodes else []
    claims: list[Claim] = []
    holders = []
    for request in requests:
        job, image_id = request.job_id, request.image_id
        holder = f"{rt.worker_name}+{stage}:{secrets.token_hex(4)}"
        holders.append(holder)
        claims.append(Claim(job, image_id, stage, rt.worker_name, worker.max_attempts))
        claims += [Claim(job, image_id, other, holder, worker.max_attempts, pending_only=True)
                   for other in others]  # fmt: skip
    docs = rt.state_writer.claim_all(claims) if claims else []
    width = 1 + len(others)
    claimed: list[_Claimed] = []
    for position, holder in enumerate(holders):
        image, *won = docs[position * width : (position + 1) * width]
        companions = [o for o, doc in zip(others, won, strict=True) if doc is not None]
        claimed.append((image, companions, holder))
    return claimed


def produce(
    rt: Runtime, stage: str, request: RenderRequest, image: dict[str, Any] | None = None
) -> Outcome:
    """Render and write one rendition, or find it already current (skipped)."""
    outcome = produce_all(rt, (stage,), request, image)[0]
    assert outcome is not None  # only companions are ever given back
    return outcome


@dataclass(frozen=True)
class _Target:
    """A rendition to render: where its file goes and the recipe it is made with."""

    rendition: RenditionSettings
    path: str
    folder_id: str
    recipe: str


def produce_all(
    rt: Runtime,
    stages: Sequence[str],
    request: RenderRequest,
    image: dict[str, Any] | None = None,
) -> list[Outcome | None]:
    """Render and write the renditions of ``stages`` from one decode, or find each already
    current (skipped). ``image`` is the image document as the claim read it (read here when not
    given). The first stage's errors raise; a later stage (a companion) whose file could not be
    written gets None (it is given back).

    Files are written by the render process (atomically, at their deterministic paths), so
    no image bytes pass through this process; their records are written when the stages end,
    over whatever records are there then.
    """
    settings = rt.settings
    collection = rt.collection(request.collection_id)
    if image is None:
        image = rt.store.images.get(request.image_id) or {}
    folder_id = str(collection["folder_id"])
    outcomes: list[Outcome | None] = []
    targets: list[_Target] = []
    for stage in stages:
        rendition = settings.rendition(stage)
        path = rendition_path(
            rt.folder_path(folder_id), rendition, request.collection_id, request.image_id
        )
        recipe = recipe_hash(rendition, ENGINE_VERSION)
        previous = (image.get("renditions") or {}).get(stage)
        current = rendition_is_current(
            previous, recipe, image.get("fingerprint") or {}, os.path.isfile(path)
        )
        if current and not request.force:
            outcomes.append(Outcome(SKIPPED))
        else:
            outcomes.append(None)
            targets.append(_Target(rendition, path, folder_id, recipe))
    if not targets:
        return outcomes
    started = time.perf_counter()
    only = targets[0].rendition.name if len(targets) == 1 else None
    named = request.base if only == stages[0] else ""  # the base the message names
    base = _base_record(rt, only, named, image) if only else None
    first = _render_derived(rt, request, targets[0], *base) if base else None
    if first is None:
        task = RenderTask(
            collection["root"], request.source, targets[0].rendition, settings.limits,
            also=tuple(t.rendition for t in targets[1:]), decode_for=_decode_plan(rt),
            outputs=tuple(t.path for t in targets), fsync=settings.worker.fsync,
        )  # fmt: skip
        first = rt.render_pool.render(task, settings.worker.render_time_limit_seconds)
    render_ms = round((time.perf_counter() - started) * 1000)
    results = iter(zip(targets, [first, *first.also], strict=True))
    written: list[Outcome | None] = []
    for position, outcome in enumerate(outcomes):
        if outcome is not None:
            written.append(outcome)
            continue
        target, result = next(results)
        try:
            written.append(_written(rt, request, target, result, render_ms))
        except Exception as exc:
            if position == 0:  # the message's own stage: its error decides the message
                raise
            log.warning("%s of %s not written (given back): %s", target.rendition.name,
                        request.source, exc)  # fmt: skip
            written.append(None)
    return written


def _base_record(
    rt: Runtime, stage: str, named: str, image: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The rendition this stage is derived from and its record, when that rendition is current
    (its stage ended before this message went out; otherwise it failed, and the source is
    rendered as usual). The base is the one ``named`` by the message, else the one the scan's rule
    gives for this image: a message sent without it (a duplicate, a requeue by hand) renders
    what its released twin renders."""
    renditions = rt.settings.renditions
    name = named
    if not name and renditions[stage].derive_from:
        pair = (stage, renditions[stage].derive_from)
        name = bases_of(renditions, pair, image.get("width"), image.get("height")).get(stage, "")
    base = renditions.get(name) if name else None
    record = (image.get("renditions") or {}).get(name) if base else None
    if base is None or record is None:
        return None
    path = str(record.get("path") or "")
    recipe = recipe_hash(base, ENGINE_VERSION)
    fingerprint = image.get("fingerprint") or {}
    current = rendition_is_current(record, recipe, fingerprint, os.path.isfile(path))
    return (name, record) if current else None


def _render_derived(
    rt: Runtime, request: RenderRequest, target: _Target, name: str, base: dict[str, Any]
) -> RenderResult | None:
    """Render ``target`` from the base rendition's file (in the sandbox, as a source), recorded
    as made from the source the base was made from; None if that file cannot be rendered (the
    source is then). A file that cannot be written is no fault of the base: it raises."""
    path = str(base["path"])
    task = RenderTask(os.path.dirname(path), os.path.basename(path), target.rendition,
                      rt.settings.limits, outputs=(target.path,),
                      fsync=rt.settings.worker.fsync)  # fmt: skip
    try:
        result = rt.render_pool.render(task, rt.settings.worker.render_time_limit_seconds)
    except (TimeLimitExceeded, StorageError):
        raise
    except Exception as exc:
        log.warning("%s of %s: its %s file did not render (%s); rendering the source",
                    target.rendition.name, request.source, name, exc)  # fmt: skip
        return None
    return dataclasses.replace(
        result,
        fingerprint=dict(base["fingerprint"]),
        source_quality=base.get("source_quality"),
        derived_from=name,
    )


def _decode_plan(rt: Runtime) -> tuple[RenditionSettings, ...]:
    """What every render's decode is planned for in a process that shares decodes: all the
    renditions it serves. A thumbnail then has the same bytes whether rendered alone or with
    the cache image, so a duplicate delivery racing a shared render rewrites its file with the
    same bytes. A process serving one rendition plans for it alone (nothing to share)."""
    if not rt.shares_decodes:
        return ()
    return tuple(rt.settings.rendition(name) for name in rt.hosted_renditions)


def _written(
    rt: Runtime, request: RenderRequest, target: _Target, rendered: RenderResult, render_ms: int
) -> Outcome:
    if rendered.write_error or rendered.written != target.path:  # a companion's file
        raise StorageError(rendered.write_error or f"{target.path} was not written")
    fault_point("after_rename", request.source)  # the render process wrote and renamed it
    record = {
        "path": target.path,
        "folder_id": target.folder_id,
        "width": rendered.width,
        "height": rendered.height,
        "bytes": rendered.bytes,
        "format": rendered.format,
        "quality": rendered.quality,
        "source_quality": rendered.source_quality,
        "recipe": target.recipe,
        "fingerprint": rendered.fingerprint,
        "job_id": request.job_id,
    }
    details: dict[str, Any] = {
        "bytes": rendered.bytes,
        "quality": rendered.quality,
        "render_ms": render_ms,
    }
    if rendered.derived_from:
        record["derived_from"] = details["derived_from"] = rendered.derived_from
    return Outcome(DONE, details, record)


def complete(
    rt: Runtime,
    stage: str,
    request: RenderRequest,
    outcome: Outcome,
    error: PermanentError | dict[str, str] | None = None,
) -> bool:
    """End the stage (one transaction: see the module docstring); True for the one call that
    did. Then remove a file the new record moved away from, and finish the job if that was
    its last open stage."""
    ended = rt.state_writer.end(_stage_end(stage, request, outcome, error))
    if ended is None:
        return False
    if _after_end(rt, stage, request, outcome, ended):
        finish_job_if_complete(rt, request.job_id)
    return True


def _stage_end(
    stage: str,
    request: RenderRequest,
    outcome: Outcome,
    error: PermanentError | dict[str, str] | None,
) -> StageEnd:
    counts = not isinstance(error, PermanentError) or error.counts_toward_quarantine
    if isinstance(error, PermanentError):
        error = error_doc(error.error_class, str(error))
    return StageEnd(
        request.job_id,
        request.image_id,
        stage,
        outcome.state,
        record=outcome.record,
        error=error,
        details=outcome.details,
        counts_toward_quarantine=counts,
    )


def _after_end(
    rt: Runtime,
    stage: str,
    request: RenderRequest,
    outcome: Outcome,
    ended: Ended,
    released: dict[str, list[RenderRequest]] | None = None,
) -> bool:
    """Remove a file the new record moved away from; send the renditions derived from this
    one on their way (or add them to ``released``, per rendition, for the caller to send).
    True if the image settled (its job may be finished then)."""
    replaced = ended.replaced
    if outcome.record and replaced is not None and replaced["path"] != outcome.record["path"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(replaced["path"])  # the recipe moved the file (another size or format)
    if released is None:
        _release(rt, stage, request, ended.released)
    else:
        for waiting in ended.released:
            released.setdefault(waiting, []).append(dataclasses.replace(request, base=stage))
    return ended.settled is not None


def _release(rt: Runtime, base: str, request: RenderRequest, stages: Sequence[str]) -> None:
    """Publish the messages of an image's stages that waited for ``base`` to end."""
    _publish_released(rt, {stage: [dataclasses.replace(request, base=base)] for stage in stages})


def _publish_released(rt: Runtime, released: dict[str, list[RenderRequest]]) -> None:
    """Publish released stages' messages, batched (per stage, its images' requests). Raises if
    the broker refuses: the bases' message is then retried, and its duplicates publish them."""
    renditions, size = rt.settings.renditions, rt.settings.scan.render_batch
    messages = released_messages(renditions, released, size)
    if messages:
        publish_batch(rt.broker, messages)


def complete_all(
    rt: Runtime,
    stages: Sequence[str],
    request: RenderRequest,
    outcomes: Sequence[Outcome],
    error: PermanentError | dict[str, str] | None = None,
) -> None:
    """:func:`complete` for several stages of one image, ended in one transaction."""
    end_rendered(rt, [Rendered(request, tuple(stages), tuple(outcomes))], error)


def end_rendered(
    rt: Runtime,
    images: Sequence[Rendered],
    error: PermanentError | dict[str, str] | None = None,
) -> None:
    """End the stages of these images in one transaction (see :func:`complete`), then do what
    follows each end, and finish each job once if an image of it settled. The companions
    ended are remembered for their own messages, except those no message will come for."""
    ends = [
        _stage_end(stage, rendered.request, outcome, error)
        for rendered in images
        for stage, outcome in zip(rendered.stages, rendered.outcomes, strict=True)
    ]
    if not ends:
        return
    results = iter(rt.state_writer.end_all(ends))
    settled_jobs, recorded = set(), []
    released: dict[str, list[RenderRequest]] = {}  # derived stages the ends let go, batched
    for rendered in images:
        request, remembered = rendered.request, []
        for position, (stage, outcome) in enumerate(
            zip(rendered.stages, rendered.outcomes, strict=True)
        ):
            ended = next(results)
            if ended is None:
                continue
            if _after_end(rt, stage, request, outcome, ended, released):
                settled_jobs.add(request.job_id)
            ok = outcome.state in (DONE, SKIPPED) and stage not in rendered.unannounced
            if position and ok:
                remembered.append(stage)
        rt.image_turns.note_ended(request.job_id, request.image_id, remembered)
        recorded.append(request.source)
    _publish_released(rt, released)
    for job_id in sorted(settled_jobs):
        finish_job_if_complete(rt, job_id)
    if error is None:
        for source in recorded:
            fault_point("after_record", source)


def _unclaimed(rt: Runtime, stage: str, request: RenderRequest) -> str:
    """A message we could not claim: a duplicate of finished work, an early message of a
    derived rendition, or a poison item."""
    item = rt.store.items.get(request.job_id, request.image_id) or {}
    stages = item.get("stages") or {}
    sub = stages.get(stage)
    if sub is None:
        log.warning("%s message for unknown item %s:%s", stage, request.job_id, request.image_id)
        return "unknown"
    if sub.get("state") in OPEN_STATES:
        if awaits_base(stages, stage):
            return "early"  # derived, and its base has not ended: that end sends it again
        exc = WorkerCrashed(
            f"started {sub.get('attempts', 0)} times without finishing (the worker died each time)"
        )
        log.error("%s %s is poison: %s", stage, request.source, exc)
        complete(rt, stage, request, Outcome(FAILED), exc)
        return FAILED
    # The stage ended: a crash between its end and the release may have kept back the
    # renditions derived from it (publishing them twice is harmless).
    _release(rt, stage, request, waiting_on(stages, stage))
    if item.get("outcome") is None:
        settle_left_over(rt, request.job_id, request.image_id)  # an older version's crash
    return "duplicate"


def _release_quietly(
    rt: Runtime, stage: str, request: RenderRequest, error: dict[str, str]
) -> None:
    try:
        rt.store.items.release_attempt(request.job_id, request.image_id, stage, error)
    except Exception:  # the database may be the transient fault itself
        log.debug("could not release attempt of %s", request.image_id, exc_info=True)
