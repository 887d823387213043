"""A stopping worker finishes its work before Kubernetes kills it, and nothing it holds
unacknowledged outlives RabbitMQ's consumer timeout (which would close its channel).

    longest time limit < worker shutdown timeout < terminationGracePeriodSeconds < consumer_timeout
"""

from __future__ import annotations

import pytest
from deploy_helpers import (
    COMPOSE_WORKERS,
    OVERLAYS,
    RABBITMQ_CONSUMER_TIMEOUT_SECONDS,
    compose,
    config_files,
    container_env,
    is_worker,
    of_kind,
    pod_spec,
    render,
)
from thumbcache.settings import load_settings

PREFETCH_PER_THREAD = 2  # Dramatiq's default queue prefetch: 2 x worker threads


def _assert_ordered(where: str, settings_env: dict[str, str], grace_seconds: int) -> None:
    settings = load_settings(files=[str(f) for f in config_files(settings_env)], env=settings_env)
    worker = settings.worker
    longest_limit = max(worker.render_actor_time_limit_seconds, worker.scan_time_limit_seconds)
    assert longest_limit < worker.shutdown_timeout_seconds, where
    assert worker.shutdown_timeout_seconds < grace_seconds, where
    assert grace_seconds < RABBITMQ_CONSUMER_TIMEOUT_SECONDS, where
    # A prefetched message waits behind the whole local buffer, then runs: it is acknowledged
    # at the latest after (prefetch / threads + 1) time limits.
    worst_unacked = (PREFETCH_PER_THREAD + 1) * longest_limit
    assert worst_unacked < RABBITMQ_CONSUMER_TIMEOUT_SECONDS, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_workers_drain_inside_their_grace_period(overlay: str) -> None:
    docs = render(overlay)
    configmaps = of_kind(docs, "ConfigMap")
    workers = [d for d in of_kind(docs, "Deployment").values() if is_worker(d)]
    assert len(workers) == 5
    for deployment in workers:
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        env = container_env(container, configmaps)
        _assert_ordered(deployment["metadata"]["name"], env, pod["terminationGracePeriodSeconds"])


def test_compose_workers_drain_inside_their_stop_grace_period() -> None:
    services = compose()["services"]
    for name in COMPOSE_WORKERS:
        grace = services[name]["stop_grace_period"]
        assert grace.endswith("s")
        _assert_ordered(name, services[name]["environment"], int(grace[:-1]))


def test_the_ordering_check_catches_a_shutdown_timeout_longer_than_the_grace_period() -> None:
    env = {
        "THUMBCACHE_CONFIG": "/etc/thumbcache/base.toml",
        "THUMBCACHE_WORKER__SHUTDOWN_TIMEOUT_SECONDS": "700",
    }
    with pytest.raises(AssertionError):
        _assert_ordered("too-long", env, 660)
