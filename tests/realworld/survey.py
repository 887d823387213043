"""One survey of the corpus: fetch it, ask the reference, run thumbcache, judge every file."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.realworld import reference, sources
from tests.realworld.expectations import EXPECTATIONS, NOT_CANDIDATES, Expectation, unused
from tests.realworld.looks import looks_wrong
from tests.realworld.runner import RunResult, rendition_problems, run_corpus
from tests.realworld.verdict import NOT_A_CANDIDATE, Figures, figures

RUN_TIMEOUT_SECONDS = 900.0  # hang detection only: the corpus runs in well under a minute


@dataclass
class Survey:
    """Everything the report prints and the corpus test asserts on."""

    root: Path
    download_bytes: int
    run: RunResult
    figures: Figures
    rendition_problems: list[str]
    unused_expectations: list[Expectation]
    looks_different: list[str]  # thumbnails that do not show the reference's picture
    timings: dict[str, float] = field(default_factory=dict)


def survey(data_dir: Path, timeout: float = RUN_TIMEOUT_SECONDS) -> Survey:
    """Fetch (or reuse) the corpus, classify it, run ``thumbcache`` over it into ``data_dir``."""
    timings = {}
    started = time.monotonic()
    root = sources.materialise()
    paths = sources.corpus_files(root)
    timings["fetch"] = time.monotonic() - started
    started = time.monotonic()
    references = reference.classify(root, paths, cache=sources.cache_dir())
    references.update(_entries(references))
    timings["reference"] = time.monotonic() - started
    result = run_corpus(root, data_dir, timeout)
    timings["run"] = result.seconds
    judged = figures(
        references,
        result.images,
        reference.known_image_extensions(),
        EXPECTATIONS + NOT_CANDIDATES,
    )
    failed_paths = [s for s, line in result.images.items() if line.get("error")]
    return Survey(
        root=root,
        download_bytes=sources.download_bytes(),
        run=result,
        figures=judged,
        rendition_problems=rendition_problems(result.images),
        unused_expectations=unused(EXPECTATIONS, failed_paths)
        + unused(NOT_CANDIDATES, [j.path for j in judged.having(NOT_A_CANDIDATE)]),
        looks_different=_looks_different(root, result, references),
        timings=timings,
    )


def _looks_different(
    root: Path, result: RunResult, references: dict[str, reference.Reference]
) -> list[str]:
    out = []
    for source, line in sorted(result.images.items()):
        known = references.get(source)
        if line.get("thumbnail") is None or known is None or not known.loads:
            continue
        original = source.removeprefix(sources.entry_source(""))  # an entry: its file
        score = looks_wrong(root / original, Path(line["thumbnail"]["path"]))
        if score is not None:
            out.append(f"{source}: differs by {score:.0f}/255 from the reference's view")
    return out


def _entries(references: dict[str, reference.Reference]) -> dict[str, reference.Reference]:
    """The sample archive's entries, judged as the files they copy."""
    out = {}
    for path in sources.archived(list(references)):
        source = sources.entry_source(path)
        out[source] = dataclasses.replace(references[path], path=source)
    return out
