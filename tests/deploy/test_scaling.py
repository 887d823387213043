"""Each worker scales on its own queue: KEDA ScaledObjects (prod) and CPU HPAs (dev)."""

from __future__ import annotations

import pytest
from deploy_helpers import (
    OVERLAYS,
    config_files,
    container_env,
    is_worker,
    of_kind,
    pod_spec,
    queue_consumed,
    render,
)
from thumbcache.contracts import BACKFILL, FRESH, SCAN_QUEUE, render_queue
from thumbcache.settings import load_settings

WORKER_DEPLOYMENTS = {
    "scanner",
    "thumbnail-service",
    "thumbnail-service-backfill",
    "cache-service",
    "cache-service-backfill",
}


def _worker_queues(overlay: str) -> dict[str, str]:
    docs = render(overlay)
    configmaps = of_kind(docs, "ConfigMap")
    queues = {}
    for name, deployment in of_kind(docs, "Deployment").items():
        if is_worker(deployment):
            (container,) = pod_spec(deployment)["containers"]
            queues[name] = queue_consumed(container["args"], container_env(container, configmaps))
    return queues


def expected_workers(overlay: str) -> dict[str, str]:
    """What the rendition registry asks of a deployment: the scanner, and for each configured
    rendition a worker per lane, each consuming that lane's queue (named as the registry says).
    """
    configmaps = of_kind(render(overlay), "ConfigMap")
    (scanner,) = [
        c
        for d in of_kind(render(overlay), "Deployment").values()
        if is_worker(d)
        for c in pod_spec(d)["containers"]
        if c["args"] == ["worker", "scanner"]
    ]
    env = container_env(scanner, configmaps)
    settings = load_settings(files=[str(f) for f in config_files(env)], env=env)
    expected = {"scanner": SCAN_QUEUE}
    for name, rendition in settings.renditions.items():
        expected[f"{name}-service"] = render_queue(rendition, FRESH)
        expected[f"{name}-service-backfill"] = render_queue(rendition, BACKFILL)
    return expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_both_lanes_of_each_configured_rendition_are_deployed(overlay: str) -> None:
    assert _worker_queues(overlay) == expected_workers(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_replicas_to_their_autoscaler(overlay: str) -> None:
    docs = render(overlay)
    scaled = set(of_kind(docs, "ScaledObject")) | set(of_kind(docs, "HorizontalPodAutoscaler"))
    assert scaled == WORKER_DEPLOYMENTS, "exactly one autoscaler per worker Deployment"
    assert not (
        of_kind(docs, "ScaledObject").keys() & of_kind(docs, "HorizontalPodAutoscaler").keys()
    )
    for name in WORKER_DEPLOYMENTS:
        # A replicas field would be reset by every `kubectl apply`, fighting the autoscaler.
        assert "replicas" not in of_kind(docs, "Deployment")[name]["spec"], name


def test_each_scaled_object_scales_its_target_on_the_queue_the_target_consumes() -> None:
    docs = render("prod")
    deployments = of_kind(docs, "Deployment")
    auths = of_kind(docs, "TriggerAuthentication")
    queues = _worker_queues("prod")
    for name, scaled in of_kind(docs, "ScaledObject").items():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        target = spec["scaleTargetRef"]["name"]
        assert target in deployments, f"{name} targets missing Deployment {target}"
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        triggers = spec["triggers"]
        for trigger in triggers:
            assert trigger["type"] == "rabbitmq"
            metadata = trigger["metadata"]
            assert all(isinstance(v, str) for v in metadata.values()), f"{name}: {metadata}"
            # http (management API) counts prefetched, unacknowledged messages; amqp does not.
            assert metadata["protocol"] == "http", name
            assert metadata.get("excludeUnacknowledged", "false") == "false", name
            assert metadata["mode"] == "QueueLength" and int(metadata["value"]) > 0, name
            assert trigger["authenticationRef"]["name"] in auths, name
        queue = queues[target]
        watched = sorted(t["metadata"]["queueName"] for t in triggers)
        # Its own queue, and the delay queue where retries wait (never stranded at zero).
        assert watched == [queue, f"{queue}.DQ"], f"{name} watches {watched}, consumes {queue}"


def test_keda_reads_the_management_url_from_the_secret() -> None:
    (auth,) = of_kind(render("prod"), "TriggerAuthentication").values()
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "thumbcache-secrets", "key": "rabbitmq-management-url"}
    ]


def test_backfill_lanes_scale_to_zero_and_never_outgrow_their_fresh_lane() -> None:
    scaled = of_kind(render("prod"), "ScaledObject")
    for stage in ("thumbnail-service", "cache-service"):
        fresh, backfill = scaled[stage]["spec"], scaled[f"{stage}-backfill"]["spec"]
        assert backfill["minReplicaCount"] == 0
        assert fresh["minReplicaCount"] >= 1, "fresh scans start without a cold start"
        assert backfill["maxReplicaCount"] < fresh["maxReplicaCount"]


def test_hpas_in_dev_target_existing_deployments_within_sane_bounds() -> None:
    docs = render("dev")
    deployments = of_kind(docs, "Deployment")
    for name, hpa in of_kind(docs, "HorizontalPodAutoscaler").items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert name in deployments
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], name


def test_keda_fallback_never_scales_a_busy_fleet_down() -> None:
    # KEDA's default fallback ("static") sets exactly `replicas` when the management API fails:
    # a fleet scaled out to 30 would drop to 1 during a blip. currentReplicasIfHigher keeps it.
    for name, scaled in of_kind(render("prod"), "ScaledObject").items():
        fallback = scaled["spec"]["fallback"]
        assert fallback["behavior"] == "currentReplicasIfHigher", name
        assert fallback["replicas"] >= 1, f"{name}: a parked retry must still wake the stage"
