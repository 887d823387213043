"""Safe deployment defaults: memory limits a render fleet never outgrows, metrics scraped, a
namespace for dev, no default API token, tokens required and ports on loopback in compose."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    COMPOSE_WORKERS,
    OVERLAYS,
    compose,
    config_files,
    container_env,
    deploy_tree,
    is_ours,
    is_worker,
    kustomize,
    of_kind,
    pod_spec,
    render,
)
from thumbcache.settings import Settings, load_settings

# The memory rule (docs/DEPLOYMENT.md, "Memory", the one place it is written): every render
# runs in a process of its own (worker.render_processes of them at most), which may grow by
# worker.render_memory_mb beyond what it maps at start (its RLIMIT_DATA); measured in the
# render image, such a process holds 58-65 MB before a render, and the worker's own three
# processes (Dramatiq's supervisor, the worker, the metrics exporter) 85 MB together, plus
# connections and prefetched messages.
RENDER_PROCESS_BASE_MIB = 64
WORKER_PROCESSES_MIB = 200
RENDER_STAGES = ("thumbnail", "cache")


def required_memory_mib(settings: Settings) -> int:
    """The least memory limit of a render worker with these settings."""
    per_process = settings.worker.render_memory_mb + RENDER_PROCESS_BASE_MIB
    return settings.worker.render_process_count * per_process + WORKER_PROCESSES_MIB


def _mib(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024, "m": 1, "g": 1024}
    match = re.fullmatch(r"(\d+)(Mi|Gi|m|g)", str(quantity))
    assert match, f"write memory as Mi or Gi (m or g in compose): {quantity!r}"
    return int(match.group(1)) * units[match.group(2)]


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(files=[str(f) for f in config_files(env)], env=env)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_render_worker_pods_hold_every_render_process_at_its_ceiling(overlay: str) -> None:
    docs = render(overlay)
    configmaps = of_kind(docs, "ConfigMap")
    checked = 0
    for name, deployment in of_kind(docs, "Deployment").items():
        (container,) = pod_spec(deployment)["containers"]
        if not is_worker(deployment) or container["args"][1] not in RENDER_STAGES:
            continue
        settings = _settings(container_env(container, configmaps))
        assert settings.worker.render_memory_mb > 0, f"{name}: render processes need a ceiling"
        assert settings.worker.render_processes > 0, f"{name}: size memory by a set process count"
        limit = _mib(container["resources"]["limits"]["memory"])
        need = required_memory_mib(settings)
        assert limit >= need, f"{name}: limit {limit} MiB < {need} MiB, OOMKill mid-render"
        checked += 1
    assert checked == 4  # thumbnail and cache, fresh and backfill


def test_compose_render_workers_hold_every_render_process_at_its_ceiling() -> None:
    services = compose()["services"]
    render_workers = [n for n in COMPOSE_WORKERS if not n.startswith("scanner")]
    for name in render_workers:
        service = services[name]
        need = required_memory_mib(_settings(service["environment"]))
        assert _mib(service["mem_limit"]) >= need, name


def test_the_memory_rule_counts_render_processes_and_the_render_ceiling() -> None:
    two = load_settings(files=[], env={"THUMBCACHE_WORKER__RENDER_PROCESSES": "2"})
    assert required_memory_mib(two) == 2 * (two.worker.render_memory_mb + 64) + 200
    four = load_settings(files=[], env={"THUMBCACHE_WORKER__RENDER_PROCESSES": "4"})
    assert required_memory_mib(four) - required_memory_mib(two) == 2 * (1024 + 64)
    # more threads than processes: the extra threads hold no render process
    many = load_settings(
        files=[],
        env={"THUMBCACHE_WORKER__RENDER_PROCESSES": "2", "THUMBCACHE_WORKER__THREADS": "16"},
    )
    assert required_memory_mib(many) == required_memory_mib(two)
    # fewer threads than processes: a process per thread at most
    one = load_settings(
        files=[],
        env={"THUMBCACHE_WORKER__RENDER_PROCESSES": "4", "THUMBCACHE_WORKER__THREADS": "1"},
    )
    assert one.worker.render_process_count == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_metrics_port_is_declared_and_scraped(overlay: str) -> None:
    from dramatiq.middleware import prometheus  # the exporter's own port, not an assumption

    docs = render(overlay)
    configmaps = of_kind(docs, "ConfigMap")
    workers = [d for d in of_kind(docs, "Deployment").values() if is_worker(d)]
    assert len(workers) == 5
    for deployment in workers:
        name = deployment["metadata"]["name"]
        (container,) = pod_spec(deployment)["containers"]
        assert _settings(container_env(container, configmaps)).worker.prometheus, name
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert ports.get("metrics") == prometheus.HTTP_PORT, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(prometheus.HTTP_PORT), name


def test_the_dev_overlay_creates_its_namespace() -> None:
    docs = render("dev")
    (namespace,) = of_kind(docs, "Namespace").values()
    for doc in docs:
        if doc["kind"] not in ("Namespace",) and is_ours(doc):
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["kind"]


def test_the_dev_overlay_has_no_default_api_token(tmp_path: Path) -> None:
    # Without the operator's token file, kustomize refuses to render (and so to apply)
    out = kustomize(deploy_tree(tmp_path, dev_token=False), "dev")
    assert out.returncode != 0 and "api-token.env" in out.stderr
    kustomization = yaml.safe_load((tmp_path / "k8s/overlays/dev/kustomization.yaml").read_text())
    for generator in kustomization["secretGenerator"]:
        assert not any(lit.startswith("api-token=") for lit in generator.get("literals", []))


def _status() -> dict[str, Any]:
    return compose()["services"]["status-service"]  # type: ignore[no-any-return]


def test_compose_refuses_to_start_without_an_api_token() -> None:
    token = _status()["environment"]["THUMBCACHE_API_TOKEN"]
    # ${VAR:?message}: compose stops with the message when the variable is unset or empty.
    assert re.fullmatch(r"\$\{THUMBCACHE_API_TOKEN:\?[^}]+\}", token), token


def test_the_status_service_requires_its_token_in_compose_and_prod() -> None:
    assert _settings(_status()["environment"]).status.require_token
    docs = render("prod")
    (container,) = pod_spec(of_kind(docs, "Deployment")["status-service"])["containers"]
    env = container_env(container, of_kind(docs, "ConfigMap"))
    env.pop("THUMBCACHE_STATUS__REQUIRE_TOKEN", None)  # prod.toml alone must say so
    assert _settings(env).status.require_token


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
