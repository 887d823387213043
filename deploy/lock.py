"""The images' locked requirements: one hashed file per image extra, compiled from pyproject.toml.

    python deploy/lock.py           recompile every lock with uv (reaches the package index)
    python deploy/lock.py --check   offline: each lock was compiled from today's pyproject.toml
                                    and pins every requirement within its bounds

Each lock (deploy/requirements/<extra>.txt) is what one image installs with
``pip install --require-hashes``: the core dependencies plus one extra (scanner, render, status,
control), for CPython 3.11 on Linux, the images' interpreter. ``build.txt`` locks the build
backend the images build the wheel with. A lock's first line records a digest of the
requirements it was compiled from, so a change to pyproject.toml that was not recompiled fails
``--check`` (and tests/deploy/test_locks.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "deploy" / "requirements"
IMAGE_EXTRAS = ("scanner", "render", "status", "control")
BUILD = "build"  # the build backend ([build-system] requires)
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# Markers are evaluated for the images' interpreter and platform.
MARKER_ENV = {"python_version": PYTHON, "sys_platform": "linux", "platform_system": "Linux"}
DIGEST_LINE = re.compile(r"^# inputs: sha256:([0-9a-f]{64})\b")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def read_pyproject(root: Path = ROOT) -> dict[str, object]:
    """pyproject.toml, parsed."""
    return tomllib.loads((root / "pyproject.toml").read_text())


def inputs(pyproject: dict[str, object], name: str) -> list[str]:
    """The requirements a lock is compiled from, self-references expanded, sorted."""
    if name == BUILD:
        build_system = pyproject["build-system"]
        assert isinstance(build_system, dict)
        return sorted(str(Requirement(r)) for r in build_system["requires"])
    project = pyproject["project"]
    assert isinstance(project, dict)
    own = canonicalize_name(project["name"])
    extras: dict[str, list[str]] = project["optional-dependencies"]
    found: set[str] = {str(Requirement(r)) for r in project["dependencies"]}
    pending, seen = [name], set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in extras[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == own:
                pending.extend(req.extras)
            else:
                found.add(str(req))
    return sorted(found)


def digest(requirements: list[str]) -> str:
    """The digest a lock records of the requirements (and target) it was compiled from."""
    text = "\n".join([f"python {PYTHON} {PLATFORM}", *requirements])
    return hashlib.sha256(text.encode()).hexdigest()


def pins(lock_text: str) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a hashed requirements file."""
    found: dict[str, tuple[str, int]] = {}
    current = None
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (match.group(2), 0)
        if current and "--hash=sha256:" in line:
            version, hashes = found[current]
            found[current] = (version, hashes + line.count("--hash=sha256:"))
        if not line.rstrip().endswith("\\"):
            current = None
    return found


def problems(pyproject: dict[str, object], name: str, lock_text: str) -> list[str]:
    """Why a lock does not match pyproject.toml (empty: it does)."""
    wanted = inputs(pyproject, name)
    first = lock_text.splitlines()[0] if lock_text else ""
    match = DIGEST_LINE.match(first)
    found: list[str] = []
    if not match or match.group(1) != digest(wanted):
        found.append(f"{name}: compiled from other requirements: run python deploy/lock.py")
    pinned = pins(lock_text)
    for package, (version, hashes) in sorted(pinned.items()):
        if hashes == 0:
            found.append(f"{name}: {package}=={version} has no hash")
    for text in wanted:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(MARKER_ENV):
            continue
        pin = pinned.get(canonicalize_name(req.name))
        if pin is None:
            found.append(f"{name}: {req.name} is not pinned")
        elif not req.specifier.contains(pin[0], prereleases=True):
            found.append(f"{name}: {req.name}=={pin[0]} is outside {req.specifier}")
    return found


def compile_lock(pyproject: dict[str, object], name: str) -> str:
    """Resolve and hash one lock with uv (the index must be reachable)."""
    uv = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if uv is None:
        raise SystemExit("uv not found: install the dev extra")
    wanted = inputs(pyproject, name)
    command = [
        uv, "pip", "compile", "-", "--generate-hashes", "--no-header", "--quiet",
        "--python-version", PYTHON, "--python-platform", PLATFORM,
    ]  # fmt: skip
    env = {**os.environ, "SSL_CERT_FILE": os.environ.get("SSL_CERT_FILE", _system_cas())}
    out = subprocess.run(
        command, input="\n".join(wanted), capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"uv could not resolve {name}:\n{out.stderr}")
    what = "[build-system] requires" if name == BUILD else f"the core and extra {name!r}"
    return (
        f"# inputs: sha256:{digest(wanted)} ({what} of pyproject.toml)\n"
        f"# Compiled for CPython {PYTHON} on {PLATFORM} by `python deploy/lock.py`; do not edit.\n"
        + out.stdout
    )


def _system_cas() -> str:
    """The system's CA bundle (this network may intercept HTTPS with its own CA)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(bundle) if bundle.exists() else ""


def main(argv: list[str] | None = None) -> int:
    """Recompile the locks, or check them (``--check``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check, offline; change nothing")
    args = parser.parse_args(argv)
    pyproject = read_pyproject()
    names = (*IMAGE_EXTRAS, BUILD)
    if args.check:
        found = [
            p for name in names for p in problems(pyproject, name, _read(LOCKS / f"{name}.txt"))
        ]
        for problem in found:
            print(problem, file=sys.stderr)
        return 1 if found else 0
    LOCKS.mkdir(parents=True, exist_ok=True)
    for name in names:
        (LOCKS / f"{name}.txt").write_text(compile_lock(pyproject, name))
        print(f"deploy/requirements/{name}.txt")
    return 0


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
