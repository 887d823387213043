"""Every overlay renders with kustomize, validates against Kubernetes' schemas, and is hardened."""

from __future__ import annotations

import pytest
from deploy_helpers import (
    OVERLAYS,
    ROOT,
    config_files,
    container_env,
    is_ours,
    is_worker,
    of_kind,
    pod_spec,
    render,
)
from kubernetes_validate import utils as kv
from thumbcache.settings import load_settings

# The oldest Kubernetes the manifests support (CronJob timeZone is GA from 1.27) and the newest
# the schemas know.
KUBERNETES_VERSIONS = ("1.29.0", kv.latest_version())
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}  # checked in test_scaling.py
SECRET_KEYS = {"broker-url", "mongo-url", "api-token", "rabbitmq-management-url"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly_against_kubernetes_schemas(overlay: str, version: str) -> None:
    checked = 0
    for doc in render(overlay):
        if doc["kind"] in KEDA_KINDS:
            continue
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_thumbcache_pod_is_hardened(overlay: str) -> None:
    docs = render(overlay)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "CronJob") and is_ours(d)]
    assert len(workloads) == 11  # 5 workers, status service, 5 CronJobs
    for workload in workloads:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in ctx["capabilities"], where
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests), where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_have_exec_probes_and_every_deployment_a_pdb(overlay: str) -> None:
    docs = render(overlay)
    pdbs = of_kind(docs, "PodDisruptionBudget")
    deployments = {n: d for n, d in of_kind(docs, "Deployment").items() if is_ours(d)}
    assert set(deployments) == set(pdbs)
    for name, deployment in deployments.items():
        assert pdbs[name]["spec"]["selector"] == deployment["spec"]["selector"], name
        (container,) = pod_spec(deployment)["containers"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container, f"{name} has no {probe}"
        if is_worker(deployment):  # no HTTP port: the heartbeat file probe
            assert container["livenessProbe"]["exec"]["command"][:3] == [
                "python", "-m", "thumbcache.heartbeat",
            ]  # fmt: skip
            assert "startupProbe" in container, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_map_holds_the_same_files_the_services_read(overlay: str) -> None:
    docs = render(overlay)
    configmaps = of_kind(docs, "ConfigMap")
    (config,) = [c for n, c in configmaps.items() if n.startswith("thumbcache-config")]
    for path in sorted((ROOT / "config").glob("*.toml")):
        assert config["data"][path.name] == path.read_text(), f"{path.name} differs"
    for workload in (d for d in docs if d["kind"] in ("Deployment", "CronJob") and is_ours(d)):
        pod = pod_spec(workload)
        mounted = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounted[mounts["/etc/thumbcache"]]["configMap"]["name"] == config["metadata"]["name"]
        env = container_env(container, configmaps)
        files = config_files(env)
        assert files[0].name == "base.toml" and files[-1].name == f"{overlay}.toml"
        # The layers load: no unknown key, every value valid, as the service would read them.
        load_settings(files=[str(f) for f in files], env=env)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_not_inlined(overlay: str) -> None:
    docs = render(overlay)
    for workload in (d for d in docs if d["kind"] in ("Deployment", "CronJob") and is_ours(d)):
        (container,) = pod_spec(workload)["containers"]
        env = {e["name"]: e for e in container.get("env", [])}
        for name in ("THUMBCACHE_BROKER_URL", "THUMBCACHE_MONGO_URL"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "thumbcache-secrets" and ref["key"] in SECRET_KEYS
    secrets = of_kind(docs, "Secret")
    if overlay == "dev":  # dev generates throwaway credentials for its in-cluster servers
        assert set(secrets["thumbcache-secrets"]["data"]) == SECRET_KEYS
    else:  # prod's Secret is created out of band, never committed
        assert secrets == {}


def test_cronjobs_run_the_maintenance_commands_with_the_control_image() -> None:
    cronjobs = of_kind(render("prod"), "CronJob")
    commands = {name: pod_spec(job)["containers"][0]["args"] for name, job in cronjobs.items()}
    assert commands == {
        "thumbcache-cleanup": ["cleanup", "--apply"],
        "thumbcache-reconcile": ["reconcile", "--apply"],
        "thumbcache-stale": ["stale"],
        "thumbcache-warm": ["warm"],
        "thumbcache-check-alerts": ["check-alerts"],
    }
    for job in cronjobs.values():
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        assert "/control:" in pod_spec(job)["containers"][0]["image"]
