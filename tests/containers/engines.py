"""Where the smoke test runs containers: docker or podman on this machine, or the container lab.

Each engine runs shell commands in a project folder (a copy of the repository) and knows how to
build an image and which compose command to use. The lab (``../shared/tools/container-lab.sh``)
is for machines that reach no container registry: it makes the base images from Debian packages
and runs podman 5 and podman-compose in a private mount namespace, where the project copy is
``/ctr/repo``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_SCRIPT = ROOT.parent / "shared" / "tools" / "container-lab.sh"
LAB_WORK = "/tmp/thumbcache-smoke-lab"  # its own podman storage: never another lab's
PROJECT = "thumbcache-smoke"  # compose project on a shared engine: a developer's stays untouched


class EngineError(RuntimeError):
    """A container command failed; the message holds its output."""


@dataclass
class Engine:
    """Docker or podman on this machine, running commands in ``project``."""

    name: str
    compose: str
    project: Path
    tag: str = "smoke"
    log: list[str] = field(default_factory=list)

    def sh(self, command: str, *, check: bool = True, timeout: float = 900) -> str:
        """Run ``command`` in the project folder; its standard output (stderr joined on error)."""
        self.log.append(command)
        out = subprocess.run(
            ["bash", "-c", command],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise EngineError(f"`{command}` exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def build(self, service: str) -> None:
        """Build ``services/<service>/Dockerfile`` from the project root as compose names it."""
        docker_format = " --format docker" if self.name == "podman" else ""  # keep HEALTHCHECK
        self.sh(
            f"{self.name} build{docker_format} -f services/{service}/Dockerfile "
            f"-t thumbcache/{service}:{self.tag} ."
        )

    def prepare(self) -> None:
        """Nothing to set up on a machine with its own engine."""

    def teardown(self) -> None:
        """Nothing beyond ``compose down``."""


@dataclass
class Lab(Engine):
    """The container lab: podman and podman-compose inside a namespace of their own."""

    work: str = LAB_WORK

    def _lab(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "WORK": self.work, "SRC": str(self.project)}
        return subprocess.run(
            ["bash", str(LAB_SCRIPT), *args],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sh(self, command: str, *, check: bool = True, timeout: float = 900) -> str:
        """Run ``command`` in the lab, in its copy of the project."""
        self.log.append(command)
        out = self._lab("sh", f"cd /ctr/repo && {command}", timeout=timeout)
        if check and out.returncode != 0:
            raise EngineError(f"`{command}` exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def prepare(self) -> None:
        """``container-lab.sh up``: namespace, base images, a copy of the project, its images
        and its compose topology, which is stopped again: the test builds and starts its own."""
        out = self._lab("up")
        if out.returncode != 0:
            tail = f"{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
            raise EngineError(f"container-lab.sh up exited {out.returncode}:\n{tail}")
        self.sh(f"{self.compose} down -v -t 5", check=False)

    def build(self, service: str) -> None:
        """Build with the layers ``up`` cached, in docker format (podman's OCI default drops
        HEALTHCHECK, and the test checks health)."""
        self.sh(
            f"podman build --pull=never --network host --format docker "
            f"-f services/{service}/Dockerfile -t thumbcache/{service}:{self.tag} ."
        )

    def teardown(self) -> None:
        """Remove the lab's namespace (its storage stays, for the next run's cache)."""
        self._lab("down", timeout=300)


def pick_engine(project: Path, wanted: str | None = None) -> Engine:
    """docker, else podman, else the lab (``wanted`` forces one)."""
    has = shutil.which
    if wanted in (None, "docker") and has("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        compose = "docker compose" if probe.returncode == 0 else "docker-compose"
        if probe.returncode == 0 or has("docker-compose"):
            return Engine("docker", f"{compose} -p {PROJECT}", project)
    if wanted in (None, "podman") and has("podman") and has("podman-compose"):
        return Engine("podman", f"podman-compose -p {PROJECT}", project)
    if wanted in (None, "lab") and LAB_SCRIPT.exists():
        work = os.environ.get("WORK", LAB_WORK)
        return Lab("podman", "/opt/pc/bin/podman-compose", project, tag="dev", work=work)
    sys.exit(f"no container engine: install docker or podman, or put the lab at {LAB_SCRIPT}")


def quoted(*words: str) -> str:
    """Words as one shell command line."""
    return " ".join(shlex.quote(w) for w in words)
